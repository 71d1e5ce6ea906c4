/*
 * Copyright (C) ngx_loyalty_module authors
 *
 * A/B tests: the spec of "loyalty_ab name [key=string] percent% variant
 * ... [* variant];", bucketing of a key into a variant, and the report
 * of the counters the module keeps in Redis (hash loyalty:ab:<name>)
 * with conversion rates, uplift and p-values, as JSON and as text.
 *
 * The bucket is documented so that shops can reproduce it: the first 8
 * bytes of SHA-256(name ":" key) as a big-endian unsigned 64-bit
 * integer, mod 10000.  In Python:
 *
 *   int.from_bytes(hashlib.sha256(f"{name}:{key}".encode())
 *                  .digest()[:8], "big") % 10000
 *
 * Variants take consecutive ranges of buckets in declaration order:
 * "10% off 45% a * b" gives off [0,1000), a [1000,5500), b [5500,10000).
 */

#ifndef _LOYALTY_AB_H_INCLUDED_
#define _LOYALTY_AB_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>


#define LOYALTY_AB_BUCKETS       10000   /* hundredths of a percent */
#define LOYALTY_AB_NAME_MAX      32
#define LOYALTY_AB_VARIANT_MAX   32
#define LOYALTY_AB_VARIANTS_MAX  16
#define LOYALTY_AB_ORDER_MAX     64
#define LOYALTY_AB_ROWS_MAX      (2 * LOYALTY_AB_VARIANTS_MAX)


typedef struct {
    char      name[LOYALTY_AB_VARIANT_MAX + 1];     /* NUL-terminated */
    unsigned  share;      /* hundredths of a percent; for "*" the rest */
    int       rest;       /* declared with "*" */
} loyalty_ab_variant_t;


typedef struct {
    char                  name[LOYALTY_AB_NAME_MAX + 1];
    size_t                nvariants;
    loyalty_ab_variant_t  variants[LOYALTY_AB_VARIANTS_MAX];
} loyalty_ab_test_t;


/* one variant in the report */
typedef struct {
    char      name[LOYALTY_AB_VARIANT_MAX + 1];
    int       configured;            /* from the spec (share valid), or
                                        0: only found in Redis */
    unsigned  share;                 /* hundredths of a percent */
    uint64_t  exposures;
    uint64_t  conversions;
    double    revenue;

    /* computed by loyalty_ab_stats */
    double    conversion_rate;       /* 0 without exposures */
    double    revenue_per_exposure;  /* 0 without exposures */
    double    uplift;                /* rate / baseline rate - 1 */
    double    p_value;
    int       has_uplift;            /* 0 for the baseline, when the
                                        baseline rate is 0, when the row
                                        has no exposures */
    int       has_p_value;           /* 0 for the baseline, when n0 or
                                        n1 is 0, when the pooled rate is
                                        0 or 1 */
} loyalty_ab_row_t;


typedef struct {
    char              name[LOYALTY_AB_NAME_MAX + 1];
    size_t            nrows;
    loyalty_ab_row_t  rows[LOYALTY_AB_ROWS_MAX];   /* configured first, in
                                                      order; extras after */
} loyalty_ab_report_t;


/* 1 to 32 of [A-Za-z0-9_] */
int loyalty_ab_name_valid(const char *s, size_t len);

/* 1 to 32 of [A-Za-z0-9_-] */
int loyalty_ab_variant_valid(const char *s, size_t len);

/*
 * "10%" -> 1000, "12.5%" -> 1250, "33.33%" -> 3333, "0%" -> 0, "100%"
 * and "100.00%" -> 10000: digits, an optional "." with 1 or 2 digits,
 * then "%".  Returns 1 and sets *hundredths, or 0 (more than 100%, or
 * anything else) leaving it alone.
 */
int loyalty_ab_parse_percent(const char *s, size_t len,
    unsigned *hundredths);

/*
 * Parses the words after the test name (and after an optional key=...):
 * pairs of a percentage or "*", and a variant, e.g. "10%" "off" "45%"
 * "a" "*" "b".  The name is valid; there is at least one pair, and no
 * word without its pair; each variant is valid and unique in the test;
 * "*" comes at most once, as the last pair, and takes the rest
 * (10000 - sum); the percentages add up to at most 100%; at most
 * LOYALTY_AB_VARIANTS_MAX variants.  Returns 0, or -1 with a one-line
 * message in err (NUL-terminated, truncated to errlen) that names the
 * offending word; t is only written on success.
 */
