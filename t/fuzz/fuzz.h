/*
 * Copyright (C) ngx_loyalty_module authors
 *
 * Shared by the fuzz targets in t/fuzz: the libFuzzer entry point and an
 * assertion that stays on in every build.  The same sources link with
 * libFuzzer (make fuzz, clang) or with t/fuzz/replay.c (make fuzz-replay,
 * any C99 compiler), so nothing here may depend on libFuzzer.
 */

#ifndef _LOYALTY_FUZZ_H_INCLUDED_
#define _LOYALTY_FUZZ_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


/*
 * A broken property aborts: libFuzzer reports the abort as a crash and
 * saves the input, the replay driver dies with a non-zero status.
 * assert() would vanish under -DNDEBUG.
 */
#define FUZZ_CHECK(cond)                                                     \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "%s:%d: property failed: %s\n",                  \
                    __FILE__, __LINE__, #cond);                              \
            abort();                                                         \
        }                                                                    \
    } while (0)


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


#endif /* _LOYALTY_FUZZ_H_INCLUDED_ */
