package LoyaltyTest::Redis;

# Standalone redis-server processes (start, signal, stop, restart) and a
# small blocking RESP client (encode, read RESP2/RESP3 replies, send
# commands on one connection, pipelines, a command sent now and read
# later, INFO commandstats).  A part of LoyaltyTest (t/lib/LoyaltyTest.pm):
# its methods run on a LoyaltyTest object.

use strict;
use warnings;

use Exporter qw(import);
use File::Path ();
use IO::Select;
use IO::Socket::INET;
use Time::HiRes qw(time sleep);

use LoyaltyTest::Core qw(_slurp _alive _terminate _write_all);

our @EXPORT_OK = qw($REDIS_SERVER);

our $REDIS_SERVER = $ENV{REDIS_SERVER}   || 'redis-server';

# ---------------------------------------------------------------------------
# redis processes
# ---------------------------------------------------------------------------

sub redis_port {
    my ($self) = @_;
    return $self->{redis_order}[0] if @{ $self->{redis_order} };
    # not started yet: reserve the port the first start_redis will use
    return $self->{redis_reserved} //= $self->free_port;
}

sub redis_pid {
    my ($self, $port) = @_;
    $port //= $self->redis_port;
    return $self->{redis}{$port} ? $self->{redis}{$port}{pid} : undef;
}

sub start_redis {
    my ($self, %o) = @_;
    my $port = $o{port};
    unless (defined $port) {
        if (!@{ $self->{redis_order} } && defined $self->{redis_reserved}) {
            $port = $self->{redis_reserved};
        } else {
            $port = $self->free_port;
        }
    }
    $self->{used_ports}{$port} = 1;

    my $r = $self->{redis}{$port};
    die "start_redis: redis on port $port is already running"
        if $r && _alive($r->{pid});

    my $extra = $o{extra} // ($r ? $r->{extra} : []);
    my $dir = $o{dir} // ($r ? $r->{dir} : undef)
           // "$self->{tmp}/redis-$port";
    my $log = "$self->{tmp}/redis-$port.log";
    File::Path::make_path($dir);

    my $pid = $self->_spawn("$self->{tmp}/redis-$port.out",
        $REDIS_SERVER,
        '--port', $port, '--bind', '127.0.0.1',
        '--save', '', '--appendonly', 'no', '--daemonize', 'no',
        '--dir', $dir, '--logfile', $log,
        @$extra);

    my $cluster = $o{cluster} // ($r ? $r->{cluster} : 0);
    $self->{redis}{$port} = { pid => $pid, extra => $extra,
                              dir => $dir, log => $log,
                              cluster => $cluster ? 1 : 0 };
    # cluster nodes are not standalone servers: redis_port and
    # %%REDIS_PORT%% never name one
    push @{ $self->{redis_order} }, $port
        unless $cluster || grep { $_ == $port } @{ $self->{redis_order} };

    my $deadline = time + ($o{timeout} || 5);
    while (1) {
        last if _redis_answers($port);
        unless (_alive($pid)) {
            delete $self->{redis}{$port}{pid};
            die "start_redis: redis-server on port $port exited\n"
                . _slurp($log) . _slurp("$self->{tmp}/redis-$port.out");
        }
        if (time >= $deadline) {
            _terminate($pid, 2);
            delete $self->{redis}{$port}{pid};
            die "start_redis: redis-server on port $port does not answer "
                . "PING\n" . _slurp($log);
        }
        sleep 0.05;
    }
    return $port;
}

# any reply to PING (including -NOAUTH) counts as "answering"
sub _redis_answers {
    my ($port) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                  Proto => 'tcp', Timeout => 1) or return 0;
    my $ok = eval {
        _write_all($s, "*1\r\n\$4\r\nPING\r\n", time + 1);
        my $rd = _reader($s, time + 1);
        $rd->{line}->();
        1;
    };
    close $s;
    return $ok ? 1 : 0;
}

sub redis_signal {
    my ($self, $sig, $port) = @_;
    $port //= $self->redis_port;
    my $pid = $self->redis_pid($port)
        or die "redis_signal: no redis running on port $port";
    $sig =~ s/^-//;
    kill($sig, $pid) or die "redis_signal: kill $sig $pid: $!";
    return 1;
}

sub stop_redis {
    my ($self, $port) = @_;
    $port //= $self->redis_port;
    my $r = $self->{redis}{$port} or return;
    my $pid = delete $r->{pid} or return;
    return _terminate($pid, 5);
}

sub restart_redis {
    my ($self, $port, %o) = @_;
    $port //= $self->redis_port;
    $self->stop_redis($port) if $self->redis_pid($port);
    return $self->start_redis(%o, port => $port);
}

# ---------------------------------------------------------------------------
# RESP client
# ---------------------------------------------------------------------------

sub _resp_encode {
    my @args = @_;
    my $out = '*' . scalar(@args) . "\r\n";
    for my $a (@args) {
        my $v = defined $a ? "$a" : '';
        utf8::encode($v) if utf8::is_utf8($v);
        $out .= '$' . length($v) . "\r\n$v\r\n";
    }
    return $out;
}

