#!/usr/bin/env bash
# Issue 18's hybrid target (docs/gpu-runs.md): EngineBench on the SWE-bench calls at batch 1 and 32 with adaptive suffix
# speculation alone and with the hybrid of it and a Llama-3.2-1B-shaped draft model (random weights; recorded answers
# force acceptance), graphs on, the committed fatbin. The hybrid weighs the draft model's measured time against the
# step's (HybridDrafterOptions.WeighDraftCost): it must not be slower than the suffix drafter alone. Needs .gpu/ from
# bench/gpu/bundle-all.sh.
#   bash bench/gpu/hybrid.sh [calls]        (default 1=24,32=192)
OUT=${OUT:-/tmp/hybrid-out} EMBEDDED=1 VARIANTS=suffix-adaptive,hybrid-adaptive \
  exec bash bench/gpu/batch-engine.sh "${1:-1=24,32=192}" --draft-config .gpu/data/llama-3.2-1b.config.json
