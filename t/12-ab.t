#!/usr/bin/perl
# A/B tests (loyalty_ab, loyalty_ab_convert, loyalty_ab_report): the
# documented bucketing reproduced in Perl for 100,000 keys, the shares,
# independence of two tests, stickiness across workers and reloads,
# inheritance and "off", the holdout variant "off", the variables in map,
# proxy_pass and log_format, X-Loyalty-Variants, exact exposure and
# conversion counts (also across a reload and a graceful shutdown), the
# report's statistics against our own, and nginx -t errors.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Digest::SHA qw(sha256);
use IO::Select;
use IO::Socket::INET;
use JSON::PP;
use LoyaltyTest;

my $t = LoyaltyTest->new;
my $tmp = $t->tmp;
$t->start_redis;
$t->start_backend;

# --- the documented bucketing, reimplemented ---------------------------------

# every test of the configuration below: where its key comes from (the
# customer id, the "sid" cookie or the "k" argument) and its variants'
# shares in hundredths of a percent, in declaration order
my %TESTS = (
    site    => { key => 'sid', v => [ [ a => 5000 ], [ b => 5000 ] ] },
    x       => { key => 'k',   v => [ [ off => 1000 ], [ a => 4500 ],
                                      [ b => 4500 ] ] },
    y       => { key => 'k',   v => [ [ p => 3000 ], [ q => 3050 ],
                                      [ r => 3950 ] ] },
    z       => { key => 'k',   v => [ [ z1 => 2500 ], [ z2 => 2500 ] ] },
    own     => { key => 'sid', v => [ [ yes => 10000 ] ] },
    srvtest => { key => 'sid', v => [ [ s1 => 10000 ] ] },
    badge   => { key => 'id',  v => [ [ a => 5000 ], [ b => 5000 ] ] },
    ship    => { key => 'sid', v => [ [ x => 5000 ], [ y => 5000 ] ] },
    hold    => { key => 'id',  v => [ [ off => 5000 ], [ on => 5000 ] ] },
    cnt     => { key => 'id',  v => [ [ ctrl => 2000 ], [ blue => 3000 ],
                                      [ green => 5000 ] ] },
    rep     => { key => 'k',   v => [ [ base => 2000 ], [ alt => 4000 ],
                                      [ third => 4000 ] ] },
    rep0    => { key => 'k',   v => [ [ ctl => 5000 ], [ trt => 5000 ] ] },
);

# first 8 bytes of SHA-256("name:key"), big-endian, mod 10000; done in
# two 32-bit halves so it does not depend on Perl's integer size
sub bucket {
    my ($name, $key) = @_;
    my ($hi, $lo) = unpack 'NN', substr(sha256("$name:$key"), 0, 8);
    return (($hi % 10000) * (4294967296 % 10000) + $lo) % 10000;
}

# the variant of a test for a key, '' for none
sub variant {
    my ($name, $key) = @_;
    return '' unless defined $key && length $key;
    my $b = bucket($name, $key);
    my $end = 0;
    for (@{ $TESTS{$name}{v} }) {
        $end += $_->[1];
        return $_->[0] if $b < $end;
    }
    return '';
}

# the variant for a visitor { id => ..., sid => ..., k => ... }
sub variant_for {
    my ($name, $who) = @_;
    return variant($name, $who->{ $TESTS{$name}{key} });
}

# "name=variant,..." for a location's tests in declaration order
sub variants_text {
    my ($who, @names) = @_;
    return join ',', map { my $v = variant_for($_, $who);
                           length $v ? "$_=$v" : () } @names;
}

# keys for a test and variant, e.g. customer ids in the holdout
sub keys_in {
    my ($name, $variant, $n, $prefix) = @_;
    my @k;
    for (my $i = 0; @k < $n; $i++) {
        push @k, "$prefix$i" if variant($name, "$prefix$i") eq $variant;
    }
    return @k;
}

# the documented Python formula on a known input, as a guard on the oracle
{
    my $x = unpack 'Q>', substr(sha256('x:k1'), 0, 8);
    die "bucket() disagrees with a 64-bit computation\n"
        unless bucket('x', 'k1') == $x % 10000;
}

# --- erfc, to 1e-15 relative: series below 2, continued fraction above --

sub erfc {
    my ($x) = @_;
    return 2 - erfc(-$x) if $x < 0;
    my $pi = 4 * atan2(1, 1);
    if ($x < 2) {
        my ($sum, $term, $n) = (0, $x, 0);
        while (1) {
            my $add = $term / (2 * $n + 1);
            $sum += $add;
            last if abs($add) < 1e-17 * abs($sum);
            $n++;
            $term *= -$x * $x / $n;
        }
        return 1 - 2 / sqrt($pi) * $sum;
    }
    # erfc(x) = exp(-x^2)/sqrt(pi) * 1/(x + 1/2/(x + 1/(x + 3/2/(x + ...))))
    # evaluated by the modified Lentz method
    my $tiny = 1e-300;
    my $f = $x;
    my ($c, $d) = ($f, 0);
    for my $i (1 .. 500) {
        my $a = $i / 2;
        $d = $x + $a * $d;
        $d = $tiny if $d == 0;
        $c = $x + $a / $c;
        $c = $tiny if $c == 0;
        $d = 1 / $d;
        my $delta = $c * $d;
        $f *= $delta;
        last if abs($delta - 1) < 1e-16;
    }
    return exp(-$x * $x) / sqrt($pi) / $f;
}
# known values (Abramowitz & Stegun / high-precision tables)
for ([ 0.5, 0.4795001221869535 ], [ 1, 0.15729920705028513 ],
     [ 1.9, 0.007209570764742772 ], [ 2.1, 0.0029794666563329 ],
     [ 3, 2.209049699858544e-05 ], [ 5, 1.5374597944280348e-12 ])
{
    my ($x, $want) = @$_;
    die "erfc($x) = " . erfc($x) . ", expected $want\n"
        if abs(erfc($x) - $want) > 1e-13 * $want;
}

# --- HTTP helpers ------------------------------------------------------------

