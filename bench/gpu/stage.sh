# Sourced by the staged device-call scripts of bench/gpu (second-call.sh, sweep-call.sh): `stage NAME COMMAND...` runs the
# command with OUT=$work/NAME and EMBEDDED=1 under a limit of $limit seconds, prints its tail, and tars its folder into
# $final/NAME.tgz at once, so that a stage cut off by its limit or by the call's still leaves the ones before it.
# The caller sets final (the call's $OUT), work and limit.
stage() { # name, command...
  local name=$1; shift
  mkdir -p "$work/$name"
  OUT="$work/$name" EMBEDDED=1 timeout "$limit" "$@" > "$work/$name/stdout.txt" 2>&1
  echo "== $name (exit $?) at ${SECONDS}s"
  grep -vE "^\s*at " "$work/$name/stdout.txt" | tail -${TAIL:-30}
  tar -C "$work" -czf "$final/$name.tgz" "$name"
}
