#!/usr/bin/env bash
# Export benchmarks, each against a peer in the same run; the figures go in
# BENCHMARKS.md under "## Exports".
#
#  (a) `wharf export DATASET --format tar-export` of one dataset of 10,000
#      files / 1 GiB (a cache miss every run: the dataset's version is bumped
#      before each) against GNU `tar cf` of the same files, and against
#      `tar cf` followed by `sync` of the archive (wharf fsyncs its result
#      before it commits it). Target: wharf >= 2x tar's throughput.
#  (b) Cache-hit export requests (`POST /api/v1/datasets/set/exports`) over
#      loopback HTTP at a fixed 1,000 requests/s for 30 s with `oha`, against
#      `GET /healthz` of the same server at the same rate (the floor: HTTP,
#      no auth, no index). Target: p99 < 2 ms, no errors.
#
#   bash benches/export.sh                  # needs hyperfine (apt-get install -y hyperfine)
#   WORK=/some/dir bash benches/export.sh   # works in a new directory under it
#   WHARF=/path/to/wharf FILES=200 BYTES=20000000 RUNS=2 SECONDS_HTTP=3 bash benches/export.sh  # a smoke run
#
# oha is built once by `cargo install oha --locked` into target/bench-tools
# (never in CI). Before every timed run (hyperfine --prepare, outside the
# timing) the previous archive is removed and the dataset's files are read
# once, so every run starts with a warm page cache (this machine's kernel
# pages out cold page cache within seconds).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

command -v hyperfine >/dev/null || { echo "needs hyperfine: apt-get install -y hyperfine" >&2; exit 2; }
if [ -z "${WHARF:-}" ]; then
    cargo build --release -p wharf --quiet
    WHARF=$ROOT/target/release/wharf
fi
OHA=${OHA:-$ROOT/target/bench-tools/bin/oha}
if [ ! -x "$OHA" ]; then
    echo "== building oha into target/bench-tools (once)"
    cargo install oha --locked --quiet --root "$ROOT/target/bench-tools"
fi

FILES=${FILES:-10000}
BYTES=${BYTES:-$((1 << 30))}
RUNS=${RUNS:-5}
SECONDS_HTTP=${SECONDS_HTTP:-30}
RATE=${RATE:-1000}
WORK=$(mktemp -d "${WORK:-${TMPDIR:-/tmp}}/wharf-export-bench.XXXXXX")
DAEMON=
cleanup() {
    if [ -n "$DAEMON" ]; then kill "$DAEMON" 2>/dev/null || true; wait "$DAEMON" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK"

echo "== generating $FILES files, $BYTES bytes in all, in $WORK (once)"
mkdir -p src/set
head -c "$BYTES" /dev/urandom > all.bin
split -n "$FILES" -a 5 -d all.bin src/set/f
rm all.bin
find src -type f -print0 | xargs -0 touch -d '1 hour ago'
"$WHARF" --data-dir data init >/dev/null
"$WHARF" --data-dir data add src/set >/dev/null
SET=data/files/set
[ "$(find "$SET" -type f | wc -l)" = "$FILES" ] || { echo "wharf add did not take every file" >&2; exit 1; }

mean() { python3 -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["results"][int(sys.argv[2])]["mean"], 3))' "$@"; }
ratio() { python3 -c 'import sys; print(f"{float(sys.argv[1]) / float(sys.argv[2]):.2f}")' "$@"; }
mibps() { python3 -c 'import sys; print(f"{int(sys.argv[1]) / float(sys.argv[2]) / (1 << 20):.0f}")' "$@"; }

