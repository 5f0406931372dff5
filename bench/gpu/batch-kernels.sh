#!/usr/bin/env bash
# One device call (docs/gpu-runs.md) for the batched tree kernels (issue 18): builds the fatbin from the current kernel
# sources, then runs TreeBench `tree-kernels --quick` for the previous build (.gpu/tb-old.tar.xz: TreeBench published from
# the commit before the change, with its own embedded fatbin) and the new one, alternating, and the new build's
# `batch-kernels` (batches of plain steps and trees against the usual path: logits, compaction, tokens, times).
# Needs .gpu/dotnet.tar.xz (../shared/gpu/bundle.sh), .gpu/tb-old.tar.xz and .gpu/tb-new.tar.xz (each a published
# TreeBench folder without libtorch natives, tb-old/ and tb-new/ at the top).
#   bash bench/gpu/batch-kernels.sh [rounds] [batch-kernels args...]
set -uo pipefail
rounds=${1:-2}; shift || true
out=${OUT:-/tmp/batch-out}
mkdir -p "$out/logs"
fatbin=()
if [ -z "${EMBEDDED:-}" ]; then   # EMBEDDED=1: the committed fatbin embedded in the build, no nvcc
  mkdir -p "$out/k"
  if ! bash src/SpecDecode.Tree/Kernels/build.sh "$out/k" > "$out/logs/build.txt" 2>&1; then
    grep -E "error|warning" "$out/logs/build.txt" | head -40; exit 1
  fi
  grep -E "registers|spill|built" "$out/logs/build.txt" | grep -E "tree_attention_128|tree_accept|tree_finish_qkv|built" | head -12
  fatbin=(SPECDECODE_DECODE_KERNELS="$out/k/decode_step.fatbin")
fi
apps=(tb-new)
[ "$rounds" -eq 0 ] || apps+=(tb-old)   # the previous build: the A/B rounds only
. bench/gpu/runtime.sh "${apps[@]}"
run() { # name, build (old/new), args
  local name=$1 build=$2; shift 2
  local log="$out/logs/$name.txt"
  if [ "$build" = old ]; then
    env -u SPECDECODE_DECODE_KERNELS "$dn/dotnet" /tmp/tb-old/SpecDecode.TreeBench.dll "$@" > "$log" 2>&1
  else
    env "${fatbin[@]}" "$dn/dotnet" /tmp/tb-new/SpecDecode.TreeBench.dll "$@" > "$log" 2>&1
  fi
  echo "== $name (exit $?)"; grep -E "plain|entries|error|Error|Exception|PASS|FAIL" "$log" | head -14
}
for r in $(seq 1 "$rounds"); do   # rounds 0: batch-kernels only
  run "old-tree-r$r" old tree-kernels --quick
  run "new-tree-r$r" new tree-kernels --quick
done
run batch new batch-kernels --out "$out/logs/batch-kernels.json" "$@"
tail -40 "$out/logs/batch.txt"
# $OUT returns at most 8 files: the fatbin and its hashes, build.txt, the tree-kernels logs, batch.txt and its JSON