int loyalty_ab_test_parse(loyalty_ab_test_t *t, const char *name,
    size_t nlen, const char *const *words, const size_t *lens,
    size_t nwords, char *err, size_t errlen);

/* 1 when the specs are the same: name, variants, shares, "*", order */
int loyalty_ab_test_equal(const loyalty_ab_test_t *a,
    const loyalty_ab_test_t *b);

/* the bucket of the key, 0 to LOYALTY_AB_BUCKETS - 1 (see above) */
unsigned loyalty_ab_bucket(const char *name, size_t nlen,
    const unsigned char *key, size_t klen);

/*
 * The index of the key's variant, or -1: an empty key, or a bucket
 * beyond the declared shares when there is no "*".
 */
int loyalty_ab_assign(const loyalty_ab_test_t *t, const unsigned char *key,
    size_t klen);

/* order ids, for idempotent conversions: 1 to 64 of [A-Za-z0-9_.:-] */
int loyalty_ab_order_valid(const char *s, size_t len);

/* order values: 1 to 12 digits, optional "." and 1 or 2 digits */
int loyalty_ab_value_valid(const char *s, size_t len);

/* the rows of the spec's variants, in order, counts zero */
void loyalty_ab_report_init(loyalty_ab_report_t *rep,
    const loyalty_ab_test_t *t);

/*
 * Takes one field/value pair of HGETALL loyalty:ab:<name>: the fields
 * are "<variant>:exposures", "<variant>:conversions" (integers) and
 * "<variant>:revenue" (a decimal as HINCRBYFLOAT writes it), split at
 * the last ':'; counters go up to INT64_MAX, as in Redis.  A variant
 * not in the report but with a valid name is appended as an extra row
 * (configured 0) while there is room; a field seen again replaces the
 * value.  Returns 1 when used, 0 when ignored (unknown suffix, invalid
 * variant, unparsable value, no room).  Any bytes are safe.
 */
int loyalty_ab_report_field(loyalty_ab_report_t *rep, const char *field,
    size_t flen, const char *value, size_t vlen);

/*
 * Computes the derived columns; rows[0], the first declared variant, is
 * the baseline.  p_value is the two-sided p-value of the pooled
 * two-proportion z-test of a row against rows[0]:
 *
 *   p = (c0 + c1) / (n0 + n1); se = sqrt(p (1 - p) (1/n0 + 1/n1));
 *   z = (r1 - r0) / se; p_value = erfc(|z| / sqrt(2))
 */
void loyalty_ab_stats(loyalty_ab_report_t *rep);

/*
 * The reports as JSON, malloc()ed and NUL-terminated, with *len set;
 * NULL when out of memory:
 *
 *   {"tests":{"<name>":{"baseline":"<rows[0].name>","variants":{
 *    "<variant>":{"share":45.5,"exposures":N,"conversions":N,
 *    "conversion_rate":x,"revenue":x,"revenue_per_exposure":x,
 *    "uplift":x|null,"p_value":x|null},...}},...}}
 *
 * share is in percent, null for extras; doubles are printed with
 * "%.10g", null when not finite.  "baseline" is null without rows.
 */
char *loyalty_ab_report_json(const loyalty_ab_report_t *reps, size_t n,
    size_t *len);

/*
 * The same as a text table per test: columns left-aligned, padded to
 * the widest cell and two blanks apart, no trailing blanks; rate and
 * uplift in percent with 2 decimals ("5.00%", "+25.00%"), revenue and
 * rev/exp with 2 decimals, p_value with 4 ("<0.0001" below); "-" where
 * there is no value (rate and rev/exp without exposures); a blank line
 * between tests.  malloc()ed and NUL-terminated, *len set ("" for no
 * tests), NULL when out of memory:
 *
 *   test badge (baseline off)
 *   variant  share  exposures  conversions  rate   revenue  rev/exp ...
 *   off      10%    1000       50           5.00%  510.00   0.51    ...
 */
char *loyalty_ab_report_text(const loyalty_ab_report_t *reps, size_t n,
    size_t *len);


#endif /* _LOYALTY_AB_H_INCLUDED_ */
