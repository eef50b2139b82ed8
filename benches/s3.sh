#!/usr/bin/env bash
# S3 upload benchmark: wharf's runtime and bundled `s3` plugin (the
# `s3-upload` binary: one plugin call per file, as a sync makes them) against
# `rclone copy` (default settings), in the same run, to the same S3 server
# on 127.0.0.1 (the tests' `s3-server`: s3s-fs with SigV4), page cache warm.
# Two sets: one file of 1 GiB, and 10,000 files of 100 KiB. Prints each
# mean and the ratio rclone time / wharf time (above 1: wharf is faster);
# the figures go in BENCHMARKS.md under "## Sync to S3".
#
#   bash benches/s3.sh                         # needs rclone (apt-get install -y rclone)
#   WORK=/some/dir bash benches/s3.sh          # works in a new directory under it
#   BIG_BYTES=100000000 SMALL_FILES=500 RUNS=1 bash benches/s3.sh   # a smoke run
#   JOBS=4 bash benches/s3.sh                  # wharf with 4 uploads at once, as rclone's 4 transfers
#
# wharf's time is the uploads alone: `s3-upload` hashes the files first, as
# the index already holds their sha256 (it prints that time too), and makes
# its runtime and loads the plugin before timing. rclone's is the whole
# command, which hashes (MD5) as it uploads. Each run uploads under a new
# prefix, removed afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v rclone >/dev/null || { echo "needs rclone: apt-get install -y rclone" >&2; exit 2; }
if [ -z "${S3_UPLOAD:-}" ] || [ -z "${S3_SERVER:-}" ]; then
    cargo build --release -p wharf-tests --bin s3-upload --bin s3-server --quiet
    S3_UPLOAD=$PWD/target/release/s3-upload
    S3_SERVER=$PWD/target/release/s3-server
fi
WORK=$(mktemp -d "${WORK:-${TMPDIR:-/tmp}}/wharf-s3-bench.XXXXXX")
BIG_BYTES=${BIG_BYTES:-$((1 << 30))}
SMALL_FILES=${SMALL_FILES:-10000}
RUNS=${RUNS:-3}
# Uploads at once for wharf; default half the cores, as `[sync] workers`.
JOBS=${JOBS:-$(python3 -c 'import os; print(max(1, os.cpu_count() // 2))')}
KEY=bench-key
SECRET=bench-secret-0123456789
SERVER_PID=
cleanup() {
    if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK"

echo "== generating $BIG_BYTES bytes and $SMALL_FILES files of 100 KiB in $WORK (once)"
mkdir -p big small server
head -c "$BIG_BYTES" /dev/urandom > big/big.bin
head -c $((SMALL_FILES * 102400)) /dev/urandom | split -b 102400 -a 6 -d - small/f

"$S3_SERVER" --root server --bucket bench --access-key $KEY --secret-key $SECRET > server.out &
SERVER_PID=$!
until grep -q listening server.out 2>/dev/null; do sleep 0.1; done
ENDPOINT=$(sed 's/listening on //' server.out)

export RCLONE_CONFIG_BENCH_TYPE=s3 RCLONE_CONFIG_BENCH_PROVIDER=Other
export RCLONE_CONFIG_BENCH_ACCESS_KEY_ID=$KEY RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY=$SECRET
export RCLONE_CONFIG_BENCH_ENDPOINT=$ENDPOINT RCLONE_CONFIG_BENCH_REGION=us-east-1
# A CA bundle meant for other tools makes rclone's S3 client refuse to start.
unset AWS_CA_BUNDLE

now() { date +%s.%N; }
seconds() { python3 -c 'import sys; print(f"{float(sys.argv[2]) - float(sys.argv[1]):.3f}")' "$@"; }
mean() { python3 -c 'import sys, statistics; print(f"{statistics.mean(map(float, sys.argv[1:])):.3f}")' "$@"; }
ratio() { python3 -c 'import sys; print(f"{float(sys.argv[1]) / float(sys.argv[2]):.2f}")' "$@"; }

# One set: wharf then rclone, RUNS times each; prints the means and ratio.
run_set() {
    local name=$1 source=$2 bytes=$3
    local wharf_times=() rclone_times=()
    for run in $(seq "$RUNS"); do
        find "$source" -type f -print0 | xargs -0 cat > /dev/null
        line=$("$S3_UPLOAD" --endpoint "$ENDPOINT" --bucket bench --prefix "wharf-$name-$run" \
            --access-key $KEY --secret-key $SECRET --jobs "$JOBS" "$source")
        echo "   wharf  run $run: $line"
        wharf_times+=("$(echo "$line" | sed -E 's/.* in ([0-9.]+) s$/\1/')")
        rm -rf "server/bench/wharf-$name-$run"

        find "$source" -type f -print0 | xargs -0 cat > /dev/null
        start=$(now)
        rclone copy "$source" "bench:bench/rclone-$name-$run"
        took=$(seconds "$start" "$(now)")
        echo "   rclone run $run: $took s"
        rclone_times+=("$took")
        rm -rf "server/bench/rclone-$name-$run"
    done
    local wharf rclone
    wharf=$(mean "${wharf_times[@]}")
    rclone=$(mean "${rclone_times[@]}")
    echo "== $name: wharf $wharf s ($(python3 -c "print(f'{$bytes / $wharf / 1e6:.0f}')") MB/s), rclone $rclone s ($(python3 -c "print(f'{$bytes / $rclone / 1e6:.0f}')") MB/s), rclone/wharf $(ratio "$rclone" "$wharf")x"
}

echo "== one file of $BIG_BYTES bytes, $RUNS runs"
run_set big big "$BIG_BYTES"
echo "== $SMALL_FILES files of 100 KiB, $RUNS runs"
run_set small small $((SMALL_FILES * 102400))
echo "== machine: $(nproc) cores; wharf uploads with $JOBS job(s), rclone with its defaults (4 transfers)"
