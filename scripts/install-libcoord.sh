#!/usr/bin/env bash
# Builds libcoord and installs it under PREFIX: lib/libcoord.so, lib/libcoord.a,
# include/coord.h and lib/pkgconfig/coord.pc. Then, with PKG_CONFIG_PATH=PREFIX/lib/pkgconfig:
#   cc program.c $(pkg-config --cflags --libs coord) -Wl,-rpath,$(pkg-config --variable=libdir coord)
#
#   scripts/install-libcoord.sh PREFIX            # a release build
#   scripts/install-libcoord.sh --debug PREFIX    # the debug build (what the tests use)
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
if [ "${1:-}" = "--debug" ]; then
    profile=debug
    shift
fi
prefix="${1:?usage: scripts/install-libcoord.sh [--debug] PREFIX}"
mkdir -p "$prefix"
prefix="$(cd "$prefix" && pwd)"

if [ "$profile" = release ]; then
    cargo build --release -p libcoord
else
    cargo build -p libcoord
fi
target="${CARGO_TARGET_DIR:-target}/$profile"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"

mkdir -p "$prefix/lib/pkgconfig" "$prefix/include"
cp "$target/libcoord.so" "$target/libcoord.a" "$prefix/lib/"
cp ffi/include/coord.h "$prefix/include/"
if [ "$profile" = release ] && command -v strip >/dev/null 2>&1; then
    # The workspace's release profile keeps line tables for profiling; an installed library
    # does not need them.
    strip --strip-debug "$prefix/lib/libcoord.so" "$prefix/lib/libcoord.a"
fi
sed -e "s|@PREFIX@|$prefix|" -e "s|@VERSION@|$version|" ffi/coord.pc.in >"$prefix/lib/pkgconfig/coord.pc"
echo "libcoord ($profile) installed in $prefix; export PKG_CONFIG_PATH=$prefix/lib/pkgconfig"
