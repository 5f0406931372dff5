#!/usr/bin/env bash
# A device call for what the fifth session's first calls left open (docs/gpu-runs.md), in bounded stages tarred into $OUT
# as each ends (bench/gpu/stage.sh): (1) issue 19's HTTP overhead with the phase order alternating over two rounds
# (bench/gpu/http.sh; AgentReplay --rounds defaults to 2); (2) the engine's batch sweep, plain and adaptive suffix
# speculation, with parallel drafting (bench/gpu/batch-engine.sh, 8,192-token slots up to batch 48); (3) batch 64 with
# 6,144-token slots (64 slots of 8,192 do not fit beside the 8B weights on an 80 GB card). Needs .gpu/ from
# bench/gpu/bundle-all.sh.
#   bash bench/gpu/sweep-call.sh            STAGE_LIMIT=<seconds per stage> (200)
set -uo pipefail
final=${OUT:-/tmp/sweep-call-out}
work=/tmp/sweep-call-work
limit=${STAGE_LIMIT:-200}
mkdir -p "$final" "$work"
. bench/gpu/stage.sh
stage http bash bench/gpu/http.sh "$work/http/ar" "$work/http/ar.txt"
stage sweep bash bench/gpu/batch-engine.sh "${CALLS:-1=24,8=96,16=128,32=192,48=288}"
stage batch64 bash bench/gpu/batch-engine.sh 64=384 --max-context 6144
# (4) issue 17's first continued call (146-159 ms against 89-91 ms for the second): is it the graph capture for the new
# key bucket? One bucket of 32,768 keys is captured by the first call already.
ttft_bucket() {
  . bench/gpu/runtime.sh eb-new
  "$dn/dotnet" /tmp/eb-new/SpecDecode.EngineBench.dll agents --traces .gpu/data/traces100.jsonl.gz \
    --config .gpu/data/llama-3.1-8b.config.json --agents 1 --continued 30000:1000 --continued-only --reuse on \
    --max-context 32768 --cuda-graphs --key-bucket 32768 --out "$OUT/continued" 2>&1 | grep -E "prefill:|continued call|rror"
}
export -f ttft_bucket
stage ttft-bucket bash -c ttft_bucket
