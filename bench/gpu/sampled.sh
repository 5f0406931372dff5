#!/usr/bin/env bash
# Issue 18's sampled target (docs/gpu-runs.md): EngineBench on the SWE-bench calls at batch 1 and 32, plain decoding and
# adaptive suffix speculation, each greedy and at temperature 0.7. Sampled requests run the speculative sampling and then
# take the recorded path, so both are timed at the same acceptance; the report's "sampled / greedy" column is the target
# (within 10 %). Graphs on, the committed fatbin. Needs .gpu/ from bench/gpu/bundle-all.sh.
#   bash bench/gpu/sampled.sh [calls]        (default 1=24,32=192)
set -uo pipefail
calls=${1:-1=24,32=192}
out=${OUT:-/tmp/sampled-out}
mkdir -p "$out/logs"
. bench/gpu/runtime.sh eb-new
D=.gpu/data
"$dn/dotnet" /tmp/eb-new/SpecDecode.EngineBench.dll run --traces $D/traces100.jsonl.gz --config $D/llama-3.1-8b.config.json \
  --calls "$calls" --max-response 256 --variants plain,suffix-adaptive --temperatures 0,0.7 --cuda-graphs \
  --out "$out/engine" 2>&1 | tee "$out/logs/engine.txt" | grep -vE "^\s*at " | tail -40
