/*
 * Copyright (C) ngx_loyalty_module authors
 *
 * The customer record as read from the Redis hash, one field at a time,
 * and the tier ladder configured with loyalty_tier.  Every field is
 * allow-listed here before it reaches HTML; nothing is trusted because
 * it came from Redis.
 */

#ifndef _LOYALTY_CUSTOMER_H_INCLUDED_
#define _LOYALTY_CUSTOMER_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>

#include "loyalty_record.h"


#define LOYALTY_NAME_MAX_LEN      32     /* tier, segment, referral code */
#define LOYALTY_SEGMENTS_MAX      32     /* segments in one record */
#define LOYALTY_CASHBACK_MAX_LEN  15     /* 12 digits, ".", 2 digits */
#define LOYALTY_LADDER_MAX        32     /* tiers in one ladder */
#define LOYALTY_LABEL_MAX_LEN     128    /* bytes of UTF-8 */

/* the largest value "points" can hold: 18 digits */
#define LOYALTY_POINTS_MAX        999999999999999999ULL


/*
 * The hash fields, in the order of the glue's HMGET; the values are bit
 * numbers in loyalty_customer_t.fields.
 */
typedef enum {
    LOYALTY_FIELD_TIER = 0,
    LOYALTY_FIELD_POINTS,
    LOYALTY_FIELD_CASHBACK,
    LOYALTY_FIELD_SEGMENTS,
    LOYALTY_FIELD_FIRST_ORDER,
    LOYALTY_FIELD_BIRTHDAY,
    LOYALTY_FIELD_REFERRAL_CODE,
    LOYALTY_FIELD_OFFERS,
    LOYALTY_FIELD_COUNT
} loyalty_field_e;


/* a calendar date; year is 0 for a birthday (month and day only) */
typedef struct {
    int  year;
    int  month;                        /* 1 to 12 */
    int  day;                          /* 1 to 31 */
} loyalty_date_t;


/*
 * Everything is copied into the structure, NUL-terminated, except the
 * personal offers: a jansson array the record owns (one reference),
 * released by loyalty_customer_free.  A field is set only when its bit
 * (1 << LOYALTY_FIELD_*) is in fields.  jansson's json_t is declared
 * by its tag, so that glue code holding a record in its request context
 * need not include jansson (STYLE 3).
 */
typedef struct {
    char             tier[LOYALTY_NAME_MAX_LEN + 1];
    char             referral_code[LOYALTY_NAME_MAX_LEN + 1];

    /* no leading zeros in the integer part: a valid JSON number */
    char             cashback[LOYALTY_CASHBACK_MAX_LEN + 1];

    char             segments[LOYALTY_SEGMENTS_MAX][LOYALTY_NAME_MAX_LEN + 1];
    struct json_t   *offers;           /* array of offer objects */
    size_t           nsegments;
    uint64_t         points;
    unsigned int     fields;           /* 1 << LOYALTY_FIELD_* when set */
    loyalty_date_t   first_order;
    loyalty_date_t   birthday;         /* year 0 */
} loyalty_customer_t;


typedef struct {
    char             name[LOYALTY_NAME_MAX_LEN + 1];
    char             label[LOYALTY_LABEL_MAX_LEN + 1];
    size_t           name_len;
    size_t           label_len;        /* 0: no label */
    uint64_t         min_points;
} loyalty_tier_t;


/* tiers sorted by min_points, strictly ascending; no allocation */
typedef struct {
    size_t           ntiers;
    loyalty_tier_t   tiers[LOYALTY_LADDER_MAX];
} loyalty_ladder_t;


/*
 * Where the customer stands on the ladder.  label and next_tier point
 * into the ladder (NUL-terminated), which must outlive this structure.
 */
typedef struct {
    int              found;            /* the record's tier is a rung */
    int              has_next;         /* found and not the top tier */
    double           progress;         /* 0 to 1; 1 at the top tier */
    size_t           label_len;
    size_t           next_tier_len;
    uint64_t         points_to_next;   /* has_next only */
    const char      *label;            /* "" when the tier has none */
    const char      *next_tier;        /* has_next only */
} loyalty_progress_t;


