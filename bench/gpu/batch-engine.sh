#!/usr/bin/env bash
# The engine half of the batched tree kernels' device calls (issue 18; docs/gpu-runs.md): EngineBench on the SWE-bench
# calls at batch 1 and 32 (plain and adaptive suffix speculation, graphs on) with the fatbin that bench/gpu/batch-kernels.sh
# built in the previous call, carried back in .gpu/k/. Needs .gpu/dotnet.tar.xz, .gpu/eb-new.tar.xz (a published
# EngineBench folder without libtorch natives, eb-new/ at the top) and .gpu/data (traces and the 8B config).
#   bash bench/gpu/batch-engine.sh [calls]        (default 1=24,32=192)
set -uo pipefail
calls=${1:-1=24,32=192}
out=${OUT:-/tmp/batch-engine-out}
mkdir -p "$out/logs"
dn=/tmp/dotnet-runtime
[ -x "$dn/dotnet" ] || { mkdir -p "$dn"; tar -C "$dn" -xJf .gpu/dotnet.tar.xz; }
[ -d /tmp/eb-new ] || tar -C /tmp -xJf .gpu/eb-new.tar.xz
torchlib=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export DOTNET_ROOT=$dn DOTNET_CLI_TELEMETRY_OPTOUT=1 SPECDECODE_LIBTORCH="$torchlib"
# EMBEDDED=1: the committed fatbin embedded in the build; else the one the previous call built, carried in .gpu/k
if [ -n "${EMBEDDED:-}" ]; then unset SPECDECODE_DECODE_KERNELS; else export SPECDECODE_DECODE_KERNELS=.gpu/k/decode_step.fatbin; fi
export LD_LIBRARY_PATH="$torchlib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
D=.gpu/data
"$dn/dotnet" /tmp/eb-new/SpecDecode.EngineBench.dll run --traces $D/traces100.jsonl.gz --config $D/llama-3.1-8b.config.json \
  --calls "$calls" --max-response 256 --variants plain,suffix-adaptive --cuda-graphs --out "$out/engine" 2>&1 | tee "$out/logs/engine.txt" \
  | grep -vE "^\s*at " | tail -40
