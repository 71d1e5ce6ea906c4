# Writes, in the Redis protocol (for `redis-cli --pipe`), one command per
# customer id 1..n:
#   HSET loyalty:customer:<id> tier <tier> points <points> offers <json>
# Every value is a deterministic function of the id, so the same n gives
# the same data everywhere. Tier mix: 55% bronze, 25% silver, 15% gold,
# 5% platinum. offers is a JSON array for the later inject configurations.
#
#   awk -v n=100000 -f bench/seed.awk | redis-cli -p PORT --pipe

function bulk(s) { return "$" length(s) "\r\n" s "\r\n" }   # ASCII only

BEGIN {
    if (n < 1) n = 100000
    split("bronze bronze bronze bronze bronze bronze bronze bronze bronze bronze bronze " \
          "silver silver silver silver silver gold gold gold platinum", tiers, " ")
    for (id = 1; id <= n; id++) {
        tier = tiers[(id * 7 + 3) % 20 + 1]
        points = (id * 7919 + 613) % 48000
        k = id % 3 + 1                                   # 1 to 3 offers
        offers = "["
        for (j = 1; j <= k; j++) {
            offers = offers (j > 1 ? "," : "") \
                     sprintf("{\"sku\":\"HP-%04d\",\"pct\":%d}", (id * 31 + j * 97) % 9000 + 1000, 5 * ((id + j) % 6 + 1))
        }
        offers = offers "]"
        printf "*8\r\n$4\r\nHSET\r\n%s$4\r\ntier\r\n%s$6\r\npoints\r\n%s$6\r\noffers\r\n%s",
               bulk("loyalty:customer:" id), bulk(tier), bulk(points ""), bulk(offers)
    }
}
