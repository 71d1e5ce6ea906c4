#!/usr/bin/perl
# Security: signed cookies (valid, tampered, expired, another id's
# signature, rotated and removed keys, unsigned), $loyalty_cookie_error,
# loyalty_secret file checks, Redis AUTH/SELECT (password and ACL user,
# wrong credentials without a retry storm), and hostile input: odd
# cookies, hostile Redis values, spoofed headers in any letter case.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use LoyaltyTest;

my $KEY0 = '000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f';
my $KEY1 = 'ff' x 32;
my $C42 = '42.4102444800.JMpWmaXEDkULS7pWDxKwx3frYEODRNnLonHmYocDmYE';
my $PASS = 'p@ss word "quoted"';

my $t = LoyaltyTest->new;
my $tmp = $t->tmp;

sub write_file {
    my ($name, $text, $mode) = @_;
    open my $f, '>', "$tmp/$name" or die "$name: $!";
    print $f $text;
    close $f;
    chmod $mode // 0600, "$tmp/$name";
    return "$tmp/$name";
}

# rotation: KEY1 is current, KEY0 (which signed $C42) still verifies
write_file('keys', "# current\n$KEY1\n\n# previous\n$KEY0\n");
write_file('keys-new-only', "$KEY1\n");

$t->start_redis;
my $auth_port = $t->start_redis(port => $t->named_port('redisauth'),
                                extra => [ '--requirepass', $PASS ]);
$t->{redis_auth} = [ $PASS ];
$t->redis_on($auth_port, 'ACL', 'SETUSER', 'shop', 'on', '>shop-secret',
             '~loyalty:*', '+hmget', '+select', '+ping');
$t->redis_on($auth_port, 'SELECT', 3);
$t->{redis_auth} = undef;

for my $port ($t->redis_port, $auth_port) {
    local $t->{redis_auth} = $port == $auth_port ? [ $PASS ] : undef;
    $t->redis_on($port, 'HSET', 'loyalty:customer:42', 'tier', 'gold',
                 'points', '1234');
}
$t->{redis_auth} = [ $PASS ];
$t->redis_pipeline([ [ 'SELECT', 3 ],
                     [ 'HSET', 'loyalty:customer:42', 'tier', 'db3',
                       'points', '3' ] ], port => $auth_port);
$t->{redis_auth} = undef;

# hostile records
$t->redis('HSET', 'loyalty:customer:big', 'tier', 'x' x (1024 * 1024),
          'points', '1');
$t->redis('HSET', 'loyalty:customer:bin', 'tier', "go\0ld", 'points', '1');
$t->redis('HSET', 'loyalty:customer:markup', 'tier', '</script><b>',
          'points', '1');
$t->redis('HSET', 'loyalty:customer:crlf', 'tier', 'gold',
          'points', "1\r\nSet-Cookie: x=1");
$t->redis('HSET', 'loyalty:customer:neg', 'tier', 'gold', 'points', '-1');
$t->redis('HSET', 'loyalty:customer:huge', 'tier', 'gold',
          'points', '9' x 40);
$t->redis('HSET', 'loyalty:customer:notier', 'points', '5');
$t->redis('RPUSH', 'loyalty:customer:list', 'x');

my $ret = 'return 200 "status=$loyalty_status id=$loyalty_id tier=$loyalty_tier'
        . ' err=$loyalty_cookie_error\n";';

$t->write_config(<<"CONF", log_level => 'info');
large_client_header_buffers 4 32k;
loyalty_redis 127.0.0.1:%%REDIS_PORT%%;

server {
    listen 127.0.0.1:%%PORT%%;
    loyalty_secret $tmp/keys;

    location / { loyalty on; loyalty_response_headers on; $ret }
}

server {
    listen 127.0.0.1:%%PORT_newonly%%;
    loyalty_secret keys-new-only;
    location / { loyalty on; $ret }
}

