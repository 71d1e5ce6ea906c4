#!/usr/bin/perl
# A/B exposure counts stay exact when several workers flush at once
# (issue 13, defect 3): 4 workers count 200,000 exposures of 8 tests
# under pipelined keep-alive load, while report requests (each one
# flushes its worker's view of the shared counters first) hit every
# worker over and over; after a graceful stop the hashes in Redis hold
# exactly the exposures sent, variant by variant, computed with the
# documented hash.  A flush that reads a counter and subtracts it later
# sends counts twice when two workers flush the same counter together,
# and leaves the counter negative.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Digest::SHA qw(sha256);
use IO::Select;
use IO::Socket::INET;
use POSIX ();
use LoyaltyTest;

my $t = LoyaltyTest->new;
my $tmp = $t->tmp;
$t->start_redis;

my $N       = 200_000;          # exposures of each test
my $CLIENTS = 8;                # pipelining connections
my $WORKERS = 4;
my $REPORTERS = 4;              # processes sending rounds of reports

# tests and their shares in hundredths of a percent; every one covers
# 100%, so each request is an exposure of every test
my @TESTS = (
    [ t0 => [ a => 5000 ], [ b => 5000 ] ],
    [ t1 => [ a => 2000 ], [ b => 3000 ], [ c => 5000 ] ],
    [ t2 => [ off => 1000 ], [ x => 4500 ], [ y => 4500 ] ],
    [ t3 => [ p => 3333 ], [ q => 3333 ], [ r => 3334 ] ],
    [ t4 => [ one => 10000 ] ],
    [ t5 => [ a => 1 ], [ b => 9999 ] ],
    [ t6 => [ v1 => 2500 ], [ v2 => 2500 ], [ v3 => 2500 ],
            [ v4 => 2500 ] ],
    [ t7 => [ lo => 9000 ], [ hi => 1000 ] ],
);

# and many more tests, of long names alike up to their last characters,
# checked by their totals: every request counts in more shared counters,
# and each flush spends longer between reading a counter and taking it
my $FILLERS = 40;
my @FILLERS = map { sprintf('exposure_race_filler_test_nr_%03d', $_) }
              1 .. $FILLERS;

# first 8 bytes of SHA-256("name:key"), big-endian, mod 10000 (as in
# docs/ab-testing.md and t/12-ab.t), in two 32-bit halves
sub bucket {
    my ($name, $key) = @_;
    my ($hi, $lo) = unpack 'NN', substr(sha256("$name:$key"), 0, 8);
    return (($hi % 10000) * (4294967296 % 10000) + $lo) % 10000;
}

sub variant {
    my ($test, $key) = @_;
    my ($name, @v) = @$test;
    my $b = bucket($name, $key);
    my $end = 0;
    for (@v) {
        $end += $_->[1];
        return $_->[0] if $b < $end;
    }
    die "test $name does not cover 100%\n";
}

# pipelined GETs on one keep-alive connection, at most ~1000 ahead of
# the responses; returns how many 200 responses came back
sub pipeline {
    my ($port, $paths) = @_;
    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                     PeerPort => $port, Proto => 'tcp')
        or die "pipeline: connect: $!\n";
    $sock->blocking(0);
    my $sel = IO::Select->new($sock);
    my ($out, $in, $got, $next) = ('', '', 0, 0);
    my $deadline = time + 120 * $LoyaltyTest::SLOW;
    local $SIG{PIPE} = 'IGNORE';
    while ($got < @$paths) {
        die "pipeline: timed out after $got responses\n" if time > $deadline;
        while ($next < @$paths && $next - $got < 1000
               && length $out < 256 * 1024)
        {
            $out .= "GET $paths->[$next++] HTTP/1.1\r\nHost: x\r\n\r\n";
        }
        my ($r, $w) = IO::Select->select($sel, length $out ? $sel : undef,
                                         undef, 1);
        if ($w && @$w) {
            my $n = syswrite($sock, $out);
            substr($out, 0, $n, '') if $n;
        }
        if ($r && @$r) {
            my $n = sysread($sock, $in, 1 << 20, length $in);
            die "pipeline: connection closed after $got responses\n"
                if defined $n && $n == 0;
        }
        while (1) {
            my $end = index($in, "\r\n\r\n");
            last if $end < 0;
            my $head = substr($in, 0, $end);
            die "pipeline: bad response: $head\n"
                unless $head =~ m{^HTTP/1\.1 200 }
                       && $head =~ /^Content-Length: (\d+)\r?$/mi;
            my $len = $1;
            last if length($in) < $end + 4 + $len;
            substr($in, 0, $end + 4 + $len, '');
            $got++;
        }
    }
    close $sock;
    return $got;
}

# runs $code in a child process; its return value (a number) is written
# to a file that reap() reads
my @kids;
sub spawn {
    my ($name, $code) = @_;
    my $file = "$tmp/kid-$name";
    my $pid = fork;
    die "fork: $!" unless defined $pid;
    if ($pid == 0) {
        my $n = eval { $code->() };
        my $err = $@;
        if (open my $f, '>', $file) {
            print $f defined $n ? "$n\n" : "error: $err";
            close $f;
        }
        POSIX::_exit(defined $n ? 0 : 1);
    }
    push @kids, $pid;
    return { pid => $pid, file => $file, name => $name };
}

