#!/usr/bin/env bash
# The engine half of the batched tree kernels' device calls (issue 18; docs/gpu-runs.md): EngineBench on the SWE-bench
# calls at batch 1 and 32 (plain and adaptive suffix speculation, graphs on) with the fatbin that bench/gpu/batch-kernels.sh
# built in the previous call, carried back in .gpu/k/. Needs .gpu/dotnet.tar.xz, .gpu/eb-new.tar.xz (a published
# EngineBench folder without libtorch natives, eb-new/ at the top) and .gpu/data (traces and the 8B config).
#   bash bench/gpu/batch-engine.sh [calls [more EngineBench run options]]        (default 1=24,32=192)
# VARIANTS=... replaces plain,suffix-adaptive; hybrid.sh and sampled.sh are this call with other variants and options.
set -uo pipefail
calls=${1:-1=24,32=192}
shift || true
out=${OUT:-/tmp/batch-engine-out}
mkdir -p "$out/logs"
. bench/gpu/runtime.sh eb-new
# EMBEDDED=1: the committed fatbin embedded in the build; else the one the previous call built, carried in .gpu/k
if [ -n "${EMBEDDED:-}" ]; then unset SPECDECODE_DECODE_KERNELS; else export SPECDECODE_DECODE_KERNELS=.gpu/k/decode_step.fatbin; fi
D=.gpu/data
"$dn/dotnet" /tmp/eb-new/SpecDecode.EngineBench.dll run --traces $D/traces100.jsonl.gz --config $D/llama-3.1-8b.config.json \
  --calls "$calls" --max-response 256 --variants "${VARIANTS:-plain,suffix-adaptive}" --cuda-graphs --out "$out/engine" "$@" 2>&1 | tee "$out/logs/engine.txt" \
  | grep -vE "^\s*at " | tail -40