# pipelined GETs on one keepalive connection: bodies in order
sub pipeline {
    my ($port, $paths, %o) = @_;
    my $extra = join '', map { "$_\r\n" } @{ $o{headers} // [] };
    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                     PeerPort => $port, Proto => 'tcp')
        or die "pipeline: connect: $!\n";
    $sock->blocking(0);
    my $sel = IO::Select->new($sock);
    my ($out, $in, @bodies) = ('', '');
    my $next = 0;
    my $deadline = time + 60;
    local $SIG{PIPE} = 'IGNORE';
    while (@bodies < @$paths) {
        die "pipeline: timed out after " . scalar(@bodies) . " responses\n"
            if time > $deadline;
        # keep at most ~1000 requests ahead of the responses
        while ($next < @$paths && $next - @bodies < 1000
               && length $out < 256 * 1024)
        {
            $out .= "GET $paths->[$next++] HTTP/1.1\r\nHost: x\r\n$extra\r\n";
        }
        my ($r, $w) = IO::Select->select($sel, length $out ? $sel : undef,
                                         undef, 1);
        if ($w && @$w) {
            my $n = syswrite($sock, $out);
            substr($out, 0, $n, '') if $n;
        }
        if ($r && @$r) {
            my $n = sysread($sock, $in, 1 << 20, length $in);
            die "pipeline: connection closed after " . scalar(@bodies)
                . " responses\n" if defined $n && $n == 0;
        }
        while (1) {
            my $end = index($in, "\r\n\r\n");
            last if $end < 0;
            my $head = substr($in, 0, $end);
            die "pipeline: bad response: $head\n"
                unless $head =~ m{^HTTP/1\.1 200 } &&
                       $head =~ /^Content-Length: (\d+)\r?$/mi;
            my $len = $1;
            last if length($in) < $end + 4 + $len;
            push @bodies, substr($in, $end + 4, $len);
            substr($in, 0, $end + 4 + $len, '');
        }
    }
    close $sock;
    return \@bodies;
}

sub cookies {
    my ($who) = @_;
    my @c;
    push @c, "loyalty_id=$who->{id}" if defined $who->{id};
    push @c, "sid=$who->{sid}" if defined $who->{sid};
    return @c ? (Cookie => join '; ', @c) : ();
}

