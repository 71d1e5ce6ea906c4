#!/usr/bin/perl
# Faults under steady load: 8 client processes keep asking two workers
# (a plain location and one proxied to a backend, keep-alive and fresh
# connections) while Redis is killed and restarted, hung (SIGSTOP),
# slow (DEBUG SLEEP) or replaced by a server answering garbage or
# resetting connections.  For each fault: no 5xx and no failed request,
# every response within the timeout plus a margin, the circuit breaker
# opens and closes again, personalization is back within 1 s of the
# recovery, and the error log stays bounded (one line per cause, second
# and worker, the rest reported as "suppressed").  Then 20 reloads under
# load (no failure, old workers close their Redis connections, no fd
# leak, the shared cache survives) and graceful shutdown with a hung and
# with a healthy Redis.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP qw(decode_json);
use Time::HiRes qw(time sleep);
use LoyaltyTest;

my $slow = $LoyaltyTest::SLOW;

# loyalty_redis_timeout and loyalty_redis_connect_timeout
my $TIMEOUT = 0.1;

# Every response must come within the Redis timeout plus this margin.  A
# lookup waits for Redis at most $TIMEOUT (a breaker that is open
# answers at once); the rest is not the module's: 8 Perl clients, two
# workers, Redis, the forking Perl backend of the proxied location and
# this script share 2 CPUs, so a request can wait a few scheduler
# slices (tens of ms) to be accepted, to get its backend process forked
# and to be read back by its client.  400 ms covers that with room to
# spare and is still far below anything that waits for a hung Redis
# (the 1 s stall detection, a 500 ms cooldown).
my $MARGIN = 0.4;

# personalization must be back within 1 s of the recovery; the margin is
# for the client side: a client may be sleeping between requests or
# waiting for its previous response when Redis comes back
my $RECOVERY = 1.0;
my $RECOVERY_MARGIN = 0.25;

my $t = LoyaltyTest->new;

# the RDB written at shutdown (save point) brings the customers back on
# every restart; DEBUG SLEEP needs the debug command
$t->start_redis(extra => [ '--save', '3600 1',
                           '--enable-debug-command', 'yes' ]);
$t->start_backend;
my $rport = $t->redis_port;

my @tiers = qw(bronze silver gold platinum);
my $CUSTOMERS = 50;
sub tier_of { $tiers[ $_[0] % 4 ] }
$t->redis_pipeline([ map {
    [ 'HSET', "loyalty:customer:c$_", 'tier', tier_of($_), 'points', $_ * 3 ]
} 1 .. $CUSTOMERS, 99 ]);         # c99: cached before the reloads, not
                                  # asked for by the load

my $conf = <<'CONF';
loyalty_cache_zone faults:1m ttl=120s;
loyalty_redis 127.0.0.1:%%REDIS_PORT%%;
loyalty_redis_timeout 100ms;
loyalty_redis_connect_timeout 100ms;
loyalty_redis_breaker failures=5 cooldown=500ms;

server {
    listen 127.0.0.1:%%PORT%% backlog=1024;

    location /v {
        loyalty on;
        return 200 "status=$loyalty_status tier=$loyalty_tier\n";
    }

    location /p {
        loyalty on;
        proxy_pass http://127.0.0.1:%%BACKEND_PORT%%;
    }

    location /c {
        loyalty on;
        loyalty_cache faults;
        return 200 "status=$loyalty_status tier=$loyalty_tier cache=$loyalty_cache_status\n";
    }

    location = /metrics {
        loyalty_metrics;
    }
}
CONF
$t->write_config($conf, workers => 2, log_level => 'info',
                 access_log => 0);
$t->start_nginx;

# --- helpers ------------------------------------------------------------------

sub metrics {
    my $r = $t->get('/metrics?format=json');
    return eval { decode_json($r->{body}) } || die "metrics: $r->{body}\n";
}

