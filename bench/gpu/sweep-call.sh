#!/usr/bin/env bash
# A device call for what the fifth session's first calls left open (docs/gpu-runs.md), in bounded stages tarred into $OUT
# as each ends (bench/gpu/stage.sh):
# (1) issue 19's HTTP overhead with the phase order alternating over two rounds (bench/gpu/http.sh; AgentReplay --rounds
#     defaults to 2);
# (2) issue 17's continued call (30k cached + 1k new), graph captures as now and as before (SPECDECODE_GRAPH_CAPTURE=legacy:
#     three warm-up runs and two full collections a capture), each in its own process;
# (3) the engine at batch 1 on the 24 calls, captures as now and as before;
# (4) the engine's batch sweep with parallel drafting, plain and adaptive suffix speculation (8,192-token slots).
# Needs .gpu/ from bench/gpu/bundle-all.sh.
#   bash bench/gpu/sweep-call.sh            STAGE_LIMIT=<seconds per stage> (150), HTTP_LIMIT=<the first stage's> (260)
# The report's "at the full batch" column (EngineBench run) is the decode throughput at batch B without the tail.
set -uo pipefail
. bench/gpu/stage.sh sweep-call 150
# two rounds at 1 and 8 agents load the model 8 times: 110 s covered one phase pair at one agent (fifth session)
limit=${HTTP_LIMIT:-260} stage http bash bench/gpu/http.sh "$work/http/ar" "$work/http/ar.txt"
stage ttft bash -c 'bash bench/gpu/continued.sh now; bash bench/gpu/continued.sh legacy; bash bench/gpu/continued.sh now'
batch1() { # capture mode
  SPECDECODE_GRAPH_CAPTURE=$1 OUT="$OUT/$1" bash bench/gpu/batch-engine.sh 1=24 2>&1 | grep -E "^(plain|suffix)" | sed "s/^/$1: /"
}
export -f batch1
stage batch1 bash -c 'batch1 now; batch1 legacy'
# 16 calls per slot at batch 32: the run must keep a mean batch of 28+ (issue 18); 192 calls gave 24 (plain), 21 (speculative)
stage sweep bash bench/gpu/batch-engine.sh "${CALLS:-8=128,32=512}"
# (5) batch 64 (issue 18: speculation never below plain there) with 6,144-token slots: 64 slots of 8,192 do not fit beside
# the 8B weights on an 80 GB card
stage batch64 bash bench/gpu/batch-engine.sh 64=384 --max-context 6144
