#!/usr/bin/env bash
# The paper's tables as a campaign run in slices: `seqvae bench` over the suites in the order they are published,
# within one wall-clock budget, stopping at a checkpoint before the budget is spent (exit status 75); running this
# script again continues where it stopped. Each suite's records and tables (never its run folders: checkpoints stay
# in OUT) are then copied into RESULTS, the folder that is committed, with the saved IW passes of the records still
# waiting for theirs. Should a suite's folder in OUT be lost with its machine, the next run starts it from the records
# and saved passes of RESULTS: a complete record stays done, one still waiting for its IW pass trains again, and such
# a pass goes on where it was if the new training reproduces the lost one to the last bit.
#
#   benchmarks/campaign.sh OUT BUDGET [SUITE...]      e.g. benchmarks/campaign.sh ~/campaign 2h40m
#
# SUITE defaults to paper-ptb, paper-duc, paper-yelp, then the zoo on PTB (zoo-ptb). RESULTS defaults to
# benchmarks/results beside this script; SEQVAE (default: seqvae) is the command to run; WORKERS (default 1) the
# bench's worker processes (`seqvae bench --workers`), each with its share of the CPU threads. Exit status: 0 when every
# suite is done, 75 when the budget ran out first (requeue the job), 2 for bad input. Under SLURM add
# `#SBATCH --signal=USR1@300`: the bench then also stops cleanly when the job is ended before the budget.
set -uo pipefail

if [ $# -lt 2 ]; then
    echo "usage: $0 OUT BUDGET [SUITE...]   (BUDGET like 2h40m, 90m or 2:40:00)" >&2
    exit 2
fi
out=$1
budget=$2
shift 2
suites=("$@")
[ ${#suites[@]} -gt 0 ] || suites=(paper-ptb paper-duc paper-yelp zoo-ptb)
seqvae=${SEQVAE:-seqvae}
results=${RESULTS:-$(cd "$(dirname "$0")" && pwd)/results}

for suite in "${suites[@]}"; do  # a suite's folder lost with OUT starts again from what RESULTS holds of it
    name=$(basename "$suite" .toml)
    if [ ! -d "$out/$name" ] && [ -d "$results/$name/records" ]; then
        mkdir -p "$out/$name" && cp -r "$results/$name/records" "$out/$name/"
        [ -d "$results/$name/iw-progress" ] && cp -r "$results/$name/iw-progress" "$out/$name/"
        echo "$name: $out/$name was not there; its records and saved IW passes come from $results/$name"
    fi
done
"$seqvae" bench "${suites[@]}" --out "$out" --time-limit "$budget" --workers "${WORKERS:-1}" --quiet
status=$?
[ "$status" -eq 2 ] && exit 2
for suite in "${suites[@]}"; do
    name=$(basename "$suite" .toml)
    [ -f "$out/$name/suite.json" ] || continue
    mkdir -p "$results/$name/records"
    cp "$out/$name"/suite.json "$out/$name"/leaderboard.* "$results/$name/"
    cp "$out/$name"/records/*.json "$results/$name/records/" 2>/dev/null
    rm -rf "$results/$name/iw-progress"
    for state in "$out/$name"/iw-progress/*.json; do
        grep -qs '"complete": false' "$out/$name/records/$(basename "$state")" || continue
        mkdir -p "$results/$name/iw-progress" && cp "$state" "$results/$name/iw-progress/"
    done
done
"$seqvae" bench --status "$out"
exit "$status"
