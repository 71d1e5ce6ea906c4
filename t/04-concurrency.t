#!/usr/bin/perl
# Hundreds of concurrent requests for different customers on one worker:
# every response carries its own customer's record (no cross-talk), both
# in variables and in the headers a proxied backend receives.  Then the
# same with two workers and after a reload.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use LoyaltyTest;

my $t = LoyaltyTest->new;
$t->start_redis;
$t->start_backend;

my @tiers = qw(bronze silver gold platinum);
my @cmds = map {
    [ 'HSET', "loyalty:customer:c$_", 'tier', $tiers[$_ % 4],
      'points', $_ * 7 ]
} 1 .. 400;
$t->redis_pipeline(\@cmds);

my $conf = <<'CONF';
loyalty_redis 127.0.0.1:%%REDIS_PORT%%;
loyalty_redis_timeout 2s;

server {
    listen 127.0.0.1:%%PORT%% backlog=1024;

    location /var {
        loyalty on;
        return 200 "id=$loyalty_id tier=$loyalty_tier points=$loyalty_points\n";
    }

    location /proxy {
        loyalty on;
        proxy_pass http://127.0.0.1:%%BACKEND_PORT%%;
    }
}
CONF

# under make valgrind one worker takes most of a second for a batch of
# 300: a longer timeout keeps this a test of cross-talk, not of speed
$conf =~ s/loyalty_redis_timeout 2s;/loyalty_redis_timeout 20s;/
    if $LoyaltyTest::VALGRIND;

sub expect {
    my ($n) = @_;
    return "id=c$n tier=$tiers[$n % 4] points=" . ($n * 7) . "\n";
}

sub run_batch {
    my ($label, $count) = @_;
    my @ids = map { 1 + int(rand(400)) } 1 .. $count;
    push @ids, 999 + $_ for 1 .. 10;          # unknown customers mixed in
    my $resps = $t->concurrent([ map {
        { path => '/var', headers => [ Cookie => "loyalty_id=c$_" ] }
    } @ids ]);

    my ($good, $bad) = (0, 0);
    for my $i (0 .. $#ids) {
        my $n = $ids[$i];
        my $want = $n > 999 ? "id=c$n tier= points=\n" : expect($n);
        if (($resps->[$i]{status} // 0) == 200
            && $resps->[$i]{body} eq $want)
        {
            $good++;
        } else {
            $bad++;
            diag "c$n: got " . ($resps->[$i]{body} // $resps->[$i]{error})
                if $bad < 5;
        }
    }
    is $good, scalar(@ids), "$label: all $good responses match their customer";
}

$t->write_config($conf, workers => 1, access_log => 0);
$t->start_nginx;

run_batch('300 concurrent, one worker', 300);

# through a real proxy: the backend sees the right headers for each request
my @ids = map { 1 + int(rand(400)) } 1 .. 100;
my $resps = $t->concurrent([ map {
    { path => "/proxy/$_", headers => [ Cookie => "loyalty_id=c$_" ] }
} @ids ]);
my $right = 0;
for my $i (0 .. $#ids) {
    my $n = $ids[$i];
    my $b = $resps->[$i]{body} // '';
    $right++ if $b =~ m{^GET /proxy/$n HTTP}
             && $b =~ /^X-Loyalty-Id: c$n$/m
             && $b =~ /^X-Loyalty-Tier: $tiers[$n % 4]$/m
             && $b =~ /^X-Loyalty-Points: ${\ ($n * 7)}$/m;
}
is $right, 100, '100 concurrent proxied requests: backend saw each own headers';

$t->check_error_log;
$t->stop_nginx;

# two workers, then a reload: Redis connections are per worker
$t->write_config($conf, workers => 2, access_log => 0);
$t->start_nginx;
run_batch('300 concurrent, two workers', 300);
$t->reload;
run_batch('after a reload', 200);

my $clients = $t->redis('CLIENT', 'LIST');
my $n = () = $clients =~ /^id=/mg;
cmp_ok $n, '<=', 2 * 2 + 1 + 4,
    "Redis sees a small pool per worker ($n client connections)";

$t->check_error_log;
$t->stop_nginx;

ok $t->wait_for(sub {
    my $c = $t->redis('CLIENT', 'LIST');
    (() = $c =~ /^id=/mg) == 1;
}, 5), 'workers closed their Redis connections on exit';

done_testing;
