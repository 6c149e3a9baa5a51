#!/bin/sh
# Run `make <step>` for each step in order and print how long each took.
# Every step runs even after a failure (one lint error should not hide a failing test); the exit
# status is non-zero when any step failed. Usage: run_steps.sh MAKE step...
set -u
make_command=$1
shift
summary=""
failed=""
total_start=$(date +%s)
for step in "$@"; do
    echo "==> $step"
    start=$(date +%s)
    if $make_command --no-print-directory "$step"; then
        result="ok"
    else
        result="FAILED"
        failed="$failed $step"
    fi
    elapsed=$(( $(date +%s) - start ))
    summary="$summary$(printf '%-20s %5ss  %s' "$step" "$elapsed" "$result")
"
done
echo
echo "step                  time  result"
printf '%s' "$summary"
printf '%-20s %5ss\n' "total" "$(( $(date +%s) - total_start ))"
if [ -n "$failed" ]; then
    echo "make test FAILED:$failed"
    exit 1
fi
echo "make test passed"
