#!/usr/bin/env bash
# Issue 17's missing figure (docs/gpu-runs.md): the agent replay over whole trajectories at 1 agent (prefix reuse on and
# off, plain and adaptive suffix speculation), with the committed fatbin. Needs .gpu/dotnet.tar.xz, .gpu/eb-new.tar.xz
# (a published EngineBench folder without libtorch natives, eb-new/ at the top) and .gpu/data (traces and the 8B config).
#   bash bench/gpu/agents-whole.sh [max calls of a trajectory]      (default 24)
set -uo pipefail
out=${OUT:-/tmp/agents-whole-out}
mkdir -p "$out/logs"
. bench/gpu/runtime.sh eb-new
D=.gpu/data
"$dn/dotnet" /tmp/eb-new/SpecDecode.EngineBench.dll agents --traces $D/traces100.jsonl.gz --config $D/llama-3.1-8b.config.json \
  --skip-trajectories 40 --agents 1 --calls 0 --max-trajectory-calls "${1:-24}" --max-context 32768 --cuda-graphs \
  --out "$out/agents" 2>&1 | tee "$out/logs/agents.txt" | grep -vE "^\s*at " | tail -30
