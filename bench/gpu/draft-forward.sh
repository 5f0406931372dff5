#!/usr/bin/env bash
# Issue 18's draft model on the kernels (docs/gpu-runs.md): TreeBench `draft-forward` on the Llama-3.2-1B shape at batch 32,
# 2k context: the draft forwards' logits through the tree kernels against the libtorch path, and their times against the
# floor. Committed fatbin (EMBEDDED); needs .gpu/dotnet.tar.xz, .gpu/tb-new.tar.xz and .gpu/data (bundle-all.sh).
#   bash bench/gpu/draft-forward.sh [more draft-forward options]
set -uo pipefail
out=${OUT:-/tmp/draft-forward-out}
mkdir -p "$out/logs"
. bench/gpu/runtime.sh tb-new
"$dn/dotnet" /tmp/tb-new/SpecDecode.TreeBench.dll draft-forward --model .gpu/data/llama-3.2-1b.config.json --batch 32 \
  --out "$out/logs/draft-forward.json" "$@" 2>&1 | tee "$out/logs/draft-forward.txt" | grep -vE "^\s*at " | tail -30
