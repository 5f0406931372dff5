#!/usr/bin/env bash
# Prepares .gpu/ for the calls of bench/gpu/batch-and-http.sh and agents-whole.sh (docs/gpu-runs.md), here, from the
# repository root: the AgentReplay bundle (runtime, ASP.NET Core, the 8B config) with its app xz-compressed, the first 100
# SWE-bench trajectories instead of the whole file, and TreeBench and EngineBench published and xz-compressed beside it,
# so that the checkout (models/ parked) and .gpu stay under the 64 MiB carry.
set -euo pipefail
root=$(git rev-parse --show-toplevel)
cd "$root"
bash bench/SpecDecode.AgentReplay/gpu-bundle.sh
(zcat .gpu/data/gemini3pro-minisweagent.jsonl.gz || true) | head -100 | gzip -9 > .gpu/data/traces100.jsonl.gz   # zcat stops early on purpose
rm .gpu/data/gemini3pro-minisweagent.jsonl.gz
cp ../shared/fixtures/configs/llama-3.2-1b.config.json .gpu/data/   # the draft model's shape (bench/gpu/hybrid.sh)
sed -i 's/gemini3pro-minisweagent.jsonl.gz/traces100.jsonl.gz/' .gpu/agent-replay.sh
sed -i 's|^exec bash "$here/run.sh"|[ -d "$here/app" ] \|\| tar -C "$here" -xJf "$here/ar-app.tar.xz"\nexec bash "$here/run.sh"|' .gpu/agent-replay.sh
(cd .gpu && tar -cJf ar-app.tar.xz app && rm -rf app)
for pair in TreeBench:tb-new EngineBench:eb-new; do
  proj=${pair%%:*} name=${pair##*:}
  tmp=$(mktemp -d)
  dotnet publish "bench/SpecDecode.$proj/SpecDecode.$proj.csproj" -c Release -r linux-x64 --self-contained false -o "$tmp/$name" -p:UseAppHost=false >&2
  find "$tmp/$name" -name '*.so*' ! -name 'libLibTorchSharp.so' -delete
  find "$tmp/$name" -type d -empty -delete
  tar -C "$tmp" -cJf ".gpu/$name.tar.xz" "$name"
  rm -rf "$tmp"
done
du -sh .gpu