sub reap {
    my ($k, $timeout) = @_;
    my $deadline = time + $timeout;
    while (waitpid($k->{pid}, POSIX::WNOHANG()) == 0) {
        if (time > $deadline) {
            kill 'KILL', $k->{pid};
            waitpid($k->{pid}, 0);
            @kids = grep { $_ != $k->{pid} } @kids;
            return "error: $k->{name} did not finish";
        }
        select undef, undef, undef, 0.1;
    }
    @kids = grep { $_ != $k->{pid} } @kids;
    open my $f, '<', $k->{file} or return "error: $k->{name}: no result";
    local $/;
    my $s = <$f> // '';
    chomp $s;
    return $s;
}

END { kill 'KILL', @kids if @kids }

# --- the configuration -------------------------------------------------------

my $tests = join "\n", (map {
    my ($name, @v) = @$_;
    my $words = join ' ', map { sprintf('%.2f%% %s', $_->[1] / 100, $_->[0]) }
                          @v[0 .. $#v - 1];
    "        loyalty_ab $name key=\$arg_k $words * $v[-1][0];"
} @TESTS), map { "        loyalty_ab $_ key=\$arg_k 50% a * b;" } @FILLERS;

# reuseport: every worker has its own listening socket, so the load's
# connections and the reports' spread over all of them
$t->write_config(<<"CONF", workers => $WORKERS, access_log => 0);
loyalty_redis 127.0.0.1:%%REDIS_PORT%%;

server {
    listen 127.0.0.1:%%PORT%% reuseport;
    keepalive_requests 1000000;

    location = /e {
$tests
        return 200 "\$pid";
    }

    location = /report {
        loyalty_ab off;
        loyalty_ab_report;
    }

    location = /pid {
        return 200 "\$pid";
    }
}
CONF
$t->start_nginx;
ok $t->wait_for(sub { $t->worker_pids == $WORKERS }, 10),
    "$WORKERS workers";

# the expected counts, variant by variant
my %want;
for my $i (1 .. $N) {
    $want{ $_->[0] }{ variant($_, "k$i") }++ for @TESTS;
}

# --- load and reports --------------------------------------------------------

my $stop = "$tmp/stop-reports";
my @load;
for my $c (0 .. $CLIENTS - 1) {
    my @paths = map { "/e?k=k$_" } grep { $_ % $CLIENTS == $c } 1 .. $N;
    push @load, spawn("load$c", sub { pipeline($t->port, \@paths) });
}

# rounds of 8 reports at once on new connections, until the load is
# done: several workers flush the same counters at the same moment
my @reporters;
for my $c (0 .. $REPORTERS - 1) {
    push @reporters, spawn("reports$c", sub {
        my ($ok, $all, $pids) = (0, 0, {});
        while (!-e $stop) {
            my $res = $t->concurrent([ ({ path => '/report' }) x 8 ],
                                     timeout => 30);
            $all += @$res;
            $ok += grep { ($_->{status} // 0) == 200 } @$res;
        }
        die "only $ok of $all reports answered 200\n" if $ok != $all;
        return $ok;
    });
}

my $sent = 0;
my @errors;
for (@load) {
    my $r = reap($_, 300 * $LoyaltyTest::SLOW);
    if ($r =~ /^\d+$/) { $sent += $r } else { push @errors, $r }
}
open my $f, '>', $stop or die $!;
close $f;
my $reports = 0;
for (@reporters) {
    my $r = reap($_, 60 * $LoyaltyTest::SLOW);
    if ($r =~ /^\d+$/) { $reports += $r } else { push @errors, $r }
}
is_deeply \@errors, [], 'load and report clients finished';
is $sent, $N, "$N exposure requests answered";
cmp_ok $reports, '>=', 16, "reports during the load ($reports)";

# every worker answered reports, so each of them flushed while others did
{
    my %pids;
    for (1 .. 20) {
        my $res = $t->concurrent([ ({ path => '/pid' }) x 8 ]);
        $pids{ $_->{body} }++ for grep { ($_->{status} // 0) == 200 } @$res;
        last if keys %pids == $WORKERS;
    }
    is scalar(keys %pids), $WORKERS, 'new connections reach every worker';
}

# --- the counts --------------------------------------------------------------

$t->stop_nginx;    # QUIT: the last flush of every worker

sub counts {
    my ($name) = @_;
    my %h = @{ $t->redis('HGETALL', "loyalty:ab:$name") };
    return join ' ', map { /^(.*):exposures$/ ? "$1=$h{$_}" : () }
                     sort keys %h;
}

my @bad;
for (@TESTS) {
    my $name = $_->[0];
    my $w = join ' ', map { "$_=$want{$name}{$_}" } sort keys %{ $want{$name} };
    is counts($name), $w, "test $name: exposures in Redis exactly as sent";
}

for my $name (@FILLERS) {
    my %h = @{ $t->redis('HGETALL', "loyalty:ab:$name") };
    my $sum = 0;
    $sum += $h{$_} for grep { /:exposures$/ } keys %h;
    push @bad, "$name: $sum" if $sum != $N;
}
is_deeply \@bad, [], "$FILLERS more tests: $N exposures each in Redis";

is scalar($t->log_lines(qr/exposure counts/)), 0,
    'no exposure count lost or refused by Redis';
$t->check_error_log;

done_testing;
