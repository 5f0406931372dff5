#!/usr/bin/env bash
# One device call (docs/gpu-runs.md): builds the fatbin from the current kernel sources, then alternates separate
# processes of TreeBench `tree-kernels --quick` (logits against the usual path, the graphed plain step and the tree
# steps' times) for the previous build (.gpu/old: per-slot contiguous cache, its own embedded fatbin) and the paged
# kernels at several KV block sizes. Needs .gpu (bundle.sh of bench/SpecDecode.TreeBench) and .gpu/old (the previous
# build published without natives).
#   bash bench/gpu/paged-kernels.sh [rounds] [blocks...]
set -uo pipefail
rounds=${1:-2}; shift || true
blocks=${*:-16 64 256}
out=${OUT:-/tmp/paged-out}
mkdir -p "$out/k" "$out/logs"
if ! bash "${KERNELS:-src/SpecDecode.Tree/Kernels}/build.sh" "$out/k" > "$out/logs/build.txt" 2>&1; then
  grep -E "error|warning" "$out/logs/build.txt" | head -40; exit 1
fi
grep -E "registers|spill|built" "$out/logs/build.txt" | grep -E "tree_attention_128|attention_decode_128|tree_accept|gemv_qkv|built" | head -20
run() { # name, app folder, extra env, args
  local name=$1 app=$2; shift 2
  local log="$out/logs/$name.txt"
  if [ "$app" = old ]; then
    env -u SPECDECODE_DECODE_KERNELS bash .gpu/run.sh ../old/SpecDecode.TreeBench.dll tree-kernels --quick "$@" > "$log" 2>&1
  else
    SPECDECODE_DECODE_KERNELS="$out/k/decode_step.fatbin" bash .gpu/run.sh SpecDecode.TreeBench.dll tree-kernels --quick "$@" > "$log" 2>&1
  fi
  echo "== $name (exit $?)"; grep -E "plain|entries|error|Error|Exception" "$log" | head -12
}
for r in $(seq 1 "$rounds"); do
  run "old-2k-r$r" old
  for b in $blocks; do run "paged$b-2k-r$r" new --kv-block "$b"; done
done
run old-16k old --context 16384 --capacity 20480 --entries 16,64
run paged64-16k new --context 16384 --capacity 20480 --entries 16,64 --kv-block 64
run paged16-16k new --context 16384 --capacity 20480 --entries 16,64 --kv-block 16
cp "${KERNELS:-src/SpecDecode.Tree/Kernels}/decode_step.cu.sha256" "$out/k/source.sha256" 2>/dev/null || true
tar -C "$out" -czf "$out/paged-kernels.tgz" logs k