# Before each wharf run: a new dataset version (so the export is a miss), no
# old archive on disk, the files in the page cache.
cat > prepare-wharf.sh <<EOF
set -e
cd "$WORK"
"$WHARF" --data-dir data dataset set set bench=\$(date +%s%N) >/dev/null
rm -rf data/exports/*
find "$SET" -type f -print0 | xargs -0 cat >/dev/null
EOF
cat > prepare-tar.sh <<EOF
set -e
cd "$WORK"
rm -f out.tar
find "$SET" -type f -print0 | xargs -0 cat >/dev/null
EOF

echo "== (a) one dataset of $FILES files, $BYTES bytes: tar-export vs tar cf"
hyperfine --warmup 1 --runs "$RUNS" --export-json tar.json \
    --prepare "sh prepare-wharf.sh" "$WHARF --data-dir data export set --format tar-export --wait" \
    --prepare "sh prepare-tar.sh" "tar cf out.tar -C data/files set" \
    --prepare "sh prepare-tar.sh" "tar cf out.tar -C data/files set && sync out.tar"
wharf=$(mean tar.json 0); tar=$(mean tar.json 1); tar_sync=$(mean tar.json 2)

# The last run's archive lists every file (GNU tar reads it back).
archive=$(find data/exports -name 'set.tar' | head -1)
listed=$(tar -tf "$archive" | wc -l)
[ "$listed" = "$FILES" ] || { echo "the export lists $listed of $FILES files" >&2; exit 1; }

echo "== (b) cache-hit export requests at $RATE/s for ${SECONDS_HTTP}s (oha), /healthz as the floor"
cat > wharf.toml <<EOF
[api]
bind = "127.0.0.1:0"
max_in_flight = 1024
EOF
"$WHARF" --data-dir data --config wharf.toml run >daemon.log 2>&1 &
DAEMON=$!
for _ in $(seq 1 600); do [ -s data/api-address ] && break; sleep 0.1; done
[ -s data/api-address ] || { echo "the daemon did not start:" >&2; cat daemon.log >&2; exit 1; }
BASE="http://$(cat data/api-address)"
TOKEN=$(cat data/api-token)
URL="$BASE/api/v1/datasets/set/exports"
BODY='{"format": "tar-export"}'
# Made once while waiting, then every request is a hit (201).
status=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $TOKEN" \
    -H 'Content-Type: application/json' -H 'Prefer: wait=60' -d "$BODY" "$URL")
[ "$status" = 201 ] || { echo "the first export request answered $status" >&2; exit 1; }

oha_run() {
    "$OHA" --no-tui --output-format json -z "${SECONDS_HTTP}s" -q "$RATE" --latency-correction "$@"
}
oha_run -m POST -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -d "$BODY" "$URL" > hits.json
oha_run "$BASE/healthz" > healthz.json
[ -s hits.json ] && [ -s healthz.json ] || { echo "oha wrote no results" >&2; exit 1; }

summary() {
    python3 - "$1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
lat = r["latencyPercentiles"]
codes = r.get("statusCodeDistribution", {})
# oha counts the requests still in flight when -z ends as "aborted due to
# deadline"; those are not server errors.
errors = sum(n for e, n in r.get("errorDistribution", {}).items() if e != "aborted due to deadline")
print(f'{r["summary"]["requestsPerSec"]:.0f} {lat["p50"]*1000:.3f} {lat["p99"]*1000:.3f} {lat["p99.9"]*1000:.3f} {r["summary"]["slowest"]*1000:.3f} {errors} {json.dumps(codes, separators=(",", ":"))}')
PY
}
read -r hit_rps hit_p50 hit_p99 hit_p999 hit_max hit_errors hit_codes <<<"$(summary hits.json)"
read -r hz_rps hz_p50 hz_p99 hz_p999 hz_max hz_errors hz_codes <<<"$(summary healthz.json)"

cat <<EOF

== summary
(a) $FILES files, $BYTES bytes (mean of $RUNS runs)
    wharf export --format tar-export: ${wharf}s  ($(mibps "$BYTES" "$wharf") MiB/s)
    tar cf:                           ${tar}s  ($(mibps "$BYTES" "$tar") MiB/s)
    tar cf && sync out.tar:           ${tar_sync}s  ($(mibps "$BYTES" "$tar_sync") MiB/s)
    wharf vs tar cf: $(ratio "$tar" "$wharf")x (target >= 2)   vs tar cf + sync: $(ratio "$tar_sync" "$wharf")x
(b) $RATE req/s for ${SECONDS_HTTP}s, latency-corrected, in ms
    cache-hit POST: ${hit_rps} req/s  p50 $hit_p50  p99 $hit_p99 (target < 2)  p99.9 $hit_p999  max $hit_max  errors $hit_errors  statuses $hit_codes
    GET /healthz:   ${hz_rps} req/s  p50 $hz_p50  p99 $hz_p99  p99.9 $hz_p999  max $hz_max  errors $hz_errors  statuses $hz_codes
    p99 cache hit / p99 healthz: $(ratio "$hit_p99" "$hz_p99")x
EOF
