#!/usr/bin/env bash
# The first device call of a session (docs/gpu-runs.md): the two figures that can close issues on their own, in about
# 7 minutes. (1) Issue 17's time to first token: bench/gpu/prefill.sh (packed flash prefill against the masked chunks,
# then the engine's continued call on each path). (2) Issue 19's HTTP overhead: the agent-loop replay over HTTP and in
# process at 1 and 8 agents. Each stage's outputs are tarred into $OUT as soon as it ends (bench/gpu/stage.sh; the call
# returns at most 8 files), so a stage cut off by the call's limit still leaves the ones before it. Needs .gpu/ from
# bench/gpu/bundle-all.sh.
#   bash bench/gpu/first-call.sh            STAGE_LIMIT=<seconds per stage> (300)
set -uo pipefail
. bench/gpu/stage.sh first-call 300
TAIL=60 stage prefill bash bench/gpu/prefill.sh
# A packed flash prefill that failed (its TorchScript compile can end the process) must not cost the HTTP figure too.
grep -q "continued call" "$work/prefill/logs/continued-auto.txt" 2>/dev/null \
  || { export SPECDECODE_PREFILL_ATTENTION=masked; echo "== the auto prefill path failed: the replay runs masked"; }
stage ar bash bench/gpu/http.sh "$work/ar/out" "$work/ar/ar.txt"
