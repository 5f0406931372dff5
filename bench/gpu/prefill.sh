#!/usr/bin/env bash
# Issue 17's time to first token (docs/kv-cache.md, "Packed prefill"): packed prefill with libtorch's variable-length
# flash attention against the masked chunks, on one random 8B model (TreeBench prefill-attention: cache rows, next
# logits, prefill times against the FLOP floor), then the engine's continued call (30k cached + 1k new) on each path.
# Needs .gpu/ from bench/gpu/bundle-all.sh (dotnet.tar.xz, tb-new.tar.xz, eb-new.tar.xz, data/). About 3 minutes.
#   bash bench/gpu/prefill.sh
set -uo pipefail
out=${OUT:-/tmp/prefill-out}
mkdir -p "$out/logs"
. bench/gpu/runtime.sh tb-new eb-new
D=.gpu/data
nvidia-smi --query-gpu=name,clocks.max.sm,memory.total --format=csv,noheader
"$dn/dotnet" /tmp/tb-new/SpecDecode.TreeBench.dll prefill-attention --context 30000 --new 1000 --fresh 8192,20000 --repeat 5 \
  --out "$out/prefill-attention.json" 2>&1 | tee "$out/logs/prefill-attention.txt" | grep -vE "^\s*at " | tail -20
for p in masked auto; do
  "$dn/dotnet" /tmp/eb-new/SpecDecode.EngineBench.dll agents --traces $D/traces100.jsonl.gz --config $D/llama-3.1-8b.config.json \
    --agents 1 --continued 30000:1000 --continued-only --reuse on --max-context 32768 --cuda-graphs --prefill $p \
    --out "$out/continued-$p" 2>&1 | tee "$out/logs/continued-$p.txt" | grep -E "prefill:|continued call|rror" | sed 's/.*; prefill:/prefill:/'
done
