#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The demo (`make demo`) runs clean, and the README's example compiles and
# prints what its comment says.
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
cc "${san[@]}" -Wall -Wextra -Werror -I"$S/include" -I"$B/include" "$tmp/readme.c" -o "$tmp/readme" \
   -L"$B" -lmproc -Wl,-rpath,"$B"
got=$("$tmp/readme")
want="[2.25, None, 'junk', <class 'float'>] (40 bytes pickled)"
[ "$got" = "$want" ] || { echo "README example printed: $got"; echo "expected:           $want"; exit 1; }
echo "demo ok; README example prints: $got"
