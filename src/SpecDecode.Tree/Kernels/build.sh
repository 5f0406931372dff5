#!/usr/bin/env bash
# Builds decode_step.fatbin from decode_step.cu (which includes tree_step.cuh): machine code for sm_80 (A100) and sm_90a (H100/H200,
# with the tree products on wgmma), and PTX of sm_90 (mma.sync)
# that the driver compiles for later GPUs. Needs CUDA's nvcc (12.x or 13.x); the .NET build only embeds the result, so
# run this on a CUDA machine after changing the sources and commit the fatbin with them. It also writes the sources'
# SHA-256 to decode_step.cu.sha256, which a CPU test compares with the source: a changed source with an old fatbin
# fails CI.
#   src/SpecDecode.Tree/Kernels/build.sh [output folder]       (default: beside this script)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here}"
mkdir -p "$out"
nvcc -O3 -std=c++17 -fatbin --resource-usage \
  -gencode arch=compute_80,code=sm_80 \
  -gencode arch=compute_90a,code=sm_90a \
  -gencode arch=compute_90,code=compute_90 \
  -o "$out/decode_step.fatbin" "$here/decode_step.cu"
(cd "$here" && sha256sum decode_step.cu tree_step.cuh) > "$out/decode_step.cu.sha256"
echo "built $out/decode_step.fatbin ($(stat -c %s "$out/decode_step.fatbin") bytes) with $(nvcc --version | tail -1)"
