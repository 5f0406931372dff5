#!/usr/bin/env bash
# Issue 18's hybrid target (docs/gpu-runs.md): EngineBench on the SWE-bench calls at batch 1 and 32 with adaptive suffix
# speculation alone and with the hybrid of it and a Llama-3.2-1B-shaped draft model (random weights; recorded answers
# force acceptance), graphs on, the committed fatbin. The hybrid weighs the draft model's measured time against the
# step's (HybridDrafterOptions.WeighDraftCost): it must not be slower than the suffix drafter alone. Needs .gpu/ from
# bench/gpu/bundle-all.sh.
#   bash bench/gpu/hybrid.sh [calls]        (default 1=24,32=192)
set -uo pipefail
calls=${1:-1=24,32=192}
out=${OUT:-/tmp/hybrid-out}
mkdir -p "$out/logs"
. bench/gpu/runtime.sh eb-new
D=.gpu/data
"$dn/dotnet" /tmp/eb-new/SpecDecode.EngineBench.dll run --traces $D/traces100.jsonl.gz --config $D/llama-3.1-8b.config.json \
  --draft-config $D/llama-3.2-1b.config.json --calls "$calls" --max-response 256 --variants suffix-adaptive,hybrid-adaptive \
  --cuda-graphs --out "$out/engine" 2>&1 | tee "$out/logs/engine.txt" | grep -vE "^\s*at " | tail -40