server {
    listen 127.0.0.1:%%PORT_unsigned%%;
    location / { loyalty on; loyalty_response_headers on; $ret }
    location /up { loyalty on; proxy_pass http://127.0.0.1:%%BACKEND_PORT%%; }
}

server {
    listen 127.0.0.1:%%PORT_auth%%;
    loyalty_redis 127.0.0.1:$auth_port;
    loyalty_redis_auth '$PASS';
    location / { loyalty on; $ret }
}

server {
    listen 127.0.0.1:%%PORT_acl%%;
    loyalty_redis 127.0.0.1:$auth_port;
    loyalty_redis_auth shop shop-secret;
    loyalty_redis_db 3;
    location / { loyalty on; $ret }
}

server {
    listen 127.0.0.1:%%PORT_wrong%%;
    loyalty_redis 127.0.0.1:$auth_port;
    loyalty_redis_auth shop wrong-password;
    location / { loyalty on; $ret }
}

server {
    listen 127.0.0.1:%%PORT_noauth%%;
    loyalty_redis 127.0.0.1:$auth_port;
    location / { loyalty on; $ret }
}
CONF

# --- configuration checks ----------------------------------------------------

my ($rc, $out) = $t->nginx_t;
is $rc, 0, 'nginx -t passes' or diag $out;
my @warn = $out =~ /"loyalty" is on without "loyalty_secret"/g;
is scalar(@warn), 1, 'nginx -t warns once about unsigned cookies';

{
    my $cmd = "$LoyaltyTest::NGINX -T -p $tmp/ -c $tmp/nginx.conf 2>&1";
    my $dump = `$cmd`;
    like $dump, qr/loyalty_secret \Q$tmp\E\/keys;/, 'nginx -T shows the file name';
    unlike $dump, qr/$KEY0|$KEY1/i, 'nginx -T never shows a key';
}

$t->start_backend;
$t->start_nginx;
unlike $t->error_log, qr/$KEY0|$KEY1/i, 'keys never in error.log';

sub get {
    my ($port_name, $cookie, @h) = @_;
    my $port = $port_name ? $t->named_port($port_name) : $t->port;
    return $t->request(path => '/', port => $port,
                       headers => [ (defined $cookie ? (Cookie => $cookie) : ()),
                                    @h ]);
}

sub body { return get(@_)->{body} // '' }

# --- signed cookies ----------------------------------------------------------

is body(undef, "loyalty_id=$C42"), "status=ok id=42 tier=gold err=\n",
    'cookie signed with the previous key verifies (rotation)';

my $cli = sub {
    my ($key, $id, $exp) = @_;
    # independent signer: Perl's Digest::SHA (core)
    require Digest::SHA;
    require MIME::Base64;
    my $sig = MIME::Base64::encode_base64url(
        Digest::SHA::hmac_sha256("$id.$exp", pack('H*', $key)));
    return "$id.$exp.$sig";
};

my $fresh = $cli->($KEY1, '42', time + 3600);
is body(undef, "loyalty_id=$fresh"), "status=ok id=42 tier=gold err=\n",
    'cookie signed with the current key';

my %bad = (
    'tampered signature' => [ substr($C42, 0, -1) . 'F', 'bad_signature' ],
    "another id's signature" => [ '43' . substr($C42, 2), 'bad_signature' ],
    'changed expiry' => [ '42.4102444801' . substr($C42, 13), 'bad_signature' ],
    'expired' => [ $cli->($KEY1, '42', time - 10), 'expired' ],
    'unsigned id' => [ '42', 'malformed' ],
    'empty' => [ '', 'malformed' ],
    'garbage' => [ 'a.b.c', 'malformed' ],
    'signature padded' => [ "$C42=", 'malformed' ],
);
for my $case (sort keys %bad) {
    my ($value, $why) = @{ $bad{$case} };
    is body(undef, "loyalty_id=$value"),
        "status=invalid id= tier= err=$why\n", "$case: invalid ($why)";
}
ok scalar($t->log_lines(qr/\[info\].*loyalty cookie "loyalty_id" rejected \(bad_signature/)),
    'bad signature logged at info';
ok scalar($t->log_lines(qr/\[info\].*rejected \(expired/)), 'expiry logged at info';
unlike $t->error_log, qr/JMpWmaXEDkULS7pWDxKwx3frYEODRNnLonHmYocDmY/,
    'cookie values never logged';

is body('newonly', "loyalty_id=$C42"),
    "status=invalid id= tier= err=bad_signature\n",
    'key removed from the rotation: its cookies no longer verify';
is body('newonly', "loyalty_id=$fresh"), "status=ok id=42 tier=gold err=\n",
    'the remaining key still verifies';

# --- fixed test vectors (t/fixtures/cookie-vectors.txt) ---------------------

my $vectors = "$FindBin::Bin/fixtures/cookie-vectors.txt";
SKIP: {
    skip 'no t/fixtures/cookie-vectors.txt', 1 unless -f $vectors;
    open my $vf, '<', $vectors or die $!;
    my $n = 0;
    for (<$vf>) {
        chomp;
        next if /^#/ || !/\S/;
        my ($key, $id, $exp, $cookie) = split /\t/;
        next if $id =~ /^(key|id)$/;
        $n++;
        is $cli->($key, $id, $exp), $cookie, "vector $n: independent signer agrees";
    }
    ok $n >= 6, "$n vectors";
}

# --- unsigned mode: hostile cookies -----------------------------------------

my @odd = (
    [ 'loyalty_id=', 'invalid', 'empty value' ],
    [ 'loyalty_id=' . ('a' x 4096), 'invalid', '4 KB value' ],
    [ 'x=' . ('y' x 16000) . '; loyalty_id=42', 'ok', '16 KB Cookie header' ],
    [ "loyalty_id=\xc3\xa9t\xc3\xa9", 'invalid', 'non-ASCII bytes' ],
    [ 'loyalty_id=%34%32', 'invalid', 'percent-encoded' ],
    [ 'loyalty_id=42; loyalty_id=43', 'ok', 'duplicate names: first wins' ],
    [ 'loyalty_id=bad!; loyalty_id=42', 'invalid',
      'duplicate names: a malformed first one is not skipped' ],
);
for (@odd) {
    my ($cookie, $want, $name) = @$_;
    my $r = get('unsigned', $cookie);
    is $r->{status}, 200, "$name: served";
    like $r->{body}, qr/^status=\Q$want\E /, "$name: $want";
}
like body('unsigned', 'loyalty_id=42; loyalty_id=43'), qr/id=42 /,
    'duplicate names: the first id is used';

# nginx's own header parser refuses NUL bytes before any module runs
my $r = get('unsigned', "loyalty_id=4\x002");
is $r->{status}, 400, 'NUL byte in the Cookie header: 400 from nginx core';
like body('unsigned', 'loyalty_id=42'), qr/^status=ok /,
    'the worker serves the next request';

$r = get('unsigned', undef, Cookie => 'a=1', Cookie => 'loyalty_id=42',
            Cookie => 'loyalty_id=43');
like $r->{body}, qr/^status=ok id=42 /, 'several Cookie headers: first match';

# --- hostile Redis values ---------------------------------------------------

for my $id (qw(big bin markup crlf neg huge notier list)) {
    $r = get('unsigned', "loyalty_id=$id");
    is $r->{status}, 200, "record '$id': served";
    like $r->{body}, qr/^status=error id=$id tier= /, "record '$id': error";
    ok !exists $r->{headers}{'x-loyalty-tier'}
       && !exists $r->{headers}{'set-cookie'}, "record '$id': nothing leaks";
    unlike $r->{body}, qr/script|Set-Cookie/, "record '$id': body clean";
}

# --- spoofed headers in any letter case -------------------------------------

my @spoof;
srand(7);
for my $name (qw(x-loyalty-tier x-loyalty-points x-loyalty-id
                 x-loyalty-status x-loyalty-variants))
{
    for (1 .. 8) {
        push @spoof, join('', map { rand() < .5 ? uc : lc } split //, $name)
                     => 'platinum';
    }
}
push @spoof, 'X-LOYALTY-TIER' => 'platinum', 'x-loyalty-tier' => 'platinum';
$r = $t->request(path => '/up', port => $t->named_port('unsigned'),
                 headers => [ @spoof, Cookie => 'loyalty_id=42' ]);
is $r->{status}, 200, 'spoofed headers in 42 letter-case variants: served';
unlike $r->{body}, qr/platinum/, 'none reaches the upstream';
like $r->{body}, qr/^X-Loyalty-Tier: gold$/m, 'the real tier does';

# --- Redis AUTH and SELECT --------------------------------------------------

like body('auth', 'loyalty_id=42'), qr/^status=ok id=42 tier=gold /,
    'requirepass: AUTH password works';
like body('acl', 'loyalty_id=42'), qr/^status=ok id=42 tier=db3 /,
    'ACL user with loyalty_redis_db 3';

my $t0 = time;
for (1 .. 20) {
    like body('wrong', 'loyalty_id=42'), qr/^status=error /,
        "wrong credentials: error ($_)";
}
like body('noauth', 'loyalty_id=42'), qr/^status=error /,
    'no credentials for a protected Redis: error';
sleep 2;
my @auth_lines = $t->log_lines(qr/\[error\].*authentication \(AUTH\) failed/);
ok scalar(@auth_lines) >= 1, 'authentication failure is logged';
my $secs = time - $t0;
cmp_ok scalar(@auth_lines), '<=', 30 * $secs,
    scalar(@auth_lines) . " AUTH failures logged in ${secs}s: no retry storm";
unlike $t->error_log, qr/\Qshop-secret\E|wrong-password|\Q$PASS\E/,
    'passwords never logged';

my $clients = do { local $t->{redis_auth} = [ $PASS ];
                   $t->redis_on($auth_port, 'CLIENT', 'LIST') };
my $n = () = $clients =~ /^id=/mg;
cmp_ok $n, '<=', 8, "Redis holds few connections ($n), not one per attempt";

$t->check_error_log;
$t->stop_nginx;

# --- loyalty_secret errors --------------------------------------------------

my @secret_errors = (
    [ 'missing', undef, qr/"loyalty_secret" cannot open ".*missing"/ ],
    [ 'short', "abcdef\n", qr/key is shorter than 32 bytes/ ],
    [ 'nothex', ('zz' x 32) . "\n", qr/hex digits only/ ],
    [ 'empty', "# only a comment\n", qr/no key found/ ],
    [ 'worldread', "$KEY0\n", qr/is world-readable/, 0644 ],
);
for (@secret_errors) {
    my ($name, $text, $re, $mode) = @$_;
    write_file("s-$name", $text, $mode) if defined $text;
    $t->write_config("loyalty_redis 127.0.0.1:1; loyalty_secret $tmp/s-$name;"
                     . ' server { listen 127.0.0.1:%%PORT%%; loyalty on; }');
    my ($rc, $out) = $t->nginx_t;
    isnt $rc, 0, "loyalty_secret $name: nginx -t fails";
    like $out, $re, "loyalty_secret $name: message";
    unlike $out, qr/$KEY0/, "loyalty_secret $name: no key in the message";
}

write_file('s-ok', "$KEY0\n", 0640);
$t->write_config("loyalty_redis 127.0.0.1:1; loyalty_secret $tmp/s-ok;"
                 . ' server { listen 127.0.0.1:%%PORT%%; loyalty on; }');
($rc, $out) = $t->nginx_t;
is $rc, 0, 'group-readable key file is accepted';
unlike $out, qr/without "loyalty_secret"/, 'no warning with a secret';

for ([ 'loyalty_redis_auth "";', qr/"loyalty_redis_auth" directive has an empty password/ ],
     [ 'loyalty_redis_auth a b c;', qr/invalid number of arguments in "loyalty_redis_auth"/ ],
     [ 'loyalty_redis_db -1;', qr/"loyalty_redis_db" directive invalid number/ ],
     [ 'loyalty_secret a b;', qr/invalid number of arguments in "loyalty_secret"/ ])
{
    my ($line, $re) = @$_;
    $t->write_config("loyalty_redis 127.0.0.1:1; $line"
                     . ' server { listen 127.0.0.1:%%PORT%%; }');
    my ($rc, $out) = $t->nginx_t;
    isnt $rc, 0, "nginx -t fails: $line";
    like $out, $re, "message names the directive: $line";
}

done_testing;
