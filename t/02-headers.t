#!/usr/bin/perl
# X-Loyalty-* request headers to a real proxied backend and to FastCGI,
# client-sent X-Loyalty-* headers stripped in any letter case, response
# headers on/off, and Redis values that must never reach a header.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use IO::Select;
use LoyaltyTest;

my $t = LoyaltyTest->new;
$t->start_redis;
$t->start_backend;

$t->redis('HSET', 'loyalty:customer:42', 'tier', 'gold', 'points', '1234');
$t->redis('HSET', 'loyalty:customer:66', 'tier', "gold\r\nX-Evil: 1",
          'points', '5');
$t->redis('HSET', 'loyalty:customer:67', 'tier', 'gold',
          'points', "5\r\nX-Evil: 1");
$t->redis('HSET', 'loyalty:customer:68', 'tier', 'gold\nX', 'points', '5');

# FastCGI "backend": records the bytes nginx sends, then closes
my $fcgi_file = $t->tmp . '/fastcgi.bin';
my $fcgi_port = $t->fake_server(sub {
    my ($s) = @_;
    my ($buf, $all) = ('', '');
    my $sel = IO::Select->new($s);
    while ($sel->can_read(1)) {
        last unless sysread($s, $buf, 65536);
        $all .= $buf;
        # FCGI_STDIN with content length 0 ends the request
        last if $all =~ /\x01\x05..\x00\x00/s;
    }
    open my $f, '>>', $fcgi_file or die $!;
    print $f $all;
    close $f;
});

$t->write_config(<<"CONF");
loyalty_redis 127.0.0.1:%%REDIS_PORT%%;

server {
    listen 127.0.0.1:%%PORT%%;

    location / {
        loyalty on;
        proxy_pass http://127.0.0.1:%%BACKEND_PORT%%;
    }

    location /resp/ {
        loyalty on;
        loyalty_response_headers on;
        loyalty_upstream_headers off;
        proxy_pass http://127.0.0.1:%%BACKEND_PORT%%;
    }

    location /set-header/ {
        loyalty on;
        proxy_set_header X-Loyalty-Tier "[\$loyalty_tier]";
        proxy_pass http://127.0.0.1:%%BACKEND_PORT%%;
    }

    location /off/ {
        proxy_pass http://127.0.0.1:%%BACKEND_PORT%%;
    }

    location /fcgi {
        loyalty on;
        fastcgi_pass 127.0.0.1:$fcgi_port;
        fastcgi_connect_timeout 2s;
        fastcgi_read_timeout 2s;
    }
}
CONF
$t->start_nginx;

# what the backend saw: lower-cased header name => [values]
sub seen {
    my ($r) = @_;
    my %h;
    for (split /\n/, $r->{body} // '') {
        push @{ $h{ lc $1 } }, $2 if /^([^:]+): (.*)$/;
    }
    return \%h;
}

my $r = $t->get('/', Cookie => 'loyalty_id=42');
is $r->{status}, 200, 'proxied known customer';
my $h = seen($r);
is_deeply $h->{'x-loyalty-tier'}, ['gold'], 'backend got X-Loyalty-Tier';
is_deeply $h->{'x-loyalty-points'}, ['1234'], 'backend got X-Loyalty-Points';
is_deeply $h->{'x-loyalty-id'}, ['42'], 'backend got X-Loyalty-Id';
is_deeply $h->{'x-loyalty-status'}, ['ok'], 'backend got X-Loyalty-Status';
ok !exists $r->{headers}{'x-loyalty-tier'},
    'no response headers by default';

$r = $t->get('/', Cookie => 'loyalty_id=43');
$h = seen($r);
is_deeply $h->{'x-loyalty-status'}, ['unknown'], 'unknown: status header';
is_deeply $h->{'x-loyalty-id'}, ['43'], 'unknown: id header';
ok !exists $h->{'x-loyalty-tier'} && !exists $h->{'x-loyalty-points'},
    'unknown: no tier or points';

$r = $t->get('/');
$h = seen($r);
is_deeply $h->{'x-loyalty-status'}, ['anonymous'], 'anonymous: status header';
ok !exists $h->{'x-loyalty-id'}, 'anonymous: no id header';

# --- spoofing -----------------------------------------------------------------

my @spoof = ('X-Loyalty-Tier' => 'platinum', 'x-loyalty-points' => '999999',
             'X-LOYALTY-ID' => '1', 'x-LoYaLtY-sTaTuS' => 'ok',
             'X-Loyalty-Anything' => 'x', 'X-Loyalty-Tier' => 'platinum2');