# loyalty status and tier of a response: from the body of /v and /c, from
# the X-Loyalty-* headers the backend echoes for /p
sub outcome {
    my ($rec) = @_;
    my $b = $rec->{body} // '';
    if (($rec->{path} // '') =~ m{^/p}) {
        my ($s) = $b =~ /^X-Loyalty-Status: (\S*)\r?$/m;
        my ($tier) = $b =~ /^X-Loyalty-Tier: (\S*)\r?$/m;
        return ($s // '', $tier // '');
    }
    my ($s, $tier) = $b =~ /^status=(\S*) tier=(\S*)/;
    return ($s // '', $tier // '');
}

sub start_load {
    my (%o) = @_;
    my @paths = @{ $o{paths} || [ '/v', '/v', '/v', '/p' ] };
    return $t->start_load(
        clients => 8, pause => 0.01, keepalive => 20, duration => 40,
        timeout => 5,
        request => sub {
            my ($c, $n) = @_;
            my $id = 1 + int rand $CUSTOMERS;
            return { path => $paths[ $n % @paths ], tag => $id,
                     headers => [ Cookie => "loyalty_id=c$id" ] };
        });
}

sub fd_count {
    my ($pid) = @_;
    opendir my $dh, "/proc/$pid/fd" or return -1;
    my $n = grep { /^\d+$/ } readdir $dh;
    closedir $dh;
    return $n;
}

sub redis_clients {
    my $list = $t->redis('CLIENT', 'LIST');
    my @c = grep { /^id=/ } split /\r?\n/, $list;
    my $subs = grep { /\bcmd=(?:p?subscribe)\b/ } @c;
    return (scalar(@c), $subs);
}

sub hmget_calls {
    my $info = $t->redis('INFO', 'commandstats');
    return $info =~ /^cmdstat_hmget:calls=(\d+)/m ? $1 : 0;
}

sub log_size { (-s $t->tmp . '/error.log') // 0 }

# error.log lines written since byte $off
sub log_since {
    my ($off) = @_;
    my $log = $t->error_log;
    return split /\n/, substr($log, $off // 0);
}

# the flood guard's cause of a module line (the spec's names)
my @CAUSES = (
    [ 'lookup timeout',        qr/loyalty redis "[^"]*" timed out after \d+ ms/ ],
    [ 'lookup failed',         qr/loyalty redis "[^"]*" lookup failed:/ ],
    [ 'redis connect failed',  qr/loyalty redis "[^"]*" connect failed:/ ],
    [ 'redis connect timeout', qr/loyalty redis "[^"]*" connect timed out/ ],
    [ 'redis connection lost', qr/loyalty redis "[^"]*" connection lost:/ ],
    [ 'redis stalled',         qr/loyalty redis "[^"]*" sent no reply for/ ],
    [ 'breaker open',          qr/circuit breaker open after/ ],
    [ 'breaker closed',        qr/circuit breaker closed/ ],
    [ 'redis subscribe refused', qr/SUBSCRIBE \S+ failed/ ],
    [ 'error reply',           qr/loyalty redis replied with an error/ ],
);

# module lines of the log since $off, parsed: { sec, level, pid, cause,
# suppressed => N for a summary line }; the config warning that the
# master repeats at each (re)load is not a worker's and is left out
sub module_lines {
    my ($off) = @_;
    my @out;
    for my $l (log_since($off)) {
        next unless $l =~ /loyalty/;
        next if $l =~ /nginx\.conf:\d+$/;
        my ($sec, $level, $pid, $msg) =
            $l =~ m{^(\d{4}/\d\d/\d\d \d\d:\d\d:\d\d) \[(\w+)\] (\d+)#\d+: (?:\*\d+ )?(.*)$}
            or next;
        my %e = (sec => $sec, level => $level, pid => $pid, line => $l);
        if ($msg =~ /^loyalty: (\d+) more "([^"]+)" messages suppressed/) {
            @e{qw(suppressed cause)} = ($1, $2);
        } else {
            my ($c) = map { $_->[0] } grep { $msg =~ $_->[1] } @CAUSES;
            unless (defined $c) {
                ($c = $msg) =~ s/, client: .*//;
                $c =~ s/\d+/N/g;
            }
            $e{cause} = $c;
        }
        push @out, \%e;
    }
    return @out;
}

# --- the checks shared by the fault scenarios ---------------------------------

# $events: [ { fault => time, recovery => time }, ... ]
sub check_fault {
    my ($name, $recs, $events, $off, $m0) = @_;
    my $n = @$recs;
    diag sprintf "%s: %d requests", $name, $n;
    cmp_ok $n, '>', 200, "$name: steady load ($n requests)";

    # -- every request served: no 5xx, no connection error, no retry
    my @failed = grep { ($_->{status} // 0) != 200 || defined $_->{error} }
                 @$recs;
    my @r5xx = grep { ($_->{status} // 0) >= 500 } @$recs;
    is scalar(@r5xx), 0, "$name: no 5xx";
    is scalar(@failed), 0, "$name: every request answered 200, none failed"
        or diag explain [ map { { path => $_->{path},
            status => $_->{status}, error => $_->{error},
            at => sprintf('%.3f', $_->{start} - $recs->[0]{start}) } }
            @failed[ 0 .. ($#failed < 4 ? $#failed : 4) ] ];
    is scalar(grep { $_->{retried} || $_->{reopened} } @$recs), 0,
        "$name: no keep-alive connection was dropped";

    # -- latency
    my ($max) = sort { $b <=> $a } map { $_->{elapsed} } @$recs;
    diag sprintf "%s: slowest response %.0f ms", $name, 1000 * $max;
    cmp_ok $max, '<=', ($TIMEOUT + $MARGIN) * $slow,
        "$name: every response within the timeout + margin";

    # -- statuses: personalized with the right tier, or failed open
    my (%st, @wrong);
    for my $r (@$recs) {
        my ($s, $tier) = outcome($r);
        $st{$s}++;
        push @wrong, "c$r->{tag}: $s $tier"
            if $s eq 'ok' && $tier ne tier_of($r->{tag})
            || $s ne 'ok' && $tier ne '';
    }
    diag "$name: statuses " . join ', ', map { "$_=$st{$_}" } sort keys %st;
    is_deeply [ grep { !/^(?:ok|timeout|error|bypass)$/ } sort keys %st ], [],
        "$name: only ok, timeout, error and bypass";
    is scalar(@wrong), 0, "$name: each ok carries its customer's tier"
        or diag explain [ @wrong[ 0 .. ($#wrong < 4 ? $#wrong : 4) ] ];
    my @before = grep { $_->{end} < $events->[0]{fault} } @$recs;
    is scalar(grep { (outcome($_))[0] ne 'ok' } @before), 0,
        "$name: all ok before the fault (" . scalar(@before) . ")";
    ok $st{bypass}, "$name: the breaker opened (bypass seen)";

    # -- recovery
    for my $i (0 .. $#$events) {
        my $ev = $events->[$i];
        my $r0 = $ev->{recovery};
        my $until = $i < $#$events ? $events->[$i + 1]{fault} : 9e9;
        my ($first) = grep { $_->{end} >= $r0 && (outcome($_))[0] eq 'ok' }
                      sort { $a->{end} <=> $b->{end} } @$recs;
        my $lat = $first ? $first->{end} - $r0 : undef;
        # requests over before the next fault began
        my @bad = grep { $_->{start} >= $r0 && $_->{end} < $until
                         && (outcome($_))[0] ne 'ok' } @$recs;
        my $full = @bad ? $bad[-1]{end} - $r0 : 0;
        my $label = @$events > 1 ? "$name (" . ($i + 1) . ")" : $name;
        diag sprintf "%s: first ok %.0f ms after the recovery, last "
            . "non-ok %.0f ms after it", $label,
            defined $lat ? 1000 * $lat : -1, 1000 * $full;
        ok defined $lat && $lat <= ($RECOVERY + $RECOVERY_MARGIN) * $slow,
            "$label: personalized again within 1 s of the recovery";
        cmp_ok $full, '<=', ($RECOVERY + $RECOVERY_MARGIN) * $slow,
            "$label: every worker personalizes again within 1 s";
        my @after = grep { $_->{start} >= $r0 + $RECOVERY + $RECOVERY_MARGIN
                           && $_->{end} < $until } @$recs;
        cmp_ok scalar(@after), '>', 20,
            "$label: load went on after the recovery";
    }

    check_log($name, $off, $m0, breaker => 1);
}

# the error log since $off: bounded, the breaker opened and closed
sub check_log {
    my ($name, $off, $m0, %o) = @_;

    # wait for the once-a-second tick to report what is left
    my ($m, $sum, @lines);
    $t->wait_for(sub {
        $m = metrics();
        @lines = module_lines($off);
        $sum = 0;
        $sum += $_->{suppressed} for grep { $_->{suppressed} } @lines;
        $sum == $m->{log_suppressed} - $m0->{log_suppressed};
    }, 3);

    my (%per, @flood);
    for my $e (@lines) {
        my $k = join '|', $e->{pid}, $e->{sec},
            ($e->{suppressed} ? 'summary: ' : '') . $e->{cause};
        push @flood, $e->{line} if ++$per{$k} == 2;
    }
    my %kinds;
    $kinds{ ($_->{suppressed} ? 'summary: ' : '') . $_->{cause} }++
        for @lines;
    diag "$name: log lines: "
        . join ', ', map { "$kinds{$_}x $_" } sort keys %kinds;
    is scalar(@flood), 0,
        "$name: at most one line per cause, second and worker"
        or diag join "\n", @flood[ 0 .. ($#flood < 5 ? $#flood : 5) ];

    my $held = $m->{log_suppressed} - $m0->{log_suppressed};
    diag "$name: $held lines suppressed, reported in "
        . scalar(grep { $_->{suppressed} } @lines) . " summary lines";
    is $sum, $held,
        "$name: the summary lines account for every suppressed line";
    ok $held > 0, "$name: lines were suppressed (and summarized)"
        if $o{breaker};

    return unless $o{breaker};

    my (%open, %closed);
    for my $e (@lines) {
        next if $e->{suppressed};
        $open{ $e->{pid} }++ if $e->{cause} eq 'breaker open';
        $closed{ $e->{pid} }++ if $e->{cause} eq 'breaker closed';
    }
    ok scalar(keys %open),
        "$name: \"circuit breaker open\" logged ("
        . join(', ', map { "worker $_: $open{$_}x" } sort keys %open) . ")";
    is_deeply [ grep { !$closed{$_} } sort keys %open ], [],
        "$name: each worker whose breaker opened logged "
        . "\"circuit breaker closed\"";
    cmp_ok $m->{breaker_opens} - $m0->{breaker_opens}, '>=',
        scalar(keys %open), "$name: breaker opens counted";
    is $m->{breakers_open}, 0, "$name: no breaker left open";
}

# runs $fault (which returns the fault/recovery times) under load
sub fault_scenario {
    my ($name, $fault) = @_;
    my $off = log_size();
    my $m0 = metrics();
    my $load = start_load();
    sleep 0.5;                    # steady state first
    my @events = $fault->();
    sleep $RECOVERY + $RECOVERY_MARGIN + 0.5;
    my $recs = $t->stop_load($load);
    check_fault($name, $recs, \@events, $off, $m0);
}

# warm up: every worker connected, everything personalized
ok $t->wait_for(sub { (redis_clients())[0] == 2 * 3 + 1 }, 5),
    'two workers: two connections and a subscriber each';
is((outcome({ path => '/v', body => $t->get('/v',
        Cookie => 'loyalty_id=c7')->{body} }))[0], 'ok', 'healthy: ok');

# --- 1. Redis killed, restarted on the same port ------------------------------

fault_scenario('Redis killed', sub {
    my $f = time;
    $t->stop_redis;
    sleep 1.0;
    $t->start_redis(port => $rport);     # returns once Redis answers
    return { fault => $f, recovery => time };
});

# --- 2. Redis hung: SIGSTOP, SIGCONT -------------------------------------------

# longer than the 1 s after which a silent connection is dropped
fault_scenario('Redis hung', sub {
    my $f = time;
    $t->redis_signal('STOP');
    sleep 1.5;
    $t->redis_signal('CONT');
    return { fault => $f, recovery => time };
});

# --- 3. Redis slow: DEBUG SLEEP 0.5, three times ------------------------------

fault_scenario('Redis slow', sub {
    my @ev;
    for (1 .. 3) {
        my $f = time;
        # a separate connection; returns when Redis wakes up
        $t->redis('DEBUG', 'SLEEP', '0.5');
        push @ev, { fault => $f, recovery => time };
        sleep 1.5 unless $_ == 3;
    }
    return @ev;
});

# --- 4. a server answering garbage, one resetting connections ------------------

# in place of Redis on its port, then Redis again
for my $case ([ 'garbage', LoyaltyTest::fake_garbage() ],
              [ 'reset', LoyaltyTest::fake_reset() ])
{
    my ($what, $handler) = @$case;
    fault_scenario("Redis replaced by a $what server", sub {
        my $f = time;
        $t->stop_redis;
        $t->fake_server($handler, port => $rport);
        sleep 1.2;
        $t->stop_fake_server($rport);
        $t->start_redis(port => $rport);
        return { fault => $f, recovery => time };
    });
}

# --- 5. 20 reloads under load ----------------------------------------------------

{
    my $name = 'reloads';
    ok $t->wait_for(sub {
        my ($n, $subs) = redis_clients();
        $n == 2 * 3 + 1 && $subs == 2;
    }, 5), "$name: steady: 2 connections and a subscriber per worker";

    # cache an id that the load will not ask for
    like $t->get('/c', Cookie => 'loyalty_id=c99')->{body},
        qr/^status=ok tier=${\ tier_of(99)} cache=MISS$/m,
        "$name: c99 looked up through the cache";
    like $t->get('/c', Cookie => 'loyalty_id=c99')->{body},
        qr/^status=ok tier=${\ tier_of(99)} cache=HIT$/m,
        "$name: c99 now cached";

    my $master = $t->nginx_pid;
    my $fd_master = fd_count($master);
    my @fd_workers = sort { $a <=> $b } map { fd_count($_) } $t->worker_pids;
    my @old = $t->worker_pids;
    my $off = log_size();
    my $m0 = metrics();

    my $load = start_load(paths => [ '/v', '/p', '/c', '/v' ]);
    sleep 0.3;
    my $reloads = 0;
    my $t0 = time;
    for (1 .. 20) {
        $reloads++ if eval { $t->reload; 1 };
        sleep 0.1;
    }
    my $took = time - $t0;
    sleep 0.3;
    my $recs = $t->stop_load($load);
    is $reloads, 20, "$name: 20 reloads done";
    diag sprintf "%s: 20 reloads in %.1f s, %d requests", $name, $took,
        scalar @$recs;

    my @failed = grep { ($_->{status} // 0) != 200 || defined $_->{error} }
                 @$recs;
    is scalar(@failed), 0, "$name: every request answered 200, none failed"
        or diag explain [ map { { path => $_->{path},
            status => $_->{status}, error => $_->{error} } }
            @failed[ 0 .. ($#failed < 4 ? $#failed : 4) ] ];
    is scalar(grep { ($_->{status} // 0) >= 500 } @$recs), 0,
        "$name: no 5xx";
    my $retried = grep { $_->{retried} } @$recs;
    my $reopened = grep { $_->{reopened} } @$recs;
    diag "$name: $reopened keep-alive connections closed by a shutting "
        . "down worker while idle, $retried requests sent again because it "
        . "closed them as they were sent";
    my ($max) = sort { $b <=> $a } map { $_->{elapsed} } @$recs;
    diag sprintf "%s: slowest response %.0f ms", $name, 1000 * $max;
    cmp_ok $max, '<=', ($TIMEOUT + $MARGIN) * $slow,
        "$name: every response within the timeout + margin";
    my (%st, @wrong);
    for my $r (@$recs) {
        my ($s, $tier) = outcome($r);
        $st{$s}++;
        push @wrong, "c$r->{tag}: $s $tier"
            if $s ne 'ok' || $tier ne tier_of($r->{tag});
    }
    diag "$name: statuses " . join ', ', map { "$_=$st{$_}" } sort keys %st;
    is scalar(@wrong), 0,
        "$name: every response personalized with its customer's tier"
        or diag explain [ @wrong[ 0 .. ($#wrong < 4 ? $#wrong : 4) ] ];

    # old workers gone, their Redis connections closed
    ok $t->wait_for(sub { $t->worker_pids(all => 1) == 2 }, 10),
        "$name: the old workers exited";
    ok !(grep { kill 0, $_ } @old), "$name: the first workers are gone";
    my ($n, $subs);
    ok $t->wait_for(sub {
        ($n, $subs) = redis_clients();
        $n == 2 * 3 + 1 && $subs == 2;
    }, 5), "$name: Redis sees 2 connections and a subscriber per worker "
        . "again (has $n, $subs subscribers)";

    # no descriptor leak
    is fd_count($master), $fd_master,
        "$name: master fds unchanged ($fd_master)";
    my @fd_now = sort { $a <=> $b } map { fd_count($_) } $t->worker_pids;
    is_deeply \@fd_now, \@fd_workers,
        "$name: worker fds unchanged (@fd_workers)";

    # the shared cache kept its entries: a HIT, no HMGET
    my $h0 = hmget_calls();
    my @hits = map { $t->get('/c', Cookie => 'loyalty_id=c99')->{body} }
               1 .. 4;
    is scalar(grep { /^status=ok tier=${\ tier_of(99)} cache=HIT$/m } @hits),
        4, "$name: c99 is still a cache HIT on the new workers";
    is hmget_calls(), $h0, "$name: ... without any HMGET";

    my @bad = grep { $_->{level} =~ /^(?:warn|error|crit|alert|emerg)$/ }
              module_lines($off);
    is scalar(@bad), 0, "$name: no module warning or error in the log"
        or diag join "\n", map { $_->{line} } @bad[ 0 .. ($#bad < 5 ? $#bad : 5) ];
    check_log($name, $off, $m0);
}

# --- 6. graceful shutdown does not hang ----------------------------------------

for my $hung (1, 0) {
    my $name = $hung ? 'QUIT, Redis hung' : 'QUIT, Redis running';
    $t->start_nginx unless $t->nginx_pid;
    ok $t->wait_for(sub { (redis_clients())[0] == 2 * 3 + 1 }, 5),
        "$name: workers connected";
    my @w = $t->worker_pids;
    $t->redis_signal('STOP') if $hung;
    my @h = map {
        $t->start_request(path => $_ % 2 ? '/v' : '/p',
                          headers => [ Cookie => "loyalty_id=c$_" ])
    } 1 .. 6;
    sleep 0.02;
    my $t0 = time;
    $t->stop_nginx(timeout => 5);
    my $took = time - $t0;
    diag sprintf "%s: nginx exited %.0f ms after QUIT", $name, 1000 * $took;
    cmp_ok $took, '<', 3 * $slow, "$name: the master exits within 3 s";
    ok !(grep { kill 0, $_ } @w), "$name: the workers are gone";
    my @r = map { $t->finish_request($_, timeout => 2) } @h;
    is scalar(grep { ($_->{status} // 0) == 200 } @r), 6,
        "$name: the requests in flight were answered";
    if ($hung) {
        $t->redis_signal('CONT');
        ok $t->wait_for(sub { eval { $t->redis('PING') } }, 3),
            "$name: Redis answers again";
    }
}

$t->check_error_log;
done_testing;
