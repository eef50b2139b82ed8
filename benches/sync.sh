#!/usr/bin/env bash
# Sync benchmark: `wharf sync --wait` to a `local` destination (the bundled
# `local-dir` plugin) against `cp -r` of the same files, in the same run.
# Prints each mean and the throughput ratio; the figures go in
# BENCHMARKS.md under "## Sync".
#
#   bash benches/sync.sh            # needs hyperfine (apt-get install -y hyperfine) and sqlite3
#   WORK=/some/dir bash benches/sync.sh   # works in a new directory under it
#   WHARF=/path/to/wharf BIG_BYTES=100000000 SMALL_FILES=1000 RUNS=2 bash benches/sync.sh  # a smoke run
#   SYNC_WORKERS=4 SETS=small bash benches/sync.sh   # [sync] workers = 4 (default 0: half the cores), small files only
#
# Two data directories are made once with `wharf add`: one holding a file of
# BIG_BYTES (1 GiB), one SMALL_FILES (10,000) files of 100 KiB. Before every
# timed run (hyperfine --prepare, outside the timing) the destination is
# emptied, every `sync_status` row is deleted (so each run syncs every file
# again, from nothing) and the sources are read once so the page cache is
# warm. wharf runs without a daemon, so `sync --wait` runs one sync job in
# its own process, as `cp` is one process. The peers copy the same store
# directory: `cp -r` as it comes (nothing flushed to disk), and `cp -r; sync`
# (flushed once at the end). wharf's copy is durable per file (the host
# syncs each file and its directory before the rename is reported) and
# verified (the host hashes what was stored, checked against the index)
# before a file counts as synced.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v hyperfine >/dev/null || { echo "needs hyperfine: apt-get install -y hyperfine" >&2; exit 2; }
command -v sqlite3 >/dev/null || { echo "needs sqlite3: apt-get install -y sqlite3" >&2; exit 2; }
if [ -z "${WHARF:-}" ]; then
    cargo build --release -p wharf --quiet
    WHARF=$PWD/target/release/wharf
fi
WORK=$(mktemp -d "${WORK:-${TMPDIR:-/tmp}}/wharf-sync-bench.XXXXXX")
BIG_BYTES=${BIG_BYTES:-$((1 << 30))}
SMALL_FILES=${SMALL_FILES:-10000}
SMALL_BYTES=$((100 * 1024))
RUNS=${RUNS:-5}
SYNC_WORKERS=${SYNC_WORKERS:-0}
SETS=${SETS:-big small}
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"

# A data directory `$1` whose one destination is the directory `$1-dest`.
make_data() {
    mkdir -p "$1"
    cat > "$1/wharf.toml" <<TOML
[api]
enabled = false
[sync]
workers = $SYNC_WORKERS
file_last_modified_ms = 0
[[destination]]
name = "bench"
kind = "local"
path = "$WORK/$1-dest"
TOML
    "$WHARF" --data-dir "$1" init >/dev/null
}

echo "== generating $BIG_BYTES bytes and $SMALL_FILES files of $SMALL_BYTES bytes in $WORK (once)"
mkdir -p in-big in-small/small
head -c "$BIG_BYTES" /dev/urandom > in-big/big.bin
head -c $((SMALL_FILES * SMALL_BYTES)) /dev/urandom | split -b "$SMALL_BYTES" -a 6 -d - in-small/small/f
touch -d '1 hour ago' in-big/big.bin
find in-small -type f -print0 | xargs -0 touch -d '1 hour ago'
make_data big
make_data small
"$WHARF" --data-dir big add in-big/big.bin >/dev/null
"$WHARF" --data-dir small add in-small/small >/dev/null

# $1: the data directory. Empties both destinations, forgets the sync
# state, warms the page cache with the sources.
cat > reset.sh <<EOF
set -e
cd "$WORK"
rm -rf "\$1-dest" "\$1-cp"
mkdir -p "\$1-dest" "\$1-cp"
sqlite3 "\$1/index.sqlite" "DELETE FROM sync_status" >/dev/null
find "\$1/files" -type f -print0 | xargs -0 cat >/dev/null
sync
EOF

mean() { python3 -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["results"][int(sys.argv[2])]["mean"], 3))' "$@"; }
ratio() { python3 -c 'import sys; print(f"{float(sys.argv[1]) / float(sys.argv[2]):.2f}")' "$@"; }
rate() { python3 -c 'import sys; print(f"{float(sys.argv[1]) / float(sys.argv[2]) / 2**20:.0f} MiB/s")' "$@"; }

run() {
    local set=$1 bytes=$2
    hyperfine --warmup 1 --runs "$RUNS" --export-json "$set.json" \
        --prepare "sh reset.sh $set" "$WHARF --data-dir $set sync --wait >/dev/null" \
        --prepare "sh reset.sh $set" "cp -r $set/files/. $set-cp/" \
        --prepare "sh reset.sh $set" "cp -r $set/files/. $set-cp/ && sync"
    local wharf cp cp_sync synced
    wharf=$(mean "$set.json" 0); cp=$(mean "$set.json" 1); cp_sync=$(mean "$set.json" 2)
    # One more run outside the timing: every file must end synced and verified.
    sh reset.sh "$set" && "$WHARF" --data-dir "$set" sync --wait >/dev/null
    synced=$(sqlite3 "$set/index.sqlite" "SELECT count(*) FROM sync_status WHERE state = 'synced' AND verified_sha256 IS NOT NULL")
    echo "$set: wharf sync $wharf s ($(rate "$bytes" "$wharf")), $synced files synced and verified"
    echo "$set: cp -r $cp s ($(rate "$bytes" "$cp")), cp -r + sync $cp_sync s ($(rate "$bytes" "$cp_sync"))"
    echo "$set: wharf throughput / cp's = $(ratio "$cp" "$wharf") (target >= 0.9); / (cp + sync)'s = $(ratio "$cp_sync" "$wharf")"
}

for set in $SETS; do
    case $set in
        big) echo "== one file of $BIG_BYTES bytes"; run big "$BIG_BYTES" ;;
        small) echo "== $SMALL_FILES files of $SMALL_BYTES bytes"; run small $((SMALL_FILES * SMALL_BYTES)) ;;
    esac
done
