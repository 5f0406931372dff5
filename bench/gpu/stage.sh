# Sourced by the staged device-call scripts of bench/gpu (first-call.sh, second-call.sh, sweep-call.sh, wide-call.sh,
# reuse-call.sh), from the repository root:
#   . bench/gpu/stage.sh <call name> <default seconds per stage>
# sets final (the call's $OUT, or /tmp/<call>-out), work (/tmp/<call>-work) and limit ($STAGE_LIMIT or the default).
# `stage NAME COMMAND...` then runs the command with OUT=$work/NAME and EMBEDDED=1 under a limit of $limit seconds,
# prints its tail, and tars its folder into $final/NAME.tgz at once, so that a stage cut off by its limit or by the
# call's still leaves the ones before it. STAGES="a b" runs only the stages named (all when unset).
final=${OUT:-/tmp/$1-out}
work=/tmp/$1-work
limit=${STAGE_LIMIT:-$2}
mkdir -p "$final" "$work"
stage() { # name, command...
  local name=$1; shift
  if [ -n "${STAGES:-}" ] && [[ " $STAGES " != *" $name "* ]]; then echo "== $name skipped (STAGES)"; return; fi
  mkdir -p "$work/$name"
  OUT="$work/$name" EMBEDDED=1 timeout "$limit" "$@" > "$work/$name/stdout.txt" 2>&1
  echo "== $name (exit $?) at ${SECONDS}s"
  grep -vE "^\s*at " "$work/$name/stdout.txt" | tail -${TAIL:-30}
  tar -C "$work" -czf "$final/$name.tgz" "$name"
}
