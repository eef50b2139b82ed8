#!/usr/bin/env bash
# Ingest benchmark: `wharf add` against sha256sum and openssl, in the same run,
# on the same files, page cache warm. Prints each mean and the ratios; the
# figures go in BENCHMARKS.md under "## Ingest".
#
#   bash benches/ingest.sh            # needs hyperfine (apt-get install -y hyperfine)
#   WORK=/some/dir bash benches/ingest.sh   # works in a new directory under it
#   WHARF=/path/to/wharf BIG_BYTES=100000000 SMALL_FILES=2000 RUNS=2 bash benches/ingest.sh  # a smoke run
#
# `wharf add` moves its sources into the store, so before every timed run
# (hyperfine --prepare, outside the timing) the files are renamed back, the
# data directory is recreated with `wharf init`, and the files are read once
# so the page cache is warm (this machine's kernel pages out cold page cache
# within seconds: DAMON "pageout"). The data directory is on the same
# filesystem as the sources, so `wharf add` hashes each file in one read and
# renames it into place. `mv` of the same files is printed as the floor that
# the renames alone cost.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v hyperfine >/dev/null || { echo "needs hyperfine: apt-get install -y hyperfine" >&2; exit 2; }
if [ -z "${WHARF:-}" ]; then
    cargo build --release -p wharf --quiet
    WHARF=$PWD/target/release/wharf
fi
# A fresh directory under $WORK (or $TMPDIR), removed at the end.
WORK=$(mktemp -d "${WORK:-${TMPDIR:-/tmp}}/wharf-ingest-bench.XXXXXX")
SMALL_FILES=${SMALL_FILES:-100000}
RUNS=${RUNS:-5}
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
mkdir -p src

BIG_BYTES=${BIG_BYTES:-$((1 << 30))}
echo "== generating $BIG_BYTES bytes and $SMALL_FILES files of 4 KiB in $WORK (once)"
head -c "$BIG_BYTES" /dev/urandom > src/big.bin
mkdir -p small
head -c $((SMALL_FILES * 4096)) /dev/urandom | split -b 4096 -a 6 -d - small/f
# Older than file_last_modified_ms, so wharf takes them.
touch -d '1 hour ago' src/big.bin
find small -type f -print0 | xargs -0 touch -d '1 hour ago'

cat > reset-big.sh <<EOF
set -e
cd "$WORK"
if [ -f data/files/big.bin ]; then mv data/files/big.bin src/big.bin; fi
rm -rf data
"$WHARF" --data-dir data init >/dev/null
cat src/big.bin >/dev/null
EOF
cat > reset-small.sh <<EOF
set -e
cd "$WORK"
# rmdir, not rm -rf: a file left behind by a run stops the benchmark.
if [ -d data/files/small ]; then rmdir small && mv data/files/small small
elif [ -n "\$(find moved/small -mindepth 1 -print -quit 2>/dev/null)" ]; then rmdir small && mv moved/small small
fi
rm -rf data moved
"$WHARF" --data-dir data init >/dev/null
mkdir -p moved/small
find small -type f -print0 | xargs -0 cat >/dev/null
EOF

mean() { python3 -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["results"][int(sys.argv[2])]["mean"], 3))' "$@"; }
ratio() { python3 -c 'import sys; print(f"{float(sys.argv[1]) / float(sys.argv[2]):.2f}")' "$@"; }

echo "== one file of $BIG_BYTES bytes"
hyperfine --warmup 1 --runs "$RUNS" --export-json big.json \
    --prepare "sh reset-big.sh" "$WHARF --data-dir data add src/big.bin" \
    --prepare "sh reset-big.sh" "sha256sum src/big.bin" \
    --prepare "sh reset-big.sh" "openssl dgst -sha256 src/big.bin"
wharf=$(mean big.json 0); sha=$(mean big.json 1); ossl=$(mean big.json 2)

echo "== $SMALL_FILES files of 4 KiB"
hyperfine --warmup 1 --runs "$RUNS" --export-json small.json \
    --prepare "sh reset-small.sh" "$WHARF --data-dir data add small" \
    --prepare "sh reset-small.sh" "find small -type f -print0 | xargs -0 sha256sum >/dev/null" \
    --prepare "sh reset-small.sh" "find small -type f -print0 | xargs -0 -P2 sha256sum >/dev/null" \
    --prepare "sh reset-small.sh" "find small -type f -print0 | xargs -0 mv -t moved/small"
wharf_small=$(mean small.json 0); sha_small=$(mean small.json 1); sha_p2=$(mean small.json 2); mv_small=$(mean small.json 3)

# The last wharf run must have indexed every file.
sh reset-small.sh && "$WHARF" --data-dir data add small >/dev/null
indexed=$(python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("select count(*) from files").fetchone()[0])' data/index.sqlite)
[ "$indexed" = "$SMALL_FILES" ] || { echo "wharf indexed $indexed of $SMALL_FILES files" >&2; exit 1; }

cat <<EOF

== summary (mean of $RUNS runs)
$BIG_BYTES bytes: wharf add ${wharf}s   sha256sum ${sha}s   openssl ${ossl}s
         wharf vs sha256sum: $(ratio "$sha" "$wharf")x (target >= 3)   vs openssl: $(ratio "$ossl" "$wharf")x (target >= 0.9)
$SMALL_FILES x 4 KiB: wharf add ${wharf_small}s   sha256sum ${sha_small}s   xargs -P2 sha256sum ${sha_p2}s
         mv of the same files into one directory (the renames alone, no hashing): ${mv_small}s
         wharf vs sha256sum: $(ratio "$sha_small" "$wharf_small")x (target >= 2)   vs xargs -P2: $(ratio "$sha_p2" "$wharf_small")x
EOF
