#!/usr/bin/env bash
# Device calls of issue 21, tensor parallelism (docs/tensor-parallel.md). Prepare with bench/gpu/issue21-bundle.sh, park
# models/ outside the checkout for the call (docs/gpu-runs.md: the 64 MiB limit), carry .gpu, and run from the root:
#   bash .gpu/issue21.sh one-gpu   one GPU: world size 1 through NCCL against the one-device path (must be bitwise), and
#                                  2 simulated ranks on that GPU (in-process collectives), Llama-3.1-8B shape, bf16
#   bash .gpu/issue21.sh tp8b      4 GPUs (SIZES=1,2 on 2): Llama-3.1-8B shape at TP=1,2,4 over NCCL: logits against one
#                                  device, plain and speculative tokens, plain step against its floor
#   bash .gpu/issue21.sh tp70b     4 H100 (TP=4) or 2 H200 (TP=2): the Llama-3.1-70B shape through the engine on the
#                                  SWE-bench calls at batch 1, plain against the suffix drafter
# Results and logs go to $OUT.
set -uo pipefail
# NVLink multicast stays off on the lent machines (/work/.library/device/KINDS.md): NCCL reads these at init.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export NCCL_DEBUG=${NCCL_DEBUG:-WARN}
phase=${1:?one-gpu, tp8b or tp70b}
out=${OUT:-/tmp/issue21-out}
mkdir -p "$out"
nvidia-smi --query-gpu=index,name,memory.total --format=csv > "$out/gpus.csv" 2>&1
nvidia-smi topo -m > "$out/topology.txt" 2>&1
start=$SECONDS
tb() { bash .gpu/run.sh SpecDecode.TreeBench.dll "$@"; }
case "$phase" in
  one-gpu)
    tb tp --model llama-3.1-8b --sizes 1 --transport nccl --out "$out/tp-8b-world1-nccl.json" 2>&1 | tee "$out/tp-8b-world1-nccl.log"
    echo "== nccl world 1 done ${SECONDS}s"
    tb tp --model llama-3.1-8b --sizes 2 --transport in-process --out "$out/tp-8b-simulated2.json" 2>&1 | tee "$out/tp-8b-simulated2.log"
    echo "== simulated 2 ranks done ${SECONDS}s"
    ;;
  tp8b)
    tb tp --model llama-3.1-8b --sizes "${SIZES:-1,2,4}" --transport nccl --out "$out/tp-8b.json" 2>&1 | tee "$out/tp-8b.log"
    echo "== tp8b done ${SECONDS}s"
    ;;
  tp70b)
    tp=${TP:-$(nvidia-smi -L | wc -l)}
    bash .gpu/run.sh SpecDecode.EngineBench.dll run --traces .gpu/data/traces.jsonl.gz --config bench/configs/llama-3.1-70b.config.json \
      --tensor-parallel "$tp" --transport nccl --calls "1=${CALLS:-8}" --max-response "${RESPONSE:-128}" --max-context 16384 \
      --variants plain,suffix --out "$out/engine-70b" 2>&1 | tee "$out/engine-70b.log" | grep -vE '^\s*at '
    echo "== tp70b done ${SECONDS}s"
    ;;
  *)
    echo "unknown phase $phase: one-gpu, tp8b or tp70b" >&2
    exit 2
    ;;
esac
