#!/usr/bin/env bash
# The sixth session's second device call (docs/gpu-runs.md), in stages tarred into $OUT as each ends (bench/gpu/stage.sh):
# (1) issue 17's continued call (30k cached + 1k new) with the capture at second use, in two processes;
# (2) the engine at batch 1 on the 24 calls (issue 17's no-regression target: speculation >= 2.2x plain), two rounds:
#     round 1 captures the graphs its shapes need, round 2 replays them (a server that has run a while);
# (3) one whole trajectory at one agent, prefix reuse on and off, adaptive suffix speculation (issue 17: >= 1.5x);
# (4) sampled requests at batch 1 and 32 with the closed-form speculative sampling (issue 18: within 10 % of greedy);
# (5) the engine at batch 1 with graph key buckets of 4096 instead of 1024, one round: a quarter of the captures a fresh
#     run makes, against attention blocks that leave at once past the length (compare with round 1 of stage 2);
# (6) the same with one bucket of 8,192 keys (the bench's whole context): one graph per step shape, whatever the length.
# Needs .gpu/ from bench/gpu/bundle-all.sh.
#   bash bench/gpu/reuse-call.sh      STAGE_LIMIT (150), AGENTS_LIMIT (220) seconds
set -uo pipefail
. bench/gpu/stage.sh reuse-call 150
stage ttft bash -c 'bash bench/gpu/continued.sh now; bash bench/gpu/continued.sh now'
stage batch1 bash bench/gpu/batch-engine.sh 1=24 --rounds 2
limit=${AGENTS_LIMIT:-220} stage agents bash bench/gpu/agents-whole.sh 1
stage sampled bash bench/gpu/sampled.sh 1=24,32=192
stage bucket4096 bash bench/gpu/batch-engine.sh 1=24 --key-bucket 4096
stage bucket8192 bash bench/gpu/batch-engine.sh 1=24 --key-bucket 8192
