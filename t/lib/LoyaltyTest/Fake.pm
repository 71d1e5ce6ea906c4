package LoyaltyTest::Fake;

# Fake TCP servers (a forked server running a handler per connection,
# with canned RESP misbehaviours: garbage, reset, silence, a fixed reply
# per command) and the echo backend nginx proxies to.  A part of
# LoyaltyTest (t/lib/LoyaltyTest.pm): its methods run on a LoyaltyTest
# object; the canned handlers are plain functions.

use strict;
use warnings;

use Exporter qw(import);
use IO::Select;
use IO::Socket::INET;
use POSIX ();
use Socket qw(SOL_SOCKET SO_LINGER);
use Time::HiRes qw(time sleep);

use LoyaltyTest::Core qw(_terminate _write_all);

our @EXPORT_OK = qw(fake_garbage fake_reset fake_silent fake_reply);

# ---------------------------------------------------------------------------
# fake TCP servers and the echo backend
# ---------------------------------------------------------------------------

sub fake_server {
    my ($self, $handler, %o) = @_;
    my $listen = IO::Socket::INET->new(
        LocalAddr => '127.0.0.1', LocalPort => $o{port} // 0,
        Proto => 'tcp', Listen => 511, ReuseAddr => 1,
    ) or die "fake_server: listen: $!\n";
    my $port = $listen->sockport;
    $self->{used_ports}{$port} = 1;

    my $pid = fork;
    die "fork: $!" unless defined $pid;
    if ($pid == 0) {
        POSIX::setpgid(0, 0);
        $SIG{$_} = 'DEFAULT' for qw(INT TERM HUP QUIT);
        $SIG{PIPE} = 'IGNORE';
        $SIG{CHLD} = 'IGNORE';     # per-connection children auto-reaped
        open STDIN, '<', '/dev/null';
        while (1) {
            my $c = $listen->accept;
            next unless $c;
            my $kid = fork;
            if (defined $kid && $kid == 0) {
                close $listen;
                $SIG{CHLD} = 'DEFAULT';
                $c->autoflush(1);
                eval { $handler->($c) };
                close $c if defined fileno $c;
                POSIX::_exit(0);
            }
            close $c;
        }
    }
    POSIX::setpgid($pid, $pid);
    close $listen;
    $self->{fake}{$port} = $pid;
    return $port;
}

sub stop_fake_server {
    my ($self, $port) = @_;
    my $pid = delete $self->{fake}{$port} or return;
    kill 'TERM', -$pid;
    return _terminate($pid, 5);
}

# count complete RESP commands (arrays of bulk strings or inline) in $$buf,
# removing them from the buffer
sub _take_commands {
    my ($buf) = @_;
    my $n = 0;
    while (length $$buf) {
        if (substr($$buf, 0, 1) eq '*') {
            my $p = index($$buf, "\r\n");
            last if $p < 0;
            my ($cnt) = substr($$buf, 1, $p - 1) =~ /^(-?\d+)/;
            my $q = $p + 2;
            my $ok = 1;
            for (1 .. ($cnt // 0)) {
                my $e = index($$buf, "\r\n", $q);
                if ($e < 0) { $ok = 0; last }
                my ($len) = substr($$buf, $q + 1, $e - $q - 1) =~ /^(-?\d+)/;
                $q = $e + 2 + ($len // 0) + 2;
                if ($q > length $$buf) { $ok = 0; last }
            }
            last unless $ok;
            substr($$buf, 0, $q, '');
        } else {
            my $p = index($$buf, "\n");
            last if $p < 0;
            substr($$buf, 0, $p + 1, '');
        }
        $n++;
    }
    return $n;
}

# read until EOF, discarding
sub _drain { my ($s) = @_; my $b; 1 while sysread($s, $b, 65536) }

sub fake_garbage {
    my ($bytes) = @_;
    $bytes //= "?%garbage\r\n";
    return sub {
        my ($s) = @_;
        my $buf;
        sysread($s, $buf, 65536) or return;
        syswrite($s, $bytes);
        _drain($s);
    };
}

sub fake_reset {
    return sub {
        my ($s) = @_;
        my $buf;
        sysread($s, $buf, 65536);
        setsockopt($s, SOL_SOCKET, SO_LINGER, pack('ii', 1, 0));
        close $s;
    };
}

sub fake_silent {
    return sub { _drain($_[0]) };
}

sub fake_reply {
    my ($bytes) = @_;
    return sub {
        my ($s) = @_;
        my $buf = '';
        while (sysread($s, $buf, 65536, length $buf)) {
            my $n = _take_commands(\$buf);
            syswrite($s, $bytes x $n) if $n;
        }
    };
}

sub _backend_handler {
    my ($s) = @_;
    my $buf = '';
    my $sel = IO::Select->new($s);
    my $deadline = time + 30;
    my $more = sub {
        my $left = $deadline - time;
        return 0 if $left <= 0 || !$sel->can_read($left);
        return sysread($s, $buf, 65536, length $buf);
    };
    while ($buf !~ /\r?\n\r?\n/) { $more->() or return }
    $buf =~ s/\A(.*?)\r?\n\r?\n//s;
    my ($line, @lines) = split /\r?\n/, $1;
    my @h = map { /^([^:]*):[ \t]*(.*?)[ \t]*$/ ? [ $1, $2 ] : () } @lines;
    my ($cl) = map { $_->[1] } grep { lc $_->[0] eq 'content-length' } @h;
    my $chunked = grep { lc $_->[0] eq 'transfer-encoding'
                         && $_->[1] =~ /chunked/i } @h;
    if ($chunked) {
        while ($buf !~ /(?:^|\r\n)0\r\n(?:.*?\r\n)?\r\n/s) { $more->() or last }
    } elsif ($cl) {
        while (length $buf < $cl) { $more->() or last }
    }
    my $body = join '', map { "$_\n" } $line, map { "$_->[0]: $_->[1]" } @h;
    my $blen = $chunked ? undef : length($buf);
    my $resp = "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n"
             . "Content-Length: " . length($body) . "\r\n"
             . (defined $blen ? "X-Backend-Body-Length: $blen\r\n" : '')
             . "Connection: close\r\n\r\n$body";
    _write_all($s, $resp, time + 10);
}

sub start_backend {
    my ($self, %o) = @_;
    my $port = $self->backend_port;
    die "start_backend: already running\n" if $self->{fake}{$port};
    return $self->fake_server(\&_backend_handler, port => $port);
}

sub stop_backend {
    my ($self) = @_;
    return unless defined $self->{backend_port};
    return $self->stop_fake_server($self->{backend_port});
}

1;
