#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The shared library's thread-start calls (src/platform/solo_interpose.c)
# take a program's calls: libmproc.so defines pthread_create, thrd_create,
# timer_create and mq_notify, and a program linked with it binds its
# pthread_create to libmproc's, not libc's.  That binding is what lets a
# fork child of a multi-threaded program count references without locks
# (test_solo checks the flag itself, in a test program); were the file
# dropped from the shared library, nothing else would fail, only run slower.
set -euo pipefail
B=${MPROC_BUILD_DIR:?}
S=${MPROC_SOURCE_DIR:?}
if [ -n "${MPROC_SANITIZE:-}" ]; then
  exit 77 # a sanitizer's interceptors come first there, by design
fi
lib=$(ls "$B"/libmproc.so.*.* | head -1)
for s in pthread_create thrd_create timer_create mq_notify; do
  if ! nm -D --defined-only "$lib" | grep -qE " T $s\$"; then
    echo "$lib does not define $s"
    exit 1
  fi
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat >"$tmp/prog.c" <<'C'
#include <mproc.h>
#include <pthread.h>
static void *nothing(void *arg) { return arg; }
int main(void) {
  mp_obj_free(mp_list_new());
  pthread_t t;
  if (pthread_create(&t, NULL, nothing, NULL) != 0) return 1;
  return pthread_join(t, NULL);
}
C
"${MPROC_CC:-cc}" -o "$tmp/prog" "$tmp/prog.c" -I"$S/include" -I"$B/include" \
  -L"$B" -lmproc -Wl,-rpath,"$B" -pthread
"$tmp/prog"
bound=$(LD_DEBUG=bindings "$tmp/prog" 2>&1 | grep "binding file $tmp/prog " |
        grep "symbol \`pthread_create'" || true)
case "$bound" in
  *libmproc.so*) echo "ok: $bound" | sed 's/  */ /g' ;;
  *) echo "the program's pthread_create is not libmproc's: ${bound:-no binding seen}"
     exit 1 ;;
esac
