#!/usr/bin/env bash
# User-space instructions per message for B1 and the sidecar, under callgrind.
#
#   tests/bench_recipe/callgrind.sh [N]        (N defaults to 100000)
#
# Runs `feedvisor-bench throughput` (1 connection, 64-byte messages, one run,
# no warm-up) under `valgrind --tool=callgrind` for each system with N and
# with 2N messages, adds up the instructions of every thread but the
# blaster's (told apart by its `blaster_thread` frame), and divides the
# difference by N. Start-up, connecting and shutting down cost the same in
# both runs and drop out, which leaves a stable per-message figure for
# catching regressions: unlike time, it does not move with the machine's load.
# Kernel time (system calls, TCP) is not counted: callgrind sees user space only.
#
# Needs valgrind. Builds the release `feedvisor-bench` binary first (package
# `feedvisor-bench`, crates/feedvisor-bench; CARGO_TARGET_DIR is honoured).
# Set KEEP=1 to keep the callgrind files (for callgrind_annotate) and print their
# folder; REPEAT=N to change how many pairs of runs each system gets.
set -euo pipefail

n=${1:-100000}
root=$(cd "$(dirname "$0")/../.." && pwd)
command -v valgrind >/dev/null || { echo "valgrind is not installed" >&2; exit 1; }
cargo build --release --quiet --manifest-path "$root/Cargo.toml" -p feedvisor-bench --bin feedvisor-bench
bin="${CARGO_TARGET_DIR:-$root/target}/release/feedvisor-bench"
out=$(mktemp -d)
if [ "${KEEP:-0}" != 1 ]; then trap 'rm -rf "$out"' EXIT; fi

# Instructions of every thread of one callgrind run but the blaster's.
client_instructions() {
    local total=0 file count
    for file in "$1".*-*; do
        grep -q 'blaster_thread' "$file" && continue
        count=$(awk '/^totals:/ { print $2 }' "$file")
        total=$((total + ${count:-0}))
    done
    echo "$total"
}

# One run of `system` with `count` messages (`round` names its files);
# prints the client's instructions.
measure() {
    local system=$1 count=$2 round=$3 prefix="$out/$1-$2-$3"
    # quanta calibrates its clock (for the metrics recorder) by spinning for a
    # while: a count that follows the wall clock, so it is left out.
    RUST_LOG=error valgrind --tool=callgrind --separate-threads=yes \
        --toggle-collect='quanta::Clock::new' --collect-atstart=yes \
        --callgrind-out-file="$prefix.%p" \
        "$bin" throughput --systems "$system" --runs 1 --conns 1 --sizes 64 \
        --messages "$count" --no-warm-up --no-pin --timeout 900s \
        >"$prefix.out" 2>"$prefix.log" || { cat "$prefix.log" >&2; exit 1; }
    client_instructions "$prefix"
}

# The sidecar's figure moves by some per cent from one pair of runs to the
# next (whether a batch is handed straight to the subscriber or queued first
# depends on timing), so each system is measured REPEAT times (default 3)
# and the median is taken.
repeat=${REPEAT:-3}
printf '%-8s %14s %14s %10s\n' system "N=$n" "2N=$((2 * n))" instr/msg
declare -A median
for system in b1 sidecar; do
    figures=()
    for round in $(seq "$repeat"); do
        once=$(measure "$system" "$n" "$round")
        twice=$(measure "$system" "$((2 * n))" "$round")
        figure=$(( (twice - once) / n ))
        figures+=("$figure")
        printf '%-8s %14s %14s %10s\n' "$system" "$once" "$twice" "$figure"
    done
    median[$system]=$(printf '%s\n' "${figures[@]}" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
done
echo "median instructions per message: b1 ${median[b1]}, sidecar ${median[sidecar]}," \
    "added by the sidecar $((median[sidecar] - median[b1]))"
if [ "${KEEP:-0}" = 1 ]; then echo "callgrind files: $out"; fi
