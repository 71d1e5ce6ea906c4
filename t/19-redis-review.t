#!/usr/bin/perl
# Fixes of the review (issue 13) in the Redis layer, each against real
# servers:
#  1. two servers naming the same Redis with different
#     loyalty_redis_breaker settings each get their own breaker: with
#     Redis down, the one with a breaker says "bypass", the other "error";
#  2. worker_shutdown_timeout closes the Redis connections: with Redis
#     hung (SIGSTOP) and lookups waiting on a long loyalty_redis_timeout,
#     the old worker exits after a reload, and nginx after QUIT, long
#     before the lookups would have timed out;
#  3. in a Redis Cluster, A/B conversions and exposure flushes while the
#     slot of their key migrates (ASK during the migration, MOVED after
#     it) arrive exactly once.  The callers pass the address of a local
#     as the command handle, which the transport once kept and wrote
#     through on a redirection, after that stack frame was gone: run with
#     make asan (FILES=t/19-redis-review.t), ASan reports it as a
#     stack-use-after-return, which this test then also fails on.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use POSIX qw(WNOHANG);
use Time::HiRes qw(time sleep);
use LoyaltyTest;

my $slow = $LoyaltyTest::SLOW;

my $t = LoyaltyTest->new;

# --- helpers ------------------------------------------------------------------

# sanitizer reports written so far (make asan: tools/asan-nginx)
my $ASAN_DIR = $ENV{LOYALTY_ASAN_DIR};

sub asan_reports {
    return () unless $ASAN_DIR && -d $ASAN_DIR;
    opendir my $dh, $ASAN_DIR or return ();
    my @f = sort grep { /^(?:asan|ubsan)\./ } readdir $dh;
    closedir $dh;
    return @f;
}

my %asan_before = map { $_ => 1 } asan_reports();

sub asan_new { grep { !$asan_before{$_} } asan_reports() }

