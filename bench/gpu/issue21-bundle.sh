#!/usr/bin/env bash
# Prepares .gpu/ for bench/gpu/issue21.sh (docs/tensor-parallel.md): run here, from the repository root, then carry .gpu.
# What ../shared/gpu/bundle.sh does (the .NET runtime, an app without libtorch-cpu natives, run.sh), for both benches in
# one app folder, plus the SWE-bench traces. By hand because bundle.sh writes .git/info/exclude, which a git worktree
# does not have (.gpu/ is in .gitignore anyway).
set -euo pipefail
root=$(git rev-parse --show-toplevel)
cd "$root"
out=.gpu
mkdir -p "$out/data"
if [ ! -s "$out/dotnet.tar.xz" ]; then
  dn=$(dirname "$(readlink -f "$(command -v dotnet)")")
  rt=$(ls -d "$dn"/shared/Microsoft.NETCore.App/* | sort -V | tail -1)
  tar -C "$dn" -cJf "$out/dotnet.tar.xz" dotnet host "shared/Microsoft.NETCore.App/$(basename "$rt")"
fi
rm -rf "$out/app"
for proj in bench/SpecDecode.TreeBench/SpecDecode.TreeBench.csproj bench/SpecDecode.EngineBench/SpecDecode.EngineBench.csproj; do
  dotnet publish "$proj" -c Release -r linux-x64 --self-contained false -o "$out/app" -p:UseAppHost=false >&2
done
find "$out/app" -name '*.so*' ! -name 'libLibTorchSharp.so' -delete
find "$out/app" -type d -empty -delete
cp ../shared/gpu/run.sh "$out/run.sh"
cp ../shared/data/swebench/gemini3pro-minisweagent.jsonl.gz "$out/data/traces.jsonl.gz"
cp bench/gpu/issue21.sh "$out/issue21.sh"
du -sh "$out" >&2
