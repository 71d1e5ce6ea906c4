/*
 * Copyright (C) ngx_loyalty_module authors
 *
 * A minimal TAP producer for the C unit tests of lib/: prove reads
 * their output through t/10-unit.t.
 */

#ifndef _LOYALTY_TAP_H_INCLUDED_
#define _LOYALTY_TAP_H_INCLUDED_


#include <stdio.h>
#include <string.h>


static int  tap_n;
static int  tap_failed;


/* cond is evaluated once: it may have side effects */
#define ok(cond, ...)                                                        \
    do {                                                                     \
        int  tap_pass = (cond) ? 1 : 0;                                      \
        tap_n++;                                                             \
        if (!tap_pass) {                                                     \
            tap_failed++;                                                    \
            printf("not ok %d - ", tap_n);                                   \
        } else {                                                             \
            printf("ok %d - ", tap_n);                                       \
        }                                                                    \
        printf(__VA_ARGS__);                                                 \
        printf("\n");                                                        \
        if (!tap_pass) {                                                     \
            printf("#   failed at %s line %d\n", __FILE__, __LINE__);       \
        }                                                                    \
    } while (0)


#define done_testing()                                                       \
    (printf("1..%d\n", tap_n), tap_failed ? 1 : 0)


#define S(str)  (const unsigned char *) (str), sizeof(str) - 1
#define T(str)  (str), sizeof(str) - 1


#endif /* _LOYALTY_TAP_H_INCLUDED_ */
