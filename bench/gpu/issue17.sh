#!/usr/bin/env bash
# Device calls of issue 17 (docs/gpu-runs.md). Run from the repository root with .gpu carried:
#   bash .gpu/issue17.sh kernels   builds the fatbin from .gpu/kernels, A/B of the paged kernels (KV blocks 16, 64, 256)
#                                  against the previous build (.gpu/old) at 2k and 16k; fatbin and logs into $OUT
#   bash .gpu/issue17.sh engine    EngineBench on the 24-call set at batch 1 (plain, suffix, adaptive suffix, graphs) and the
#                                  agent replay (prefix reuse on/off, 1 and 8 agents), with the fatbin in .gpu/k
set -uo pipefail
phase=${1:?kernels or engine}
out=${OUT:-/tmp/issue17-out}
mkdir -p "$out/logs"
start=$SECONDS
tb() { bash .gpu/run.sh SpecDecode.TreeBench.dll tree-kernels --quick "$@"; }
if [ "$phase" = kernels ]; then
  mkdir -p "$out/k"
  if ! bash .gpu/kernels/build.sh "$out/k" > "$out/logs/build.txt" 2>&1; then
    grep -E "error" "$out/logs/build.txt" | head -40; exit 1
  fi
  grep -E "built|spill" "$out/logs/build.txt" | sort | uniq -c | head
  run() { # name, old|new, args
    local name=$1 app=$2; shift 2
    local log="$out/logs/$name.txt"
    if [ "$app" = old ]; then
      env -u SPECDECODE_DECODE_KERNELS bash .gpu/run.sh ../old/SpecDecode.TreeBench.dll tree-kernels --quick "$@" > "$log" 2>&1
    else
      SPECDECODE_DECODE_KERNELS="$out/k/decode_step.fatbin" tb "$@" > "$log" 2>&1
    fi
    echo "== $name (exit $?, ${SECONDS}s)"; grep -E "plain|entries|rror|xception" "$log" | head -8
  }
  for r in $(seq 1 "${ROUNDS:-2}"); do
    run "old-2k-r$r" old
    for b in ${BLOCKS:-64 256 16}; do run "paged$b-2k-r$r" new --kv-block "$b"; done
  done
  if [ -z "${SHORT:-}" ]; then
    run old-16k old --context 16384 --capacity 20480 --entries 16,64 --repeat 16
    run paged64-16k new --context 16384 --capacity 20480 --entries 16,64 --repeat 16 --kv-block 64
  fi
  tar -C "$out" -czf "$out/kernels.tgz" logs
elif [ "$phase" = engine ]; then
  export SPECDECODE_DECODE_KERNELS=.gpu/k/decode_step.fatbin
  D=.gpu/data
  bash .gpu/run.sh SpecDecode.EngineBench.dll run --traces $D/traces100.jsonl.gz --config $D/llama-3.1-8b.config.json \
    --calls 1=24 --max-response 256 --variants plain,suffix,suffix-adaptive --cuda-graphs --out "$out/engine" 2>&1 | tee "$out/logs/engine.txt" | grep -E "^(plain|suffix)|error" 
  echo "== engine done ${SECONDS}s"
  bash .gpu/run.sh SpecDecode.EngineBench.dll agents --traces $D/traces100.jsonl.gz --config $D/llama-3.1-8b.config.json \
    --skip-trajectories 40 --agents ${AGENTS:-1,8} --max-trajectory-calls ${MAXCALLS:-16} --max-context 32768 --continued 30000:1000 \
    --out "$out/agents" 2>&1 | tee "$out/logs/agents.txt" | grep -vE "^\s*at "
  echo "== agents done ${SECONDS}s"
  tar -C "$out" -czf "$out/engine.tgz" logs engine agents
fi
