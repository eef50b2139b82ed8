#!/usr/bin/env bash
# S3 sync benchmark through `wharf sync --wait` (the engine, the bundled `s3`
# plugin, the host's SigV4 signing) against `rclone copy` (default settings)
# and `aws s3 cp --recursive`, in the same run, to the same S3 server on
# 127.0.0.1 (the tests' `s3-server`: s3s-fs with SigV4), page cache warm.
# Two sets, each in its own data directory: one file of 1 GiB, and 10,000
# files of 100 KiB. Prints each mean and the ratio peer time / wharf time
# (above 1: wharf is faster); the figures go in BENCHMARKS.md, "Sync to S3".
#
#   bash benches/sync-s3.sh                      # needs rclone (apt-get install -y rclone)
#   WORKERS=4 bash benches/sync-s3.sh            # [sync] and [jobs] workers (default: half the cores)
#   BIG_BYTES=100000000 SMALL_FILES=500 RUNS=1 bash benches/sync-s3.sh   # a smoke run
#
# wharf's time is the whole `wharf sync --wait` command (process start,
# plugin load from the compiled cache, every upload verified); the files
# were indexed by `wharf add` before, off the clock. Each run syncs under a
# new prefix (a changed destination URL starts its rows afresh), removed
# afterwards, as are the peers' copies.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v rclone >/dev/null || { echo "needs rclone: apt-get install -y rclone" >&2; exit 2; }
if [ -z "${WHARF:-}" ] || [ -z "${S3_SERVER:-}" ]; then
    cargo build --release -p wharf -p wharf-tests --bin wharf --bin s3-server --quiet
    WHARF=$PWD/target/release/wharf
    S3_SERVER=$PWD/target/release/s3-server
fi
WORK=$(mktemp -d "${WORK:-${TMPDIR:-/tmp}}/wharf-sync-s3-bench.XXXXXX")
BIG_BYTES=${BIG_BYTES:-$((1 << 30))}
SMALL_FILES=${SMALL_FILES:-10000}
RUNS=${RUNS:-3}
WORKERS=${WORKERS:-0}
KEY=bench-key
SECRET=bench-secret-0123456789
SERVER_PID=
cleanup() {
    if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK"

"$S3_SERVER" --root server --bucket bench --access-key $KEY --secret-key $SECRET > server.out &
SERVER_PID=$!
until grep -q listening server.out 2>/dev/null; do sleep 0.1; done
ENDPOINT=$(sed 's/listening on //' server.out)

export WHARF_BENCH_KEY=$KEY WHARF_BENCH_SECRET=$SECRET WHARF_LOG=warn
export RCLONE_CONFIG_BENCH_TYPE=s3 RCLONE_CONFIG_BENCH_PROVIDER=Other
export RCLONE_CONFIG_BENCH_ACCESS_KEY_ID=$KEY RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY=$SECRET
export RCLONE_CONFIG_BENCH_ENDPOINT=$ENDPOINT RCLONE_CONFIG_BENCH_REGION=us-east-1
export AWS_ACCESS_KEY_ID=$KEY AWS_SECRET_ACCESS_KEY=$SECRET AWS_DEFAULT_REGION=us-east-1
# A CA bundle meant for other tools makes rclone's S3 client refuse to start.
unset AWS_CA_BUNDLE
AWS=$(command -v aws || true)

# wharf.toml of a data directory syncing to prefix $2.
configure() {
    cat > "$1/wharf.toml" <<TOML
[api]
enabled = false
[ingest]
file_last_modified_ms = 0
[jobs]
workers = $WORKERS
[sync]
workers = $WORKERS
file_last_modified_ms = 0
[plugins]
timeout_ms = 300000
[[destination]]
name = "bench"
kind = "s3"
endpoint = "$ENDPOINT"
bucket = "bench"
prefix = "$2"
path_style = true
credential = "bench"
[credential.bench]
access_key_env = "WHARF_BENCH_KEY"
secret_key_env = "WHARF_BENCH_SECRET"
TOML
}

echo "== generating $BIG_BYTES bytes and $SMALL_FILES files of 100 KiB in $WORK, indexing them (once)"
mkdir -p src/big src/small
head -c "$BIG_BYTES" /dev/urandom > src/big/big.bin
head -c $((SMALL_FILES * 102400)) /dev/urandom | split -b 102400 -a 6 -d - src/small/f
for set in big small; do
    mkdir -p "data-$set"
    configure "data-$set" none
    "$WHARF" --data-dir "data-$set" add "src/$set" > /dev/null
done

now() { date +%s.%N; }
seconds() { python3 -c 'import sys; print(f"{float(sys.argv[2]) - float(sys.argv[1]):.3f}")' "$@"; }
mean() { python3 -c 'import sys, statistics; print(f"{statistics.mean(map(float, sys.argv[1:])):.3f}")' "$@"; }
ratio() { python3 -c 'import sys; print(f"{float(sys.argv[1]) / float(sys.argv[2]):.2f}")' "$@"; }
timed() { local start; start=$(now); "$@" > /dev/null; seconds "$start" "$(now)"; }

# One set: wharf, rclone and aws, RUNS times each; prints the means and ratios.
run_set() {
    local set=$1 bytes=$2 files="data-$1/files/$1"
    local wharf_times=() rclone_times=() aws_times=()
    for run in $(seq "$RUNS"); do
        find "$files" -type f -print0 | xargs -0 cat > /dev/null
        configure "data-$set" "wharf-$set-$run"
        took=$(timed "$WHARF" --data-dir "data-$set" sync --wait)
        synced=$("$WHARF" --data-dir "data-$set" sql --format csv \
            "SELECT count(*) FROM sync_status WHERE state = 'synced'" | tail -1)
        echo "   wharf  run $run: $took s ($synced files synced)"
        wharf_times+=("$took")
        rm -rf "server/bench/wharf-$set-$run"

        find "$files" -type f -print0 | xargs -0 cat > /dev/null
        took=$(timed rclone copy "$files" "bench:bench/rclone-$set-$run")
        echo "   rclone run $run: $took s"
        rclone_times+=("$took")
        rm -rf "server/bench/rclone-$set-$run"

        if [ -n "$AWS" ]; then
            find "$files" -type f -print0 | xargs -0 cat > /dev/null
            took=$(timed "$AWS" s3 cp --recursive --only-show-errors --endpoint-url "$ENDPOINT" \
                "$files" "s3://bench/aws-$set-$run")
            echo "   aws    run $run: $took s"
            aws_times+=("$took")
            rm -rf "server/bench/aws-$set-$run"
        fi
    done
    local wharf rclone
    wharf=$(mean "${wharf_times[@]}")
    rclone=$(mean "${rclone_times[@]}")
    echo "== $set: wharf $wharf s ($(python3 -c "print(f'{$bytes / $wharf / 1e6:.0f}')") MB/s), rclone $rclone s, rclone/wharf $(ratio "$rclone" "$wharf")x"
    if [ -n "$AWS" ]; then
        local aws
        aws=$(mean "${aws_times[@]}")
        echo "== $set: aws s3 cp $aws s, aws/wharf $(ratio "$aws" "$wharf")x"
    fi
}

echo "== one file of $BIG_BYTES bytes, $RUNS runs"
run_set big "$BIG_BYTES"
echo "== $SMALL_FILES files of 100 KiB, $RUNS runs"
run_set small $((SMALL_FILES * 102400))
echo "== machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); wharf workers: $WORKERS (0: half the cores); rclone and aws with their defaults"
