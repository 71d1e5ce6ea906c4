#!/usr/bin/perl
# The offer catalog's fetches must not keep their replies for the
# worker's life (issue 13, defect 8: the GET was sent with
# ngx_cycle->pool).  A fake Redis answers every GET of the catalog with
# an array of 50,000 nils, whose element array (about 2.4 MB) the
# transport allocates from the command's pool.  The reply is not a
# catalog, so the worker keeps retrying (every loyalty_offers_refresh
# while none has loaded); after 40 more fetches its resident memory must
# not have grown by anything near 40 such arrays.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use POSIX ();
use LoyaltyTest;

my $ELEMENTS = 50_000;
my $FETCHES  = 40;

# what 40 leaked arrays would take (48 bytes an element on 64-bit), and
# the growth allowed: hiredis's and malloc's own turnover, far below it
my $LEAK_MB    = $FETCHES * $ELEMENTS * 48 / (1024 * 1024);
my $ALLOWED_MB = 32;

my $t = LoyaltyTest->new;
my $counter = $t->tmp . '/gets';

# one "*" line and its bulk strings per command; returns the commands
# complete in $$buf and removes them
sub take_commands {
    my ($buf) = @_;
    my @cmds;

    while ($$buf =~ /\A\*(\d+)\r\n/) {
        my ($n, $pos, @args) = ($1, length($&));
        my $complete = 1;

        for (1 .. $n) {
            my $rest = substr($$buf, $pos);
            if ($rest !~ /\A\$(\d+)\r\n/
                || length($rest) < length($&) + $1 + 2)
            {
                $complete = 0;
                last;
            }
            push @args, substr($rest, length($&), $1);
            $pos += length($&) + $1 + 2;
        }

        last unless $complete;
        substr($$buf, 0, $pos, '');
        push @cmds, \@args;
    }

    return @cmds;
}

sub write_all {
    my ($s, $data) = @_;
    while (length $data) {
        my $n = syswrite($s, $data);
        return unless defined $n;
        substr($data, 0, $n, '');
    }
}

my $reply = "*$ELEMENTS\r\n" . ("\$-1\r\n" x $ELEMENTS);

my $port = $t->fake_server(sub {
    my ($s) = @_;
    my $buf = '';

    while (sysread($s, $buf, 65536, length $buf)) {
        for my $cmd (take_commands(\$buf)) {
            if (uc($cmd->[0]) eq 'GET') {
                open my $fh, '>>', $counter or die "$counter: $!";
                syswrite($fh, "g");
                close $fh;
                write_all($s, $reply);
            } else {
                write_all($s, "+OK\r\n");
            }
        }
    }
});

sub gets { -e $counter ? -s $counter : 0 }

sub rss_kb {
    my ($pid) = @_;
    open my $fh, '<', "/proc/$pid/status" or return undef;
    while (<$fh>) {
        return $1 if /^VmRSS:\s+(\d+)\s+kB/;
    }
    return undef;
}

$t->write_config(<<"CONF");
loyalty_redis 127.0.0.1:$port;
loyalty_offers_refresh 10ms;

server {
    listen 127.0.0.1:%%PORT%%;

    location / {
        loyalty on;
        return 200 "\$loyalty_status\\n";
    }
}
CONF

$t->start_nginx;

my ($worker) = $t->worker_pids;
ok($worker, 'a worker runs');

# the first fetches warm up what every fetch reuses (malloc's arenas,
# hiredis's reader buffer)
ok($t->wait_for(sub { gets() >= 3 }, 30), 'the worker fetches the catalog')
    or diag $t->error_log;

my $before = rss_kb($worker);
my $start  = gets();

ok($t->wait_for(sub { gets() >= $start + $FETCHES }, 60),
   "$FETCHES more fetches")
    or diag 'fetches: ' . (gets() - $start);

my $after = rss_kb($worker);
my $grown_mb = ($after - $before) / 1024;

SKIP: {
    # memcheck keeps freed blocks out of reuse for a while: resident
    # memory says nothing there
    skip 'resident memory under valgrind', 1 if $LoyaltyTest::VALGRIND;

    cmp_ok($grown_mb, '<', $ALLOWED_MB,
           sprintf('worker memory grew %.1f MB over %d fetches (a reply '
                   . 'kept per fetch: %.0f MB)', $grown_mb, $FETCHES,
                   $LEAK_MB));
}

ok(scalar($t->log_lines(qr/offers catalog .* unexpected reply/)) > 0,
   'the unexpected replies are logged');

$t->stop_nginx;
$t->check_error_log;

done_testing;
