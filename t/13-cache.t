#!/usr/bin/perl
# The shared record cache (loyalty_cache_zone, loyalty_cache): HIT/MISS/
# EXPIRED shared by the workers, ttl and negative_ttl, errors never
# cached, invalidation by PUBLISH (default and custom channel, bad
# payloads), entries living at most 1 s while SUBSCRIBE is refused, stale
# records served when Redis hangs, the circuit breaker, coalesced lookups,
# LRU eviction in a tiny zone, a reload keeping the entries, nginx -t
# errors, and the metrics after a scripted sequence.  Redis is asked or
# not according to INFO commandstats (cmdstat_hmget calls).

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP;
use Time::HiRes qw(time sleep);
use LoyaltyTest;

my $t = LoyaltyTest->new;
$t->start_redis(extra => [ '--enable-debug-command', 'yes' ]);
$t->start_backend;

my $LINE = 'return 200 "status=$loyalty_status cache=$loyalty_cache_status '
         . 'tier=$loyalty_tier points=$loyalty_points pid=$pid\n";';

# --- helpers -----------------------------------------------------------------

sub customer {
    my ($id, %f) = @_;
    $t->redis('DEL', "loyalty:customer:$id");
    $t->redis('HSET', "loyalty:customer:$id", %f);
}

# GET with the customer cookie; the body's fields, and "sum":
# "status cache tier points" with '-' for an empty value
sub look {
    my ($id, %o) = @_;
    my $r = $t->request(path => $o{path} // '/', port => $o{port} // $t->port,
                        headers => [ defined $id ? (Cookie => "loyalty_id=$id")
                                                 : () ]);
    my %f = (http => $r->{status} // 0, r => $r);
    my $body = $r->{body} // '';
    $f{$1} = $2 while $body =~ /\b(status|cache|tier|points|pid)=(\S*)/g;
    $f{sum} = join ' ', map { defined $f{$_} && length $f{$_} ? $f{$_} : '-' }
                        qw(status cache tier points);
    return \%f;
}

sub expect {
    my ($id, $want, $name, %o) = @_;
    my $f = look($id, %o);
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    is $f->{sum}, $want, $name
        or diag "response: " . ($f->{r}{raw} || $f->{r}{error} || '');
    return $f;
}

sub hmgets {
    my ($n) = $t->redis('INFO', 'commandstats') =~ /cmdstat_hmget:calls=(\d+)/;
    return $n // 0;
}

# HMGETs Redis received since the previous call
my $hm_base = hmgets();
sub new_hmgets {
    my $n = hmgets();
    my $d = $n - $hm_base;
    $hm_base = $n;
    return $d;
}

sub numsub {
    my ($channel) = @_;
    my $r = $t->redis('PUBSUB', 'NUMSUB', $channel);
    return $r->[1];
}

sub metrics {
    my %m;
    for (split /\n/, $t->get('/metrics')->{body} // '') {
        $m{$1} = $2 if /^([^#\s]\S*) (\S+)$/;
    }
    return \%m;
}

sub m_cache { my ($m, $s) = @_; $m->{"nginx_loyalty_cache_lookups_total{status=\"$s\"}"} }
sub m_lookups { my ($m, $s) = @_; $m->{"nginx_loyalty_lookups_total{status=\"$s\"}"} }

sub log_count {
    my ($re) = @_;
    return scalar $t->log_lines($re);
}

# (re)start nginx with a configuration; the previous one's subscriber
# connections must be gone so that NUMSUB counts only the new workers
my @CHANNELS = ('loyalty:invalidate', 'shop:evict');
sub run_nginx {
    my ($conf, %o) = @_;
    if ($t->nginx_pid) {
        my $st = $t->stop_nginx;
        is $st, 0, 'previous nginx stopped cleanly';
    }
    ok $t->wait_for(sub { !grep { numsub($_) } @CHANNELS }, 5),
        'no subscriber left from a previous nginx';
    $conf =~ s/\@LINE\@/$LINE/g;
    $t->write_config($conf, %o);
    $t->start_nginx;
    my $workers = $o{workers} // 1;
    ok $t->wait_for(sub { $t->worker_pids == $workers }, 5),
        "$workers worker(s) running";
    if (my $ch = $o{subscribed}) {
        ok $t->wait_for(sub { numsub($ch) == $workers }, 5),
            "every worker subscribed to $ch ($workers)";
    }
}

# =============================================================================
# A: two workers, zone "main" (ttl 30s, negative 1s) and zone "short"
#    (ttl 1s, negative 30s)
# =============================================================================

run_nginx(<<'CONF', workers => 2, subscribed => 'loyalty:invalidate');
loyalty_cache_zone main:1m ttl=30s negative_ttl=1s;
loyalty_cache_zone short:1m ttl=1s negative_ttl=30s;
loyalty_redis 127.0.0.1:%%REDIS_PORT%%;
loyalty_redis_timeout 1s;
loyalty_offers_refresh 1h;

server {
    listen 127.0.0.1:%%PORT%% reuseport;

    location / { loyalty on; loyalty_cache main; @LINE@ }
    location /short { loyalty on; loyalty_cache short; @LINE@ }
    location /nocache { loyalty on; @LINE@ }
    location /json {
        loyalty on;
        loyalty_cache main;
        return 200 "cache=$loyalty_cache_status json=$loyalty_json\n";
    }
    location = /metrics { loyalty_metrics; }
}
CONF

# --- 1. MISS, then HIT from both workers without Redis -----------------------

customer(42, tier => 'gold', points => 1234);
new_hmgets();
my $f = expect(42, 'ok MISS gold 1234', 'first lookup: MISS');
is new_hmgets(), 1, 'the MISS asked Redis (1 HMGET)';

my (%hit_by, @not_hit);
my $deadline = time + 15;
while (keys %hit_by < 2 && time < $deadline) {
    my $g = look(42);
    push @not_hit, $g->{sum} unless $g->{sum} eq 'ok HIT gold 1234';
    $hit_by{ $g->{pid} // '?' }++;
}
is_deeply \@not_hit, [], 'every later lookup: HIT gold 1234';
is_deeply [ sort keys %hit_by ], [ sort $t->worker_pids ],
    'both workers answered from the shared cache';
ok exists $hit_by{ (grep { $_ != $f->{pid} } $t->worker_pids)[0] // 0 },
    'the worker that did not ask Redis had the entry';
is new_hmgets(), 0, 'no HMGET for any HIT';

expect(undef, 'anonymous - - -', 'anonymous: no cache status');
expect(42, 'ok - gold 1234', 'location without loyalty_cache: no cache status',
       path => '/nocache');
is new_hmgets(), 1, 'location without loyalty_cache asks Redis';

# every field is cached, not only tier and points
customer(43, tier => 'silver', points => 77, cashback => '12.50',
         segments => 'vip,newsletter', referral_code => 'ANNA-7F3');
my $j1 = $t->get('/json', Cookie => 'loyalty_id=43')->{body} // '';
my $j2 = $t->get('/json', Cookie => 'loyalty_id=43')->{body} // '';
like $j1, qr/^cache=MISS json=\{.*"cashback":12\.50.*"ANNA-7F3"/,
    '$loyalty_json from Redis has the optional fields';
is $j2 =~ s/^cache=HIT //r, $j1 =~ s/^cache=MISS //r,
    '$loyalty_json from the cache (HIT) is the same';
is new_hmgets(), 1, 'one HMGET for both';
expect(43, 'ok HIT silver 77', 'another location using the zone: HIT');

# --- 2. ttl and negative_ttl ---------------------------------------------------

customer(60, tier => 'silver', points => 10);
customer(61, tier => 'bronze', points => 1);
$t->redis('DEL', map { "loyalty:customer:ghost$_" } 1 .. 5);
new_hmgets();
expect(60, 'ok MISS silver 10', 'short: MISS', path => '/short');
expect(61, 'ok MISS bronze 1', 'main: MISS');
expect('ghost1', 'unknown MISS - -', 'main: unknown id, MISS');
expect('ghost2', 'unknown MISS - -', 'short: unknown id, MISS', path => '/short');
expect('ghost3', 'unknown MISS - -', 'main: another unknown id, MISS');
expect('ghost5', 'unknown MISS - -', 'main: a third unknown id, MISS');
my $stored = time;
is new_hmgets(), 6, 'six HMGETs for six MISSes';

expect(60, 'ok HIT silver 10', 'short: HIT', path => '/short');
expect('ghost1', 'unknown HIT - -', 'main: unknown id cached: HIT, status unknown');
expect('ghost2', 'unknown HIT - -', 'short: unknown id cached', path => '/short');
is new_hmgets(), 0, 'HITs for known and unknown ids: no HMGET';

customer(60, tier => 'gold', points => 20);
customer('ghost1', tier => 'bronze', points => 5);
customer('ghost2', tier => 'bronze', points => 6);
expect(60, 'ok HIT silver 10', 'short: changed in Redis, still cached',
       path => '/short');
expect('ghost1', 'unknown HIT - -',
       'main: created in Redis, negative entry still cached');
is new_hmgets(), 0, 'still no HMGET';

sleep 1.3 - (time - $stored) if time - $stored < 1.3;
customer('ghost3', tier => 'silver', points => 7);   # after its entry expired

expect(60, 'ok EXPIRED gold 20', 'short, past ttl=1s: EXPIRED, new values',
       path => '/short');
is new_hmgets(), 1, 'EXPIRED asked Redis';
expect(60, 'ok HIT gold 20', 'short: refreshed entry is a HIT', path => '/short');
expect(61, 'ok HIT bronze 1', 'main (ttl=30s) after 1.3 s: still HIT');
expect('ghost2', 'unknown HIT - -',
       'short (negative_ttl=30s) after 1.3 s: negative entry still HIT',
       path => '/short');
is new_hmgets(), 0, 'no HMGET for these';
expect('ghost1', 'ok EXPIRED bronze 5',
       'main, past negative_ttl=1s: asks again and finds the new customer');
expect('ghost3', 'ok EXPIRED silver 7',
       'customer created after the negative entry expired is found');
expect('ghost5', 'unknown EXPIRED - -',
       'still unknown after negative_ttl: asked again');
is new_hmgets(), 3, 'three HMGETs';
expect('ghost5', 'unknown HIT - -', 'the refreshed negative entry is a HIT');
is new_hmgets(), 0, 'no HMGET';

# --- 3. errors are never cached ---------------------------------------------

$t->redis('DEL', 'loyalty:customer:50', 'loyalty:customer:52');
$t->redis('SET', 'loyalty:customer:50', 'a string');
$t->redis('HSET', 'loyalty:customer:52', 'tier', 'gold');   # no points
new_hmgets();
expect(50, 'error MISS - -', 'WRONGTYPE: error');
expect(50, 'error MISS - -', 'WRONGTYPE again: not cached, MISS');
expect(52, 'error MISS - -', 'invalid record: error');
expect(52, 'error MISS - -', 'invalid record again: not cached, MISS');
is new_hmgets(), 4, 'every error lookup asked Redis';
$t->redis('DEL', 'loyalty:customer:50');
customer(50, tier => 'platinum', points => 9);
expect(50, 'ok MISS platinum 9', 'fixed in Redis: found at once');

# --- 4. invalidation -------------------------------------------------------------

is numsub('loyalty:invalidate'), 2, 'PUBSUB NUMSUB: one subscriber per worker';

customer(70, tier => 'gold', points => 100);
expect(70, 'ok MISS gold 100', 'invalidation: MISS');
expect(70, 'ok HIT gold 100', 'invalidation: HIT');
customer(70, tier => 'gold', points => 200);
expect(70, 'ok HIT gold 100', 'changed in Redis: the cached value still');

my $inv = metrics()->{nginx_loyalty_invalidations_total};
is $t->redis('PUBLISH', 'loyalty:invalidate', '70'), 2,
    'PUBLISH loyalty:invalidate 70 reaches both workers';
ok $t->wait_for(sub {
        metrics()->{nginx_loyalty_invalidations_total} == $inv + 2 }, 5),
    'both workers received the message';
new_hmgets();
expect(70, 'ok MISS gold 200', 'after PUBLISH: MISS with the new value');
is new_hmgets(), 1, 'asked Redis once';
expect(70, 'ok HIT gold 200', 'then HIT again');

# evicts from every zone with that Redis and prefix: the negative entry
# of "short" (30s)
$t->redis('DEL', 'loyalty:customer:ghost4');
expect('ghost4', 'unknown MISS - -', 'short: unknown id', path => '/short');
customer('ghost4', tier => 'silver', points => 44);
expect('ghost4', 'unknown HIT - -', 'short: negative entry cached',
       path => '/short');
$inv = metrics()->{nginx_loyalty_invalidations_total};
$t->redis('PUBLISH', 'loyalty:invalidate', 'ghost4');
ok $t->wait_for(sub {
        metrics()->{nginx_loyalty_invalidations_total} == $inv + 2 }, 5),
    'invalidation of ghost4 received';
expect('ghost4', 'ok MISS silver 44',
       'negative entry invalidated: the new customer is found', path => '/short');

# payloads that are not a customer id
my @pids = sort $t->worker_pids;
my $ignored_re = qr/\[info\].*loyalty invalidation ignored: not a customer id/;
my $ignored = log_count($ignored_re);
my @bad_payloads = ('', 'not an id!', 'loyalty:customer:70', '7' x 65,
                    "70\n", "70 71");
for my $p (@bad_payloads) {
    is $t->redis('PUBLISH', 'loyalty:invalidate', $p), 2,
        'bad payload ' . JSON::PP->new->allow_nonref->encode($p) . ' published';
}
ok $t->wait_for(sub { log_count($ignored_re) >= $ignored + 2 * @bad_payloads },
                5),
    'every bad payload ignored by both workers, logged at info';
expect(70, 'ok HIT gold 200', 'bad payloads evicted nothing');
is_deeply [ sort $t->worker_pids ], \@pids, 'the workers are still the same';
is numsub('loyalty:invalidate'), 2, 'still subscribed';
$inv = metrics()->{nginx_loyalty_invalidations_total};
$t->redis('PUBLISH', 'loyalty:invalidate', '70');
ok $t->wait_for(sub {
        metrics()->{nginx_loyalty_invalidations_total} == $inv + 2 }, 5),
    'a valid message after the bad ones is received';
expect(70, 'ok MISS gold 200', 'and evicts');

# --- 9. reload keeps the entries ---------------------------------------------

customer(90, tier => 'gold', points => 900);
expect(90, 'ok MISS gold 900', 'before reload: MISS');
expect(90, 'ok HIT gold 900', 'before reload: HIT');
my %old = map { $_ => 1 } $t->worker_pids;
$t->reload;
ok $t->wait_for(sub {
        my @all = $t->worker_pids(all => 1);
        @all == 2 && !grep { $old{$_} } @all }, 10),
    'reload: the old workers exited (subscriber connections do not hold them)';
ok $t->wait_for(sub { numsub('loyalty:invalidate') == 2 }, 5),
    'reload: the new workers subscribed';
new_hmgets();
my %seen;
for (1 .. 6) {
    my $g = expect(90, 'ok HIT gold 900', 'after reload: HIT');
    $seen{ $g->{pid} // '?' } = 1;
}
ok !grep({ $old{$_} } keys %seen), 'answered by new workers';
is new_hmgets(), 0, 'after reload: no HMGET';
$inv = metrics()->{nginx_loyalty_invalidations_total};
is $t->redis('PUBLISH', 'loyalty:invalidate', '90'), 2,
    'after reload: invalidation reaches both new workers';
ok $t->wait_for(sub {
        metrics()->{nginx_loyalty_invalidations_total} == $inv + 2 }, 5),
    'after reload: invalidation received';
expect(90, 'ok MISS gold 900', 'after reload: invalidation evicts');

# =============================================================================
# B: a custom invalidation channel
# =============================================================================

run_nginx(<<'CONF', subscribed => 'shop:evict');
loyalty_invalidate_channel shop:evict;
loyalty_cache_zone c:1m ttl=30s;
loyalty_redis 127.0.0.1:%%REDIS_PORT%%;
loyalty_offers_refresh 1h;

server {
    listen 127.0.0.1:%%PORT%%;
    location / { loyalty on; loyalty_cache c; @LINE@ }
    location = /metrics { loyalty_metrics; }
}
CONF

is numsub('loyalty:invalidate'), 0, 'custom channel: nobody on the default one';
customer(80, tier => 'gold', points => 1);
expect(80, 'ok MISS gold 1', 'custom channel: MISS');
customer(80, tier => 'gold', points => 2);
is $t->redis('PUBLISH', 'loyalty:invalidate', '80'), 0,
    'PUBLISH on the default channel reaches nobody';
expect(80, 'ok HIT gold 1', 'so the entry stays');
is $t->redis('PUBLISH', 'shop:evict', '80'), 1,
    'PUBLISH shop:evict 80 reaches the worker';
ok $t->wait_for(sub { metrics()->{nginx_loyalty_invalidations_total} == 1 }, 5),
    'custom channel: message received';
expect(80, 'ok MISS gold 2', 'custom channel: evicted, new value');

# =============================================================================
# C: SUBSCRIBE refused (ACL without channels): entries live at most 1 s
# =============================================================================

$t->redis('ACL', 'SETUSER', 'u', 'on', '>pw', '~*', '+@all', 'resetchannels');
# hiredis 0.14 drops a subscriber connection whose SUBSCRIBE gets an error
# reply, so the refusal is logged as the loss of that connection
my $refused_re = qr/\[error\].*loyalty redis "127\.0\.0\.1:@{[ $t->redis_port ]}".* NOPERM /;
my $refused = log_count($refused_re);

run_nginx(<<'CONF');
loyalty_cache_zone acl:1m ttl=30s;
loyalty_redis 127.0.0.1:%%REDIS_PORT%%;
loyalty_redis_auth u pw;
loyalty_offers_refresh 1h;

server {
    listen 127.0.0.1:%%PORT%%;
    location / { loyalty on; loyalty_cache acl; @LINE@ }
    location = /metrics { loyalty_metrics; }
}
CONF

ok $t->wait_for(sub { log_count($refused_re) > $refused }, 5),
    'ACL: the SUBSCRIBE refusal is logged';
is numsub('loyalty:invalidate'), 0, 'ACL: no subscriber';

customer(85, tier => 'gold', points => 85);
new_hmgets();
expect(85, 'ok MISS gold 85', 'ACL: lookups work, MISS');
$stored = time;
expect(85, 'ok HIT gold 85', 'ACL: HIT right away (ttl=30s)');
is new_hmgets(), 1, 'ACL: one HMGET';
sleep 1.25 - (time - $stored) if time - $stored < 1.25;
expect(85, 'ok EXPIRED gold 85',
       'ACL: 1.25 s later the entry is no longer fresh (at most 1 s)');
is new_hmgets(), 1, 'ACL: Redis asked again';
expect(85, 'ok HIT gold 85', 'ACL: the refreshed entry is a HIT');

# =============================================================================
# D: stale records while Redis hangs (no breaker)
# =============================================================================

run_nginx(<<'CONF', subscribed => 'loyalty:invalidate');
loyalty_cache_zone s:1m ttl=1s;
loyalty_cache s;
loyalty_cache_stale 3s;
loyalty_redis 127.0.0.1:%%REDIS_PORT%%;
loyalty_redis_timeout 200ms;
loyalty_offers_refresh 1h;

server {
    listen 127.0.0.1:%%PORT%%;
    loyalty on;
    loyalty_response_headers on;

    location / { @LINE@ }
    location /app {
        add_header X-Cache $loyalty_cache_status;
        proxy_pass http://127.0.0.1:%%BACKEND_PORT%%;
    }
}
CONF

customer(1, tier => 'gold', points => 1234);
$t->redis('DEL', 'loyalty:customer:2');
expect(1, 'ok MISS gold 1234', 'stale: MISS fills the cache');
$stored = time;
customer(1, tier => 'platinum', points => 5000);
sleep 1.3 - (time - $stored) if time - $stored < 1.3;

$t->redis_signal('STOP');
my $r = $t->get('/app', Cookie => 'loyalty_id=1');
is $r->{status}, 200, 'stale, proxied: 200';
is $r->{headers}{'x-cache'}, 'STALE', 'stale, proxied: cache status STALE';
like $r->{body}, qr/^X-Loyalty-Status: timeout$/mi,
    'stale, proxied: the upstream sees status timeout';
like $r->{body}, qr/^X-Loyalty-Tier: gold$/mi,
    'stale, proxied: the upstream gets the stale tier';
like $r->{body}, qr/^X-Loyalty-Points: 1234$/mi,
    'stale, proxied: the upstream gets the stale points';
is $r->{headers}{'x-loyalty-tier'}, 'gold', 'stale: X-Loyalty-Tier response header';
is $r->{headers}{'x-loyalty-points'}, '1234',
    'stale: X-Loyalty-Points response header';
expect(1, 'timeout STALE gold 1234', 'stale: the old record with status timeout');
my $g2 = look(2);
is $g2->{sum}, 'timeout MISS - -', 'no entry: timeout, nothing served';
ok !exists $g2->{r}{headers}{'x-loyalty-tier'}, 'no entry: no X-Loyalty-Tier';

sleep 4.5 - (time - $stored) if time - $stored < 4.5;
$f = look(1);
like $f->{sum}, qr/^timeout MISS - -$/,
    'beyond ttl + loyalty_cache_stale: MISS, no record';
$t->redis_signal('CONT');
ok $t->wait_for(sub { look(1)->{sum} eq 'ok MISS platinum 5000' }, 5),
    'after SIGCONT: fresh values from Redis';

# =============================================================================
# F: breaker, coalescing and the metrics after a scripted sequence
# =============================================================================

my $breaker_open_re = qr/\[error\].*loyalty redis "127\.0\.0\.1:\d+": circuit breaker open after 2 consecutive failures, lookups bypass Redis, probing every 5000 ms/;
my $breaker_closed_re = qr/\[notice\].*loyalty redis "127\.0\.0\.1:\d+": circuit breaker closed, Redis answers again/;
my @breaker_logs = (log_count($breaker_open_re), log_count($breaker_closed_re));

run_nginx(<<'CONF', subscribed => 'loyalty:invalidate');
loyalty_cache_zone m:1m ttl=1s negative_ttl=1s;
loyalty_redis 127.0.0.1:%%REDIS_PORT%%;
loyalty_redis_breaker failures=2 cooldown=5s;
loyalty_cache_stale 30s;
loyalty_offers_refresh 1h;

server {
    listen 127.0.0.1:%%PORT%%;
    location / {
        loyalty on; loyalty_cache m; loyalty_redis_timeout 200ms; @LINE@
    }
    location /co {
        loyalty on; loyalty_cache m; loyalty_redis_timeout 1s; @LINE@
    }
    location = /metrics { loyalty_metrics; }
}
CONF

my %cache = map { $_ => 0 } qw(hit miss expired stale bypass);
my %lookups = map { $_ => 0 } qw(ok anonymous invalid unknown timeout error
                                 holdout bypass);
my $m = metrics();
is_deeply { map { $_ => m_cache($m, $_) } keys %cache }, \%cache,
    'metrics: cache counters start at 0';

sub step {
    my ($id, $want, $name, %o) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    my ($status, $cs) = split / /, $want;
    $lookups{$status}++;
    $cache{ lc $cs }++;
    return expect($id, $want, $name, %o);
}

customer($_, tier => "t$_", points => 100 + $_) for 1 .. 8;
$t->redis('DEL', map { "loyalty:customer:$_" } 9, 10, 'nobody');
new_hmgets();
step(1, 'ok MISS t1 101', 'metrics run: MISS');
step(1, 'ok HIT t1 101', 'metrics run: HIT');
step('nobody', 'unknown MISS - -', 'metrics run: unknown MISS');
step('nobody', 'unknown HIT - -', 'metrics run: unknown HIT');
is $t->redis('PUBLISH', 'loyalty:invalidate', '1'), 1, 'invalidate 1';
ok $t->wait_for(sub { metrics()->{nginx_loyalty_invalidations_total} == 1 }, 5),
    'metrics run: invalidation received';
step(1, 'ok MISS t1 101', 'metrics run: invalidated: MISS');
is new_hmgets(), 3, 'metrics run: 3 HMGETs so far';

# --- 7. coalescing -----------------------------------------------------------

sub held {
    my ($reqs) = @_;
    my $h = $t->redis_command_start('DEBUG', 'SLEEP', '0.5');
    sleep 0.05;     # Redis is asleep before the requests are sent
    my $res = $t->concurrent($reqs);
    is $t->redis_command_finish($h), 'OK', 'DEBUG SLEEP 0.5 done';
    return $res;
}

my $co = metrics()->{nginx_loyalty_coalesced_total};
is $co, 0, 'coalesced: 0 before';
my $res = held([ map { { path => '/co', headers => [ Cookie => 'loyalty_id=2' ] } }
                 1 .. 20 ]);
my @sums = map { my $b = $_->{body} // '';
                 join ' ', map { $b =~ /\b$_=(\S+)/ ? $1 : '-' }
                           qw(status cache tier points) } @$res;
is_deeply \@sums, [ ('ok MISS t2 102') x 20 ],
    'coalesced: all 20 concurrent lookups ok, right record';
is new_hmgets(), 1, 'coalesced: exactly 1 HMGET for 20 requests';
is metrics()->{nginx_loyalty_coalesced_total}, 19,
    'coalesced: nginx_loyalty_coalesced_total = 19';
$lookups{ok} += 20;
$cache{miss} += 20;

$res = held([ map { { path => '/co', headers => [ Cookie => "loyalty_id=$_" ] } }
              3 .. 8 ]);
@sums = map { my $b = $_->{body} // '';
              join ' ', map { $b =~ /\b$_=(\S+)/ ? $1 : '-' }
                        qw(status cache tier points) } @$res;
is_deeply \@sums, [ map { "ok MISS t$_ " . (100 + $_) } 3 .. 8 ],
    'different ids at once: each gets its own record';
is new_hmgets(), 6, 'different ids are not coalesced: 6 HMGETs';
is metrics()->{nginx_loyalty_coalesced_total}, 19,
    'different ids: coalesced unchanged';
$lookups{ok} += 6;
$cache{miss} += 6;

# --- expiry, stale and the breaker -----------------------------------------

$stored = time;
sleep 1.2;
step(1, 'ok EXPIRED t1 101', 'metrics run: EXPIRED');
$stored = time;
sleep 1.2;

$t->redis_signal('STOP');
step(1, 'timeout STALE t1 101', 'Redis hung: timeout, STALE record (failure 1)');
step(9, 'timeout MISS - -', 'Redis hung: no entry, timeout (failure 2)');
step(1, 'bypass STALE t1 101', 'breaker open: bypass, STALE record');
step(10, 'bypass BYPASS - -', 'breaker open, no entry: BYPASS');
step(3, 'bypass STALE t3 103', 'breaker open: another stale record');
$m = metrics();
is $m->{nginx_loyalty_breaker_opens_total}, 1, 'breaker_opens_total = 1';
is $m->{nginx_loyalty_breakers_open}, 1, 'breakers_open = 1';
ok $t->wait_for(sub { log_count($breaker_open_re) > $breaker_logs[0] }, 3),
    'breaker open is logged';
$t->redis_signal('CONT');
ok $t->wait_for(sub { metrics()->{nginx_loyalty_breakers_open} == 0 }, 6),
    'after SIGCONT: the breaker closes (a late reply or the probe)';
ok $t->wait_for(sub { log_count($breaker_closed_re) > $breaker_logs[1] }, 3),
    'breaker closed is logged';

# --- 11. the counters ----------------------------------------------------------

$m = metrics();
is_deeply { map { $_ => m_cache($m, $_) } keys %cache }, \%cache,
    'nginx_loyalty_cache_lookups_total by status: '
    . join(', ', map { "$_=$cache{$_}" } sort keys %cache);
is_deeply { map { $_ => m_lookups($m, $_) } keys %lookups }, \%lookups,
    'nginx_loyalty_lookups_total by status: '
    . join(', ', map { "$_=$lookups{$_}" } grep { $lookups{$_} } sort keys %lookups);
is $m->{nginx_loyalty_coalesced_total}, 19, 'coalesced_total = 19';
is $m->{nginx_loyalty_invalidations_total}, 1, 'invalidations_total = 1';
is $m->{nginx_loyalty_breaker_opens_total}, 1, 'breaker_opens_total = 1';
is $m->{nginx_loyalty_breakers_open}, 0, 'breakers_open = 0';

my $js = eval { decode_json($t->get('/metrics?format=json')->{body}) } || {};
is_deeply $js->{cache}, \%cache, 'json: cache';
is_deeply [ @$js{qw(coalesced invalidations breaker_opens breakers_open)} ],
    [ 19, 1, 1, 0 ], 'json: coalesced, invalidations, breaker_opens, breakers_open';
is $js->{lookups}{bypass}, $lookups{bypass}, 'json: lookups bypass';

ok $t->wait_for(sub { look(1)->{status} eq 'ok' }, 5),
    'after the breaker closed: lookups ok';

# =============================================================================
# G: LRU eviction in a tiny zone
# =============================================================================

run_nginx(<<'CONF', subscribed => 'loyalty:invalidate');
loyalty_cache_zone lru:32k ttl=30s;
loyalty_redis 127.0.0.1:%%REDIS_PORT%%;
loyalty_offers_refresh 1h;

server {
    listen 127.0.0.1:%%PORT%%;
    location / { loyalty on; loyalty_cache lru; @LINE@ }
    location = /metrics { loyalty_metrics; }
}
CONF

my $N = 2000;
$t->redis_pipeline([ map { [ 'HSET', "loyalty:customer:lru$_",
                             tier => 'tier' . ($_ % 7), points => $_,
                             cashback => '1.50', segments => 'vip,news,sale',
                             referral_code => "REF-$_" ] } 1 .. $N ]);
new_hmgets();
my @got;
for (my $i = 1; $i <= $N; $i += 500) {
    my $last = $i + 499 > $N ? $N : $i + 499;
    push @got, @{ $t->keepalive([ map { { path => '/',
        headers => [ Cookie => "loyalty_id=lru$_" ] } } $i .. $last ]) };
}
my @wrong = grep {
    my $b = $got[$_ - 1]{body} // '';
    $b !~ /^status=ok cache=MISS tier=tier@{[ $_ % 7 ]} points=$_ /
} 1 .. $N;
is scalar(@wrong), 0, "LRU: $N different ids all ok (MISS) while the zone is full"
    or diag "first wrong: lru$wrong[0]: " . ($got[$wrong[0] - 1]{body} // '');
is new_hmgets(), $N, "LRU: $N HMGETs";

my $hits = 0;
my $i = $N;
while ($i >= 1) {
    my $g = look("lru$i");
    last unless $g->{cache} eq 'HIT';
    $hits++;
    $i--;
}
cmp_ok $hits, '>=', 10, "LRU: the most recent ids are still cached ($hits HITs)";
cmp_ok $hits, '<', $N / 2, 'LRU: most entries were evicted';
is new_hmgets(), 1, 'LRU: only the first non-HIT asked Redis';
expect('lru1', 'ok MISS tier1 1', 'LRU: the earliest id was evicted: MISS');
is log_count(qr/no room for an entry/), 0, 'LRU: no "no room" warning';
ok !log_count(qr/\[(?:alert|crit|emerg)\]/), 'LRU: no alert/crit in error.log';

# =============================================================================
# 10. nginx -t
# =============================================================================

$t->stop_nginx;

sub conf_t {
    my ($http) = @_;
    $t->write_config("loyalty_redis 127.0.0.1:%%REDIS_PORT%%;\n$http"
                     . "server { listen 127.0.0.1:%%PORT%%;"
                     . " location / { loyalty on; } }\n");
    return $t->nginx_t;
}

my ($rc, $out) = conf_t("loyalty_cache_zone z:1m ttl=2s negative_ttl=0;\n"
                        . "loyalty_cache z; loyalty_cache_stale 10s;\n"
                        . "loyalty_invalidate_channel x:y;\n"
                        . "loyalty_redis_breaker failures=3 cooldown=1s;\n");
is $rc, 0, 'nginx -t: a valid cache configuration passes' or diag $out;

my @bad = (
    [ 'loyalty_cache_zone z;', qr/invalid zone "z": expected name:size/,
      'zone without size' ],
    [ 'loyalty_cache_zone :1m;', qr/invalid zone ":1m": expected name:size/,
      'zone without name' ],
    [ 'loyalty_cache_zone z:lots;', qr/invalid zone size "z:lots"/,
      'bad zone size' ],
    [ 'loyalty_cache_zone z:;', qr/invalid zone size "z:"/, 'empty zone size' ],
    [ 'loyalty_cache_zone z:16k;', qr/zone "z" is too small: at least 32k/,
      'zone too small' ],
    [ 'loyalty_cache_zone z:1m ttl=0;',
      qr/invalid parameter "ttl=0": expected ttl=time \(more than 0\) or negative_ttl=time/,
      'ttl=0' ],
    [ 'loyalty_cache_zone z:1m ttl=soon;', qr/invalid parameter "ttl=soon"/,
      'ttl not a time' ],
    [ 'loyalty_cache_zone z:1m negative_ttl=x;',
      qr/invalid parameter "negative_ttl=x"/, 'negative_ttl not a time' ],
    [ 'loyalty_cache_zone z:1m size=2;', qr/invalid parameter "size=2"/,
      'unknown zone parameter' ],
    [ 'loyalty_cache_zone z:1m; loyalty_cache_zone z:2m;',
      qr/zone "z" is declared twice/, 'zone declared twice' ],
    [ 'server { listen 127.0.0.1:%%PORT_x%%; loyalty_cache_zone z:1m; }',
      qr/"loyalty_cache_zone" directive is not allowed here/,
      'zone in a server block' ],
    [ 'loyalty_cache nope;',
      qr/unknown zone "nope": declare it first with loyalty_cache_zone/,
      'loyalty_cache with an unknown zone' ],
    [ 'loyalty_cache z; loyalty_cache_zone z:1m;',
      qr/unknown zone "z": declare it first with loyalty_cache_zone/,
      'loyalty_cache before the zone is declared' ],
    [ 'loyalty_cache_zone z:1m; loyalty_cache z; loyalty_cache off;',
      qr/"loyalty_cache" directive is duplicate/, 'loyalty_cache twice' ],
    [ 'loyalty_cache_stale often;', qr/"loyalty_cache_stale" directive invalid value/,
      'loyalty_cache_stale not a time' ],
    [ 'server { listen 127.0.0.1:%%PORT_x%%; location / { loyalty_cache_stale 1s; } }',
      qr/"loyalty_cache_stale" directive is not allowed here/,
      'loyalty_cache_stale in a location' ],
    [ 'server { listen 127.0.0.1:%%PORT_x%%; loyalty_invalidate_channel c; }',
      qr/"loyalty_invalidate_channel" directive is not allowed here/,
      'loyalty_invalidate_channel in a server block' ],
    [ 'loyalty_redis_breaker failures=0;', qr/invalid parameter "failures=0"/,
      'breaker failures=0' ],
    [ 'loyalty_redis_breaker failures=many;', qr/invalid parameter "failures=many"/,
      'breaker failures not a number' ],
    [ 'loyalty_redis_breaker cooldown=0;', qr/invalid parameter "cooldown=0"/,
      'breaker cooldown=0' ],
    [ 'loyalty_redis_breaker failures=2 cooldown=later;',
      qr/invalid parameter "cooldown=later"/, 'breaker cooldown not a time' ],
    [ 'loyalty_redis_breaker on;', qr/invalid parameter "on"/, 'breaker on' ],
    [ 'loyalty_redis_breaker off; loyalty_redis_breaker failures=2;',
      qr/"loyalty_redis_breaker" directive is duplicate/, 'breaker twice' ],
    [ 'server { listen 127.0.0.1:%%PORT_x%%; location / { loyalty_redis_breaker off; } }',
      qr/"loyalty_redis_breaker" directive is not allowed here/,
      'breaker in a location' ],
);
for my $b (@bad) {
    my ($conf, $re, $name) = @$b;
    ($rc, $out) = conf_t("$conf\n");
    isnt $rc, 0, "nginx -t fails: $name";
    like $out, qr/\[emerg\] .*$re/, "nginx -t message: $name" or diag $out;
}

$t->check_error_log;
done_testing;
