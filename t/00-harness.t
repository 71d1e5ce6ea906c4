#!/usr/bin/perl
# Self-test of t/lib/LoyaltyTest.pm.  Does not need the loyalty module:
# the nginx part runs plain nginx (write_config(..., module => 0)).

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use IO::Socket::INET;
use IO::Select;
use LoyaltyTest;

my $t = LoyaltyTest->new;
ok -d $t->tmp, 'temp dir exists';
is sprintf('%o', (stat $t->tmp)[2] & 07777), '777', 'temp dir is 0777';
ok -d $t->root . '/t', 'repo root found';

# --- ports -----------------------------------------------------------------
my %seen;
my @ports = map { $t->free_port } 1 .. 20;
$seen{$_}++ for @ports;
is scalar(keys %seen), 20, 'free_port never repeats';
is $t->named_port('x'), $t->named_port('x'), 'named_port is stable';
isnt $t->named_port('x'), $t->named_port('y'), 'named ports differ';

# --- wait_for ---------------------------------------------------------------
my $n = 0;
ok $t->wait_for(sub { ++$n >= 3 }, 2), 'wait_for succeeds';
ok !$t->wait_for(sub { 0 }, 0.2), 'wait_for times out';

# --- redis -----------------------------------------------------------------
my $reserved = $t->redis_port;
my $rport = $t->start_redis;
is $rport, $reserved, 'first redis uses the port reserved by redis_port';
is $t->redis('PING'), 'PONG', 'PING';
is $t->redis('SET', 'k', 'v'), 'OK', 'SET';
is $t->redis('GET', 'k'), 'v', 'GET';
is $t->redis('GET', 'missing'), undef, 'nil is undef';
is $t->redis('INCRBY', 'cnt', 5), 5, 'integer reply';

my $bin = "a\r\nb\0c\r\n\$3\r\n*1\r\n";
is $t->redis('HSET', 'h', "f\r\n1", $bin, 'plain', 'x'), 2, 'HSET binary';
is $t->redis('HGET', 'h', "f\r\n1"), $bin, 'binary value round-trips';
is_deeply [ sort @{ $t->redis('HKEYS', 'h') } ], [ sort "f\r\n1", 'plain' ],
    'array reply';
is_deeply $t->redis('LRANGE', 'nolist', 0, -1), [], 'empty array';
my $scan = $t->redis('SCAN', 0, 'MATCH', 'k');
is ref($scan), 'ARRAY', 'nested array reply';
is ref($scan->[1]), 'ARRAY', 'nested inner array';
is_deeply $t->redis_pipeline([ [ 'MULTI' ], [ 'INCR', 'cnt' ], [ 'GET', 'k' ],
                                [ 'EXEC' ] ])->[3], [ 6, 'v' ],
    'pipeline with MULTI/EXEC';

eval { $t->redis('HGET', 'k', 'f') };
like $@, qr/^WRONGTYPE/, 'error reply dies with the error text';
is_deeply $t->redis_try('HGET', 'k', 'f'),
    { error => $t->redis_try('HGET', 'k', 'f')->{error} }, 'redis_try';
like $t->redis_try('NOSUCHCMD')->{error}, qr/^ERR unknown command/,
    'redis_try returns {error}';

# second instance with a password
my $rport2 = $t->start_redis(extra => [ '--requirepass', 's3cret' ]);
isnt $rport2, $rport, 'second redis on another port';
is $t->redis_port, $rport, 'redis_port is still the first one';
like $t->redis_try_on($rport2, 'PING')->{error}, qr/NOAUTH/, 'needs auth';
{
    local $t->{redis_auth} = ['s3cret'];
    is $t->redis_on($rport2, 'PING'), 'PONG', 'AUTH before command';
}

# signals: STOP makes redis hang, CONT resumes
{
    local $t->{redis_timeout} = 1;
    $t->redis_signal('STOP');
    eval { $t->redis('PING') };
    like $@, qr/timeout/, 'stopped redis times out';
    $t->redis_signal('-CONT');
    is $t->redis('PING'), 'PONG', 'continued redis answers';
}