# the status a server's lookup of customer $id reports
sub status_on {
    my ($port, $id) = @_;
    my $r = $t->request(path => '/', port => $port, timeout => 5,
                        headers => [ Cookie => "loyalty_id=$id" ]);
    my ($s) = ($r->{body} // '') =~ /\bstatus=(\S*)/;
    return ($r->{status} // 0) == 200 ? $s // '' : "http $r->{status}";
}

sub alive { my @p = grep { kill 0, $_ } @_; @p }

my $LINE = 'return 200 "status=$loyalty_status tier=$loyalty_tier\n";';

# =============================================================================
# 1. one Redis, two servers, two breaker settings
# =============================================================================

$t->start_redis;
$t->redis('HSET', 'loyalty:customer:c1', 'tier', 'gold', 'points', 10);

# both orders: the first server's settings once were everybody's
for my $order ([qw(off on)], [qw(on off)]) {
    my $name = "breaker $order->[0] first, $order->[1] second";
    my %conf = (
        on  => 'loyalty_redis_breaker failures=2 cooldown=200ms;',
        off => 'loyalty_redis_breaker off;',
    );
    my $servers = '';
    for my $k (@$order) {
        $servers .= <<"CONF";
server {
    listen 127.0.0.1:%%PORT_$k%%;
    loyalty_redis 127.0.0.1:%%REDIS_PORT%%;
    loyalty_redis_connect_timeout 100ms;
    $conf{$k}
    location / { loyalty on; $LINE }
}
CONF
    }
    $t->write_config($servers);
    $t->start_nginx(port => $t->named_port($order->[0]));
    my ($on, $off) = map { $t->named_port($_) } qw(on off);

    ok $t->wait_for(sub { status_on($on, 'c1') eq 'ok'
                          && status_on($off, 'c1') eq 'ok' }, 5),
        "$name: both servers find the customer";

    $t->stop_redis;
    my (@on, @off);
    for (1 .. 8) {
        push @on, status_on($on, 'c1');
        push @off, status_on($off, 'c1');
    }
    diag "$name: with Redis down, breaker on: @on; off: @off";
    is_deeply [ grep { $_ ne 'error' && $_ ne 'timeout' } @off ], [],
        "$name: the server without a breaker never bypasses Redis";
    is_deeply [ @on[2 .. $#on] ], [ ('bypass') x 6 ],
        "$name: the server with failures=2 bypasses from the third lookup";
    is_deeply [ grep { $_ ne 'error' && $_ ne 'timeout' } @on[0, 1] ], [],
        "$name: ... the first two failed";

    $t->start_redis(port => $t->redis_port);
    $t->redis('HSET', 'loyalty:customer:c1', 'tier', 'gold', 'points', 10);
    ok $t->wait_for(sub { status_on($on, 'c1') eq 'ok'
                          && status_on($off, 'c1') eq 'ok' }, 5),
        "$name: both servers find the customer again once Redis is back";
    $t->stop_nginx;
}

# =============================================================================
# 2. worker_shutdown_timeout with a hung Redis
# =============================================================================

{
    # lookups would wait 60 s for the hung Redis; 1 s stall detection
    # never fires, since no command times out before the shutdown timeout
    $t->write_config(<<"CONF", main => 'worker_shutdown_timeout 1s;');
loyalty_redis 127.0.0.1:%%REDIS_PORT%%;
loyalty_redis_timeout 60s;

server {
    listen 127.0.0.1:%%PORT%%;
    location / { loyalty on; $LINE }
}
CONF

    for my $how (qw(reload QUIT)) {
        my $name = "worker_shutdown_timeout 1s, Redis hung, $how";
        $t->start_nginx unless $t->nginx_pid;
        ok $t->wait_for(sub { status_on($t->port, 'c1') eq 'ok' }, 5),
            "$name: lookups work";
        my @old = $t->worker_pids;
        $t->redis_signal('STOP');
        my @h = map {
            $t->start_request(path => '/',
                              headers => [ Cookie => "loyalty_id=c$_" ])
        } 1 .. 4;
        sleep 0.2;

        my $t0 = time;
        if ($how eq 'reload') {
            $t->reload;
        } else {
            kill 'QUIT', $t->nginx_pid;
        }

        # a bound for the test, far below the lookups' 60 s; no speed is
        # asserted
        my $gone = $t->wait_for(sub { !alive(@old) }, 20);
        diag sprintf "%s: old worker %s %.1f s after the signal", $name,
            $gone ? 'gone' : 'still there', time - $t0;
        ok $gone, "$name: the old worker exits by the shutdown timeout";
        if ($how eq 'QUIT') {
            my $master = $t->nginx_pid;
            ok $t->wait_for(sub { waitpid($master, WNOHANG) == $master
                                  || !kill 0, $master }, 5),
                "$name: nginx has exited";
            $t->stop_nginx;
        }
        $t->finish_request($_, timeout => 2) for @h;
        $t->redis_signal('CONT');
        ok $t->wait_for(sub { eval { $t->redis('PING') } }, 3),
            "$name: Redis answers again";
        kill 'KILL', alive(@old);
    }
    $t->stop_nginx;
}

# =============================================================================
# 3. a cluster: conversions and exposures while their slot migrates
# =============================================================================

my @ports = $t->start_cluster(nodes => 3, replicas => 0,
                              require_full_coverage => 'no');
diag sprintf "cluster of 3 masters ready in %.1f s", $t->cluster_started_in;

my $KEY  = 'loyalty:ab:rv';
my $SLOT = LoyaltyTest::cluster_slot_of($KEY);

$t->write_config(<<"CONF");
loyalty_redis_cluster %%CLUSTER_SEEDS%%;
loyalty_redis_timeout 1s;

server {
    listen 127.0.0.1:%%PORT%%;
    location /ab {
        loyalty on;
        loyalty_ab rv 100% yes;
        return 200 "ab=\$loyalty_ab_rv\\n";
    }
    location = /buy { loyalty_ab off; loyalty_ab_convert; }
}
CONF
$t->start_nginx;

my ($exposures, $conversions, @bad) = (0, 0);
my $order = 0;

sub expose {
    my ($n) = @_;
    for (1 .. $n) {
        my $r = $t->get('/ab', Cookie => 'loyalty_id=x' . $exposures);
        push @bad, "/ab: $r->{status} " . ($r->{body} // '')
            unless ($r->{status} // 0) == 200 && $r->{body} eq "ab=yes\n";
        $exposures++;
    }
}

# without ?order=: the script's one key, loyalty:ab:rv (with an order
# marker, a second key, Redis answers TRYAGAIN while the slot migrates)
sub convert {
    my ($n) = @_;
    for (1 .. $n) {
        $order++;
        my $r = $t->get('/buy?value=1', Cookie => "loyalty_id=x$order");
        if (($r->{status} // 0) == 200
            && ($r->{body} // '') =~ /"converted":\{"rv":"yes"\}/)
        {
            $conversions++;
        } else {
            push @bad, "/buy: $r->{status} " . ($r->{body} // '');
        }
    }
}

# the map is loaded: a conversion goes out
ok $t->wait_for(sub {
        my $ok = ($t->get('/buy', Cookie => 'loyalty_id=w')->{body} // '')
                 =~ /"rv":"yes"/;
        $conversions++ if $ok;
        $ok }, 5),
    'the slot map is loaded: conversions are sent';
expose(5);
sleep 1.2;          # one flush before the first move

my @masters = $t->cluster_masters;
my %asked;
for my $round (1 .. 2) {
    my $from = $t->cluster_slot_map->[$SLOT];
    my ($to) = grep { $_ != $from } @masters;
    my $asking0 = $t->redis_cmdstat($to, 'asking');
    $t->cluster_move_slot($SLOT, $to,
        # the key still on the source: answered there
        migrating => sub { expose(3); convert(3) },
        # every key on the target: the source answers ASK to each
        migrated => sub {
            expose(10);
            convert(10);
            sleep 1.2;      # an exposure flush in the window
        });
    # the worker's map still names the source: MOVED, then the new map
    convert(5);
    expose(5);
    sleep 1.2;
    $asked{$round} = $t->redis_cmdstat($to, 'asking') - $asking0;
}

cmp_ok $asked{1}, '>', 0, "round 1: ASKING sent to the target ($asked{1})";
cmp_ok $asked{2}, '>', 0, "round 2: ASKING sent to the target ($asked{2})";
is_deeply \@bad, [], 'every exposure and conversion request answered'
    or diag join "\n", @bad[0 .. ($#bad < 5 ? $#bad : 5)];

my %h;
ok $t->wait_for(sub {
        %h = @{ $t->cluster_redis('HGETALL', $KEY) // [] };
        ($h{'yes:exposures'} // 0) == $exposures
            && ($h{'yes:conversions'} // 0) == $conversions }, 5),
    "moved twice: $exposures exposures and $conversions conversions in "
    . "Redis, each once"
    or diag explain \%h;

$t->stop_nginx;

my @reports = asan_new();
is_deeply \@reports, [], 'no ASan or UBSan report'
    or diag join '', map { "$ASAN_DIR/$_:\n" . `head -n 20 $ASAN_DIR/$_` }
                     @reports[0 .. ($#reports < 2 ? $#reports : 2)];

$t->check_error_log;
done_testing;
