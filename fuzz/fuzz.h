/* SPDX-License-Identifier: MIT */
/* The entry point libFuzzer calls, declared once for every fuzzer. */
#ifndef MPROC_FUZZ_H
#define MPROC_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
