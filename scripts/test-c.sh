#!/usr/bin/env bash
# libcoord's C suite: installs the debug build into a scratch prefix, compiles the example and
# the test program with cc and pkg-config alone (as README.md says), links the example against
# the static library too, and runs them under valgrind: any leak or invalid access fails.
set -euo pipefail
cd "$(dirname "$0")/.."

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
scripts/install-libcoord.sh --debug "$scratch/prefix" >/dev/null
export PKG_CONFIG_PATH="$scratch/prefix/lib/pkgconfig"
libdir="$(pkg-config --variable=libdir coord)"
cflags="-std=c11 -Wall -Wextra -Werror -g"

cc $cflags -o "$scratch/hello" ffi/examples/hello.c $(pkg-config --cflags --libs coord) -Wl,-rpath,"$libdir"
cc $cflags -o "$scratch/test_coord" ffi/tests/test_coord.c $(pkg-config --cflags --libs coord) -lpthread \
    -Wl,-rpath,"$libdir"
# The static library, with what pkg-config says it needs.
cc $cflags -o "$scratch/hello_static" ffi/examples/hello.c $(pkg-config --cflags coord) "$libdir/libcoord.a" \
    $(pkg-config --static --libs-only-l coord | sed 's/-lcoord//')

vg=(valgrind --quiet --leak-check=full --errors-for-leak-kinds=definite,indirect,possible --error-exitcode=99)
echo "example (shared library, under valgrind)"
"${vg[@]}" "$scratch/hello" "$scratch/hello-data" >/dev/null
echo "example (static library)"
"$scratch/hello_static" "$scratch/hello-static-data" >/dev/null
echo "test program (under valgrind)"
"${vg[@]}" "$scratch/test_coord" "$scratch/test-data"
echo "header in C++"
echo '#include <coord.h>' | c++ -std=c++17 -Wall -Werror -fsyntax-only $(pkg-config --cflags coord) -x c++ -
