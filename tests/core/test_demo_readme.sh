#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The demo (`make demo`) runs clean, and the README's example (a Pool map)
# compiles and prints what its comment says.
set -euo pipefail
B=${MPROC_BUILD_DIR:?}
S=${MPROC_SOURCE_DIR:?}
out=$("$B/examples/demo")
grep -q '^demo: ok$' <<<"$out" || { echo "$out"; exit 1; }
grep -q "acquire -> MP_EOWNERDEAD" <<<"$out"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
awk '/^```c$/{on=1; next} /^```$/{on=0} on' "$S/README.md" >"$tmp/readme.c"
san=()
if [ -n "${MPROC_SANITIZE:-}" ]; then san=(-fsanitize="$MPROC_SANITIZE"); fi
CC=${MPROC_CC:-cc} # the build's compiler: a sanitizer runtime is the compiler's own
"$CC" "${san[@]}" -Wall -Wextra -Werror -I"$S/include" -I"$B/include" "$tmp/readme.c" -o "$tmp/readme" \
   -L"$B" -lmproc -Wl,-rpath,"$B"
got=$("$tmp/readme")
want="[1, 4, 9, 16]"
[ "$got" = "$want" ] || { echo "README example printed: $got"; echo "expected:           $want"; exit 1; }
echo "demo ok; README example prints: $got"

# every mproc name the README mentions exists in the public headers
missing=0
for name in $(grep -oE '\b(mp|MP)_[A-Za-z0-9_]+' "$S/README.md" | sort -u); do
  grep -rqw -- "$name" "$S/include" "$B/include" || { echo "README names $name, which no header declares"; missing=1; }
done
[ "$missing" = 0 ]
echo "README names: all declared"