# kill + restart on the same port; restart keeps the extra args
my $oldpid = $t->redis_pid($rport2);
$t->redis_signal('KILL', $rport2);
ok $t->wait_for(sub { !eval { $t->redis_try_on($rport2, 'PING'); 1 } }, 3),
    'killed redis is gone';
is $t->restart_redis($rport2), $rport2, 'restart_redis on same port';
isnt $t->redis_pid($rport2), $oldpid, 'new pid';
like $t->redis_try_on($rport2, 'PING')->{error}, qr/NOAUTH/,
    'restart keeps extra args';
$t->stop_redis($rport2);
ok !kill(0, $oldpid), 'old redis reaped';
ok !eval { $t->redis_on($rport2, 'PING'); 1 }, 'stopped redis is down';

$t->restart_redis;
is $t->redis('GET', 'k'), undef, 'restarted redis is empty';

# --- fake servers ----------------------------------------------------------
sub talk {
    my ($port, $send, $wait) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                  Proto => 'tcp', Timeout => 2)
        or die "connect $port: $!";
    syswrite $s, $send;
    my ($buf, $state) = ('', 'open');
    my $sel = IO::Select->new($s);
    my $end = Time::HiRes::time() + $wait;
    while ((my $left = $end - Time::HiRes::time()) > 0) {
        last unless $sel->can_read($left);
        my $r = sysread $s, $buf, 4096, length $buf;
        if (!defined $r) { $state = "error: $!"; last }
        if ($r == 0)     { $state = 'eof'; last }
    }
    return ($buf, $state);
}
my $ping = "*1\r\n\$4\r\nPING\r\n";

my $gp = $t->fake_server(LoyaltyTest::fake_garbage());
my ($buf, $state) = talk($gp, $ping, 0.5);
is $buf, "?%garbage\r\n", 'fake_garbage answers garbage';
is $state, 'open', 'fake_garbage keeps the connection open';

my $rp = $t->fake_server(LoyaltyTest::fake_reset());
($buf, $state) = talk($rp, $ping, 2);
is $buf, '', 'fake_reset sends nothing';
like $state, qr/reset|eof/i, "fake_reset closes ($state)";

my $sp = $t->fake_server(LoyaltyTest::fake_silent());
($buf, $state) = talk($sp, $ping, 0.5);
is $buf, '', 'fake_silent sends nothing';
is $state, 'open', 'fake_silent keeps connection open';

my $fp = $t->fake_server(LoyaltyTest::fake_reply("+PONG\r\n"));
($buf) = talk($fp, $ping x 2 . "*2\r\n\$3\r\nGET\r\n\$1\r\nk\r\n", 0.5);
is $buf, "+PONG\r\n" x 3, 'fake_reply answers each pipelined command';
is $t->redis_on($fp, 'GET', 'x'), 'PONG', 'RESP client against fake_reply';
$t->stop_fake_server($fp);
ok !eval { $t->redis_on($fp, 'PING'); 1 }, 'stopped fake server is gone';

my $custom = $t->fake_server(sub { my ($s) = @_; print $s "hello\n" });
($buf, $state) = talk($custom, '', 1);
is "$buf/$state", "hello\n/eof", 'custom fake server';

# --- backend + HTTP client -------------------------------------------------
my $bp = $t->start_backend;
is $bp, $t->backend_port, 'backend on backend_port';
my $r = $t->request(port => $bp, method => 'POST', path => '/a?b=1',
                    headers => [ 'X-Loyalty-Tier' => 'gold',
                                 'X-Dup' => 1, 'X-Dup' => 2 ],
                    body => "x=1\r\n");
is $r->{status}, 200, 'backend 200';
is $r->{headers}{'content-type'}, 'text/plain', 'content type';
is $r->{headers}{'x-backend-body-length'}, 5, 'backend read the body';
my @lines = split /\n/, $r->{body};
is $lines[0], 'POST /a?b=1 HTTP/1.1', 'request line echoed';
ok((grep { $_ eq 'X-Loyalty-Tier: gold' } @lines), 'header echoed');
is scalar(grep { /^X-Dup: / } @lines), 2, 'duplicate headers echoed';
ok((grep { $_ eq 'Host: localhost' } @lines), 'default Host');
ok((grep { $_ eq 'Connection: close' } @lines), 'Connection: close');
ok $r->{elapsed} > 0, 'elapsed';

