#!/usr/bin/env bash
# Issue 19's HTTP overhead (docs/gpu-runs.md): the agent-loop replay over HTTP and in process at 1 and 8 agents
# (.gpu/agent-replay.sh from bench/SpecDecode.AgentReplay/gpu-bundle.sh, via bench/gpu/bundle-all.sh). The first stage of
# first-call.sh and batch-and-http.sh. Knobs: AR_CALLS (calls per trajectory, 4), AR_PROBES (probe pairs, 10).
#   bash bench/gpu/http.sh <output folder> <log file>
set -uo pipefail
bash .gpu/agent-replay.sh --warmup-trajectories 40 --trajectories 8 --max-calls ${AR_CALLS:-4} --agents 1,8 --max-context 8192 \
  --probe-pairs ${AR_PROBES:-10} --phases http,in-process --out "$1" > "$2" 2>&1
status=$?
echo "== agent replay (exit $status) at ${SECONDS}s"
grep -vE "^\s*at " "$2" | tail -25
exit $status
