#!/usr/bin/perl
# nginx -t: bad values fail with a message that names the directive and
# the problem; good configurations pass.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use LoyaltyTest;

my $t = LoyaltyTest->new;

sub conf_test {
    my ($http) = @_;
    $t->write_config($http);
    return $t->nginx_t;
}

sub server { return "server { listen 127.0.0.1:%%PORT%%; $_[0] }\n" }

my @bad = (
    [ 'loyalty_redis localhost:6379;' . server('loyalty on;'),
      qr/"loyalty_redis" address "localhost:6379" is not numeric/,
      'host name rejected (blocking DNS)' ],
    [ 'loyalty_redis redis.example.com;' . server('loyalty on;'),
      qr/"loyalty_redis" address "redis.example.com" is not numeric/,
      'host name without port rejected' ],
    [ 'loyalty_redis 127.0.0.1:99999;' . server(''),
      qr/"loyalty_redis" has an invalid address "127.0.0.1:99999": invalid port/,
      'port out of range' ],
    [ 'loyalty_redis 127.0.0.1:6379/db;' . server(''),
      qr/"loyalty_redis" has an invalid address/, 'a path after the port' ],
    [ 'loyalty_redis unix:;' . server(''),
      qr/"loyalty_redis" has an empty unix socket path/, 'empty unix path' ],
    [ 'loyalty_redis 127.0.0.1; loyalty_redis 127.0.0.2;' . server(''),
      qr/"loyalty_redis" directive is duplicate/, 'duplicate loyalty_redis' ],
    [ server('location / { loyalty_redis 127.0.0.1; }'),
      qr/"loyalty_redis" directive is not allowed here/,
      'loyalty_redis in a location' ],
    [ server('location / { loyalty on; }'),
      qr/"loyalty" is on, but no "loyalty_redis" address is set/,
      'loyalty on without loyalty_redis' ],
    [ 'loyalty_redis 127.0.0.1;' . server('loyalty maybe;'),
      qr/invalid value "maybe" in "loyalty" directive/, 'loyalty maybe' ],
    [ 'loyalty_redis 127.0.0.1; loyalty_redis_timeout fast;' . server(''),
      qr/"loyalty_redis_timeout" directive invalid value/,
      'timeout not a time' ],
    [ 'loyalty_redis 127.0.0.1; loyalty_redis_timeout 0;' . server(''),
      qr/"loyalty_redis_timeout" directive must be greater than zero/,
      'zero timeout' ],
    [ 'loyalty_redis 127.0.0.1;' . server('loyalty_redis_connect_timeout -1s;'),
      qr/"loyalty_redis_connect_timeout" directive invalid value/,
      'negative connect timeout' ],
    [ 'loyalty_redis 127.0.0.1;' . server('loyalty_cookie "a b";'),
      qr/"loyalty_cookie" directive is not a valid cookie name/,
      'cookie name with a space' ],
    [ 'loyalty_redis 127.0.0.1;' . server('loyalty_cookie "";'),
      qr/"loyalty_cookie" directive must not be empty/, 'empty cookie name' ],
    [ 'loyalty_redis 127.0.0.1;' . server('loyalty_upstream_headers yes;'),
      qr/invalid value "yes" in "loyalty_upstream_headers" directive/,
      'upstream headers yes' ],
    [ 'loyalty_redis 127.0.0.1;' . server('loyalty_response_headers 1;'),
      qr/invalid value "1" in "loyalty_response_headers" directive/,
      'response headers 1' ],
    [ 'loyalty_redis 127.0.0.1;' . server('loyalty_key_prefix;'),
      qr/invalid number of arguments in "loyalty_key_prefix" directive/,
      'key prefix without a value' ],
);

for (@bad) {
    my ($conf, $re, $name) = @$_;
    my ($rc, $out) = conf_test($conf);
    isnt $rc, 0, "nginx -t fails: $name";
    like $out, $re, "message: $name";
}

my @good = (
    [ 'loyalty_redis 127.0.0.1:6379;' . server('loyalty on;'), 'host:port' ],
    [ 'loyalty_redis 127.0.0.1;' . server('loyalty on;'), 'default port' ],
    [ 'loyalty_redis [::1]:6380;' . server('loyalty on;'), 'IPv6' ],
    [ 'loyalty_redis unix:/run/redis.sock;' . server('loyalty on;'),
      'unix socket' ],
    [ server('loyalty_redis 127.0.0.1; location / { loyalty on; }')
      . 'server { listen 127.0.0.1:%%PORT_b%%; loyalty_redis 127.0.0.1; }',
      'per-server Redis' ],
    [ 'loyalty_redis 127.0.0.1; loyalty_redis_timeout 50ms;'
      . ' loyalty_redis_connect_timeout 1s; loyalty_cookie shopper;'
      . ' loyalty_key_prefix "shop:{c}:"; loyalty_upstream_headers off;'
      . ' loyalty_response_headers on;'
      . server('location / { loyalty on; loyalty_redis_timeout 2s; }'),
      'every directive' ],
    [ server('location / { return 200; }'), 'module loaded, not used' ],
);

for (@good) {
    my ($conf, $name) = @$_;
    my ($rc, $out) = conf_test($conf);
    is $rc, 0, "nginx -t passes: $name" or diag $out;
}

done_testing;
