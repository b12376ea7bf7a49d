#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Oracle test of mproc's float repr against CPython's repr(float).

CPython prints the shortest digit string that reads back to the same double
and, of those, the one nearest the true value (David Gay's dtoa, mode 0;
ties to even), formatted by float_repr_style 'short'.  The values:

- 1,000,000 random 64-bit patterns (MPROC_FLOAT_ORACLE_N): every sign and
  exponent, so subnormals, huge and tiny values and NaN payloads;
- 200,000 random decimals of 1 to 17 significant digits over the whole
  exponent range (random bit patterns nearly all need 16 or 17 digits);
- every power of two and of ten in double range, their neighbours one ulp
  either side, all of them with both signs;
- the examples of issue 8 (2**-24, 2**-44, 2**89), halfway ties between two
  shortest candidates, the edges of the fixed/exponent switch, 0, -0, inf,
  nan, the extremes of the format.

They are streamed as bit patterns through one helper_float_repr process
and the whole output compared at once.  Last, the tables of powers of 5
in src/obj/float_repr.c are checked against their definition.  Runs under CPython 3.11 and the
newest 3.12+ found among the pyenv versions, at least one of which must be
present.  The seed is printed; MPROC_ORACLE_SEED=N reproduces a run.
"""
import math
import os
import random
import re
import struct
import subprocess
import sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
import pythons  # noqa: E402

BUILD = os.environ.get("MPROC_BUILD_DIR", "build")
SOURCE = os.environ.get("MPROC_SOURCE_DIR", ".")
HELPER = os.path.join(BUILD, "tests", "helper_float_repr")
N_RANDOM = int(os.environ.get("MPROC_FLOAT_ORACLE_N", 1000000))
N_DECIMAL = max(N_RANDOM // 5, 1000)


def bits(x):
    return struct.unpack("<Q", struct.pack("<d", x))[0]


def fixed_values():
    vals = [0.0, -0.0, math.inf, -math.inf, math.nan,
            2.0 ** -24, 2.0 ** -44, 2.0 ** 89,
            5e-324, 1e-323, 2.2250738585072014e-308, 2.225073858507201e-308,
            1.7976931348623157e308, 2.220446049250313e-16,
            0.1, 0.2, 0.1 + 0.2, 1 / 3, 2 / 3, 123456789.0, 0.5, 1.5, 9.5,
            # the fixed/exponent switch: exponent form below 1e-4, at 1e16
            1e-4, 1e-5, 0.00012345, 0.000012345, 1e15, 1e16, 1e17,
            9999999999999998.0, 9999999999999999.0, 1234567890123456.7,
            12345678901234567.0, 123456789012345680.0,
            2.0 ** 53, 2.0 ** 53 + 2, 2.0 ** 54, 2.0 ** 63, 2.0 ** 64,
            1e22, 1e23, 5e-310, 4.9406564584124654e-324]
    # exact value halfway between two shortest candidates: CPython rounds
    # to even (…624.25 prints …624.2); m odd in [2**52, 2**53) over 4
    for m in (2 ** 52 + 1, 2 ** 52 + 3, 2 ** 53 - 1, 2 ** 53 - 3,
              6004799503160661, 7505999378950827):
        vals.append(m / 4)
    out = []
    for k in range(-1074, 1024):
        out.append(2.0 ** k)
    for k in range(-324, 309):
        out.append(float("1e%d" % k))
    for x in list(out):
        out.append(math.nextafter(x, math.inf))
        out.append(math.nextafter(x, 0.0))
    out += vals
    out += [-x for x in out]
    return [bits(x) for x in out]


def random_values(rng):
    pats = list(struct.unpack("<%dQ" % N_RANDOM, rng.randbytes(8 * N_RANDOM)))
    # NaNs with every payload and sign must print 'nan'
    pats += [0x7FF0000000000001, 0xFFF8000000000000, 0x7FFFFFFFFFFFFFFF,
             0xFFFFFFFFFFFFFFFF, 0x7FF8000000000001]
    # "-1234e-56": a sign, p random digits, an exponent in [-340, 310]
    texts = []
    getrandbits = rng.getrandbits
    lows = [10 ** (p - 1) for p in range(1, 18)]
    for _ in range(N_DECIMAL):
        r = getrandbits(64)
        lo = lows[r % 17]
        texts.append("%s%de%d" % ("-" if r & 1 << 63 else "",
                                  lo + getrandbits(64) % (9 * lo),
                                  (r >> 8) % 651 - 340))
    xs = [float(t) for t in texts]
    pats += struct.unpack("<%dQ" % len(xs), struct.pack("<%dd" % len(xs), *xs))
    return pats


def check(seed):
    rng = random.Random(seed)
    pats = fixed_values() + random_values(rng)
    data = struct.pack("<%dQ" % len(pats), *pats)
    doubles = struct.unpack("<%dd" % len(pats), data)
    want = list(map(repr, doubles))
    p = subprocess.run([HELPER], input=data, stdout=subprocess.PIPE)
    if p.returncode:
        raise SystemExit("helper failed with status %d" % p.returncode)
    got = p.stdout.decode("ascii").split("\n")
    if got and got[-1] == "":
        got.pop()
    if len(got) != len(want):
        raise SystemExit("helper printed %d lines for %d values" % (len(got), len(want)))
    bad = [i for i in range(len(want)) if got[i] != want[i]] if got != want else []
    for i in bad[:25]:
        print("  %016x: CPython %s, mproc %s" % (pats[i], want[i], got[i]))
    print("python %s: %d doubles, %d differ"
          % (sys.version.split()[0], len(want), len(bad)))
    return 1 if bad else 0


def check_tables():
    """The powers of 5 in float_repr.c against their definition there."""
    try:
        text = open(os.path.join(SOURCE, "src", "obj", "float_repr.c")).read()
    except OSError as e:
        print("float_repr.c: %s" % e)
        return 1
    want = {
        "POW5_INV": [(1 << ((5 ** q).bit_length() + 124)) // 5 ** q + 1
                     for q in range(292)],
        "POW5": [5 ** i >> ((5 ** i).bit_length() - 125)
                 if (5 ** i).bit_length() >= 125
                 else 5 ** i << (125 - (5 ** i).bit_length())
                 for i in range(326)],
    }
    for name, values in want.items():
        m = re.search(r"static const uint64_t %s\[(\d+)\]\[2\] = \{(.*?)\};"
                      % name, text, re.S)
        if not m:
            print("float_repr.c: no table %s" % name)
            return 1
        got = [int(hi, 16) << 64 | int(lo, 16) for lo, hi in
               re.findall(r"\{0x([0-9a-f]+)u, 0x([0-9a-f]+)u\}", m.group(2))]
        if int(m.group(1)) != len(values) or got != values:
            bad = next((i for i in range(len(values))
                        if i >= len(got) or got[i] != values[i]), len(values))
            print("float_repr.c: %s[%d] is wrong" % (name, bad))
            return 1
    print("float_repr.c: tables match their definition")
    return 0


def interpreters():
    return pythons.find(lambda minor: minor >= 11)


def main():
    if not os.path.exists(HELPER):
        raise SystemExit("no helper at %s" % HELPER)
    if len(sys.argv) > 1 and sys.argv[1] == "--one":
        sys.exit(check(int(sys.argv[2])))
    seed = int(os.environ.get("MPROC_ORACLE_SEED", random.SystemRandom().randrange(2**32)))
    print("seed %d (MPROC_ORACLE_SEED=%d reproduces)" % (seed, seed))
    found = interpreters()
    wanted = ["3.11"] + sorted((v for v in found if v != "3.11"),
                               key=lambda s: int(s.split(".")[1]))[-1:]
    ran = status = 0
    for v in wanted:
        exe = found.get(v)
        if not exe:
            print("note: no CPython %s found, skipped" % v)
            continue
        rc = subprocess.run([exe, os.path.abspath(__file__), "--one", str(seed)]).returncode
        ran += 1
        if rc:
            print("FAILED under CPython %s (%s)" % (v, exe))
            status = 1
    if ran == 0:
        raise SystemExit("no CPython 3.11 or 3.12+ found")
    status |= check_tables()
    sys.exit(status)


if __name__ == "__main__":
    main()
