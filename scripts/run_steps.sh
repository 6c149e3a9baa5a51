#!/bin/sh
# Run `make <step>` for each step in order, stop at the first failure, and print how long each took.
# Usage: run_steps.sh MAKE step...
set -u
make_command=$1
shift
summary=""
total_start=$(date +%s)
status=0
for step in "$@"; do
    echo "==> $step"
    start=$(date +%s)
    $make_command --no-print-directory "$step" || status=$?
    elapsed=$(( $(date +%s) - start ))
    summary="$summary$(printf '%-20s %5ss' "$step" "$elapsed")
"
    if [ "$status" -ne 0 ]; then
        summary="$summary$(printf '%-20s FAILED (exit %s)' "$step" "$status")
"
        break
    fi
done
echo
echo "step                 time"
printf '%s' "$summary"
printf '%-20s %5ss\n' "total" "$(( $(date +%s) - total_start ))"
exit "$status"
