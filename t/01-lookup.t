#!/usr/bin/perl
# Customer lookups: known, unknown, anonymous and invalid cookies; the
# variables in return, if, set, map, rewrite, SSI and log_format; internal
# redirects keep the result without a second Redis query; keepalive; a
# Redis on a unix socket.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use LoyaltyTest;

my $t = LoyaltyTest->new;
my $sock = $t->tmp . '/redis.sock';
$t->start_redis(extra => [ '--unixsocket', $sock, '--unixsocketperm', '777' ]);
$t->redis('HSET', 'loyalty:customer:42', 'tier', 'gold', 'points', '1234');
$t->redis('HSET', 'loyalty:customer:Ab_c-9', 'tier', 'silver',
          'points', '007');
$t->redis('HSET', 'shop:c:42', 'tier', 'platinum', 'points', '99');

mkdir $t->tmp . '/html';
open my $fh, '>', $t->tmp . '/html/ssi.html' or die $!;
print $fh qq{<p>tier=<!--# echo var="loyalty_tier" default="none" -->}
        . qq{ points=<!--# echo var="loyalty_points" default="0" --></p>\n};
close $fh;

$t->write_config(<<'CONF', log_level => 'debug');
log_format loyalty '$loyalty_status|$loyalty_id|$loyalty_tier|$loyalty_points';

map $loyalty_tier $badge {
    gold      "badge-gold";
    default   "badge-none";
}

loyalty_redis 127.0.0.1:%%REDIS_PORT%%;

server {
    listen 127.0.0.1:%%PORT%%;
    access_log %%TMP%%/loyalty.log loyalty;
    root %%TMP%%/html;

    location / {
        loyalty on;
        return 200 "status=$loyalty_status id=$loyalty_id tier=$loyalty_tier points=$loyalty_points\n";
    }

    location /off {
        return 200 "status=$loyalty_status tier=$loyalty_tier\n";
    }

    location /if {
        loyalty on;
        if ($loyalty_tier = gold) {
            return 200 "golden\n";
        }
        return 200 "plain\n";
    }

    location /set {
        loyalty on;
        set $who "$loyalty_tier:$loyalty_points";
        return 200 "who=$who badge=$badge\n";
    }

    location /rewrite {
        loyalty on;
        rewrite ^ /tiered/$loyalty_tier last;
    }

    location /tiered/ {
        return 200 "uri=$uri status=$loyalty_status\n";
    }

    location /try {
        loyalty on;
        try_files /nonexistent @named;
    }

    location @named {
        return 200 "named status=$loyalty_status tier=$loyalty_tier\n";
    }

    location /errpage {
        loyalty on;
        error_page 404 = /after-error;
        return 404;
    }

    location = /after-error {
        loyalty on;
        return 200 "after-error tier=$loyalty_tier\n";
    }

    location /ssi.html {
        loyalty on;
        ssi on;
    }

    location /cookie {
        loyalty on;
        loyalty_cookie shopper;
        loyalty_key_prefix shop:c:;
        return 200 "status=$loyalty_status tier=$loyalty_tier\n";
    }
}

server {
    listen 127.0.0.1:%%PORT_unix%%;
    loyalty_redis unix:%%TMP%%/redis.sock;
    loyalty on;

    location / {
        return 200 "unix status=$loyalty_status tier=$loyalty_tier\n";
    }
}
CONF
$t->start_nginx;

sub hmget_calls {
    my ($n) = $t->redis('INFO', 'commandstats') =~ /cmdstat_hmget:calls=(\d+)/;
    return $n // 0;
}

sub body {
    my ($path, $cookie, %o) = @_;
    my $r = $t->request(path => $path, port => $o{port} // $t->port,
                        headers => [ defined $cookie ? (Cookie => $cookie)
                                                     : () ]);
    is $r->{status}, 200, "$path with " . ($cookie // 'no cookie') . ': 200';
    return $r->{body} // '';
}

# --- outcomes ----------------------------------------------------------------

is body('/', 'loyalty_id=42'), "status=ok id=42 tier=gold points=1234\n",
    'known customer';
is body('/', 'sid=1; loyalty_id=Ab_c-9; x=y'),
    "status=ok id=Ab_c-9 tier=silver points=7\n",
    'id with letters, _ and -, among other cookies; points normalized';
is body('/', 'loyalty_id=43'), "status=unknown id=43 tier= points=\n",
    'unknown customer';
is body('/', undef), "status=anonymous id= tier= points=\n",
    'no Cookie header';
is body('/', 'sid=abc'), "status=anonymous id= tier= points=\n",
    'other cookies only';

for my $bad ('loyalty_id=', 'loyalty_id=4%202', 'loyalty_id=a.b',
             'loyalty_id="42"', 'loyalty_id=' . ('9' x 65))
{
    is body('/', $bad), "status=invalid id= tier= points=\n",
        "invalid cookie '" . substr($bad, 0, 20) . "'";
}

is body('/', 'loyalty_id=' . ('7' x 64)),
    'status=unknown id=' . ('7' x 64) . " tier= points=\n",
    '64-character id is valid';

is body('/off', 'loyalty_id=42'), "status= tier=\n",
    'variables are empty where loyalty is off';

# --- rewrite-module directives, map ----------------------------------------

is body('/if', 'loyalty_id=42'), "golden\n", 'if on $loyalty_tier (gold)';
is body('/if', 'loyalty_id=43'), "plain\n", 'if on $loyalty_tier (unknown)';
is body('/set', 'loyalty_id=42'), "who=gold:1234 badge=badge-gold\n",
    'set and map';
is body('/set', undef), "who=: badge=badge-none\n", 'set and map, anonymous';
is body('/rewrite', 'loyalty_id=42'), "uri=/tiered/gold status=ok\n",
    'rewrite with $loyalty_tier, value kept after the rewrite';

# --- internal redirects do not query Redis again ----------------------------

my $before = hmget_calls();
is body('/try', 'loyalty_id=42'), "named status=ok tier=gold\n",
    'try_files to a named location keeps the values';
is hmget_calls() - $before, 1, 'one HMGET for try_files + named location';

$before = hmget_calls();
is body('/errpage', 'loyalty_id=42'), "after-error tier=gold\n",
    'error_page redirect keeps the values';
is hmget_calls() - $before, 1,
    'one HMGET although both locations have loyalty on';

$before = hmget_calls();
body('/', undef);
body('/', 'loyalty_id=bad.id');
is hmget_calls() - $before, 0, 'anonymous and invalid cookies: no Redis call';

# --- SSI, cookie name and key prefix, unix socket ---------------------------

is body('/ssi.html', 'loyalty_id=42'), "<p>tier=gold points=1234</p>\n",
    'SSI echo of the variables';
is body('/ssi.html', undef), "<p>tier=none points=0</p>\n",
    'SSI defaults for anonymous';
is body('/cookie', 'loyalty_id=42; shopper=42'),
    "status=ok tier=platinum\n", 'loyalty_cookie and loyalty_key_prefix';
is body('/cookie', 'loyalty_id=42'), "status=anonymous tier=\n",
    'default cookie name ignored when another is set';
is body('/', 'loyalty_id=42', port => $t->named_port('unix')),
    "unix status=ok tier=gold\n", 'Redis over a unix socket';

# --- keepalive ----------------------------------------------------------------

my @reqs = map {
    { path => '/', headers => [ Cookie => 'loyalty_id=' . ($_ % 2 ? 42 : 43) ] }
} 1 .. 50;
my $resps = $t->keepalive(\@reqs);
is scalar(@$resps), 50, '50 responses on one keepalive connection';
my $right = grep {
    my $want = $_ % 2 ? 'status=ok id=42 tier=gold' : 'status=unknown id=43';
    ($resps->[$_ - 1]{status} // 0) == 200
        && index($resps->[$_ - 1]{body}, $want) == 0
} 1 .. 50;
is $right, 50, 'each keepalive response has its own customer';

# --- log_format and debug log ---------------------------------------------

my $access = sub { open my $f, '<', $t->tmp . '/loyalty.log' or return '';
                   local $/; <$f> };
$t->get('/', Cookie => 'loyalty_id=42');
ok $t->wait_for(sub { $access->() =~ /^ok\|42\|gold\|1234$/m }, 5),
    'log_format sees the variables';
like $access->(), qr/^anonymous\|-\|-\|-$/m,
    'log_format for an anonymous request';

ok scalar($t->log_lines(
        qr/loyalty lookup "loyalty:customer:42": ok, tier "gold", \d+ ms/)),
    'debug log names key, outcome, tier and time';
ok scalar($t->log_lines(qr/loyalty lookup "loyalty:customer:43": unknown/)),
    'debug log for unknown';

$t->check_error_log;
$t->stop_nginx;
done_testing;
