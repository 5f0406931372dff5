#!/usr/bin/env bash
# The device call for wide tree steps (issue 18; docs/gpu-runs.md): steps of 65-512 rows on the tree kernels with cuBLAS's
# products (KernelTreeStep, WideProducts), committed fatbin, in stages tarred into $OUT as each ends (bench/gpu/stage.sh):
# (1) TreeBench batch-kernels: the checks (logits of 128-, 144- and 512-row steps against the usual path, repeatability,
#     batched speculative decoding of 32 sequences with trees of 8) and step times of 8x16, 32x4, 32x8, 32x16 against the
#     plain batch of the same size;
# (2) the engine at batch 32 on 512 calls (a mean batch of 28+), plain and adaptive suffix speculation, two rounds
#     (round 2 replays the graphs round 1 captured: EngineBench --rounds);
# (3) the engine at batch 64 with 6,144-token slots, two rounds;
# (draft) a draft model's forwards on the tree kernels (draft-forward.sh: Llama-3.2-1B shape, batch 32), after (1).
# Issue 17's continued call is reuse-call.sh's first stage, the next call.
# Needs .gpu/ from bench/gpu/bundle-all.sh.
#   bash bench/gpu/wide-call.sh       KERNELS_LIMIT (260), DRAFT_LIMIT (90), ENGINE_LIMIT (220), STAGE_LIMIT (150) seconds;
#                                     KERNELS_ARGS
set -uo pipefail
. bench/gpu/stage.sh wide-call 150
# KERNELS_ARGS: more batch-kernels options (e.g. a shorter run: --batches 8,32 --long-context 0 --sampled-steps 500)
# shellcheck disable=SC2086
limit=${KERNELS_LIMIT:-260} stage batch-kernels bash bench/gpu/batch-kernels.sh 0 ${KERNELS_ARGS:-}
limit=${DRAFT_LIMIT:-90} stage draft bash bench/gpu/draft-forward.sh
limit=${ENGINE_LIMIT:-220} stage sweep32 bash bench/gpu/batch-engine.sh 32=512 --rounds 2
limit=${ENGINE_LIMIT:-220} stage batch64 bash bench/gpu/batch-engine.sh 64=384 --max-context 6144 --rounds 2
