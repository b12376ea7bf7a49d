#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The Debian package: `dpkg-buildpackage -us -uc -b` on a copy of the source
# builds libmproc1 (the shared library, named after its soname) and
# libmproc-dev (headers, static library, pkg-config and CMake files); the
# .debs unpacked into a scratch root (dpkg -x, no installation) build and
# run a program with pkg-config.
set -euo pipefail
SRC=${MPROC_SOURCE_DIR:?}
# The package is built from the source with Debian's flags, whatever this
# build tree's are: once per suite (the normal pass) is enough.
if [ -n "${MPROC_SANITIZE:-}" ]; then
  echo "skipped under sanitizers: the normal pass builds the package"
  exit 77
fi
for tool in dpkg-buildpackage dh dpkg-deb pkg-config; do
  command -v "$tool" >/dev/null || { echo "FAIL: $tool missing (tools/setup-deps.sh installs it)"; exit 1; }
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/src"
# the source as a clean clone has it: no build trees
tar -C "$SRC" --exclude='./build*' --exclude='./obj-*' --exclude='./.git' \
    --exclude='./debian/.debhelper' --exclude='./debian/tmp' -cf - . | tar -C "$tmp/src" -xf -
(cd "$tmp/src" && DEB_BUILD_OPTIONS="nocheck parallel=2" \
   dpkg-buildpackage -us -uc -b >"$tmp/build.log" 2>&1) || {
  tail -40 "$tmp/build.log"; echo "FAIL: dpkg-buildpackage"; exit 1; }
ls "$tmp"/*.deb
lib=$(ls "$tmp"/libmproc1_*.deb)
dev=$(ls "$tmp"/libmproc-dev_*.deb)

# what is in which package (listings kept: grep -q would cut dpkg-deb's pipe)
libfiles=$(dpkg-deb -c "$lib")
devfiles=$(dpkg-deb -c "$dev")
grep -q 'libmproc\.so\.1' <<<"$libfiles" || { echo "FAIL: no soname link in libmproc1"; exit 1; }
if grep -q 'include/' <<<"$libfiles"; then echo "FAIL: headers in libmproc1"; exit 1; fi
for f in include/mproc.h include/mproc/queue.h include/mproc/version.h libmproc.a \
         pkgconfig/mproc.pc cmake/mproc/mprocConfig.cmake 'libmproc\.so( |$)'; do
  grep -qE "$f" <<<"$devfiles" || { echo "FAIL: $f not in libmproc-dev"; exit 1; }
done
dpkg-deb -f "$dev" Depends | grep -q 'libmproc1 (=' || { echo "FAIL: -dev does not depend on libmproc1"; exit 1; }
dpkg-deb -f "$lib" Depends | grep -q 'libc6' || { echo "FAIL: libmproc1 has no shlibs dependencies"; exit 1; }

# a program built against the unpacked packages
root="$tmp/root"
dpkg -x "$lib" "$root"
dpkg -x "$dev" "$root"
pc=$(dirname "$(find "$root" -name mproc.pc | head -1)")
libdir=$(dirname "$pc")
cat >"$tmp/use.c" <<'C'
#include <mproc.h>
#include <stdio.h>
int main(void) {
  mp_queue *q;
  if (mp_queue_new(&q, NULL) != 0) return 1;
  if (mp_queue_put_bytes(q, "packaged", 8, 1.0) != 0) return 2;
  char buf[16]; size_t n;
  if (mp_queue_get_bytes_into(q, buf, sizeof buf, &n, 1.0) != 0) return 3;
  mp_queue_free(q);
  printf("%.*s %s\n", (int)n, buf, MPROC_VERSION_STRING);
  return 0;
}
C
# shellcheck disable=SC2046
cc "$tmp/use.c" -o "$tmp/use" $(PKG_CONFIG_PATH="$pc" pkg-config --cflags --libs mproc) \
   -Wl,-rpath,"$libdir"
got=$("$tmp/use")
version=$(sed -nE 's/^project\(mproc VERSION ([0-9.]+).*/\1/p' "$SRC/CMakeLists.txt")
[ "$got" = "packaged $version" ] || { echo "FAIL: program printed '$got'"; exit 1; }
echo "debian package: ok ($(basename "$lib"), $(basename "$dev"))"
