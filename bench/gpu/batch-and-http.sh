#!/usr/bin/env bash
# One device call for issues 19 and 18 with the committed fatbin (docs/gpu-runs.md): issue 19's agent-loop replay over
# HTTP and in process (.gpu/agent-replay.sh of bench/SpecDecode.AgentReplay/gpu-bundle.sh), then TreeBench batch-kernels
# (bench/gpu/batch-kernels.sh, no build), then, while the call has time, the engine at batch 1 and 32
# (bench/gpu/batch-engine.sh).
set -uo pipefail
out=${OUT:-/tmp/batch-http-out}
mkdir -p "$out/logs"
start=$SECONDS
bash bench/gpu/http.sh "$out/ar" "$out/logs/ar.txt"
EMBEDDED=1 bash bench/gpu/batch-kernels.sh 0 ${BATCH_ARGS:-} 2>&1 | tail -45
echo "== batch-kernels done at ${SECONDS}s"
if [ $((SECONDS - start)) -lt ${ENGINE_BEFORE:-330} ]; then
  EMBEDDED=1 bash bench/gpu/batch-engine.sh "${CALLS:-1=24,32=192}" 2>&1 | tail -20
  echo "== engine done at ${SECONDS}s"
fi
