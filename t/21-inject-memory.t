#!/usr/bin/perl
# loyalty_inject json takes what a body needs, not loyalty_inject_json_max_size
# per response: 200 injections held in flight at once by a backend that
# sends half of each body and waits; the worker's memory (VmRSS, VmData)
# grows by what the bodies need, and with its address space capped at
# +64 MiB all 200 are still injected byte for byte.  Also bodies with and
# without Content-Length, a body that grows past the first buffer several
# times, one exactly at the max (injected), one byte over (unchanged) and
# a Content-Length above the max (unchanged).

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP;
use LoyaltyTest;

my $t = LoyaltyTest->new;
my $tmp = $t->tmp;
$t->start_redis;
$t->redis('HSET', 'loyalty:customer:g1', 'tier', 'gold', 'points', 1200);

# a JSON object of exactly $size bytes, different for each id
sub body_of {
    my ($id, $size) = @_;
    my $head = qq({"id":"$id","pad":");
    my $pad = $size - length($head) - 2;
    die "body_of: $size bytes is too small\n" if $pad < 0;
    return $head . substr(('abcdefghij' x (1 + $pad / 10)), 0, $pad) . '"}';
}

# The backend: /{cl|chunked}/<size>/<id>[/<pieces>] answers body_of(id,
# size), with Content-Length or chunked, in <pieces> writes (2 unless
# given).  While $hold exists, it stops after the first piece (and counts
# that in $firsts), so the responses stay in the middle of their bodies.
my $hold = "$tmp/hold";
my $firsts = "$tmp/firsts";

my $backend = $t->fake_server(sub {
    my ($s) = @_;
    my $req = '';
    while ($req !~ /\r\n\r\n/) {
        sysread($s, $req, 4096, length $req) or return;
    }
    my ($kind, $size, $id, $pieces) =
        $req =~ m{^GET /(cl|chunked)/(\d+)/(\w+)(?:/(\d+))? };
    return unless defined $kind;
    $pieces //= 2;

    my $body = body_of($id, $size);
    my $step = int((length($body) + $pieces - 1) / $pieces);
    my @parts = map { substr($body, $_ * $step, $step) }
                grep { $_ * $step < length $body } 0 .. $pieces - 1;

    my $head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
             . ($kind eq 'cl' ? "Content-Length: " . length($body) . "\r\n"
                              : "Transfer-Encoding: chunked\r\n")
             . "Connection: close\r\n\r\n";
    my $frame = sub {
        $kind eq 'cl' ? $_[0] : sprintf("%x\r\n%s\r\n", length $_[0], $_[0]);
    };

    for my $i (0 .. $#parts) {
        syswrite($s, ($i == 0 ? $head : '') . $frame->($parts[$i]));
        if ($i == 0 && -e $hold) {
            open my $f, '>>', $firsts or die "$firsts: $!";
            syswrite($f, '.');
            close $f;
            select(undef, undef, undef, 0.02) while -e $hold;
        } elsif ($pieces > 2) {
            # separate reads in nginx, so the body grows in steps
            select(undef, undef, undef, 0.005);
        }
    }
    syswrite($s, "0\r\n\r\n") if $kind eq 'chunked';
});

$t->write_config(<<"CONF", workers => 1, access_log => 0);
loyalty_redis 127.0.0.1:%%REDIS_PORT%%;

server {
    listen 127.0.0.1:%%PORT%%;
    loyalty on;

    location = /vars {
        return 200 "\$loyalty_json";
    }

    location / {
        loyalty_inject json;
        proxy_pass http://127.0.0.1:$backend;
        proxy_buffering off;
    }

    location /small/ {
        loyalty_inject json;
        loyalty_inject_json_max_size 8k;
        proxy_pass http://127.0.0.1:$backend/;
        proxy_buffering off;
    }
}
CONF
$t->start_nginx;

my ($worker) = $t->worker_pids;
ok $worker, "one worker ($worker)";

my %frag = (
    anonymous => $t->get('/vars')->{body},
    g1        => $t->get('/vars', Cookie => 'loyalty_id=g1')->{body},
);
like $frag{g1}, qr/^\{"status":"ok","tier":"gold"/, 'the customer is found';

sub injected {
    my ($body, $who) = @_;
    my $sep = $body eq '{}' ? '' : ',';
    return substr($body, 0, -1) . $sep . '"loyalty":' . $frag{$who} . '}';
}

sub fetch {
    my ($path, $who) = @_;
    return $t->request(path => $path,
                       headers => [ $who eq 'anonymous' ? ()
                                    : (Cookie => "loyalty_id=$who") ]);
}

# --- bodies with and without Content-Length, growth, the max ---------------

for my $kind (qw(cl chunked)) {
    for my $c ([ 2048, 2, 'a 2 KB body' ],
               [ 2048, 1, 'a 2 KB body in one piece' ],
               [ 100_000, 25, 'a 100 KB body in 25 pieces (grows)' ])
    {
        my ($size, $pieces, $what) = @$c;
        my $body = body_of("k$size", $size);
        my $r = fetch("/$kind/$size/k$size/$pieces", 'g1');
        is $r->{status}, 200, "$kind: $what: 200";
        ok $r->{body} eq injected($body, 'g1'),
            "$kind: $what: injected, the rest byte for byte"
            or diag substr($r->{body}, 0, 200);
    }

    my $r = fetch("/small/$kind/8192/max/4", 'g1');
    ok $r->{body} eq injected(body_of('max', 8192), 'g1'),
        "$kind: a body of exactly loyalty_inject_json_max_size is injected";

    for my $pieces (1, 4) {
        $r = fetch("/small/$kind/8193/over/$pieces", 'g1');
        ok $r->{body} eq body_of('over', 8193),
            "$kind: one byte over the max, in $pieces piece(s): unchanged";
        is $r->{headers}{'cache-control'}, 'private',
            "$kind: over the max: still Cache-Control: private";
    }
}

my $r = fetch('/small/cl/100000/big/1', 'g1');
ok $r->{body} eq body_of('big', 100_000),
    'a Content-Length far above the max: unchanged';
ok scalar($t->log_lines(qr/\[info\].*JSON body larger than 8192 bytes/)),
    'over the max: logged at info';

# --- 200 injections in flight at once -----------------------------------------

# what the kernel counts for the worker, in KiB
sub status_kb {
    my ($field) = @_;
    open my $f, '<', "/proc/$worker/status" or die "/proc/$worker: $!";
    local $/;
    my ($kb) = <$f> =~ /^$field:\s+(\d+) kB/m;
    return $kb;
}

my $N = 200;
my $SIZE = 2048;

# Starts $N requests (half with a customer, half anonymous; half of the
# bodies with Content-Length, half chunked) that the backend holds after
# the first half of each body, waits until the worker has read them all
# (its memory stops moving), releases them, and returns the highest
# VmRSS and VmData seen while they were held and how many of the
# responses were injected byte for byte.
sub in_flight {
    my ($round) = @_;
    open my $hf, '>', $hold or die "$hold: $!";
    close $hf;
    unlink $firsts;

    my @h;
    for my $i (1 .. $N) {
        my $who = $i % 2 ? 'g1' : 'anonymous';
        my $kind = $i % 4 < 2 ? 'cl' : 'chunked';
        push @h, [ $t->start_request(
                       path => "/$kind/$SIZE/$round$i", timeout => 60,
                       headers => [ $who eq 'g1' ? (Cookie => 'loyalty_id=g1')
                                                 : () ]),
                   $who, "$round$i" ];
    }

    ok $t->wait_for(sub { (-s $firsts // 0) == $N }, 30),
        "$round: $N responses wait in the middle of their bodies";

    my ($rss, $data) = (0, 0);
    my ($last, $still) = (-1, 0);
    $t->wait_for(sub {
        my ($r, $d) = (status_kb('VmRSS'), status_kb('VmData'));
        $rss = $r if $r > $rss;
        $data = $d if $d > $data;
        $still = ($r + $d == $last) ? $still + 1 : 0;
        $last = $r + $d;
        return $still >= 10;
    }, 10);

    unlink $hold;

    my $ok = 0;
    for (@h) {
        my ($hd, $who, $id) = @$_;
        my $res = $t->finish_request($hd);
        $ok++ if ($res->{status} // 0) == 200
                 && $res->{body} eq injected(body_of($id, $SIZE), $who);
    }
    return ($rss, $data, $ok);
}

# warm up: connections, buffers and pools of the same kind, one at a time
fetch("/cl/$SIZE/w$_", $_ % 2 ? 'g1' : 'anonymous') for 1 .. 20;

my ($rss0, $data0) = (status_kb('VmRSS'), status_kb('VmData'));
my $vm0 = status_kb('VmSize');
my ($rss, $data, $ok) = in_flight('m');
is $ok, $N, "all $N concurrent responses injected correctly";

my $grew = ($rss - $rss0) / 1024;
my $vgrew = ($data - $data0) / 1024;
diag sprintf "worker VmRSS %d -> %d KiB (+%.1f MiB), VmData %d -> %d KiB "
             . "(+%.1f MiB), with %d x %d-byte bodies in flight",
             $rss0, $rss, $grew, $data0, $data, $vgrew, $N, $SIZE;

# The bodies need 200 x 2 KiB (under 1 MiB) and nginx's own memory per
# proxied request (pools, client and upstream buffers) some KiB more:
# a few MiB in all.  One buffer of the default maximum per response
# would be 200 x 1 MiB = 200 MiB.  64 MiB lies far from both.  Linux
# keeps only the pages written in memory, so such a buffer adds little
# to VmRSS while its body is small; VmData counts it whole.
cmp_ok $grew, '<', 64, 'VmRSS growth is bounded by what the bodies need';
cmp_ok $vgrew, '<', 64,
    'so is the memory the worker allocated (VmData growth)';

# The same again with nginx's address space capped at what a worker has
# when idle plus 64 MiB: buffers of the maximum do not fit there.  The
# cap is set on this test process (a soft limit it may lower and raise
# again without privileges) while it starts nginx, which inherits it;
# the workers run as another user, whose limits it may not set.
SKIP: {
    my $cap = ($vm0 + 64 * 1024) * 1024;
    $t->stop_nginx;

    skip 'prlimit is not available', 3
        unless system('prlimit', "--pid=$$", "--as=$cap:") == 0;
    my $started = eval { $t->start_nginx; 1 };
    system('prlimit', "--pid=$$", '--as=unlimited:') == 0
        or BAIL_OUT('cannot lift the address space limit again');
    die $@ unless $started;

    ($worker) = $t->worker_pids;
    fetch("/cl/$SIZE/w$_", $_ % 2 ? 'g1' : 'anonymous') for 1 .. 20;
    like _slurp("/proc/$worker/limits"),
        qr/^Max address space\s+$cap\s+/m, "the worker has the cap ($cap)";

    (undef, undef, $ok) = in_flight('a');
    is $ok, $N, "with the address space capped: all $N injected";
}

sub _slurp { open my $f, '<', $_[0] or return ''; local $/; <$f> }

$t->check_error_log;
$t->stop_nginx;
done_testing;
