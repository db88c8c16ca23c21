#!/usr/bin/env bash
# Builds the real programs the tests/real_*.rs tests drive, from sources the
# package registries ship (fetched by cargo, never committed), with full
# DWARF, into target/real/:
#   cargo/release/hyper_server  hyper 1.x + tokio, release (opt-level 3, debug = 2)
#   lua_host      Lua 5.4 (crates.io lua-src) at gcc -O0 -g
#   lua_host_o2   the same at gcc -O2 -g
#   asio_echo     a TCP echo server on standalone Asio (Debian's libasio-dev,
#                 header-only) at g++ -O0 -g: C++ lambdas as handlers
#   asio_echo_o2  the same at -O2 -g
#   lua-src-dir, hyper-src-dir   files naming those source directories
#                 (tests find the lines they probe there)
# Cached: a second run with nothing changed does no work and needs no network.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="$root/target/real"
manifest="$here/Cargo.toml"
mkdir -p "$out"

CARGO_TARGET_DIR="$out/cargo" cargo build --quiet --release --locked \
  --manifest-path "$manifest" --bin hyper_server

# Where cargo unpacked a package (it unpacks every package metadata reads).
metadata="$(cargo metadata --locked --format-version 1 --manifest-path "$manifest")"
package_dir() {
  python3 -c 'import json, os, sys
m = json.loads(sys.stdin.read())
print(os.path.dirname(next(p["manifest_path"] for p in m["packages"] if p["name"] == sys.argv[1])))' "$1" <<<"$metadata"
}
package_dir hyper > "$out/hyper-src-dir"
lua_src="$(package_dir lua-src)/lua-5.4.7"
[ -f "$lua_src/lvm.c" ] || { echo "no Lua 5.4 sources at $lua_src" >&2; exit 1; }
echo "$lua_src" > "$out/lua-src-dir"

# lua_host[_o2] is rebuilt when this script, the host or the lockfile changed.
build_lua() {
  local name="$1" opt="$2" bin="$out/$1"
  if [ -x "$bin" ] && [ "$bin" -nt "$here/build.sh" ] && [ "$bin" -nt "$here/lua_host.c" ] \
    && [ "$bin" -nt "$here/Cargo.lock" ]; then
    return
  fi
  gcc -g "$opt" -std=gnu99 -DLUA_USE_LINUX -DLUA_SCENARIO="\"$here/scenario.lua\"" \
    -I"$lua_src" "$lua_src"/*.c "$here/lua_host.c" -lm -ldl -o "$bin.tmp.$$"
  mv "$bin.tmp.$$" "$bin"
}
build_lua lua_host -O0
build_lua lua_host_o2 -O2

# Asio is header-only: its code is compiled here, with our flags and DWARF.
if [ ! -f /usr/include/asio.hpp ]; then
  echo "Asio headers missing: apt-get install libasio-dev (tools/test.sh does)" >&2
  exit 1
fi
build_asio() {
  local bin="$out/$1" opt="$2"
  if [ -x "$bin" ] && [ "$bin" -nt "$here/asio_echo.cpp" ] && [ "$bin" -nt "$here/build.sh" ] \
    && [ "$bin" -nt /usr/include/asio/version.hpp ]; then
    return
  fi
  g++ -g "$opt" -std=c++17 -pthread "$here/asio_echo.cpp" -o "$bin.tmp.$$"
  mv "$bin.tmp.$$" "$bin"
}
build_asio asio_echo -O0
build_asio asio_echo_o2 -O2