sub req {
    my ($port, $path, $who, @h) = @_;
    return $t->request(path => $path, port => $port,
                       headers => [ cookies($who // {}), @h ]);
}

# what the echo backend saw: request line and lower-cased headers
sub seen {
    my ($r) = @_;
    my ($line, @rest) = split /\n/, $r->{body} // '';
    my %h;
    for (@rest) { push @{ $h{ lc $1 } }, $2 if /^([^:]+): (.*)$/ }
    return ($line // '', \%h);
}

# the hash loyalty:ab:<name> as { field => value }
sub ab_hash {
    my ($name) = @_;
    my $l = $t->redis('HGETALL', "loyalty:ab:$name");
    return { @$l };
}

# only the fields with the suffix, e.g. "exposures"
sub fields {
    my ($h, $suffix) = @_;
    return { map { /^(.*):\Q$suffix\E$/ ? ($1 => $h->{$_}) : () } keys %$h };
}

sub hmget_calls {
    my ($n) = $t->redis('INFO', 'commandstats') =~ /cmdstat_hmget:calls=(\d+)/;
    return $n // 0;
}

sub counts_str {
    my ($h) = @_;
    return join ' ', map { "$_=$h->{$_}" } sort keys %$h;
}

# --- fixtures ----------------------------------------------------------------

my @hold_off = keys_in('hold', 'off', 3, 'h');
my @hold_on  = keys_in('hold', 'on', 2, 'h');
$t->redis('HSET', "loyalty:customer:$_", 'tier', 'gold', 'points', '100')
    for @hold_off, @hold_on;

mkdir "$tmp/html" or die $!;
my $page = "<!DOCTYPE html>\n<html><head><title>Shop</title></head>"
         . "<body><p>Hello</p></body></html>\n";
{
    open my $f, '>', "$tmp/html/index.html" or die $!;
    print $f $page;
    close $f;
}

my $vars = 'v=[$loyalty_variants] site=[$loyalty_ab_site] '
         . 'own=[$loyalty_ab_own] srv=[$loyalty_ab_srvtest] '
         . 'nosuch=[$loyalty_ab_nosuch] status=[$loyalty_status]';

$t->write_config(<<"CONF", workers => 2, access_log => 0);
log_format ab '\$loyalty_variants|\$loyalty_ab_badge|\$badge_class';

loyalty_redis 127.0.0.1:%%REDIS_PORT%%;
loyalty_ab site key=\$cookie_sid 50% a * b;

map \$loyalty_ab_badge \$badge_class {
    a        class-a;
    b        class-b;
    default  class-none;
}

server {
    listen 127.0.0.1:%%PORT%%;
    keepalive_requests 1000000;

    location = /dist {
        loyalty_ab x key=\$arg_k 10% off 45% a * b;
        loyalty_ab y key=\$arg_k 30% p 30.5% q * r;
        loyalty_ab z key=\$arg_k 25% z1 25% z2;
        return 200 "\$arg_k=\$loyalty_ab_x,\$loyalty_ab_y,\$loyalty_ab_z|\$loyalty_variants";
    }

    location = /stick {
        loyalty_ab x key=\$arg_k 10% off 45% a * b;
        return 200 "\$pid \$arg_k \$loyalty_ab_x";
    }

    location = /c {
        loyalty_ab cnt 20% ctrl 30% blue * green;
        return 200 "[\$loyalty_status][\$loyalty_ab_cnt]";
    }

    location = /buy {
        loyalty_ab off;
        loyalty_ab_convert;
    }

    location = /checkout {
        loyalty_ab off;
        loyalty_ab_convert;
        proxy_pass http://127.0.0.1:%%BACKEND_PORT%%;
    }

    location = /report {
        loyalty_ab off;
        loyalty_ab_report;
    }

    location = /never {
        loyalty_ab rep key=\$arg_k 20% base 40% alt * third;
        loyalty_ab rep0 key=\$arg_k 50% ctl * trt;
        return 204;
    }
}

server {
    listen 127.0.0.1:%%PORT_inh%%;

    location / {
        return 200 "$vars";
    }

    location /own {
        loyalty_ab own key=\$cookie_sid 100% yes;
        return 200 "$vars";
    }

    location /off {
        loyalty_ab off;
        return 200 "$vars";
    }

    location /proxy {
        loyalty on;
        proxy_pass http://127.0.0.1:%%BACKEND_PORT%%;
    }

    location /proxy-off {
        loyalty on;
        loyalty_ab off;
        proxy_pass http://127.0.0.1:%%BACKEND_PORT%%;
    }

    location /plain-proxy {
        proxy_pass http://127.0.0.1:%%BACKEND_PORT%%;
    }
}

server {
    listen 127.0.0.1:%%PORT_srv%%;
    loyalty_ab srvtest key=\$cookie_sid 100% s1;

    location / {
        return 200 "$vars";
    }

    location /inner {
        loyalty_ab own key=\$cookie_sid 100% yes;
        loyalty_ab site key=\$cookie_sid 50% a * b;
        return 200 "$vars";
    }

    location /nested {
        location /nested/deep {
            return 200 "$vars";
        }
    }
}

server {
    listen 127.0.0.1:%%PORT_hold%%;
    loyalty on;

    location = /vars {
        loyalty_ab hold 50% off * on;
        return 200 "status=\$loyalty_status|id=\$loyalty_id|tier=\$loyalty_tier|points=\$loyalty_points|offers=\$loyalty_offers|v=\$loyalty_variants|hold=\$loyalty_ab_hold|json=\$loyalty_json";
    }

    location /page/ {
        loyalty_ab hold 50% off * on;
        loyalty_inject html;
        alias %%TMP%%/html/;
    }

    location /hold-proxy/ {
        loyalty_ab hold 50% off * on;
        loyalty_response_headers on;
        proxy_pass http://127.0.0.1:%%BACKEND_PORT%%;
    }

    location = /json {
        loyalty_ab own key=\$cookie_sid 100% yes;
        return 200 "\$loyalty_json";
    }

    location /ab-proxy/ {
        loyalty_ab badge 50% a * b;
        loyalty_ab ship key=\$cookie_sid 50% x * y;
        loyalty_response_headers on;
        proxy_pass http://127.0.0.1:%%BACKEND_PORT%%;
    }

    location /target {
        loyalty_ab badge 50% a * b;
        access_log %%TMP%%/ab.log ab;
        proxy_pass http://127.0.0.1:%%BACKEND_PORT%%/\$loyalty_ab_badge;
    }

    location = /mapped {
        loyalty_ab badge 50% a * b;
        return 200 "\$badge_class";
    }
}
CONF
$t->start_nginx;

my %port = (main => $t->port, inh => $t->named_port('inh'),
            srv => $t->named_port('srv'), hold => $t->named_port('hold'));

# =============================================================================
# 1. distribution over 100,000 keys, through nginx, checked key by key
# =============================================================================

my $N = 100_000;
my @keys = map { "k$_" } 1 .. $N;
# keys around the length where the module stops copying into its
# 256-byte buffer and hashes in pieces
my @long = map { 'L' x $_ } 240 .. 270;

my $bodies = pipeline($port{main}, [ map { "/dist?k=$_" } @keys, @long ]);
is scalar(@$bodies), $N + @long, 'all distribution requests answered';

my (%share, %pair, @bad);
for my $i (0 .. $#$bodies) {
    my $k = $i < $N ? $keys[$i] : $long[$i - $N];
    my ($vx, $vy, $vz) = map { variant($_, $k) } qw(x y z);
    my $want = "$k=$vx,$vy,$vz|" . variants_text({ k => $k }, qw(x y z));
    push @bad, "got '$bodies->[$i]', want '$want'"
        if $bodies->[$i] ne $want;
    next if $i >= $N;
    $share{x}{$vx}++;
    $share{y}{$vy}++;
    $share{z}{$vz}++;
    $pair{$vx}{$vy}++;
}
is scalar(@bad), 0, 'nginx assigns every one of ' . ($N + @long)
    . ' keys the variant of the documented hash, $loyalty_variants in order'
    or diag join "\n", @bad[0 .. ($#bad < 4 ? $#bad : 4)];

for my $name (qw(x y z)) {
    my %want = map { $_->[0] => $_->[1] / 100 } @{ $TESTS{$name}{v} };
    my $rest = 100;
    $rest -= $_ for values %want;
    $want{''} = $rest if $rest > 0;
    for my $v (sort keys %want) {
        my $got = 100 * ($share{$name}{$v} // 0) / $N;
        ok abs($got - $want{$v}) <= 1,
            sprintf('test %s: variant "%s" has %.2f%% of the keys '
                    . '(configured %s%%)', $name, $v, $got, $want{$v});
    }
}

# independence of x and y: chi-square of the 3x3 table, 4 degrees of
# freedom, 99.9% critical value 18.467
{
    my (%row, %col);
    for my $a (keys %pair) {
        for my $b (keys %{ $pair{$a} }) {
            $row{$a} += $pair{$a}{$b};
            $col{$b} += $pair{$a}{$b};
        }
    }
    my $chi = 0;
    for my $a (keys %row) {
        for my $b (keys %col) {
            my $e = $row{$a} * $col{$b} / $N;
            $chi += (($pair{$a}{$b} // 0) - $e) ** 2 / $e;
        }
    }
    is scalar(keys %row) * scalar(keys %col), 9, 'x and y: a 3x3 table';
    cmp_ok $chi, '<', 18.467,
        sprintf('x and y are independent: chi-square %.2f < 18.467', $chi);
}

is $t->get("/dist?k=")->{body}, '=,,|', 'an empty key gets no variant';

# =============================================================================
# 2. stickiness across workers
# =============================================================================

my @skeys = map { "s$_" } 1 .. 25;

# concurrent requests on fresh connections until both workers answered
sub stick_round {
    my (%pids, @wrong);
    for my $round (1 .. 20) {
        my $res = $t->concurrent([ map { { path => "/stick?k=$_" } }
                                   (@skeys) x 4 ]);
        for my $r (@$res) {
            my ($pid, $k, $v) = split / /, $r->{body} // '', 3;
            unless (defined $k) {
                push @wrong, "bad response: " . ($r->{error} // $r->{body});
                next;
            }
            $v //= '';
            push @wrong, "$k: $v from $pid, want " . variant('x', $k)
                if $v ne variant('x', $k);
            $pids{$pid}++;
        }
        last if keys %pids >= 2;
    }
    return (\%pids, \@wrong);
}

my @old_workers = $t->worker_pids;
is scalar(@old_workers), 2, 'two workers';
my ($pids, $wrong) = stick_round();
cmp_ok scalar(keys %$pids), '>=', 2, 'both workers answered';
is_deeply $wrong, [], 'every key gets the same variant in every worker';

# the same key over and over on keepalive
{
    my $b = pipeline($port{main}, [ ("/stick?k=s1") x 200 ]);
    my %v = map { (split / /, $_)[2] // '' => 1 } @$b;
    is_deeply [ keys %v ], [ variant('x', 's1') ],
        '200 requests for one key: one variant';
}

# =============================================================================
# 3. inheritance, replacement, off; loyalty off with tests
# =============================================================================

my $sidk = { sid => 'visitor-7' };
my $site7 = variant('site', 'visitor-7');
ok length $site7, 'visitor-7 has a site variant';

sub vars_line {
    my (%v) = @_;
    return "v=[$v{v}] site=[" . ($v{site} // '') . "] own=[" . ($v{own} // '')
         . "] srv=[" . ($v{srv} // '') . "] nosuch=[] status=[]";
}

is req($port{inh}, '/', $sidk)->{body},
    vars_line(v => "site=$site7", site => $site7),
    'http-level test inherited by a location';
is req($port{inh}, '/', {})->{body}, vars_line(v => ''),
    'no sid cookie: empty key, no variant';
is req($port{inh}, '/own', $sidk)->{body},
    vars_line(v => 'own=yes', own => 'yes'),
    'a location with its own test replaces the inherited list';
is req($port{inh}, '/off', $sidk)->{body}, vars_line(v => ''),
    'loyalty_ab off: no variables';
is req($port{srv}, '/', $sidk)->{body},
    vars_line(v => 'srvtest=s1', srv => 's1'),
    'a server-level test replaces the http-level list';
is req($port{srv}, '/nested/deep', $sidk)->{body},
    vars_line(v => 'srvtest=s1', srv => 's1'),
    'nested location inherits the server list';
is req($port{srv}, '/inner', $sidk)->{body},
    vars_line(v => "own=yes,site=$site7", own => 'yes', site => $site7),
    'redeclared tests: the location order of $loyalty_variants';

{
    my ($line, $h) = seen(req($port{inh}, '/proxy', $sidk));
    is_deeply $h->{'x-loyalty-variants'}, [ "site=$site7" ],
        'inherited test in the upstream header';
    ($line, $h) = seen(req($port{inh}, '/proxy-off', $sidk,
                           'X-Loyalty-Variants' => 'site=zz'));
    ok !exists $h->{'x-loyalty-variants'},
        'loyalty_ab off: no X-Loyalty-Variants, the client one stripped';
    is_deeply $h->{'x-loyalty-status'}, ['anonymous'],
        'loyalty_ab off: the other headers still sent';
    ($line, $h) = seen(req($port{inh}, '/plain-proxy', $sidk));
    ok !(grep { /^x-loyalty-/ } keys %$h),
        'loyalty off, tests on: no X-Loyalty-* headers from the module';
}

# =============================================================================
# 4. holdout
# =============================================================================

my %hold_exp;     # exposures of "hold" we cause, by variant

{
    my $before = hmget_calls();
    for my $id (@hold_off) {
        my $body = req($port{hold}, '/vars', { id => $id })->{body};
        $hold_exp{off}++;
        is $body, "status=holdout|id=$id|tier=|points=|offers=|v=hold=off"
                . "|hold=off|json=",
            "holdout $id: status holdout, id kept, nothing else";
    }
    is hmget_calls() - $before, 0, 'holdout: no Redis lookup';

    my $id = $hold_on[0];
    my $body = req($port{hold}, '/vars', { id => $id })->{body};
    $hold_exp{on}++;
    like $body, qr/^status=ok\|id=\Q$id\E\|tier=gold\|points=100\|.*\|v=hold=on\|hold=on\|json=/,
        'the other variant: looked up';
    is hmget_calls() - $before, 1, 'the other variant: one lookup';
    my ($json) = $body =~ /\|json=(.*)$/;
    is_deeply eval { decode_json($json)->{experiments} }, { hold => 'on' },
        '$loyalty_json has "experiments"';

    # the page is left alone
    my $r = req($port{hold}, '/page/index.html', { id => $hold_off[0] });
    $hold_exp{off}++;
    is $r->{body}, $page, 'holdout: the page is byte for byte the original';
    $r = req($port{hold}, '/page/index.html', { id => $hold_on[0] });
    $hold_exp{on}++;
    my ($frag) = $r->{body} =~ m{<script type="application/json" id="loyalty-data">(.*?)</script></head>};
    is_deeply eval { decode_json($frag // '')->{experiments} },
        { hold => 'on' }, 'the other variant: injected, with experiments';

    # no headers either way, client-sent ones stripped
    my @spoof = ('X-Loyalty-Tier' => 'platinum',
                 'X-Loyalty-Variants' => 'hold=on',
                 'x-loyalty-status' => 'ok');
    $r = req($port{hold}, '/hold-proxy/', { id => $hold_off[1] }, @spoof);
    $hold_exp{off}++;
    my ($line, $h) = seen($r);
    is $r->{status}, 200, 'holdout proxied';
    is_deeply [ grep { /^x-loyalty-/ } sort keys %$h ], [],
        'holdout: no X-Loyalty-* request headers, spoofed ones stripped';
    is_deeply [ grep { /^x-loyalty-/ } sort keys %{ $r->{headers} } ], [],
        'holdout: no X-Loyalty-* response headers';

    $r = req($port{hold}, '/hold-proxy/', { id => $hold_on[1] }, @spoof);
    $hold_exp{on}++;
    ($line, $h) = seen($r);
    is_deeply $h->{'x-loyalty-variants'}, ['hold=on'],
        'the other variant: X-Loyalty-Variants upstream';
    is_deeply $h->{'x-loyalty-tier'}, ['gold'],
        'the other variant: the real tier upstream';
    is $r->{headers}{'x-loyalty-variants'}, 'hold=on',
        'the other variant: X-Loyalty-Variants response header';
    is $r->{headers}{'x-loyalty-tier'}, 'gold',
        'the other variant: X-Loyalty-Tier response header';

    ok $t->wait_for(sub {
            my $e = fields(ab_hash('hold'), 'exposures');
            counts_str($e) eq counts_str(\%hold_exp) }, 5),
        'holdout exposures are counted: ' . counts_str(\%hold_exp)
        or diag counts_str(fields(ab_hash('hold'), 'exposures'));
}

# experiments in $loyalty_json for visitors without a record
is req($port{hold}, '/json', { sid => 'v1' })->{body},
    '{"status":"anonymous","experiments":{"own":"yes"}}',
    'anonymous visitor: experiments in $loyalty_json';
is req($port{hold}, '/json', { sid => 'v1', id => 'nobody' })->{body},
    '{"status":"unknown","experiments":{"own":"yes"}}',
    'unknown customer: experiments in $loyalty_json';
is req($port{hold}, '/json', {})->{body}, '{"status":"anonymous"}',
    'no variant: no experiments member';

# =============================================================================
# 5. map, proxy_pass target, log_format; X-Loyalty-Variants upstream
# =============================================================================

{
    my ($ida) = keys_in('badge', 'a', 1, 'c');
    my ($idb) = keys_in('badge', 'b', 1, 'c');

    is req($port{hold}, '/mapped', { id => $ida })->{body}, 'class-a',
        'map on $loyalty_ab_badge (a)';
    is req($port{hold}, '/mapped', { id => $idb })->{body}, 'class-b',
        'map on $loyalty_ab_badge (b)';
    is req($port{hold}, '/mapped', {})->{body}, 'class-none',
        'map default without a variant';

    my ($line) = seen(req($port{hold}, '/target', { id => $ida }));
    is $line, 'GET /a HTTP/1.0', 'proxy_pass target with $loyalty_ab_badge (a)';
    ($line) = seen(req($port{hold}, '/target', { id => $idb }));
    is $line, 'GET /b HTTP/1.0', 'proxy_pass target with $loyalty_ab_badge (b)';
    ($line) = seen(req($port{hold}, '/target', {}));
    is $line, 'GET / HTTP/1.0', 'proxy_pass target without a variant';

    my $log = sub { open my $f, '<', "$tmp/ab.log" or return ''; local $/; <$f> };
    ok $t->wait_for(sub { ($log->() =~ tr/\n//) >= 3 }, 5), 'three log lines';
    is $log->(), "badge=a|a|class-a\nbadge=b|b|class-b\n-|-|class-none\n",
        'log_format with $loyalty_variants, $loyalty_ab_badge and the map';

    # both tests, spoofed headers in any letter case
    my $who = { id => $ida, sid => 'visitor-9' };
    my $want = variants_text($who, qw(badge ship));
    like $want, qr/^badge=a,ship=[xy]$/, "expected variants: $want";
    my $r = req($port{hold}, '/ab-proxy/', $who,
                'X-Loyalty-Variants' => 'badge=b', 'x-loyalty-VARIANTS' => 'evil');
    my $h;
    ($line, $h) = seen($r);
    is_deeply $h->{'x-loyalty-variants'}, [ $want ],
        'backend gets one X-Loyalty-Variants, ours';
    is $r->{headers}{'x-loyalty-variants'}, $want,
        'response header X-Loyalty-Variants';

    $r = req($port{hold}, '/ab-proxy/', {}, 'X-Loyalty-Variants' => 'badge=b');
    ($line, $h) = seen($r);
    ok !exists $h->{'x-loyalty-variants'},
        'no variants: no X-Loyalty-Variants, the client one stripped';
    ok !exists $r->{headers}{'x-loyalty-variants'},
        'no variants: no response header';
}

# =============================================================================
# 6. exact exposure counts
# =============================================================================

my %cnt_exp;
my @cust = map { "cust$_" } 1 .. 40;

{
    my (@reqs, @want);
    for my $i (0 .. $#cust) {
        for (1 .. 1 + $i % 5) {
            push @reqs, { path => '/c',
                          headers => [ Cookie => "loyalty_id=$cust[$i]" ] };
            my $v = variant('cnt', $cust[$i]);
            push @want, "[][$v]";
            $cnt_exp{$v}++;
        }
    }
    for my $c (undef, 'loyalty_id=', 'loyalty_id=bad.id', 'sid=x') {
        push @reqs, { path => '/c', headers => [ defined $c ? (Cookie => $c)
                                                            : () ] };
        push @want, '[][]';
    }
    my $res = $t->concurrent(\@reqs);
    is_deeply [ map { $_->{body} } @$res ], \@want,
        scalar(@reqs) . ' requests: each customer its variant, '
        . 'no variant without a valid id, $loyalty_status empty';
    is scalar(keys %cnt_exp), 3, 'all three variants used';
}

sub cnt_exposures_ok {
    my ($label, $timeout) = @_;
    my $ok = $t->wait_for(sub {
        counts_str(fields(ab_hash('cnt'), 'exposures')) eq counts_str(\%cnt_exp)
    }, $timeout // 5);
    ok $ok, "$label: " . counts_str(\%cnt_exp)
        or diag 'Redis has ' . counts_str(fields(ab_hash('cnt'), 'exposures'));
}
cnt_exposures_ok('exposures in Redis equal the requests sent');

# =============================================================================
# 7. conversions
# =============================================================================

my %conv;        # test => variant => { conversions, revenue }
my %orders;      # test => order => 1

# what the module should record for one convert call
sub expect_convert {
    my ($who, $order, $value) = @_;
    my %converted;
    for my $name (sort keys %TESTS) {
        my $v = variant_for($name, $who);
        next unless length $v;
        $converted{$name} = $v;
        next if defined $order && $orders{$name}{$order}++;
        $conv{$name}{$v}{conversions}++;
        $conv{$name}{$v}{revenue} += $value
            if defined $value && $value =~ /^\d{1,12}(?:\.\d{1,2})?$/;
    }
    return \%converted;
}

sub convert {
    my ($path, $who, $order, $value) = @_;
    my @q;
    push @q, "order=$order" if defined $order;
    push @q, "value=$value" if defined $value;
    return req($port{main}, $path . (@q ? '?' . join('&', @q) : ''), $who);
}

{
    my $who = { id => 'cust1' };
    my $r = convert('/buy', $who, 'o1', '10.50');
    my $want = expect_convert($who, 'o1', '10.50');
    is $r->{status}, 200, 'convert: 200';
    like $r->{headers}{'content-type'}, qr{^application/json},
        'convert: JSON';
    like $r->{body}, qr/^\{"order":"o1","value":"10\.50","converted":\{/,
        'convert: order and value echoed';
    is_deeply decode_json($r->{body})->{converted}, $want,
        'convert: every test keyed by the customer id, with its variant';
    ok exists $want->{cnt} && exists $want->{hold} && exists $want->{badge},
        'cust1 converts in cnt, hold and badge';

    convert('/buy', $who, 'o1', '10.50');                 # a repeat
    expect_convert($who, 'o1', '10.50');

    $who = { id => 'cust2' };
    for (1 .. 2) {                                          # no order
        convert('/buy', $who, undef, '3.25');
        expect_convert($who, undef, '3.25');
    }

    $who = { id => 'cust3' };
    $r = convert('/buy', $who, 'o3', '1.234');              # bad value
    expect_convert($who, 'o3', '1.234');
    is_deeply decode_json($r->{body}),
        { order => 'o3', converted => expect_convert_view($who) },
        'an invalid value: converted without revenue';

    $who = { id => 'cust4' };
    $r = convert('/buy', $who, 'bad/order', '5');           # bad order
    is $r->{status}, 200, 'invalid order: 200';
    is_deeply decode_json($r->{body}),
        { converted => {}, error => 'invalid order' },
        'invalid order: nothing converted, error in the JSON';
    convert('/buy', $who, 'x' x 65, '5');                   # too long
    ok scalar($t->log_lines(qr/\[warn\].*conversion ignored: invalid "order"/)),
        'invalid order logged';
    ok scalar($t->log_lines(qr/\[warn\].*conversion without revenue: invalid "value"/)),
        'invalid value logged';

    $who = { id => 'cust5' };
    $r = convert('/checkout', $who, 'o5', '20');            # proxied
    expect_convert($who, 'o5', '20');
    my ($line) = seen($r);
    is $line, 'GET /checkout?order=o5&value=20 HTTP/1.0',
        'convert with proxy_pass: the page is proxied';

    $who = { id => 'cust6' };
    convert('/buy', $who, 'o1', '7.75');                    # cust1's order
    expect_convert($who, 'o1', '7.75');

    $who = { id => 'cust7', sid => 'visitor-7' };
    $r = convert('/buy', $who, 'A-b_c.9:z', '0.75');        # sid tests too
    $want = expect_convert($who, 'A-b_c.9:z', '0.75');
    is_deeply decode_json($r->{body})->{converted}, $want,
        'convert: tests keyed by the sid cookie as well';

    is req($port{main}, '/buy', {})->{body}, qq({"converted":{}}\n),
        'anonymous: nothing converted';
}

# the converted map without recording anything
sub expect_convert_view {
    my ($who) = @_;
    return { map { my $v = variant_for($_, $who);
                   length $v ? ($_ => $v) : () } keys %TESTS };
}

sub conv_str {
    my ($what) = @_;
    my @s;
    for my $name (sort keys %TESTS) {
        my $h = ab_hash($name);
        if ($what eq 'redis') {
            push @s, map { "$name/$_=" . (0 + $h->{$_}) }
                     grep { /:(?:conversions|revenue)$/ } sort keys %$h;
        } else {
            for my $v (sort keys %{ $conv{$name} // {} }) {
                for my $f (qw(conversions revenue)) {
                    push @s, "$name/$v:$f=" . (0 + $conv{$name}{$v}{$f})
                        if defined $conv{$name}{$v}{$f};
                }
            }
        }
    }
    return join ' ', @s;
}

ok $t->wait_for(sub { conv_str('redis') eq conv_str('want') }, 5),
    'conversions and revenue in Redis equal what was sent, for every test'
    or diag "redis: " . conv_str('redis') . "\nwant:  " . conv_str('want');
{
    my $ttl = $t->redis('TTL', '{loyalty:ab:cnt}:order:o1');
    ok $ttl > 7776000 - 60 && $ttl <= 7776000,
        "order marker {loyalty:ab:cnt}:order:o1 expires in 90 days ($ttl s)";
    is $t->redis('EXISTS', '{loyalty:ab:cnt}:order:bad/order'), 0,
        'no marker for an invalid order';
}
cnt_exposures_ok('convert locations with loyalty_ab off count no exposures');

# =============================================================================
# 8. the report
# =============================================================================

$t->redis('HSET', 'loyalty:ab:rep',
          'base:exposures', 1000, 'base:conversions', 50,
          'base:revenue', '510.5',
          'alt:exposures', 1200, 'alt:conversions', 84,
          'alt:revenue', '900.25',
          'third:exposures', 800, 'third:conversions', 0,
          'ghost:exposures', 10, 'ghost:conversions', 1,
          'alt:weird', 5, 'nocolon', 7, 'bad name:exposures', 3);
$t->redis('HSET', 'loyalty:ab:rep0',
          'ctl:exposures', 500, 'ctl:conversions', 0,
          'trt:exposures', 400, 'trt:conversions', 8, 'trt:revenue', '12.5');

# our statistics: rows [ name, share or undef, n, c, revenue ]
sub stats {
    my (@rows) = @_;
    my ($n0, $c0) = @{ $rows[0] }[2, 3];
    my $r0 = $n0 ? $c0 / $n0 : 0;
    my @out;
    for my $i (0 .. $#rows) {
        my ($name, $share, $n, $c, $rev) = @{ $rows[$i] };
        my $rate = $n ? $c / $n : 0;
        my %s = (share => $share, exposures => $n, conversions => $c,
                 conversion_rate => $rate, revenue => $rev,
                 revenue_per_exposure => $n ? $rev / $n : 0,
                 uplift => undef, p_value => undef);
        if ($i > 0) {
            $s{uplift} = $rate / $r0 - 1 if $r0 > 0 && $n > 0;
            if ($n0 && $n) {
                my $p = ($c0 + $c) / ($n0 + $n);
                if ($p > 0 && $p < 1) {
                    my $se = sqrt($p * (1 - $p) * (1 / $n0 + 1 / $n));
                    my $z = ($rate - $r0) / $se;
                    $s{p_value} = erfc(abs($z) / sqrt(2));
                }
            }
        }
        push @out, [ $name, \%s ];
    }
    return @out;
}

my @rep = stats([ base => 20, 1000, 50, 510.5 ], [ alt => 40, 1200, 84, 900.25 ],
                [ third => 40, 800, 0, 0 ], [ ghost => undef, 10, 1, 0 ]);
my @rep0 = stats([ ctl => 50, 500, 0, 0 ], [ trt => 50, 400, 8, 12.5 ]);

# sanity of our own numbers (a two-proportion z-test by hand)
ok abs($rep[1][1]{uplift} - 0.4) < 1e-12, 'our uplift of alt: 0.4';
# reference values from Python's math.erfc
ok close_to($rep[1][1]{p_value}, 0.05081311691645914)
   && close_to($rep[2][1]{p_value}, 1.4149941769000583e-10)
   && close_to($rep0[1][1]{p_value}, 0.0014910150289164925),
    'our p-values agree with an independent erfc';

sub close_to {
    my ($got, $want) = @_;
    return !defined $got && !defined $want if !defined $got || !defined $want;
    return abs($got - $want) <= 1e-6 * abs($want) + 1e-12;
}

# a few more exposures right before the report: it flushes them first
{
    $t->concurrent([ map { { path => '/c', headers => [
        Cookie => "loyalty_id=$_" ] } } @cust[0 .. 9] ]);
    $cnt_exp{ variant('cnt', $_) }++ for @cust[0 .. 9];
}

my $r = $t->get('/report');
is $r->{status}, 200, 'report: 200';
like $r->{headers}{'content-type'}, qr{^application/json}, 'report: JSON';
my $rj = eval { decode_json($r->{body}) };
ok $rj, 'report parses' or diag $r->{body};

is_deeply [ sort keys %{ $rj->{tests} } ], [ sort keys %TESTS ],
    'report: every test of the configuration';
is_deeply { map { $_ => $rj->{tests}{cnt}{variants}{$_}{exposures} }
            keys %{ $rj->{tests}{cnt}{variants} } },
    { ctrl => 0, blue => 0, green => 0, %cnt_exp },
    'report: cnt exposures include the ones sent just before it';

for my $set ([ rep => \@rep ], [ rep0 => \@rep0 ]) {
    my ($name, $rows) = @$set;
    my $got = $rj->{tests}{$name};
    is $got->{baseline}, $rows->[0][0], "$name: baseline";
    is_deeply [ sort keys %{ $got->{variants} } ],
        [ sort map { $_->[0] } @$rows ],
        "$name: the configured variants and the extra one from Redis";
    for my $row (@$rows) {
        my ($v, $want) = @$row;
        my $g = $got->{variants}{$v};
        my @bad;
        for my $f (sort keys %$want) {
            push @bad, "$f: got " . ($g->{$f} // 'null') . ', want '
                       . ($want->{$f} // 'null')
                unless close_to($g->{$f}, $want->{$f});
        }
        is_deeply \@bad, [], "$name/$v: "
            . join(', ', map { "$_=" . ($want->{$_} // 'null') }
                         qw(conversion_rate uplift p_value));
    }
}

# ten significant digits
like $r->{body}, qr/"revenue_per_exposure":0\.7502083333[,}]/,
    'report: numbers with 10 significant digits (900.25/1200)';

# the text table
$r = $t->get('/report?format=text');
is $r->{status}, 200, 'text report: 200';
like $r->{headers}{'content-type'}, qr{^text/plain}, 'text report: text/plain';
{
    my ($block) = $r->{body} =~ /^(test rep \(baseline base\)\n(?:.+\n)+)/m;
    ok defined $block, 'text report: a block for test rep' or diag $r->{body};
    my (undef, $header, @lines) = split /\n/, $block // '';
    is_deeply [ split ' ', $header // '' ],
        [ qw(variant share exposures conversions rate revenue rev/exp
             uplift p_value) ], 'text report: header';
    my %want;
    for (@rep) {
        my ($v, $s) = @$_;
        my $pv = $s->{p_value};
        $want{$v} = [ $v, defined $s->{share} ? "$s->{share}%" : '-',
                      $s->{exposures}, $s->{conversions},
                      sprintf('%.2f%%', 100 * $s->{conversion_rate}),
                      sprintf('%.2f', $s->{revenue}),
                      sprintf('%.2f', $s->{revenue_per_exposure}),
                      defined $s->{uplift}
                          ? sprintf('%+.2f%%', 100 * $s->{uplift}) : '-',
                      !defined $pv ? '-' : $pv < 0.0001 ? '<0.0001'
                                                        : sprintf('%.4f', $pv) ];
    }
    is_deeply { map { my @c = split ' '; ($c[0] => \@c) } @lines }, \%want,
        'text report: every row with our numbers';
    # aligned: each column starts at the same offset on every line
    my @starts = map { [ map { $-[0] } /\S+/g ] } $header // '', @lines;
    is_deeply [ grep { "@$_" ne "@{ $starts[0] }" } @starts ], [],
        'text report: columns aligned';
}

# =============================================================================
# 9. reload: stickiness, and counts sent just before it are kept
# =============================================================================

{
    my $res = $t->concurrent([ map { { path => '/c', headers => [
        Cookie => "loyalty_id=$_" ] } } @cust ]);
    $cnt_exp{ variant('cnt', $_) }++ for @cust;
    is scalar(grep { ($_->{status} // 0) == 200 } @$res), scalar(@cust),
        'requests right before the reload answered';
}
$t->reload;
cnt_exposures_ok('after a reload no exposure is lost or counted twice', 10);

{
    my %old = map { $_ => 1 } @old_workers;
    my ($pids, $wrong) = stick_round();
    is_deeply [ grep { $old{$_} } keys %$pids ], [],
        'after the reload only new workers answer';
    cmp_ok scalar(keys %$pids), '>=', 2, 'after the reload both workers answered';
    is_deeply $wrong, [], 'after the reload every key keeps its variant';
}

# =============================================================================
# 10. graceful shutdown flushes what is still in shared memory
# =============================================================================

{
    my $res = $t->concurrent([ map { { path => '/c', headers => [
        Cookie => "loyalty_id=$_" ] } } (@cust) x 2 ]);
    $cnt_exp{ variant('cnt', $_) } += 2 for @cust;
    is scalar(grep { ($_->{status} // 0) == 200 } @$res), 2 * @cust,
        'requests right before the shutdown answered';
}
$t->stop_nginx;    # QUIT, then waits for the master to exit
is counts_str(fields(ab_hash('cnt'), 'exposures')), counts_str(\%cnt_exp),
    'after a graceful shutdown (QUIT) every exposure is in Redis';
ok scalar($t->log_lines(qr/gracefully shutting down/)),
    'nginx was stopped gracefully';
# after the stop, so that alerts of exiting workers count too
$t->check_error_log;

# =============================================================================
# 11. nginx -t
# =============================================================================

my $srv = 'server { listen 127.0.0.1:%%PORT%%; location / { return 204; } }';
my $redis = 'loyalty_redis 127.0.0.1:%%REDIS_PORT%%;';

for (
    [ "$redis loyalty_ab t 60% a 50% b;",
      qr/percentages add up to 110%, more than 100%/, 'total over 100%' ],
    [ "$redis loyalty_ab t 60% a 40.01% b;",
      qr/percentages add up to 100\.01%, more than 100%/, 'total 100.01%' ],
    [ "$redis loyalty_ab t 10.125% a * b;",
      qr/invalid percentage "10\.125%" \(at most two decimals\)/,
      'three decimals' ],
    [ "$redis loyalty_ab t 101% a;",
      qr/invalid percentage "101%" \(more than 100%\)/, 'one variant over 100%' ],
    [ "$redis loyalty_ab t 10 a;",
      qr/invalid percentage "10" \(missing "%"\)/, 'no % sign' ],
    [ "$redis loyalty_ab t 10% a 20% a;",
      qr/duplicate variant "a"/, 'duplicate variant' ],
    [ "$redis loyalty_ab t * a 10% b;",
      qr/"\*" must be the last pair/, '* not last' ],
    [ "$redis loyalty_ab bad-name 10% a;",
      qr/invalid test name "bad-name"/, 'bad test name' ],
    [ "$redis loyalty_ab " . ('n' x 33) . " 10% a;",
      qr/invalid test name "n{33}"/, '33-character test name' ],
    [ "$redis loyalty_ab t 10% a.b;",
      qr/invalid variant name "a\.b"/, 'bad variant name' ],
    [ "$redis loyalty_ab t 10% a 20%;",
      qr/missing variant name after "20%"/, 'missing variant' ],
    [ "$redis loyalty_ab t 10% a; server { listen 127.0.0.1:%%PORT%%; "
      . "location / { loyalty_ab t 20% a; } }",
      qr/test "t" is declared differently elsewhere/,
      'same name declared differently' ],
    [ "$redis loyalty_ab t key=\$cookie_a 10% a; server { listen "
      . "127.0.0.1:%%PORT%%; location / { loyalty_ab t key=\$cookie_b 10% a; } }",
      qr/test "t" is declared differently elsewhere/,
      'same name with a different key' ],
    [ "loyalty_ab t 10% a;",
      qr/loyalty_ab test "t" has no "loyalty_redis"/, 'no loyalty_redis' ],
    [ "$redis loyalty_ab off; loyalty_ab t 10% a;",
      qr/cannot declare a test where "loyalty_ab off" is set/,
      'off and a test at one level' ],
    [ "$redis loyalty_ab t key= 10% a;", qr/empty "key="/, 'empty key=' ],
)
{
    my ($conf, $re, $label) = @$_;
    $conf .= " $srv" unless $conf =~ /server \{/;
    $t->write_config($conf);
    my ($rc, $out) = $t->nginx_t;
    isnt $rc, 0, "nginx -t fails: $label";
    like $out, $re, "nginx -t message: $label" or diag $out;
}

# and what must pass
for (
    "$redis loyalty_ab t 33.33% a 33.33% b * c;",
    "$redis loyalty_ab t 100.00% a;",
    "$redis loyalty_ab t 0% a * b;",
    "$redis loyalty_ab t 10% a; server { listen 127.0.0.1:%%PORT%%; "
    . "location / { loyalty_ab t 10% a; } location /o { loyalty_ab off; } }",
    "loyalty_ab t key=\$cookie_sid 40% a-1 60% B_2; server { listen "
    . "127.0.0.1:%%PORT%%; $redis }",
)
{
    my $conf = $_;
    $conf .= " $srv" unless $conf =~ /server \{/;
    $t->write_config($conf);
    my ($rc, $out) = $t->nginx_t;
    is $rc, 0, "nginx -t passes: $_" or diag $out;
}

done_testing;
