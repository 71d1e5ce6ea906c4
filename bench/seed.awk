# Writes, in the Redis protocol (for `redis-cli --pipe`), one command per
# customer id 1..n:
#   HSET loyalty:customer:<id> tier <tier> points <points> cashback <c>
#        [segments <a,b>] [first_order <YYYY-MM-DD>] birthday <MM-DD>
#        referral_code <code> offers <json>
# and then the offer catalog:
#   SET loyalty:offers <json array>
# Every value is a deterministic function of the id, so the same n gives
# the same data everywhere. Tier mix: 55% bronze, 25% silver, 15% gold,
# 5% platinum, points in the tier's range (0-999, 1000-4999, 5000-19999,
# 20000-47999). segments is missing for a quarter of the customers,
# first_order for a fifth. offers holds 1 to 3 personal offers, each with
# the "id" and "title" the module requires (and a "&" in the title, so
# that the fragment's escaping is exercised). The catalog's first offer
# has no condition, so every customer's fragment lists it (bench/run.sh
# checks for it to know the module has loaded the catalog); the others
# exercise the module's rules (segments, min_tier, birthday_month,
# first_order_within_days, tiers + min_points).
#
#   awk -v n=100000 -f bench/seed.awk | redis-cli -p PORT --pipe

function arg(s) { args[++nargs] = s }
function emit(    i) {                                   # lengths: ASCII only
    printf "*%d\r\n", nargs
    for (i = 1; i <= nargs; i++) printf "$%d\r\n%s\r\n", length(args[i]), args[i]
    nargs = 0
}

BEGIN {
    if (n < 1) n = 100000
    split("bronze bronze bronze bronze bronze bronze bronze bronze bronze bronze bronze " \
          "silver silver silver silver silver gold gold gold platinum", tiers, " ")
    split("|newsletter|app,newsletter|outlet,app", segs, "|")
    # points within the tier's range of the module's benchmark ladder
    # (bench/conf/module-inject.conf): 0, 1000, 5000, 20000
    base["bronze"] = 0;     span["bronze"] = 1000
    base["silver"] = 1000;  span["silver"] = 4000
    base["gold"] = 5000;    span["gold"] = 15000
    base["platinum"] = 20000; span["platinum"] = 28000
    for (id = 1; id <= n; id++) {
        arg("HSET"); arg("loyalty:customer:" id)
        tier = tiers[(id * 7 + 3) % 20 + 1]
        arg("tier"); arg(tier)
        arg("points"); arg(base[tier] + (id * 7919 + 613) % span[tier] "")
        arg("cashback"); arg(sprintf("%d.%02d", (id * 37) % 900, id % 100))
        if (segs[id % 4 + 1] != "") { arg("segments"); arg(segs[id % 4 + 1]) }
        if (id % 5 != 0) {
            arg("first_order")
            arg(sprintf("%04d-%02d-%02d", 2019 + id % 7, id % 12 + 1, id % 28 + 1))
        }
        arg("birthday"); arg(sprintf("%02d-%02d", (id * 5) % 12 + 1, (id * 3) % 28 + 1))
        arg("referral_code"); arg(sprintf("REF-%06d", (id * 7907) % 1000000))
        k = id % 3 + 1                                   # 1 to 3 offers
        offers = "["
        for (j = 1; j <= k; j++) {
            sku = sprintf("HP-%04d", (id * 31 + j * 97) % 9000 + 1000)
            pct = 5 * ((id + j) % 6 + 1)
            offers = offers (j > 1 ? "," : "") \
                     sprintf("{\"id\":\"p-%s\",\"title\":\"%d%% off %s & free returns\",\"sku\":\"%s\",\"pct\":%d}",
                             sku, pct, sku, sku, pct)
        }
        arg("offers"); arg(offers "]")
        emit()
    }
    arg("SET"); arg("loyalty:offers")
    arg("[{\"id\":\"free-returns\",\"title\":\"Free returns on every order\"}," \
        "{\"id\":\"app-10\",\"title\":\"10% off in the app\",\"segments\":[\"app\"],\"code\":\"APP10\"}," \
        "{\"id\":\"lounge\",\"title\":\"Members' lounge & <VIP> desk\",\"min_tier\":\"gold\",\"url\":\"/lounge\"}," \
        "{\"id\":\"bday\",\"title\":\"Birthday treat\",\"birthday_month\":true,\"discount\":15}," \
        "{\"id\":\"welcome\",\"title\":\"Welcome back\",\"first_order_within_days\":30}," \
        "{\"id\":\"ship\",\"title\":\"Free express shipping\",\"tiers\":[\"silver\",\"gold\",\"platinum\"],\"min_points\":1000}]")
    emit()
}
