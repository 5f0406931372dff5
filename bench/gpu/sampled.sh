#!/usr/bin/env bash
# Issue 18's sampled target (docs/gpu-runs.md): EngineBench on the SWE-bench calls at batch 1 and 32, plain decoding and
# adaptive suffix speculation, each greedy and at temperature 0.7. Sampled requests run the speculative sampling and then
# take the recorded path, so both are timed at the same acceptance; the report's "sampled / greedy" column is the target
# (within 10 %). Graphs on, the committed fatbin. Needs .gpu/ from bench/gpu/bundle-all.sh.
#   bash bench/gpu/sampled.sh [calls]        (default 1=24,32=192)
OUT=${OUT:-/tmp/sampled-out} EMBEDDED=1 exec bash bench/gpu/batch-engine.sh "${1:-1=24,32=192}" --temperatures 0,0.7
