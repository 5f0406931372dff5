#!/usr/bin/env bash
# Prepares .gpu/ for the agent-loop replay on the lent GPU machine (docs/gpu-runs.md): the app bundle of
# ../shared/gpu/bundle.sh, plus the ASP.NET Core shared framework the in-process server needs (bundle.sh packs only
# Microsoft.NETCore.App), plus the traces and the 8B config (../shared does not travel). Run from the repository root:
#   bash bench/SpecDecode.AgentReplay/gpu-bundle.sh
# The call then carries .gpu (park models/ first: the checkout and .gpu together must stay under 64 MiB).
set -euo pipefail
root=$(git rev-parse --show-toplevel)
cd "$root"
# ../shared/gpu/bundle.sh's steps, inline: it writes .git/info/exclude, which fails in a git worktree (.git is a file
# there); .gpu/ is in .gitignore already.
out="$root/.gpu"
mkdir -p "$out"
dn=$(dirname "$(readlink -f "$(command -v dotnet)")")
if [ ! -s "$out/dotnet.tar.xz" ]; then
  rt=$(ls -d "$dn"/shared/Microsoft.NETCore.App/* | sort -V | tail -1)
  tar -C "$dn" -cJf "$out/dotnet.tar.xz" dotnet host "shared/Microsoft.NETCore.App/$(basename "$rt")"
fi
rm -rf "$out/app"
dotnet publish bench/SpecDecode.AgentReplay/SpecDecode.AgentReplay.csproj -c Release -r linux-x64 --self-contained false -o "$out/app" -p:UseAppHost=false >&2
find "$out/app" -name '*.so*' ! -name 'libLibTorchSharp.so' -delete
find "$out/app" -type d -empty -delete
cp ../shared/gpu/run.sh "$out/run.sh"
aspnet=$(ls -d "$dn"/shared/Microsoft.AspNetCore.App/* | sort -V | tail -1)
tar -C "$dn" -cJf .gpu/aspnetcore.tar.xz "shared/Microsoft.AspNetCore.App/$(basename "$aspnet")"
mkdir -p .gpu/data
cp ../shared/data/swebench/gemini3pro-minisweagent.jsonl.gz ../shared/fixtures/configs/llama-3.1-8b.config.json .gpu/data/
cat > .gpu/agent-replay.sh <<'RUN'
#!/usr/bin/env bash
# On the GPU machine, from the checkout root: unpacks the .NET and ASP.NET Core runtimes, then runs the replay.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p /tmp/dotnet-runtime
[ -x /tmp/dotnet-runtime/dotnet ] || tar -C /tmp/dotnet-runtime -xJf "$here/dotnet.tar.xz"
[ -d /tmp/dotnet-runtime/shared/Microsoft.AspNetCore.App ] || tar -C /tmp/dotnet-runtime -xJf "$here/aspnetcore.tar.xz"
exec bash "$here/run.sh" SpecDecode.AgentReplay.dll --benchmark-random-weights "$here/data/llama-3.1-8b.config.json" \
  --traces "$here/data/gemini3pro-minisweagent.jsonl.gz" "$@"
RUN
du -sh .gpu
