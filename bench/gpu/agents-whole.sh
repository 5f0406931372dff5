#!/usr/bin/env bash
# Issue 17's missing figure (docs/gpu-runs.md): the agent replay over whole trajectories at one agent, prefix reuse on and
# off, adaptive suffix speculation (the target is "speculation on"), with the committed fatbin. Needs .gpu/dotnet.tar.xz,
# .gpu/eb-new.tar.xz (a published EngineBench folder without libtorch natives, eb-new/ at the top) and .gpu/data (traces
# and the 8B config).
#   bash bench/gpu/agents-whole.sh [trajectories [max calls of a trajectory]]      (default 2, any length)
# The fifth session's run (`--max-trajectory-calls 24`, one trajectory) drew a short one: 14 calls, mean prompt 6.6k
# tokens, where reuse saves little (1.15x). The traces' conversations end at 20k tokens on average; take them whole.
# About 90 s per variant and trajectory of 60 calls.
set -uo pipefail
out=${OUT:-/tmp/agents-whole-out}
mkdir -p "$out/logs"
. bench/gpu/runtime.sh eb-new
D=.gpu/data
"$dn/dotnet" /tmp/eb-new/SpecDecode.EngineBench.dll agents --traces $D/traces100.jsonl.gz --config $D/llama-3.1-8b.config.json \
  --skip-trajectories 40 --agents 1 --trajectories-per-agent "${1:-2}" --calls 0 --max-trajectory-calls "${2:-0}" \
  --variants suffix-adaptive --max-context 32768 --cuda-graphs \
  --out "$out/agents" 2>&1 | tee "$out/logs/agents.txt" | grep -vE "^\s*at " | tail -30
