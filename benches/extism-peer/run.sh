#!/usr/bin/env bash
# Builds (release) and runs the wharf-vs-Extism comparison; prints the table
# and the ratios. Builds wasmtime 43 and 48: the first build takes a while.
#   benches/extism-peer/run.sh            build + run
#   NICE=10 benches/extism-peer/run.sh    build + run at lower priority
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
nice_cmd=(nice -n "${NICE:-0}")

# Everything this peer writes stays under its own target directory.
export CARGO_TARGET_DIR="$here/target"
export XDG_CACHE_HOME="$here/target/xdg-cache"
mkdir -p "$XDG_CACHE_HOME"

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    rustup target add wasm32-unknown-unknown
fi

echo "== building the extism-pdk guest (wasm32-unknown-unknown)" >&2
"${nice_cmd[@]}" cargo build --locked --release --manifest-path guest/Cargo.toml \
    --target wasm32-unknown-unknown --target-dir "$here/target/guest"
guest="$here/target/guest/wasm32-unknown-unknown/release/extism_peer_guest.wasm"

echo "== building the peer (release): wharf (wasmtime 48) + extism 1.30.0 (wasmtime 43)" >&2
"${nice_cmd[@]}" cargo build --release

echo "== running" >&2
echo "rustc: $(rustc --version); host: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
"$here/target/release/extism-peer" "$guest"
