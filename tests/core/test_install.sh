#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs the build into a temporary prefix and builds a program outside
# the tree against it three ways: pkg-config (shared), pkg-config --static,
# and CMake's find_package(mproc).  Each program must run and print "ok".
set -euo pipefail
B=${MPROC_BUILD_DIR:?}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$B" --prefix "$tmp/prefix" >/dev/null
libdir=$(dirname "$(find "$tmp/prefix" -name mproc.pc | head -1)")/..
san=()
if [ -n "${MPROC_SANITIZE:-}" ]; then san=(-fsanitize="$MPROC_SANITIZE"); fi
CC=${MPROC_CC:-cc} # the build's compiler: a sanitizer runtime is the compiler's own

cat >"$tmp/use.c" <<'C'
#include <mproc.h>
#include <stdio.h>
#include <string.h>
int main(void) {
  if (strcmp(mp_err_name(MP_EEOF), "MP_EEOF") != 0) return 1;
  if (strcmp(MPROC_VERSION_STRING, MPROC_EXPECT_VERSION) != 0) return 2;
  mp_log_set_level(MP_LOG_OFF);
  puts("ok");
  return 0;
}
C
# version.h is generated from the project() version: the installed one says it
version=$(sed -nE 's/^project\(mproc VERSION ([0-9.]+).*/\1/p' "${MPROC_SOURCE_DIR:?}/CMakeLists.txt")
sed -i "s/MPROC_EXPECT_VERSION/\"$version\"/" "$tmp/use.c"
ls "$libdir"/libmproc.so.* >/dev/null
export PKG_CONFIG_PATH="$libdir/pkgconfig"
pkg-config --exists mproc
# shellcheck disable=SC2046
"$CC" "${san[@]}" "$tmp/use.c" -o "$tmp/use_pc" $(pkg-config --cflags --libs mproc) \
   -Wl,-rpath,"$libdir"
[ "$("$tmp/use_pc")" = ok ]
# shellcheck disable=SC2046
"$CC" "${san[@]}" "$tmp/use.c" -o "$tmp/use_static" \
   $(pkg-config --cflags mproc) "$libdir/libmproc.a" $(pkg-config --libs --static mproc | sed 's/-lmproc//')
[ "$("$tmp/use_static")" = ok ]
if ldd "$tmp/use_static" | grep -q libmproc; then echo "static build linked libmproc.so" >&2; exit 1; fi

mkdir "$tmp/cm"
cp "$tmp/use.c" "$tmp/cm/use.c"
cat >"$tmp/cm/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.20)
project(consumer C)
find_package(mproc ${MPROC_WANT} REQUIRED)
add_executable(use use.c)
target_link_libraries(use PRIVATE mproc::mproc)
CM
cmake -S "$tmp/cm" -B "$tmp/cm/build" -DCMAKE_PREFIX_PATH="$tmp/prefix" -DMPROC_WANT="$version" \
      -DCMAKE_C_COMPILER="$CC" -DCMAKE_C_FLAGS="${san[*]}" >/dev/null
cmake --build "$tmp/cm/build" >/dev/null
[ "$("$tmp/cm/build/use")" = ok ]

# Pulled in with add_subdirectory, mproc builds no tests, examples or benchmarks.
mkdir "$tmp/sub"
cat >"$tmp/sub/CMakeLists.txt" <<CM
cmake_minimum_required(VERSION 3.20)
project(embedder C)
add_subdirectory(${MPROC_SOURCE_DIR} mproc)
CM
cmake -S "$tmp/sub" -B "$tmp/sub/build" >/dev/null
grep -q '^MPROC_BUILD_TESTS:BOOL=OFF' "$tmp/sub/build/CMakeCache.txt"
grep -q '^MPROC_BUILD_EXAMPLES:BOOL=OFF' "$tmp/sub/build/CMakeCache.txt"
grep -q '^MPROC_BUILD_BENCH:BOOL=OFF' "$tmp/sub/build/CMakeCache.txt"
echo "install: pkg-config, pkg-config --static and find_package all work; version $version; a subproject builds no tests"
