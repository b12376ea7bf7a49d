#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Install what mproc needs to build and test, with apt-get, when it is
# missing.  Quiet and quick when everything is there.
set -euo pipefail

# debhelper and dpkg-dev: the Debian package's build (tests/packaging);
# gnuplot-nox: the benchmark report's charts (make bench-report, tests/docs)
# libopenmpi-dev, openmpi-bin: libmproc-mpi and its tests (tests/mpi);
# python3-mpi4py: its benchmark's comparison (for /usr/bin/python3)
# clang-19, libclang-rt-19-dev: the AddressSanitizer stage's compiler; its
# runtime locks its allocator across fork(2), which gcc 12's does not (a
# pool forking a worker from one thread while another allocates hung its
# child about once in fifteen runs)
packages=(build-essential cmake pkg-config clang libclang-rt-dev libssl-dev
          clang-19 libclang-rt-19-dev
          libcmocka-dev python3 debhelper dpkg-dev gnuplot-nox
          libopenmpi-dev openmpi-bin python3-mpi4py)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' \
    || missing+=("$p")
done
# python3 may come from elsewhere (pyenv); a working one is enough.
# (Drop the exact element: a pattern substitution would also cut the
# prefix out of python3-mpi4py and hand apt-get "-mpi4py".)
if command -v python3 >/dev/null 2>&1; then
  kept=()
  for p in "${missing[@]}"; do [ "$p" = python3 ] || kept+=("$p"); done
  missing=("${kept[@]}")
fi
[ "${#missing[@]}" -eq 0 ] && exit 0


echo "mproc: installing build dependencies: ${missing[*]}"
SUDO=
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
