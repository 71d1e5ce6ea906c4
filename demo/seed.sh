#!/bin/sh
# Writes the demo's loyalty data into the Redis server on 127.0.0.1:PORT:
# the customer hashes loyalty:customer:<id> and the offer catalog
# loyalty:offers, in the formats of docs/redis-schema.md.  Dates are
# computed from today (the local date, as nginx uses), so that the
# first-order window and the birthday month hold whenever the demo runs.
# Other keys are left alone.
#
#   sh demo/seed.sh PORT
#
# The customers, by login name of demo/customers.txt:
#
#   bronze    1001  first order 3 days ago: the welcome offer
#                   (first_order_within_days) and this week's double points
#   silver    1002  free shipping (min_tier silver), double points
#   gold      1003  birthday this month (birthday_month), early access
#                   (tiers), the rewards shop (min_points)
#   platinum  1004  top tier, VIP segment (segments), a personal offer
#   unknown   9999  no record at all: status unknown
#   broken    1005  the key holds a string: Redis answers WRONGTYPE,
#                   status error
#
# The summer sale ended 30 days ago (until): nobody gets it.
set -eu

port=${1:?usage: sh demo/seed.sh PORT}

r() {
    redis-cli -h 127.0.0.1 -p "$port" "$@" </dev/null >/dev/null
}

day() {
    date -d "$1" +%Y-%m-%d
}

# MM-15 of the month N months after the current one
month_day() {
    m=$(date +%m)
    m=${m#0}
    printf '%02d-15' $(( (m - 1 + $1) % 12 + 1 ))
}

for id in 1001 1002 1003 1004 1005 9999; do
    r DEL "loyalty:customer:$id"
done

r HSET loyalty:customer:1001 \
    tier bronze points 120 cashback 0.60 referral_code BEA-1001 \
    segments newsletter first_order "$(day '3 days ago')"

r HSET loyalty:customer:1002 \
    tier silver points 2400 cashback 4.80 referral_code SAM-1002 \
    segments newsletter first_order "$(day '400 days ago')" \
    birthday "$(month_day 6)"

r HSET loyalty:customer:1003 \
    tier gold points 8800 cashback 26.40 referral_code GIA-1003 \
    segments newsletter first_order "$(day '900 days ago')" \
    birthday "$(month_day 0)"

r HSET loyalty:customer:1004 \
    tier platinum points 25000 cashback 125.00 referral_code PIA-1004 \
    segments vip,newsletter first_order "$(day '2000 days ago')" \
    birthday "$(month_day 3)" \
    offers '[{"id":"concierge","title":"A personal shopper for your next visit","badge":"personal"}]'

# not a hash: every lookup of 1005 gets WRONGTYPE
r SET loyalty:customer:1005 "damaged record"

r SET loyalty:offers "[
  {\"id\":\"welcome\",\"title\":\"15 % off your second order\",
   \"code\":\"WELCOME15\",\"badge\":\"new customer\",
   \"first_order_within_days\":30},
  {\"id\":\"birthday\",\"title\":\"A birthday gift with your next order\",
   \"badge\":\"birthday\",\"birthday_month\":true},
  {\"id\":\"double-points\",\"title\":\"Double points this week\",
   \"tiers\":[\"bronze\",\"silver\"],
   \"from\":\"$(day '2 days ago')\",\"until\":\"$(day '5 days')\"},
  {\"id\":\"free-shipping\",\"title\":\"Free shipping on every order\",
   \"min_tier\":\"silver\"},
  {\"id\":\"early-access\",\"title\":\"Early access to the winter sale\",
   \"tiers\":[\"gold\",\"platinum\"]},
  {\"id\":\"vip-night\",\"title\":\"VIP shopping night\",
   \"badge\":\"vip\",\"segments\":[\"vip\"]},
  {\"id\":\"rewards-shop\",\"title\":\"Spend your points in the rewards shop\",
   \"url\":\"/#rewards\",\"min_points\":5000},
  {\"id\":\"summer-sale\",\"title\":\"Summer sale\",
   \"from\":\"$(day '60 days ago')\",\"until\":\"$(day '30 days ago')\"}
]"
