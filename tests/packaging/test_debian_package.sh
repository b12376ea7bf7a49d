#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The Debian packages: `dpkg-buildpackage -us -uc -b` on a copy of the
# source builds libmproc1 (the shared library, named after its soname),
# libmproc-dev (headers, static library, pkg-config and CMake files),
# libmproc-mpi1 and libmproc-mpi-dev (the MPI pool); the .debs unpacked into
# a scratch root (dpkg -x, no installation) build and run a program with
# pkg-config, and link one against libmproc-mpi.
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
mpilib=$(ls "$tmp"/libmproc-mpi1_*.deb)
mpidev=$(ls "$tmp"/libmproc-mpi-dev_*.deb)

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
if grep -q 'mproc/mpi\.h' <<<"$devfiles"; then echo "FAIL: mpi.h in libmproc-dev"; exit 1; fi
mpilibfiles=$(dpkg-deb -c "$mpilib")
mpidevfiles=$(dpkg-deb -c "$mpidev")
grep -q 'libmproc-mpi\.so\.1' <<<"$mpilibfiles" || { echo "FAIL: no soname link in libmproc-mpi1"; exit 1; }
for f in include/mproc/mpi.h pkgconfig/mproc-mpi.pc 'libmproc-mpi\.so( |$)'; do
  grep -qE "$f" <<<"$mpidevfiles" || { echo "FAIL: $f not in libmproc-mpi-dev"; exit 1; }
done
dpkg-deb -f "$mpidev" Depends | grep -q 'libmproc-dev (=' || { echo "FAIL: libmproc-mpi-dev does not depend on libmproc-dev"; exit 1; }
dpkg-deb -f "$lib" Depends | grep -q 'libc6' || { echo "FAIL: libmproc1 has no shlibs dependencies"; exit 1; }

# a program built against the unpacked packages
root="$tmp/root"
for deb in "$lib" "$dev" "$mpilib" "$mpidev"; do dpkg -x "$deb" "$root"; done
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
# the MPI pool's library: a program links against it, and run alone (not
# under mpirun) it is one rank of one
cat >"$tmp/use_mpi.c" <<'C'
#include <mproc/mpi.h>
#include <stdio.h>
int main(void) {
  mp_pool *p;
  printf("%d %d %d\n", mp_mpi_rank(), mp_mpi_size(),
         mp_mpi_pool_new(&p, NULL, NULL) == MP_ESTATE);
  return 0;
}
C
# shellcheck disable=SC2046
cc "$tmp/use_mpi.c" -o "$tmp/use_mpi" $(PKG_CONFIG_PATH="$pc" pkg-config --cflags --libs mproc-mpi) \
   -Wl,-rpath,"$libdir"
# (its own dependency, libmproc.so.1, is found by LD_LIBRARY_PATH: a
# runpath covers only the program's direct ones; Open MPI refuses root
# unless told, and CI containers run as root)
got=$(LD_LIBRARY_PATH="$libdir" OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 "$tmp/use_mpi" 2>"$tmp/use_mpi.err") || {
  cat "$tmp/use_mpi.err"; echo "FAIL: the MPI program failed"; exit 1; }
case "$got" in
  "0 1 1"|"0 0 1") ;;
  *) cat "$tmp/use_mpi.err"; echo "FAIL: the MPI program printed '$got'"; exit 1 ;;
esac
echo "debian packages: ok ($(basename "$lib"), $(basename "$dev"), $(basename "$mpilib"), $(basename "$mpidev"))"
