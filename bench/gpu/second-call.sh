#!/usr/bin/env bash
# The second device call of a session (docs/gpu-runs.md): issue 18's figures with the committed fatbin, in stages of
# bounded length, each stage's outputs tarred into $OUT as soon as it ends (a stage cut off by its limit or by the call's
# still leaves the ones before it). (1) TreeBench batch-kernels: checks and step times of batched plain steps and trees
# against their floors. (2) bench/gpu/sampled.sh: the engine at batch 1 and 32, plain and adaptive suffix speculation,
# greedy and at temperature 0.7 (also the greedy batch figures). (3) bench/gpu/hybrid.sh. Needs .gpu/ from
# bench/gpu/bundle-all.sh.
#   bash bench/gpu/second-call.sh            STAGE_LIMIT=<seconds per stage> (200), CALLS=<engine calls> (1=24,32=192)
set -uo pipefail
. bench/gpu/stage.sh second-call 200
stage batch-kernels bash bench/gpu/batch-kernels.sh 0
stage sampled bash bench/gpu/sampled.sh "${CALLS:-1=24,32=192}"
stage hybrid bash bench/gpu/hybrid.sh "${CALLS:-1=24,32=192}"