# buffered blocking reader with a deadline; returns closures line()/bytes(n)
sub _reader {
    my ($sock, $deadline) = @_;
    my $buf = '';
    my $fill = sub {
        my $left = $deadline - time;
        die "timeout reading reply\n" if $left <= 0;
        my $sel = IO::Select->new($sock);
        die "timeout reading reply\n" unless $sel->can_read($left);
        my $n = sysread($sock, $buf, 65536, length $buf);
        die "read error: $!\n" unless defined $n;
        die "connection closed by server\n" if $n == 0;
    };
    return {
        line => sub {
            my $i;
            $fill->() until ($i = index($buf, "\r\n")) >= 0;
            my $l = substr($buf, 0, $i);
            substr($buf, 0, $i + 2, '');
            return $l;
        },
        bytes => sub {
            my ($n) = @_;
            $fill->() while length($buf) < $n;
            return substr($buf, 0, $n, '');
        },
    };
}

# Parse one reply.  Error replies become { error => text } (also nested).
sub _resp_read {
    my ($rd) = @_;
    my $line = $rd->{line}->();
    my ($t, $v) = (substr($line, 0, 1), substr($line, 1));
    if ($t eq '+') { return $v }
    if ($t eq '-') { return { error => $v } }
    if ($t eq ':' || $t eq '(' || $t eq ',') { return 0 + $v if $t eq ':'; return $v }
    if ($t eq '_') { return undef }
    if ($t eq '#') { return $v eq 't' ? 1 : 0 }
    if ($t eq '$' || $t eq '=' || $t eq '!') {
        return undef if $v < 0;
        my $data = $rd->{bytes}->($v + 2);
        substr($data, -2, 2, '');
        return $t eq '!' ? { error => $data } : $data;
    }
    if ($t eq '*' || $t eq '~' || $t eq '>' || $t eq '%') {
        return undef if $v < 0;
        my $n = $t eq '%' ? 2 * $v : $v;
        return [ map { _resp_read($rd) } 1 .. $n ];
    }
    die "protocol error: unexpected reply line '$line'\n";
}

# connect to $port and send @cmds (array refs), AUTH first when
# redis_auth is set; returns the handle _redis_receive reads replies from
sub _redis_send {
    my ($self, $port, $deadline, @cmds) = @_;
    die "redis: no port given and no redis started\n" unless defined $port;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                  Proto => 'tcp',
                                  Timeout => $self->{redis_timeout})
        or die "redis: cannot connect to 127.0.0.1:$port: $!\n";
    my @all = @cmds;
    unshift @all, [ 'AUTH', @{ $self->{redis_auth} } ] if $self->{redis_auth};
    unless (eval {
        _write_all($s, join('', map { _resp_encode(@$_) } @all), $deadline);
        1;
    }) {
        my $err = $@;
        close $s;
        die "redis (port $port): $err";
    }
    return { sock => $s, port => $port, replies => scalar @all,
             auth => $self->{redis_auth} ? 1 : 0 };
}

# read every reply of a _redis_send handle and close its connection;
# returns the raw replies of the commands (not of the AUTH before them)
sub _redis_receive {
    my ($h, $deadline) = @_;
    my $s = delete $h->{sock} or die "redis_command_finish: already finished\n";
    my @replies = eval {
        my $rd = _reader($s, $deadline);
        map { _resp_read($rd) } 1 .. $h->{replies};
    };
    my $err = $@;
    close $s;
    die "redis (port $h->{port}): $err" if $err;
    if ($h->{auth}) {
        my $a = shift @replies;
        die "redis AUTH failed: $a->{error}\n" if ref $a eq 'HASH';
    }
    return @replies;
}

# send commands on one connection, return list of raw replies
sub _redis_exchange {
    my ($self, $port, @cmds) = @_;
    my $deadline = time + $self->{redis_timeout};
    return _redis_receive($self->_redis_send($port, $deadline, @cmds),
                          $deadline);
}

sub redis_try_on {
    my ($self, $port, @cmd) = @_;
    my ($r) = $self->_redis_exchange($port, \@cmd);
    return $r;
}

sub redis_on {
    my ($self, $port, @cmd) = @_;
    my $r = $self->redis_try_on($port, @cmd);
    die "$r->{error}\n" if ref $r eq 'HASH' && exists $r->{error};
    return $r;
}

sub redis     { my $self = shift; $self->redis_on($self->redis_port, @_) }
sub redis_try { my $self = shift; $self->redis_try_on($self->redis_port, @_) }

sub redis_pipeline {
    my ($self, $cmds, %o) = @_;
    return [ $self->_redis_exchange($o{port} // $self->redis_port, @$cmds) ];
}

# Send a command on a connection of its own and return at once, without
# waiting for the reply (e.g. DEBUG SLEEP to hold Redis while requests
# are fired); redis_command_finish reads the reply (errors come back as
# { error => text }) and closes the connection.
sub redis_command_start {
    my ($self, @cmd) = @_;
    my %o = ref $cmd[0] eq 'HASH' ? %{ shift @cmd } : ();
    return $self->_redis_send($o{port} // $self->redis_port,
                              time + $self->{redis_timeout}, \@cmd);
}

sub redis_command_finish {
    my ($self, $h, %o) = @_;
    my ($r) = _redis_receive($h,
        time + ($o{timeout} // $self->{redis_timeout}));
    return $r;
}

# INFO commandstats calls of one command on a node (0 if never called)
sub redis_cmdstat {
    my ($self, $port, $cmd) = @_;
    my $info = $self->redis_on($port, 'INFO', 'commandstats');
    $cmd = lc $cmd;
    $cmd =~ s/ /|/g;    # subcommands: "cluster slots" -> cluster|slots
    return $info =~ /^cmdstat_\Q$cmd\E:calls=(\d+)/m ? $1 : 0;
}

1;