for my $cookie (undef, 'loyalty_id=42', 'loyalty_id=43', 'loyalty_id=b@d') {
    $r = $t->request(path => '/', headers => [
        @spoof, defined $cookie ? (Cookie => $cookie) : () ]);
    $h = seen($r);
    my $label = $cookie // 'anonymous';
    is $r->{status}, 200, "spoofed headers ($label): served";
    ok !(grep { /platinum|999999|anything/ } map { @$_ } values %$h),
        "spoofed values never reach the backend ($label)";
    ok !exists $h->{'x-loyalty-anything'}, "any X-Loyalty-* removed ($label)";
    is scalar(@{ $h->{'x-loyalty-status'} // [] }), 1,
        "exactly one X-Loyalty-Status ($label)";
}

$h = seen($t->request(path => '/', headers => [ @spoof,
                                                Cookie => 'loyalty_id=42' ]));
is_deeply $h->{'x-loyalty-tier'}, ['gold'], 'real tier replaces the spoofed';
is_deeply $h->{'cookie'}, ['loyalty_id=42'],
    'other headers intact after rebuild';
ok scalar($t->log_lines(qr/\[info\].*removed \d+ client-sent X-Loyalty-\*/)),
    'stripping is logged at info';

$h = seen($t->request(path => '/off/', headers => [ @spoof ]));
is_deeply $h->{'x-loyalty-tier'}, [ 'platinum', 'platinum2' ],
    'where loyalty is off, headers pass untouched';

$r = $t->request(path => '/set-header/', headers => [
    'X-Loyalty-Tier' => 'platinum', Cookie => 'loyalty_id=42' ]);
is_deeply seen($r)->{'x-loyalty-tier'}, ['[gold]'],
    'proxy_set_header with $loyalty_tier replaces the module header';

# --- response headers, upstream headers off -------------------------------

$r = $t->request(path => '/resp/', headers => [
    'X-Loyalty-Tier' => 'platinum', Cookie => 'loyalty_id=42' ]);
is $r->{headers}{'x-loyalty-tier'}, 'gold', 'response X-Loyalty-Tier';
is $r->{headers}{'x-loyalty-points'}, '1234', 'response X-Loyalty-Points';
$h = seen($r);
ok !(grep { /^x-loyalty-/ } keys %$h),
    'upstream headers off: none sent, spoofed ones still removed';

$r = $t->get('/resp/', Cookie => 'loyalty_id=43');
ok !exists $r->{headers}{'x-loyalty-tier'},
    'no response headers for unknown customers';

# --- values that would break headers ----------------------------------------

for my $id (66, 67, 68) {
    $r = $t->get('/resp/', Cookie => "loyalty_id=$id");
    is $r->{status}, 200, "bad value in record $id: served";
    ok !exists $r->{headers}{'x-evil'}, "record $id: no injected header";
    ok !exists $r->{headers}{'x-loyalty-tier'},
        "record $id: rejected, no tier header";
    $h = seen($t->get('/', Cookie => "loyalty_id=$id"));
    is_deeply $h->{'x-loyalty-status'}, ['error'],
        "record $id: status error upstream";
    ok !exists $h->{'x-evil'}, "record $id: nothing injected upstream";
}
ok scalar($t->log_lines(qr/\[error\].*loyalty record rejected: "tier"/)),
    'rejected tier is logged';
ok scalar($t->log_lines(qr/\[error\].*loyalty record rejected: "points"/)),
    'rejected points are logged';

# --- FastCGI ----------------------------------------------------------------

$t->get('/fcgi', Cookie => 'loyalty_id=42', 'X-Loyalty-Tier' => 'platinum');
ok $t->wait_for(sub { -s $fcgi_file }, 5), 'FastCGI request captured';
my $fcgi = do { local $/; open my $f, '<', $fcgi_file; <$f> } // '';
like $fcgi, qr/HTTP_X_LOYALTY_TIERgold/, 'FastCGI param HTTP_X_LOYALTY_TIER';
like $fcgi, qr/HTTP_X_LOYALTY_POINTS1234/, 'FastCGI param HTTP_X_LOYALTY_POINTS';
unlike $fcgi, qr/platinum/, 'spoofed value not passed to FastCGI';

$t->check_error_log;
$t->stop_nginx;
done_testing;