my $many = $t->concurrent([ map { { port => $bp, path => "/c$_" } } 1 .. 50 ]);
is scalar(grep { ($_->{status} // 0) == 200 } @$many), 50,
    'backend handles 50 concurrent connections';
is scalar(grep { $many->[$_]{body} =~ m{^GET /c@{[$_ + 1]} } } 0 .. 49), 50,
    'concurrent responses are in request order';

# --- nginx (without the loyalty module) ------------------------------------
SKIP: {
    skip 'no nginx binary', 1 unless -x $LoyaltyTest::NGINX;

    my $slow = $t->fake_server(sub {
        my ($s) = @_;
        sysread $s, my $b, 65536;
        sleep 1;
        print $s "HTTP/1.0 200 OK\r\n\r\nslow";
    });
    # answers without Content-Length: nginx sends chunked to the client
    my $nocl = $t->fake_server(sub {
        my ($s) = @_;
        sysread $s, my $b, 65536;
        print $s "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n";
        print $s "part$_\n" for 1 .. 3;
    });

    my $conf = $t->write_config(<<"EOF", module => 0, workers => 2);
    server {
        listen 127.0.0.1:%%PORT%%;
        location / { return 200 "hello\\n"; }
        location /head { add_header X-A 1; add_header X-A 2; return 204; }
        location /proxy { proxy_pass http://127.0.0.1:%%BACKEND_PORT%%; }
        location /slow { proxy_pass http://127.0.0.1:$slow; }
        location /chunked { proxy_pass http://127.0.0.1:$nocl; }
        location /tmp { return 200 "%%TMP%% %%PORT_extra%% %%REDIS_PORT%%"; }
    }
EOF
    ok -f $conf, 'config written';
    ok !eval { $t->write_config('%%NOPE%%', module => 0); 1 },
        'unknown placeholder dies';
    like $@, qr/unknown placeholder %%NOPE%%/, 'placeholder error message';
    is $t->{conf}, $conf, 'config path remembered';
    my ($rc, $out) = $t->nginx_t;
    is $rc, 0, 'nginx -t ok';
    like $out, qr/syntax is ok/, 'nginx -t output';

    $t->start_nginx;
    ok $t->nginx_pid, 'nginx started';
    is scalar(my @w = $t->worker_pids), 2, 'two workers';

    $r = $t->get('/');
    is $r->{status}, 200, 'GET /';
    is $r->{body}, "hello\n", 'body';
    is $r->{headers}{'content-length'}, 6, 'content-length header';

    $r = $t->get('/tmp');
    is $r->{body}, join(' ', $t->tmp, $t->named_port('extra'), $t->redis_port),
        'placeholders substituted';

    $r = $t->request(method => 'HEAD', path => '/');
    is "$r->{status}/$r->{body}", '200/', 'HEAD has no body';
    $r = $t->get('/head');
    is $r->{status}, 204, 'status 204';
    is $r->{headers}{'x-a'}, '1, 2', 'repeated headers joined';
    is_deeply [ map { $_->[1] } grep { $_->[0] eq 'X-A' } @{ $r->{header_list} } ],
        [ 1, 2 ], 'header_list keeps duplicates';

    $r = $t->get('/proxy/x', 'X-Loyalty-Test' => 'yes');
    like $r->{body}, qr{^GET /proxy/x HTTP/1.0$}m, 'proxied to backend';
    like $r->{body}, qr{^X-Loyalty-Test: yes$}m, 'header reached upstream';

    $r = $t->get('/chunked');
    is $r->{headers}{'transfer-encoding'}, 'chunked', 'chunked response';
    is $r->{body}, "part1\npart2\npart3\n", 'chunked body decoded';

    $r = $t->raw_request("GARBAGE\r\n\r\n");
    is $r->{status}, 400, 'raw_request: malformed request gets 400';
    $r = $t->raw_request("GET / HTTP/1.0\r\n\r\n");
    is "$r->{status}/$r->{body}", "200/hello\n", 'raw_request HTTP/1.0';

    my $ka = $t->keepalive([ { path => '/' }, { path => '/proxy/1' },
                             { path => '/chunked' }, { path => '/' } ]);
    is scalar(@$ka), 4, 'keepalive: 4 responses';
    is_deeply [ map { $_->{status} } @$ka ], [ (200) x 4 ], 'keepalive statuses';
    is $ka->[2]{body}, "part1\npart2\npart3\n", 'keepalive chunked';
    is $ka->[3]{body}, "hello\n", 'keepalive last body';

    my $h = $t->start_request(path => '/slow');
    $r = $t->get('/');
    is $r->{status}, 200, 'served while a slow request is pending';
    ok $r->{elapsed} < 0.8, 'fast request not blocked';
    $r = $t->finish_request($h);
    is "$r->{status}/$r->{body}", '200/slow', 'slow request finished';
    ok $r->{elapsed} >= 0.9, 'slow request took ~1s';

    my $res = $t->concurrent([ map { { path => '/' } } 1 .. 300 ]);
    is scalar(grep { ($_->{status} // 0) == 200 && $_->{body} eq "hello\n" }
              @$res), 300, '300 concurrent requests';
    $res = $t->concurrent([ map { { path => $_ % 2 ? '/' : '/proxy/' } } 1 .. 500 ]);
    is scalar(grep { ($_->{status} // 0) == 200 } @$res), 500,
        '500 concurrent requests (half proxied)';

    $r = $t->request(path => '/slow', timeout => 0.3);
    is $r->{error}, 'timeout', 'request timeout reported';
    $r = $t->request(port => $t->named_port('closed'));
    like $r->{error}, qr/^connect/, 'connect error reported';

    my %old = map { $_ => 1 } $t->worker_pids;
    $t->reload;
    my @new = grep { !$old{$_} } $t->worker_pids;
    ok @new >= 1, 'reload: new workers';
    ok $t->wait_for(sub { !grep { kill 0, $_ } keys %old }, 5),
        'old workers exit';
    is $t->get('/')->{status}, 200, 'serves after reload';

    ok scalar($t->log_lines(qr/reconfiguring/)), 'log_lines';
    $t->check_error_log;

    my $master = $t->nginx_pid;
    my @workers = $t->worker_pids;
    $t->stop_nginx;
    ok !kill(0, $master), 'master gone';
    ok !(grep { kill 0, $_ } @workers), 'workers gone';

    # single process mode and start failure reporting
    $t->write_config("server { listen 127.0.0.1:%%PORT%%; }", module => 0,
                     master => 0);
    $t->start_nginx;
    ok !$t->worker_pids, 'master_process off: no workers';
    is $t->get('/')->{status}, 404, 'single process serves';
    $t->stop_nginx;

    $t->write_config("server { listen 127.0.0.1:%%PORT%%; bogus; }",
                     module => 0);
    ($rc, $out) = $t->nginx_t;
    isnt $rc, 0, 'nginx -t fails on bad config';
    like $out, qr/unknown directive "bogus"/, 'nginx -t error text';
    ok !eval { $t->start_nginx; 1 }, 'start_nginx dies on bad config';
    like $@, qr/unknown directive/, 'start_nginx error includes the log';
}

# --- cleanup ---------------------------------------------------------------
{
    # a second object whose processes must be gone after it goes away
    my $t2 = LoyaltyTest->new;
    $t2->start_redis;
    my $fs = $t2->fake_server(LoyaltyTest::fake_silent());
    my $h = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $fs);
    my @pids = ($t2->redis_pid, values %{ $t2->{fake} });
    my $dir = $t2->tmp;
    undef $t2;
    ok !(grep { kill 0, $_ } @pids), 'DESTROY killed and reaped everything';
    ok !-d $dir, 'temp dir removed';
}

done_testing;
