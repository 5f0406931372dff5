#!/usr/bin/env bash
# Issue 17's continued call (docs/gpu-runs.md): time to first token of a 30k-token conversation with 1k new tokens, prefix
# reuse on, graphs on, the committed fatbin, in a process of its own; prints EngineBench's "continued call:" lines.
#   bash bench/gpu/continued.sh <capture mode: now | legacy>      (legacy: SPECDECODE_GRAPH_CAPTURE=legacy, the old capture)
set -uo pipefail
out=${OUT:-/tmp/continued-out}
. bench/gpu/runtime.sh eb-new
SPECDECODE_GRAPH_CAPTURE=$1 "$dn/dotnet" /tmp/eb-new/SpecDecode.EngineBench.dll agents --traces .gpu/data/traces100.jsonl.gz \
  --config .gpu/data/llama-3.1-8b.config.json --agents 1 --continued 30000:1000 --continued-only --reuse on \
  --max-context 32768 --cuda-graphs --out "$out/continued-$1" 2>&1 | grep -E "continued call:|rror" | sed "s/^/$1: /"