/* is (1 << field) set: the field was kept */
#define loyalty_customer_has(c, field)                                       \
    (((c)->fields & (1u << (field))) != 0)


/* an empty record: no field set, nothing owned */
void loyalty_customer_init(loyalty_customer_t *c);

/*
 * Validates one raw hash value and stores it in the record, replacing
 * an earlier value of the same field.  Returns 1 when the field is
 * kept, 0 when it is dropped (the field is then unset) with the reason
 * in err.  A kept "offers" may have lost invalid elements: err then says
 * how many, otherwise err is "".  err never quotes the value, which
 * comes from Redis and may be anything.
 *
 *   tier, referral_code  1 to 32 of [A-Za-z0-9_-]
 *   points               1 to 18 decimal digits, leading zeros allowed
 *   cashback             [0-9]{1,12}(\.[0-9]{1,2})?, kept as text with
 *                        the leading zeros of the integer part removed
 *   segments             names separated by ",", each 1 to 32 of
 *                        [A-Za-z0-9_-], empty items ignored, at most 32;
 *                        one bad name drops the whole field, so a record
 *                        never matches a rule by half of a broken list
 *   first_order          YYYY-MM-DD, a real date, year 0001 to 9999
 *   birthday             MM-DD, a real date in a leap year (02-29 ok)
 *   offers               a JSON array; elements that are not objects
 *                        with a non-empty string "id" and a string
 *                        "title" are dropped, the rest kept as given
 */
int loyalty_customer_set_field(loyalty_customer_t *c, int field,
    const unsigned char *value, size_t len, char *err, size_t err_len);

/* releases what the record owns (the offers); the record is then empty */
void loyalty_customer_free(loyalty_customer_t *c);

/* "tier", "points", ... for LOYALTY_FIELD_*; NULL when out of range */
const char *loyalty_customer_field_name(int field);

/*
 * Parses YYYY-MM-DD (year 0001 to 9999) when with_year is 1, or MM-DD
 * (year 0, checked against a leap year, so 02-29 is valid) when it is 0.
 * Returns 1 when it is a real calendar date, 0 otherwise.
 */
int loyalty_date_parse(const unsigned char *p, size_t len, int with_year,
    loyalty_date_t *date);

/* 1 when y-m-d is a real date in years 1 to 9999 */
int loyalty_date_valid(int y, int m, int d);

/* days since 1970-01-01 (proleptic Gregorian) of a valid date */
int64_t loyalty_date_days(int y, int m, int d);


/* an empty ladder */
void loyalty_ladder_init(loyalty_ladder_t *ladder);

/*
 * Appends a tier.  Returns 0, or -1 with a message in err: a name not
 * 1 to 32 of [A-Za-z0-9_-], a label longer than 128 bytes or not UTF-8
 * or with control characters, min_points above LOYALTY_POINTS_MAX, a
 * duplicate name or min_points, min_points not above the previous
 * tier's ("tiers must be given in ascending min_points order"), or a
 * full ladder.  label may be NULL when label_len is 0.
 */
int loyalty_ladder_add(loyalty_ladder_t *ladder, const unsigned char *name,
    size_t name_len, uint64_t min_points, const unsigned char *label,
    size_t label_len, char *err, size_t err_len);

/* index of the tier called name (exact, case-sensitive), -1 if none */
int loyalty_ladder_find(const loyalty_ladder_t *ladder,
    const unsigned char *name, size_t len);

/*
 * Fills out for a customer with this tier and these points.  When the
 * tier is not in the ladder only out->found = 0 is meaningful.  Between
 * two tiers, progress is (points - cur.min) / (next.min - cur.min)
 * clamped to [0, 1] and points_to_next is max(0, next.min - points).
 */
void loyalty_ladder_progress(const loyalty_ladder_t *ladder,
    const unsigned char *tier, size_t tier_len, uint64_t points,
    loyalty_progress_t *out);


#endif /* _LOYALTY_CUSTOMER_H_INCLUDED_ */
