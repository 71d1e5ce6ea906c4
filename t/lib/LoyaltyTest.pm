package LoyaltyTest;

# Test harness for the nginx loyalty module: temp dir, nginx and redis
# process management, a tiny RESP client, an HTTP client, fake TCP
# servers and an echo backend.  Core Perl only.  See the POD at the end.

use strict;
use warnings;

use Cwd ();
use Errno qw(EINTR EAGAIN EWOULDBLOCK EINPROGRESS);
use Fcntl qw(F_GETFL F_SETFL O_NONBLOCK);
use File::Basename ();
use File::Path ();
use File::Spec;
use File::Temp ();
use IO::Select;
use IO::Socket::INET;
use POSIX qw(WNOHANG);
use Scalar::Util qw(weaken refaddr);
use Socket qw(SOL_SOCKET SO_LINGER);
use Time::HiRes qw(time sleep);
use Test::More ();

our $VERSION = '0.01';

our $NGINX        = $ENV{NGINX_BINARY}   || '/usr/sbin/nginx';

# make valgrind runs nginx under memcheck (tools/valgrind-nginx) with
# LOYALTY_VALGRIND=1: nginx starts, reloads and stops many times slower,
# so the harness's waits for it (start, workers, reload, stop, default
# client timeouts, wait_for) are $SLOW times longer.  Tests read
# $LoyaltyTest::VALGRIND and $LoyaltyTest::SLOW to relax their own timing.
our $VALGRIND     = $ENV{LOYALTY_VALGRIND} ? 1 : 0;
our $SLOW         = $VALGRIND ? ($ENV{LOYALTY_VALGRIND_SLOW} || 10) : 1;
our $REDIS_SERVER = $ENV{REDIS_SERVER}   || 'redis-server';
my  $MODULE_REL   = 'build/ngx_http_loyalty_module.so';

# Live harness objects (weak refs) so END and signal handlers can clean up.
my %LIVE;

# ---------------------------------------------------------------------------
# construction / basic accessors
# ---------------------------------------------------------------------------

sub new {
    my ($class, %opts) = @_;

    my $root = $opts{root};
    unless (defined $root) {
        # this file lives in <root>/t/lib/LoyaltyTest.pm
        my $dir = File::Basename::dirname(Cwd::abs_path(__FILE__));
        $root = Cwd::abs_path(File::Spec->catdir($dir, File::Spec->updir,
                                                 File::Spec->updir));
    }

    my $keep = $ENV{KEEP_TEST_DIR} ? 1 : 0;
    my $dir = File::Temp->newdir('loyalty-test-XXXXXX',
                                 TMPDIR => 1, CLEANUP => !$keep);
    chmod 0777, "$dir" or die "chmod $dir: $!";
    Test::More::diag("LoyaltyTest: keeping test dir $dir") if $keep;

    my $self = bless {
        owner_pid   => $$,
        root        => $root,
        module      => $opts{module_path}
                       || $ENV{LOYALTY_MODULE}
                       || File::Spec->catfile($root, $MODULE_REL),
        tmpobj      => $dir,
        tmp         => "$dir",
        used_ports  => {},
        named_ports => {},
        redis       => {},        # port => { pid, extra, dir, log }
        redis_order => [],        # ports in start order
        redis_timeout => $opts{redis_timeout} || 5,
        redis_auth  => $opts{redis_auth},
        fake        => {},        # port => pid (fake servers + backend)
        requests    => [],        # pending background requests
    }, $class;

    $LIVE{refaddr $self} = $self;
    weaken $LIVE{refaddr $self};
    _install_signal_handlers();

    return $self;
}

sub tmp  { $_[0]{tmp} }
sub root { $_[0]{root} }
sub module_path { $_[0]{module} }

sub free_port {
    my ($self) = @_;
    for (1 .. 100) {
        my $s = IO::Socket::INET->new(
            LocalAddr => '127.0.0.1', LocalPort => 0,
            Proto => 'tcp', Listen => 1, ReuseAddr => 1,
        ) or die "free_port: cannot bind: $!";
        my $port = $s->sockport;
        close $s;
        next if $self->{used_ports}{$port}++;
        return $port;
    }
    die "free_port: could not find an unused port";
}

sub port {
    my ($self) = @_;
    return $self->{port} //= $self->free_port;
}

sub backend_port {
    my ($self) = @_;
    return $self->{backend_port} //= $self->free_port;
}

sub named_port {
    my ($self, $name) = @_;
    die "named_port: name required" unless defined $name && length $name;
    return $self->{named_ports}{$name} //= $self->free_port;
}

sub wait_for {
    my ($self, $cb, $timeout) = @_;
    $timeout //= 5;
    my $deadline = time + $timeout * $SLOW;
    while (1) {
        my $r = $cb->();
        return $r if $r;
        return 0 if time >= $deadline;
        sleep 0.05;
    }
}

sub _slurp {
    my ($file) = @_;
    open my $fh, '<:raw', $file or return '';
    local $/;
    my $c = <$fh>;
    return defined $c ? $c : '';
}

sub _require_module {
    my ($self) = @_;
    return if -f $self->{module};
    Test::More::BAIL_OUT("nginx module not built: $self->{module} is missing "
                         . "(build the module into build/ first)");
}

# fork + exec a command in its own process group, stdio redirected
sub _spawn {
    my ($self, $out, @cmd) = @_;
    my $pid = fork;
    die "fork: $!" unless defined $pid;
    if ($pid == 0) {
        POSIX::setpgid(0, 0);
        $SIG{$_} = 'DEFAULT' for qw(INT TERM HUP QUIT PIPE CHLD);
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', $out or POSIX::_exit(126);
        open STDERR, '>&', \*STDOUT;
        no warnings q(exec);
        exec { $cmd[0] } @cmd;
        print STDERR "exec $cmd[0] failed: $!\n";
        POSIX::_exit(127);
    }
    POSIX::setpgid($pid, $pid);    # avoid a race with the child; may fail
    return $pid;
}

# true if the child $pid still runs (reaps it if it exited)
sub _alive {
    my ($pid) = @_;
    return 0 unless $pid;
    my $r = waitpid($pid, WNOHANG);
    return 1 if $r == 0;
    return 0 if $r == $pid || $r == -1 && !kill(0, $pid);
    return 1;
}

# wait up to $timeout s for child $pid to exit; returns exit status or undef
sub _wait_child {
    my ($pid, $timeout) = @_;
    my $deadline = time + $timeout;
    while (1) {
        my $r = waitpid($pid, WNOHANG);
        return $? if $r == $pid;
        return 0 if $r == -1;     # not our child / already reaped
        return undef if time >= $deadline;
        sleep 0.02;
    }
}

# TERM, wait, KILL (whole process group), reap
sub _terminate {
    my ($pid, $timeout, $sig) = @_;
    return unless $pid;
    kill $sig || 'TERM', $pid;
    kill 'CONT', $pid;
    my $st = _wait_child($pid, $timeout // 5);
    unless (defined $st) {
        kill 'KILL', -$pid;
        kill 'KILL', $pid;
        $st = _wait_child($pid, 5);
    }
    kill 'KILL', -$pid;    # leftovers in the process group, if any
    return $st;
}

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

# send commands on one connection, return list of raw replies
sub _redis_exchange {
    my ($self, $port, @cmds) = @_;
    die "redis: no port given and no redis started\n" unless defined $port;
    my $deadline = time + $self->{redis_timeout};
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                  Proto => 'tcp',
                                  Timeout => $self->{redis_timeout})
        or die "redis: cannot connect to 127.0.0.1:$port: $!\n";
    my @all = @cmds;
    unshift @all, [ 'AUTH', @{ $self->{redis_auth} } ] if $self->{redis_auth};
    my @replies = eval {
        _write_all($s, join('', map { _resp_encode(@$_) } @all), $deadline);
        my $rd = _reader($s, $deadline);
        map { _resp_read($rd) } @all;
    };
    my $err = $@;
    close $s;
    die "redis (port $port): $err" if $err;
    if ($self->{redis_auth}) {
        my $a = shift @replies;
        die "redis AUTH failed: $a->{error}\n" if ref $a eq 'HASH';
    }
    return @replies;
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
    my $port = $o{port} // $self->redis_port;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                  Proto => 'tcp',
                                  Timeout => $self->{redis_timeout})
        or die "redis: cannot connect to 127.0.0.1:$port: $!\n";
    my @all = (\@cmd);
    unshift @all, [ 'AUTH', @{ $self->{redis_auth} } ] if $self->{redis_auth};
    _write_all($s, join('', map { _resp_encode(@$_) } @all),
               time + $self->{redis_timeout});
    return { sock => $s, port => $port, auth => $self->{redis_auth} ? 1 : 0 };
}

sub redis_command_finish {
    my ($self, $h, %o) = @_;
    my $s = delete $h->{sock} or die "redis_command_finish: already finished\n";
    my @replies = eval {
        my $rd = _reader($s, time + ($o{timeout} // $self->{redis_timeout}));
        map { _resp_read($rd) } 1 .. 1 + $h->{auth};
    };
    my $err = $@;
    close $s;
    die "redis (port $h->{port}): $err" if $err;
    if ($h->{auth}) {
        my $a = shift @replies;
        die "redis AUTH failed: $a->{error}\n" if ref $a eq 'HASH';
    }
    return $replies[0];
}

# ---------------------------------------------------------------------------
# Redis Cluster
# ---------------------------------------------------------------------------

# start_cluster(%o) starts $o{nodes} (6) cluster-enabled redis-servers on
# free loopback ports (each with a free cluster bus port, given by
# --cluster-port, since port + 10000 may not exist), joins them with
# "redis-cli --cluster create ... --cluster-replicas $o{replicas} (1)" and
# returns once every node reports cluster_state:ok, knows every node, sees
# all 16384 slots served, and every replica's link to its master is up.
# Options: node_timeout (ms, 1000), allow_reads_when_down ('no'),
# require_full_coverage ('yes', Redis's default), extra => [ ... ] for
# every node, timeout (s, 30).  Returns the ports in start order (with 6
# nodes and 1 replica, redis-cli makes the first 3 the masters).
sub start_cluster {
    my ($self, %o) = @_;
    die "start_cluster: a cluster is already running\n"
        if $self->{cluster} && grep { $self->redis_pid($_) }
                                    @{ $self->{cluster}{ports} };
    my $n        = $o{nodes} // 6;
    my $replicas = $o{replicas} // 1;
    my $t0 = time;
    my @ports;
    for my $i (1 .. $n) {
        my $port = $self->free_port;
        my $bus  = $self->free_port;
        my $dir  = "$self->{tmp}/c$port";
        File::Path::make_path($dir);
        $self->start_redis(port => $port, cluster => 1, dir => $dir, extra => [
            '--cluster-enabled', 'yes',
            '--cluster-config-file', "$self->{tmp}/nodes-$port.conf",
            '--cluster-node-timeout', $o{node_timeout} // 1000,
            '--cluster-port', $bus,
            '--cluster-allow-reads-when-down',
                $o{allow_reads_when_down} // 'no',
            '--cluster-require-full-coverage',
                $o{require_full_coverage} // 'yes',
            '--appendonly', 'no', '--save', '',
            '--enable-debug-command', 'yes',
            # a replica's first sync starts at once, not after 5 s
            '--repl-diskless-sync-delay', 0,
            @{ $o{extra} || [] },
        ]);
        push @ports, $port;
    }
    $self->{cluster} = { ports => \@ports, bus => {}, dead => {} };

    my $out = "$self->{tmp}/cluster-create.log";
    my $pid = $self->_spawn($out, $ENV{REDIS_CLI} || 'redis-cli',
        '--cluster', 'create', (map { "127.0.0.1:$_" } @ports),
        '--cluster-replicas', $replicas, '--cluster-yes');
    my $st = _wait_child($pid, $o{timeout} // 30);
    unless (defined $st) {
        _terminate($pid, 2);
        die "start_cluster: redis-cli --cluster create hangs\n" . _slurp($out);
    }
    die "start_cluster: redis-cli --cluster create failed ($st)\n"
        . _slurp($out) if $st;

    $self->cluster_wait_ok(timeout => $o{timeout} // 30)
        or die "start_cluster: the cluster did not become ready\n"
               . $self->_cluster_diag;
    $self->{cluster}{started_in} = time - $t0;
    return @ports;
}

sub cluster_ports { @{ $_[0]{cluster} ? $_[0]{cluster}{ports} : [] } }

# seconds start_cluster took
sub cluster_started_in { $_[0]{cluster} ? $_[0]{cluster}{started_in} : undef }

# cluster nodes whose process runs
sub cluster_live_ports {
    my ($self) = @_;
    return grep { my $p = $self->redis_pid($_); $p && _alive($p) }
                $self->cluster_ports;
}

# "127.0.0.1:P1 127.0.0.1:P2 ..." (every node, or the ports given)
sub cluster_seeds {
    my ($self, @ports) = @_;
    @ports = $self->cluster_ports unless @ports;
    return join ' ', map { "127.0.0.1:$_" } @ports;
}

# CLUSTER INFO of a node as a hash (empty if it does not answer)
sub cluster_info {
    my ($self, $port) = @_;
    my $r = eval { $self->redis_on($port, 'CLUSTER', 'INFO') } // '';
    return { map { /^(\w+):(.*?)\r?$/ ? ($1, $2) : () } split /\n/, $r };
}

# CLUSTER SLOTS of a node: [ [ first, last, master_port, replica_ports... ] ]
sub cluster_slots {
    my ($self, $port) = @_;
    my $r = $self->redis_on($port, 'CLUSTER', 'SLOTS');
    return [ map { [ $_->[0], $_->[1], map { $_->[1] } @$_[ 2 .. $#$_ ] ] }
             @$r ];
}

# slot => master port (undef: not served), as a live node sees it
sub cluster_slot_map {
    my ($self, $port) = @_;
    my @ask = defined $port ? ($port) : $self->cluster_live_ports;
    for my $p (@ask) {
        my $slots = eval { $self->cluster_slots($p) } or next;
        my @map;
        for my $r (@$slots) { $map[$_] = $r->[2] for $r->[0] .. $r->[1] }
        $#map = 16383;
        return \@map;
    }
    die "cluster_slot_map: no cluster node answers\n";
}

sub cluster_node_id {
    my ($self, $port) = @_;
    return $self->{cluster}{ids}{$port}
        //= $self->redis_on($port, 'CLUSTER', 'MYID');
}

# ROLE of a node: ('master') or ('slave', master_port, link state);
# () if it does not answer
sub cluster_role {
    my ($self, $port) = @_;
    my $r = eval { $self->redis_on($port, 'ROLE') } or return;
    return ('master') if $r->[0] eq 'master';
    return ('slave', $r->[2], $r->[3]) if $r->[0] eq 'slave';
    return ($r->[0]);
}

# live masters (by their own ROLE), ordered by the first slot they serve
# (masters serving no slot last)
sub cluster_masters {
    my ($self) = @_;
    my $map = $self->cluster_slot_map;
    my %first;
    for my $s (reverse 0 .. 16383) { $first{ $map->[$s] } = $s if defined $map->[$s] }
    return sort { ($first{$a} // 99999) <=> ($first{$b} // 99999) || $a <=> $b }
           grep { (($self->cluster_role($_))[0] // '') eq 'master' }
           $self->cluster_live_ports;
}

# live replicas (of $master if given), by port
sub cluster_replicas {
    my ($self, $master) = @_;
    my @r;
    for my $p ($self->cluster_live_ports) {
        my ($role, $of) = $self->cluster_role($p);
        next unless ($role // '') eq 'slave';
        next if defined $master && $of != $master;
        push @r, $p;
    }
    return sort { $a <=> $b } @r;
}

# the master port of a live replica
sub cluster_master_of {
    my ($self, $port) = @_;
    my ($role, $of) = $self->cluster_role($port);
    return ($role // '') eq 'slave' ? $of : undef;
}

# CRC16-CCITT (XMODEM: poly 0x1021, init 0), as Redis Cluster uses
my @CRC16;
for my $i (0 .. 255) {
    my $c = $i << 8;
    $c = ($c & 0x8000) ? (($c << 1) ^ 0x1021) & 0xffff : ($c << 1) & 0xffff
        for 1 .. 8;
    $CRC16[$i] = $c;
}
sub crc16 {
    my ($s) = @_;
    utf8::encode($s) if utf8::is_utf8($s);
    my $crc = 0;
    $crc = (($crc << 8) & 0xff00) ^ $CRC16[ (($crc >> 8) ^ $_) & 0xff ]
        for unpack 'C*', $s;
    return $crc;
}

# the hash slot of a key: the {hash tag} (the text between the first "{"
# and the first "}" after it, when not empty) or else the whole key
sub cluster_slot_of {
    my ($self, $key) = @_;
    $key = $self unless ref $self;     # also callable as a function
    my $o = index($key, '{');
    if ($o >= 0) {
        my $c = index($key, '}', $o + 1);
        $key = substr($key, $o + 1, $c - $o - 1) if $c > $o + 1;
    }
    return crc16($key) % 16384;
}

# the master port that serves the slot of $key, as the cluster sees it now
sub cluster_node_for_key {
    my ($self, $key) = @_;
    return $self->cluster_slot_map->[ cluster_slot_of($key) ];
}

# send a command to the master serving its key (argv[1]; a command
# without one goes to any live master), following one MOVED (after
# reloading the slot map) or ASK (ASKING first).  Error replies die.
sub cluster_redis {
    my ($self, @cmd) = @_;
    my $r = $self->cluster_redis_try(@cmd);
    die "$r->{error}\n" if ref $r eq 'HASH' && exists $r->{error};
    return $r;
}

# the same, error replies come back as { error => text }
sub cluster_redis_try {
    my ($self, @cmd) = @_;
    my $port = $self->_cluster_route(@cmd);
    my ($r) = $self->_redis_exchange($port, \@cmd);
    if (ref $r eq 'HASH' && ($r->{error} // '') =~ /^(MOVED|ASK) \d+ [\d.]+:(\d+)/) {
        my ($kind, $to) = ($1, $2);
        if ($kind eq 'MOVED') {
            delete $self->{cluster}{map};
            ($r) = $self->_redis_exchange($to, \@cmd);
        } else {
            (undef, $r) = $self->_redis_exchange($to, ['ASKING'], \@cmd);
        }
    }
    return $r;
}

sub _cluster_route {
    my ($self, @cmd) = @_;
    die "cluster: no cluster started\n" unless $self->{cluster};
    if (@cmd < 2) {
        my ($p) = $self->cluster_masters or die "cluster: no live master\n";
        return $p;
    }
    my $map = $self->{cluster}{map} //= $self->cluster_slot_map;
    my $port = $map->[ cluster_slot_of($cmd[1]) ];
    unless (defined $port && $self->redis_pid($port)) {
        $map = $self->{cluster}{map} = $self->cluster_slot_map;
        $port = $map->[ cluster_slot_of($cmd[1]) ];
    }
    die "cluster: slot of '$cmd[1]' is not served\n" unless defined $port;
    return $port;
}

# pipeline commands, each to the master of its key (one connection per
# master); replies in the order of \@cmds (errors as { error => text });
# redirected commands are sent again through cluster_redis_try
sub cluster_pipeline {
    my ($self, $cmds) = @_;
    my (%by, @replies);
    push @{ $by{ $self->_cluster_route(@{ $cmds->[$_] }) } }, $_
        for 0 .. $#$cmds;
    for my $port (keys %by) {
        my @idx = @{ $by{$port} };
        my @r = $self->_redis_exchange($port, map { $cmds->[$_] } @idx);
        @replies[@idx] = @r;
    }
    for my $i (0 .. $#replies) {
        my $r = $replies[$i];
        $replies[$i] = $self->cluster_redis_try(@{ $cmds->[$i] })
            if ref $r eq 'HASH' && ($r->{error} // '') =~ /^(?:MOVED|ASK) /;
    }
    return \@replies;
}

# WAIT on every live master until its live replicas have every write
# (so that reads from replicas see them); true if all acknowledged
sub cluster_wait_sync {
    my ($self, %o) = @_;
    my $ok = 1;
    for my $m ($self->cluster_masters) {
        my $n = () = $self->cluster_replicas($m);
        next unless $n;
        my $got = $self->redis_on($m, 'WAIT', $n,
                                  int(1000 * ($o{timeout} // 5)));
        $ok = 0 if $got < $n;
    }
    return $ok;
}

# INFO commandstats calls of one command on a node (0 if never called)
sub redis_cmdstat {
    my ($self, $port, $cmd) = @_;
    my $info = $self->redis_on($port, 'INFO', 'commandstats');
    $cmd = lc $cmd;
    $cmd =~ s/ /|/g;    # subcommands: "cluster slots" -> cluster|slots
    return $info =~ /^cmdstat_\Q$cmd\E:calls=(\d+)/m ? $1 : 0;
}

# true once every live node says cluster_state:ok, knows all the
# cluster's nodes, agrees on who serves every one of the 16384 slots,
# and every live replica's link to its master is up
sub cluster_wait_ok {
    my ($self, %o) = @_;
    return $self->wait_for(sub { $self->_cluster_ok }, $o{timeout} // 10);
}

sub _cluster_ok {
    my ($self) = @_;
    my @live = $self->cluster_live_ports or return 0;
    my $want_nodes = scalar $self->cluster_ports;
    my $first;
    for my $p (@live) {
        my $i = $self->cluster_info($p);
        return 0 unless ($i->{cluster_state} // '') eq 'ok'
                     && ($i->{cluster_slots_assigned} // 0) == 16384
                     && ($i->{cluster_known_nodes} // 0) == $want_nodes;
        my $map = eval { $self->cluster_slot_map($p) } or return 0;
        return 0 if grep { !defined } @$map;
        my $sig = join ',', map { $_ // '-' } @$map;
        $first //= $sig;
        return 0 unless $sig eq $first;
        my ($role, undef, $link) = $self->cluster_role($p);
        return 0 unless defined $role;
        return 0 if $role eq 'slave' && ($link // '') ne 'connected';
        if ($role eq 'slave') {
            my $repl = eval { $self->redis_on($p, 'INFO', 'replication') } // '';
            return 0 unless $repl =~ /^master_link_status:up/m;
        }
    }
    # the masters serving slots answer as masters (not a stale view)
    my %owner = map { $_ => 1 } grep { defined } split /,/, $first;
    for my $m (keys %owner) {
        return 0 unless grep { $_ == $m } @live;
        return 0 unless (($self->cluster_role($m))[0] // '') eq 'master';
    }
    return 1;
}

sub _cluster_diag {
    my ($self) = @_;
    my $d = '';
    for my $p ($self->cluster_ports) {
        my $nodes = eval { $self->redis_on($p, 'CLUSTER', 'NODES') }
                    // "(no answer: $@)";
        my $i = $self->cluster_info($p);
        $d .= "node $p: cluster_state=" . ($i->{cluster_state} // '?')
            . " slots_assigned=" . ($i->{cluster_slots_assigned} // '?')
            . " known_nodes=" . ($i->{cluster_known_nodes} // '?') . "\n$nodes";
    }
    return $d . _slurp("$self->{tmp}/cluster-create.log");
}

# kill a node with SIGKILL (a crash; $o{signal} for another signal),
# remembering the slots it served and its replicas for
# cluster_wait_failover; returns the time of the kill
sub cluster_kill {
    my ($self, $port, %o) = @_;
    my $map = eval { $self->cluster_slot_map } || [];
    my @slots = grep { ($map->[$_] // -1) == $port } 0 .. 16383;
    my @replicas = $self->cluster_replicas($port);
    my $pid = $self->redis_pid($port)
        or die "cluster_kill: no node running on port $port\n";
    my $t = time;
    _terminate($pid, 5, $o{signal} // 'KILL');
    delete $self->{redis}{$port}{pid};
    delete $self->{cluster}{map};
    $self->{cluster}{dead}{$port} = { time => $t, slots => \@slots,
                                      replicas => \@replicas };
    return $t;
}

# wait until a replica of the killed node $dead is master and serves
# every slot $dead served, as every live node sees it, and the cluster is
# ok; returns the new master's port (and, in list context, the seconds
# since the kill), undef (or ()) after $o{timeout} (15) s
sub cluster_wait_failover {
    my ($self, $dead, %o) = @_;
    my $d = $self->{cluster}{dead}{$dead}
        or die "cluster_wait_failover: $dead was not killed by cluster_kill\n";
    my $new;
    my $ok = $self->wait_for(sub {
        ($new) = grep { (($self->cluster_role($_))[0] // '') eq 'master' }
                      @{ $d->{replicas} };
        return 0 unless defined $new;
        for my $p ($self->cluster_live_ports) {
            my $map = eval { $self->cluster_slot_map($p) } or return 0;
            return 0 if grep { ($map->[$_] // -1) != $new } @{ $d->{slots} };
            return 0 unless ($self->cluster_info($p)->{cluster_state} // '')
                            eq 'ok';
        }
        return 1;
    }, $o{timeout} // 15);
    delete $self->{cluster}{map};
    return unless $ok;
    my $took = time - $d->{time};
    $d->{failover} = $took;
    return wantarray ? ($new, $took) : $new;
}

# start a killed node again on its port, with its nodes.conf: it rejoins
# (a failed-over master as a replica of its successor); returns once the
# cluster is ok again (cluster_wait_ok), or dies
sub cluster_restart {
    my ($self, $port, %o) = @_;
    $self->start_redis(port => $port);
    delete $self->{cluster}{dead}{$port};
    delete $self->{cluster}{map};
    $self->cluster_wait_ok(timeout => $o{timeout} // 15)
        or die "cluster_restart: the cluster is not ok with $port back\n"
               . $self->_cluster_diag;
    return $port;
}

# move a slot to the master on $to as redis-cli --cluster reshard does:
# SETSLOT IMPORTING on the target, MIGRATING on the source, MIGRATE the
# keys (CLUSTER GETKEYSINSLOT) in batches of $o{batch} (10) keys with
# $o{pause} (0) s between batches, then SETSLOT NODE on the target, the
# source and every other master.  Hooks: $o{migrating}->() once the slot
# is importing/migrating (before any key moves: requests for keys still
# on the source are answered there), $o{migrated}->() once every key is on
# the target, before SETSLOT NODE (every request the source gets for the
# slot is answered ASK).  Unless wait => 0, returns once every live node
# sees $to as the slot's master.  Returns the number of keys moved.
sub cluster_move_slot {
    my ($self, $slot, $to, %o) = @_;
    my $from = $self->cluster_slot_map->[$slot];
    die "cluster_move_slot: slot $slot is not served\n" unless defined $from;
    return 0 if $from == $to;
    my $from_id = $self->cluster_node_id($from);
    my $to_id   = $self->cluster_node_id($to);
    my $batch   = $o{batch} // 10;

    $self->redis_on($to, 'CLUSTER', 'SETSLOT', $slot, 'IMPORTING', $from_id);
    $self->redis_on($from, 'CLUSTER', 'SETSLOT', $slot, 'MIGRATING', $to_id);
    $o{migrating}->() if $o{migrating};

    my $moved = 0;
    while (1) {
        my $keys = $self->redis_on($from, 'CLUSTER', 'GETKEYSINSLOT',
                                   $slot, $batch);
        last unless @$keys;
        my $r = $self->redis_on($from, 'MIGRATE', '127.0.0.1', $to, '', 0,
                                5000, 'KEYS', @$keys);
        $moved += @$keys;
        sleep $o{pause} if $o{pause};
    }
    $o{migrated}->() if $o{migrated};

    $self->redis_on($to, 'CLUSTER', 'SETSLOT', $slot, 'NODE', $to_id);
    $self->redis_on($from, 'CLUSTER', 'SETSLOT', $slot, 'NODE', $to_id);
    for my $m (grep { $_ != $to && $_ != $from } $self->cluster_masters) {
        $self->redis_try_on($m, 'CLUSTER', 'SETSLOT', $slot, 'NODE', $to_id);
    }
    delete $self->{cluster}{map};
    if ($o{wait} // 1) {
        $self->wait_for(sub {
            !grep { my $m = eval { $self->cluster_slot_map($_) };
                    !$m || ($m->[$slot] // -1) != $to }
                  $self->cluster_live_ports;
        }, $o{timeout} // 10)
            or die "cluster_move_slot: not every node sees slot $slot on "
                   . "$to\n" . $self->_cluster_diag;
    }
    return $moved;
}

# ---------------------------------------------------------------------------
# nginx
# ---------------------------------------------------------------------------

sub write_config {
    my ($self, $body, %o) = @_;
    my $tmp = $self->{tmp};
    my $use_module = $o{module} // 1;
    $self->_require_module if $use_module;

    $body //= '';
    $body =~ s/%%PORT_(\w+)%%/$self->named_port($1)/ge;
    $self->{conf_uses_port} = $body =~ s/%%PORT%%/$self->port/ge ? 1 : 0;
    $body =~ s/%%REDIS_PORT%%/$self->redis_port/ge;
    $body =~ s/%%BACKEND_PORT%%/$self->backend_port/ge;
    $body =~ s/%%TMP%%/$tmp/g;
    if ($self->{cluster}) {
        my @cp = $self->cluster_ports;
        $body =~ s/%%CLUSTER_PORT_(\d+)%%/
            $cp[$1 - 1] \/\/ die "write_config: no cluster node $1\n"/ge;
        $body =~ s/%%CLUSTER_SEEDS%%/$self->cluster_seeds/ge;
    }
    die "write_config: unknown placeholder $1\n" if $body =~ /(%%[A-Z0-9_]+%%)/;

    my $workers = $o{workers} // 1;
    my $master  = ($o{master} // 1) ? 'on' : 'off';
    my $level   = $o{log_level} // 'info';
    my $wc      = $o{worker_connections} // 1024;
    my $access  = ($o{access_log} // 1) ? "$tmp/access.log" : 'off';
    my $main    = $o{main} // '';
    my $load    = $use_module ? "load_module $self->{module};\n" : '';

    my $conf = <<"EOF";
${load}$main
worker_processes $workers;
daemon off;
master_process $master;
pid $tmp/nginx.pid;
error_log $tmp/error.log $level;

events {
    worker_connections $wc;
}

http {
    access_log $access;

    client_body_temp_path $tmp/client_body_temp;
    proxy_temp_path       $tmp/proxy_temp;
    fastcgi_temp_path     $tmp/fastcgi_temp;
    uwsgi_temp_path       $tmp/uwsgi_temp;
    scgi_temp_path        $tmp/scgi_temp;

$body
}
EOF
    my $path = "$tmp/nginx.conf";
    open my $fh, '>', $path or die "write_config: $path: $!";
    print $fh $conf;
    close $fh or die "write_config: $path: $!";
    $self->{conf} = $path;
    $self->{conf_module} = $use_module;
    return $path;
}

sub _nginx_args {
    my ($self, $elog) = @_;
    die "no config written (call write_config first)\n" unless $self->{conf};
    return ($NGINX, '-p', "$self->{tmp}/", '-c', $self->{conf}, '-e', $elog);
}

sub nginx_t {
    my ($self) = @_;
    $self->_require_module if $self->{conf_module};
    my @cmd = $self->_nginx_args("$self->{tmp}/nginx-t.log");
    my $pid = open(my $fh, '-|');
    die "fork: $!" unless defined $pid;
    if ($pid == 0) {
        open STDERR, '>&', \*STDOUT;
        open STDIN, '<', '/dev/null';
        no warnings q(exec);
        exec { $cmd[0] } @cmd, '-t';
        print "exec $cmd[0] failed: $!\n";
        POSIX::_exit(127);
    }
    local $/;
    my $out = <$fh> // '';
    close $fh;
    return ($? >> 8, $out);
}

sub nginx_pid { $_[0]{nginx_pid} }

sub start_nginx {
    my ($self, %o) = @_;
    $self->_require_module if $self->{conf_module};
    die "start_nginx: nginx already running (pid $self->{nginx_pid})\n"
        if $self->{nginx_pid} && _alive($self->{nginx_pid});
    my $tmp = $self->{tmp};
    unlink "$tmp/nginx.pid";

    my $pid = $self->_spawn("$tmp/nginx.stderr",
                            $self->_nginx_args("$tmp/error.log"));
    $self->{nginx_pid} = $pid;

    my $port = exists $o{port} ? $o{port}
             : $self->{conf_uses_port} ? $self->port : undef;
    my $deadline = time + ($o{timeout} || 5) * $SLOW;
    while (1) {
        if (!_alive($pid)) {
            delete $self->{nginx_pid};
            die "start_nginx: nginx exited during startup\n"
                . _slurp("$tmp/nginx.stderr") . _slurp("$tmp/error.log");
        }
        last if -s "$tmp/nginx.pid"
            && (!defined $port || _can_connect($port));
        if (time >= $deadline) {
            _terminate($pid, 2);
            delete $self->{nginx_pid};
            die "start_nginx: nginx did not come up within timeout\n"
                . _slurp("$tmp/nginx.stderr") . _slurp("$tmp/error.log");
        }
        sleep 0.05;
    }
    # with master_process on, also wait for the first worker
    $self->wait_for(sub { $self->worker_pids }, 5)
        if $self->_nginx_has_master;
    return $pid;
}

sub _nginx_has_master {
    my ($self) = @_;
    return _slurp($self->{conf} // '') !~ /^\s*master_process\s+off\s*;/m;
}

sub _can_connect {
    my ($port) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                  Proto => 'tcp', Timeout => 1) or return 0;
    close $s;
    return 1;
}

sub stop_nginx {
    my ($self, %o) = @_;
    my $pid = delete $self->{nginx_pid} or return;
    my @workers = _children_of($pid);
    kill 'QUIT', $pid;
    my $st = _wait_child($pid, ($o{timeout} // 10) * $SLOW);
    unless (defined $st) {
        Test::More::diag("stop_nginx: graceful shutdown timed out, "
                         . "sending TERM");
        $st = _terminate($pid, 5 * $SLOW);
    }
    kill 'KILL', $_ for grep { kill 0, $_ } @workers;
    return $st;
}

sub reload {
    my ($self, %o) = @_;
    my $pid = $self->{nginx_pid} or die "reload: nginx not running\n";
    my %old = map { $_ => 1 } $self->worker_pids(all => 1);
    kill 'HUP', $pid or die "reload: kill HUP $pid: $!\n";
    my $ok = $self->wait_for(sub {
        grep { !$old{$_} } $self->worker_pids;
    }, $o{timeout} || 5);
    die "reload: no new worker process appeared\n" . $self->error_log
        unless $ok;
    return 1;
}

# direct children of $ppid, from /proc/*/stat
sub _children_of {
    my ($ppid) = @_;
    my @kids;
    opendir my $dh, '/proc' or return;
    for my $p (grep { /^\d+$/ } readdir $dh) {
        my $stat = _slurp("/proc/$p/stat");
        # comm may contain spaces/parens: fields after the last ')'
        next unless $stat =~ /\)\s+\S+\s+(\d+)/s && $1 == $ppid;
        push @kids, $p;
    }
    closedir $dh;
    return sort { $a <=> $b } @kids;
}

sub worker_pids {
    my ($self, %o) = @_;
    my $pid = $self->{nginx_pid} or return;
    my @w;
    for my $c (_children_of($pid)) {
        my $cmd = _slurp("/proc/$c/cmdline");
        $cmd =~ tr/\0/ /;
        # under valgrind the title nginx sets is not the process's
        # cmdline (that is valgrind's): every child counts as a worker,
        # shutting down or not (the tests start no cache processes)
        next unless $cmd =~ /worker process/ || $VALGRIND;
        next if !$o{all} && $cmd =~ /shutting down/;
        push @w, $c;
    }
    return @w;
}

# ---------------------------------------------------------------------------
# logs
# ---------------------------------------------------------------------------

sub error_log { _slurp("$_[0]{tmp}/error.log") }

sub log_lines {
    my ($self, $re) = @_;
    return grep { $_ =~ $re } split /\n/, $self->error_log;
}

sub check_error_log {
    my ($self, %o) = @_;
    my $ignore = $o{ignore};
    my @bad = grep {
        (/\[(?:alert|crit|emerg)\]/
         || /exited on signal/
         || /worker process \d+ exited with code ([1-9]\d*)/)
        && !($ignore && $_ =~ $ignore)
    } split /\n/, $self->error_log;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    my $ok = Test::More::ok(!@bad, $o{name} // 'error.log has no alerts/crashes');
    Test::More::diag("bad error.log line: $_") for @bad;
    return $ok;
}

# ---------------------------------------------------------------------------
# HTTP client
# ---------------------------------------------------------------------------

sub _write_all {
    my ($sock, $data, $deadline) = @_;
    local $SIG{PIPE} = 'IGNORE';
    my $off = 0;
    my $sel = IO::Select->new($sock);
    while ($off < length $data) {
        my $left = $deadline - time;
        die "timeout writing\n" if $left <= 0;
        next unless $sel->can_write($left);
        my $n = syswrite($sock, $data, length($data) - $off, $off);
        unless (defined $n) {
            next if $! == EINTR || $! == EAGAIN || $! == EWOULDBLOCK;
            die "write error: $!\n";
        }
        $off += $n;
    }
    return 1;
}

sub _build_request {
    my ($self, %a) = @_;
    my $method = $a{method} // 'GET';
    my $path   = $a{path}   // '/';
    my $body   = $a{body}   // '';
    utf8::encode($body) if utf8::is_utf8($body);
    my @h;
    if (ref $a{headers} eq 'HASH') {
        @h = map { [ $_, $a{headers}{$_} ] } sort keys %{ $a{headers} };
    } elsif (ref $a{headers} eq 'ARRAY') {
        my @l = @{ $a{headers} };
        push @h, [ splice @l, 0, 2 ] while @l;
    }
    my %have = map { lc $_->[0] => 1 } @h;
    unshift @h, [ Host => 'localhost' ] unless $have{host};
    push @h, [ Connection => 'close' ]
        unless $have{connection} || $a{_keepalive};
    push @h, [ 'Content-Length' => length $body ]
        if !$have{'content-length'} && !$have{'transfer-encoding'}
           && (length $body || $method =~ /^(?:POST|PUT|PATCH)$/);
    my $req = "$method $path HTTP/" . ($a{http_version} // '1.1') . "\r\n"
            . join('', map { "$_->[0]: $_->[1]\r\n" } @h)
            . "\r\n" . $body;
    return ($req, $method);
}

sub _connect {
    my ($port, $timeout) = @_;
    return IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                 Proto => 'tcp', Timeout => $timeout);
}

# Try to parse one response from $buf.  Returns (response, consumed) when
# complete, () when more data is needed.  With $eof, always returns.
sub _parse_response {
    my ($buf, $method, $eof) = @_;
    my $start = 0;
    while (1) {
        my $rest = substr($buf, $start);
        unless ($rest =~ /\A(.*?)\r?\n\r?\n/s) {
            return () unless $eof;
            return ({ status => undef, headers => {}, header_list => [],
                      body => '', raw => $buf,
                      error => length $buf ? 'incomplete response headers'
                                           : 'empty response' },
                    length $buf);
        }
        my $hlen = $+[0];
        my ($sl, @lines) = split /\r?\n/, $1;
        my %r = (raw => '', body => '', headers => {}, header_list => []);
        if ($sl =~ m{^HTTP/(\d+\.\d+)\s+(\d{3})(?:\s+(.*))?$}) {
            @r{qw(version status reason)} = ($1, 0 + $2, $3 // '');
        } else {
            return ({ %r, status => undef, raw => $buf,
                      error => "bad status line: $sl" }, length $buf);
        }
        for my $l (@lines) {
            if ($l =~ /^[ \t]+(.*)/ && @{ $r{header_list} }) {
                $r{header_list}[-1][1] .= " $1";
                next;
            }
            my ($n, $v) = $l =~ /^([^:]*):[ \t]*(.*?)[ \t]*$/ or next;
            push @{ $r{header_list} }, [ $n, $v ];
        }
        for my $h (@{ $r{header_list} }) {
            my $k = lc $h->[0];
            $r{headers}{$k} = exists $r{headers}{$k}
                ? "$r{headers}{$k}, $h->[1]" : $h->[1];
        }
        my $pos = $start + $hlen;

        # interim 1xx responses (except 101) are skipped
        if ($r{status} >= 100 && $r{status} < 200 && $r{status} != 101) {
            $start = $pos;
            next;
        }

        my $te = $r{headers}{'transfer-encoding'} // '';
        my $cl = $r{headers}{'content-length'};
        if ($method eq 'HEAD' || $r{status} < 200
            || $r{status} == 204 || $r{status} == 304)
        {
            # no body
        } elsif ($te =~ /chunked/i) {
            my $body = '';
            my $p = $pos;
            while (1) {
                my $i = index($buf, "\r\n", $p);
                if ($i < 0) { return () unless $eof; $r{error} = 'truncated chunked body'; $pos = length $buf; last }
                my ($size) = substr($buf, $p, $i - $p) =~ /^\s*([0-9a-fA-F]+)/;
                unless (defined $size) {
                    $r{error} = 'bad chunk size'; $pos = length $buf; last;
                }
                $size = hex $size;
                $p = $i + 2;
                if ($size == 0) {
                    # trailers until an empty line
                    while (1) {
                        my $j = index($buf, "\r\n", $p);
                        if ($j < 0) { return () unless $eof; $r{error} = 'truncated trailers'; $p = length $buf; last }
                        my $tl = substr($buf, $p, $j - $p);
                        $p = $j + 2;
                        last if $tl eq '';
                        push @{ $r{trailers} }, $tl;
                    }
                    $pos = $p;
                    last;
                }
                if (length($buf) < $p + $size + 2) {
                    return () unless $eof;
                    $body .= substr($buf, $p);
                    $r{error} = 'truncated chunked body';
                    $pos = length $buf;
                    last;
                }
                $body .= substr($buf, $p, $size);
                $p += $size + 2;
            }
            $r{body} = $body;
        } elsif (defined $cl && $cl =~ /^\s*(\d+)/) {
            my $need = $1;
            if (length($buf) - $pos < $need) {
                return () unless $eof;
                $r{body} = substr($buf, $pos);
                $r{error} = 'truncated body';
                $pos = length $buf;
            } else {
                $r{body} = substr($buf, $pos, $need);
                $pos += $need;
            }
        } else {
            return () unless $eof;    # body delimited by connection close
            $r{body} = substr($buf, $pos);
            $pos = length $buf;
        }
        $r{raw} = substr($buf, 0, $pos);
        return (\%r, $pos);
    }
}

# connection object: { sock, buf, eof }
sub _conn_read_response {
    my ($conn, $method, $deadline) = @_;
    my $sel = IO::Select->new($conn->{sock});
    while (1) {
        my ($r, $used) = _parse_response($conn->{buf}, $method, $conn->{eof});
        if ($r) {
            substr($conn->{buf}, 0, $used, '');
            return $r;
        }
        my $left = $deadline - time;
        if ($left <= 0) {
            return { status => undef, headers => {}, header_list => [],
                     body => '', raw => $conn->{buf}, error => 'timeout' };
        }
        next unless $sel->can_read($left);
        my $n = sysread($conn->{sock}, $conn->{buf}, 65536,
                        length $conn->{buf});
        if (!defined $n) {
            next if $! == EINTR || $! == EAGAIN;
            $conn->{read_error} = "$!";
            $conn->{eof} = 1;      # e.g. ECONNRESET: parse what we have
        } elsif ($n == 0) {
            $conn->{eof} = 1;
        }
    }
}

sub _error_response {
    my ($err, $start) = @_;
    return { status => undef, headers => {}, header_list => [], body => '',
             raw => '', error => $err, elapsed => time - $start };
}

sub request {
    my ($self, %a) = @_;
    my $h = $self->start_request(%a);
    return $self->finish_request($h);
}

sub get {
    my ($self, $path, %headers) = @_;
    return $self->request(method => 'GET', path => $path,
                          headers => [ %headers ]);
}

sub raw_request {
    my ($self, $bytes, %a) = @_;
    my $h = $self->start_request(%a, raw => $bytes);
    return $self->finish_request($h);
}

sub start_request {
    my ($self, %a) = @_;
    my $start   = time;
    my $timeout = $a{timeout} // 10 * $SLOW;
    my ($req, $method);
    if (defined $a{raw}) {
        ($req, $method) = ($a{raw}, $a{method} // 'GET');
    } else {
        ($req, $method) = $self->_build_request(%a);
    }
    my $h = { start => $start, method => $method, timeout => $timeout };
    my $sock = _connect($a{port} // $self->port, $timeout);
    unless ($sock) {
        $h->{error} = "connect: $!";
        return $h;
    }
    $h->{conn} = { sock => $sock, buf => '', eof => 0 };
    unless (eval { _write_all($sock, $req, $start + $timeout); 1 }) {
        # the server may have answered and closed already: still read
        $h->{write_error} = $@;
    }
    return $h;
}

sub finish_request {
    my ($self, $h, %o) = @_;
    return _error_response($h->{error}, $h->{start}) if $h->{error};
    my $deadline = defined $o{timeout} ? time + $o{timeout}
                                       : $h->{start} + $h->{timeout};
    my $r = _conn_read_response($h->{conn}, $h->{method}, $deadline);
    $r->{elapsed} = time - $h->{start};
    $r->{read_error} = $h->{conn}{read_error} if $h->{conn}{read_error};
    close $h->{conn}{sock};
    delete $h->{conn};
    return $r;
}

sub keepalive {
    my ($self, $reqs, %o) = @_;
    my $port    = $o{port} // $self->port;
    my $timeout = $o{timeout} // 10 * $SLOW;
    my $sock = _connect($port, $timeout)
        or die "keepalive: connect to port $port: $!\n";
    my $conn = { sock => $sock, buf => '', eof => 0 };
    my @res;
    my $i = 0;
    for my $ra (@$reqs) {
        $i++;
        die "keepalive: server closed the connection before request $i\n"
            if $conn->{eof};
        my $start = time;
        my ($req, $method) = $self->_build_request(%$ra, _keepalive => 1);
        eval { _write_all($sock, $req, $start + $timeout); 1 }
            or die "keepalive: request $i: $@";
        my $r = _conn_read_response($conn, $method,
                                    $start + ($ra->{timeout} // $timeout));
        $r->{elapsed} = time - $start;
        die "keepalive: request $i failed: $r->{error}\n" if $r->{error};
        push @res, $r;
    }
    close $sock;
    return \@res;
}

sub concurrent {
    my ($self, $reqs, %o) = @_;
    my $timeout = $o{timeout} // 30 * $SLOW;
    my $start = time;
    my $deadline = $start + $timeout;
    my (@res, @st);

    for my $i (0 .. $#$reqs) {
        my %a = %{ $reqs->[$i] };
        my ($req, $method) = defined $a{raw}
            ? ($a{raw}, $a{method} // 'GET') : $self->_build_request(%a);
        my $sock = _connect($a{port} // $o{port} // $self->port, $timeout);
        unless ($sock) {
            $res[$i] = _error_response("connect: $!", $start);
            next;
        }
        $st[$i] = { conn => { sock => $sock, buf => '', eof => 0 },
                    method => $method, out => $req };
    }

    # write everything (non-blocking), then read until each is complete
    my %by_fd;
    for my $i (grep { $st[$_] } 0 .. $#st) {
        my $s = $st[$i]{conn}{sock};
        my $fl = fcntl($s, F_GETFL, 0);
        fcntl($s, F_SETFL, $fl | O_NONBLOCK);
        $by_fd{ fileno $s } = $i;
    }
    local $SIG{PIPE} = 'IGNORE';
    my $rsel = IO::Select->new;
    my $wsel = IO::Select->new(map { $st[$_]{conn}{sock} } values %by_fd);
    while ($rsel->count || $wsel->count) {
        my $left = $deadline - time;
        last if $left <= 0;
        my ($rr, $ww) = IO::Select->select($rsel, $wsel, undef,
                                           $left > 0.5 ? 0.5 : $left);
        for my $s (@{ $ww || [] }) {
            my $x = $st[ $by_fd{ fileno $s } ];
            my $n = syswrite($s, $x->{out});
            if (defined $n) {
                substr($x->{out}, 0, $n, '');
            } elsif ($! != EAGAIN && $! != EWOULDBLOCK && $! != EINTR) {
                $x->{out} = '';
                $x->{write_error} = "$!";
            }
            if ($x->{out} eq '') { $wsel->remove($s); $rsel->add($s) }
        }
        for my $s (@{ $rr || [] }) {
            my $i = $by_fd{ fileno $s };
            my $x = $st[$i];
            my $n = sysread($s, $x->{conn}{buf}, 65536,
                            length $x->{conn}{buf});
            if (!defined $n) {
                next if $! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR;
                $x->{conn}{read_error} = "$!";
                $x->{conn}{eof} = 1;
            } elsif ($n == 0) {
                $x->{conn}{eof} = 1;
            }
            my ($r) = _parse_response($x->{conn}{buf}, $x->{method},
                                      $x->{conn}{eof});
            next unless $r;
            $r->{elapsed} = time - $start;
            $r->{read_error} = $x->{conn}{read_error}
                if $x->{conn}{read_error};
            $res[$i] = $r;
            $rsel->remove($s);
            close $s;
        }
    }
    for my $i (0 .. $#$reqs) {
        next if $res[$i];
        my $x = $st[$i];
        $res[$i] = { status => undef, headers => {}, header_list => [],
                     body => '', raw => $x->{conn}{buf}, error => 'timeout',
                     elapsed => time - $start };
        close $x->{conn}{sock};
    }
    return \@res;
}

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

# ---------------------------------------------------------------------------
# load generator: client processes that keep requesting for a while
# ---------------------------------------------------------------------------

# start_load(%o) forks $o{clients} (default 8) processes that request
# until stop_load (or $o{duration} s, default 30, as a safety net).
# $o{request}->($client, $n) returns the request args (path, headers,
# port, ...) of request $n of client $client.  Clients with an odd
# number reuse keep-alive connections (up to $o{keepalive} requests,
# default 20), the others open a connection per request; each pauses
# $o{pause} s (default 0.01) between requests.  An idle keep-alive
# connection that the server has closed (e.g. a worker shutting down on
# reload) is replaced by a new one before the next request (the record
# says reopened => 1).  A request on a reused keep-alive connection that
# the server closed before sending any byte of a response (the race
# every HTTP client meets when a server closes an idle connection just
# as a request is sent) is sent again on a new connection, as clients
# do for idempotent requests (RFC 9112 section 9.3.1); the record says
# retried => 1.  A "tag" in
# the request args is copied to its record.
sub start_load {
    my ($self, %o) = @_;
    my $clients = $o{clients} // 8;
    my $req = $o{request} or die "start_load: request callback required\n";
    my $dir = "$self->{tmp}/load-" . ++$self->{load_seq};
    File::Path::make_path($dir);
    my $load = { dir => $dir, pids => [], start => time,
                 stop => "$dir/stop" };
    for my $c (1 .. $clients) {
        my $pid = fork;
        die "fork: $!" unless defined $pid;
        if ($pid == 0) {
            my $ok = eval {
                $self->_load_client($c, $req, $load, %o);
                1;
            };
            print STDERR "load client $c: $@" unless $ok;
            POSIX::_exit($ok ? 0 : 1);
        }
        push @{ $load->{pids} }, $pid;
    }
    push @{ $self->{loads} }, $load;
    return $load;
}

sub _load_client {
    my ($self, $c, $req, $load, %o) = @_;
    require Storable;
    local $SIG{PIPE} = 'IGNORE';
    my $ka      = $c % 2 ? ($o{keepalive} // 20) : 0;
    my $pause   = $o{pause} // 0.01;
    my $timeout = $o{timeout} // 10 * $SLOW;
    my $end     = time + ($o{duration} // 30);
    my (@rec, $conn, $used);
    my $n = 0;
    while (time < $end && !-e $load->{stop}) {
        my %a = %{ $req->($c, ++$n) };
        my $port = $a{port} // $self->port;
        my $start = time;
        my ($r, $retried, $reopened);
        for my $try (1, 2) {
            # an idle keep-alive connection the server closed meanwhile
            # (readable: EOF) is not reused, as careful clients do
            if ($conn && IO::Select->new($conn->{sock})->can_read(0)) {
                close $conn->{sock};
                undef $conn;
                $reopened = 1;
            }
            my $reused = $conn && $used ? 1 : 0;
            unless ($conn) {
                my $s = _connect($port, $timeout);
                unless ($s) {
                    $r = { error => "connect: $!" };
                    last;
                }
                $conn = { sock => $s, buf => '', eof => 0 };
                $used = 0;
            }
            my ($bytes, $method) = $self->_build_request(%a,
                $ka ? (_keepalive => 1) : ());
            my $wok = eval { _write_all($conn->{sock}, $bytes,
                                        $start + $timeout); 1 };
            $r = _conn_read_response($conn, $method, $start + $timeout);
            $r->{error} //= "write: $@" if !$wok && !defined $r->{status};
            $r->{read_error} = $conn->{read_error} if $conn->{read_error};
            $used++;
            my $close = !$ka || $conn->{eof} || $used >= $ka
                || defined $r->{error}
                || ($r->{headers}{connection} // '') =~ /close/i;
            if ($close) {
                close $conn->{sock};
                undef $conn;
            }
            # closed before any response byte on a reused connection
            if ($reused && !defined $r->{status} && $r->{raw} eq ''
                && $try == 1)
            {
                $retried = 1;
                $start = time;
                next;
            }
            last;
        }
        push @rec, {
            client  => $c,
            n       => $n,
            path    => $a{path},
            tag     => $a{tag},
            start   => $start,
            elapsed => time - $start,
            end     => time,
            status  => $r->{status},
            error   => $r->{error} // $r->{read_error},
            body    => $r->{body} // '',
            headers => $r->{headers} // {},
            retried => $retried ? 1 : 0,
            reopened => $reopened ? 1 : 0,
            keepalive => $ka ? 1 : 0,
        };
        sleep $pause if $pause > 0;
    }
    close $conn->{sock} if $conn;
    Storable::nstore(\@rec, "$load->{dir}/client-$c.sto");
}

# ends the load (or waits for its duration if $o{wait}), returns the
# records of every client ordered by start time: hashes with client, n,
# path, tag, start, end, elapsed, status, error, body, headers, retried,
# reopened, keepalive.  Dies if a client failed.
sub stop_load {
    my ($self, $load, %o) = @_;
    require Storable;
    unless ($o{wait}) {
        open my $fh, '>', $load->{stop} or die "stop_load: $load->{stop}: $!";
        close $fh;
    }
    my @all;
    my @failed;
    for my $i (0 .. $#{ $load->{pids} }) {
        my $pid = $load->{pids}[$i];
        my $st = _wait_child($pid, ($o{timeout} // 60) * $SLOW);
        unless (defined $st) {
            kill 'KILL', $pid;
            _wait_child($pid, 5);
            push @failed, "client " . ($i + 1) . " did not finish";
            next;
        }
        push @failed, "client " . ($i + 1) . " exited with $st" if $st;
        my $file = "$load->{dir}/client-" . ($i + 1) . ".sto";
        push @all, @{ Storable::retrieve($file) } if -f $file;
    }
    $self->{loads} = [ grep { $_ != $load } @{ $self->{loads} || [] } ];
    die "stop_load: " . join(', ', @failed) . "\n" if @failed;
    return [ sort { $a->{start} <=> $b->{start} } @all ];
}

# ---------------------------------------------------------------------------
# cleanup
# ---------------------------------------------------------------------------

sub cleanup {
    my ($self) = @_;
    return unless $self->{owner_pid} && $$ == $self->{owner_pid};
    for my $load (@{ delete $self->{loads} || [] }) {
        kill 'KILL', @{ $load->{pids} };
        _wait_child($_, 5) for @{ $load->{pids} };
    }
    if (my $pid = delete $self->{nginx_pid}) {
        my @w = _children_of($pid);
        _terminate($pid, 3 * $SLOW);
        kill 'KILL', $_ for grep { kill 0, $_ } @w;
    }
    $self->stop_fake_server($_) for keys %{ $self->{fake} };
    # cluster nodes hold nothing worth saving: SIGKILL, so that a master
    # does not wait (shutdown-timeout) for replicas stopped before it
    for my $port (grep { $self->{redis}{$_}{cluster} } keys %{ $self->{redis} }) {
        my $pid = delete $self->{redis}{$port}{pid} or next;
        _terminate($pid, 5, 'KILL');
    }
    $self->stop_redis($_) for keys %{ $self->{redis} };
}

sub DESTROY {
    my ($self) = @_;
    local ($?, $@, $!);
    $self->cleanup;
    delete $LIVE{refaddr $self};
}

sub _cleanup_all {
    local ($?, $@, $!);
    for my $t (grep { defined } values %LIVE) { $t->cleanup }
}

END { _cleanup_all() }

my $handlers_installed;
sub _install_signal_handlers {
    return if $handlers_installed++;
    for my $sig (qw(INT TERM HUP)) {
        my $cur = $SIG{$sig};
        next if defined $cur && $cur ne '' && $cur ne 'DEFAULT';
        my $owner = $$;
        $SIG{$sig} = sub {
            POSIX::_exit(1) if $$ != $owner;
            _cleanup_all();
            print STDERR "# LoyaltyTest: caught SIG$sig, cleaned up\n";
            exit 1;
        };
    }
}

1;

__END__

=head1 NAME

LoyaltyTest - test harness for the nginx loyalty module

=head1 SYNOPSIS

    use lib 't/lib';
    use Test::More;
    use LoyaltyTest;

    my $t = LoyaltyTest->new;
    $t->start_redis;
    $t->start_backend;
    $t->write_config(<<'EOF');
    server {
        listen 127.0.0.1:%%PORT%%;
        location / { proxy_pass http://127.0.0.1:%%BACKEND_PORT%%; }
    }
    EOF
    $t->start_nginx;
    my $r = $t->get('/', 'X-Customer' => '42');
    is $r->{status}, 200;
    $t->check_error_log;
    done_testing;

=head1 DESCRIPTION

Everything runs under a private temp dir (mode 0777, removed at the end
unless C<KEEP_TEST_DIR=1>).  Every process started (nginx, redis, fake
servers, backend) is killed and reaped by C<cleanup>, which runs from
C<DESTROY>, an C<END> block and INT/TERM/HUP handlers.

C<NGINX_BINARY> replaces F</usr/sbin/nginx>.  With C<LOYALTY_VALGRIND=1>
(make valgrind, which runs F<tools/valgrind-nginx>) every wait for nginx
and every default client timeout is C<$LoyaltyTest::SLOW> times longer
(C<LOYALTY_VALGRIND_SLOW>, default 10), C<worker_pids> counts every child
of the master, and tests may read C<$LoyaltyTest::VALGRIND>.

=head2 Main methods

C<new(%opts)> (root, module_path, redis_timeout, redis_auth), C<tmp>,
C<port>, C<free_port>, C<named_port($name)>, C<backend_port>,
C<wait_for($cb, $secs)>.

Redis: C<start_redis(port =E<gt> N, extra =E<gt> [...])>, C<redis_port>,
C<redis_pid([$port])>, C<redis(@cmd)>, C<redis_on($port, @cmd)>,
C<redis_try(@cmd)>, C<redis_try_on($port, @cmd)>,
C<redis_pipeline(\@cmds, port =E<gt> N)>,
C<redis_command_start([{port =E<gt> N},] @cmd)> /
C<redis_command_finish($h, timeout =E<gt> S)> (send now, read the reply
later), C<redis_signal($sig, [$port])>,
C<stop_redis([$port])>, C<restart_redis([$port])>.  Error replies die
(C<redis>) or come back as C<{error =E<gt> text}> (C<redis_try>, nested).

Redis Cluster: C<start_cluster(%o)> (nodes 6, replicas 1, node_timeout
1000, allow_reads_when_down 'no', require_full_coverage 'yes', extra)
starts cluster-enabled nodes (F<E<lt>tmpE<gt>/cE<lt>portE<gt>>,
F<nodes-E<lt>portE<gt>.conf>, bus port from C<--cluster-port>), runs
C<redis-cli --cluster create> and waits until every node is ok, agrees on
all 16384 slots and every replica is in sync; returns the ports.
C<cluster_ports>, C<cluster_live_ports>, C<cluster_seeds(@ports)>,
C<cluster_started_in>, C<cluster_masters> (live, by first slot),
C<cluster_replicas([$master])>, C<cluster_master_of($replica)>,
C<cluster_role($port)>, C<cluster_node_id($port)>, C<cluster_info($port)>,
C<cluster_slots($port)>, C<cluster_slot_map([$port])> (slot =E<gt> master
port), C<cluster_slot_of($key)> (CRC16 with {hash tags}; also a plain
function), C<cluster_node_for_key($key)>, C<cluster_redis(@cmd)> /
C<cluster_redis_try(@cmd)> (to the master of argv[1], following one MOVED
or ASK), C<cluster_pipeline(\@cmds)>, C<cluster_wait_sync> (WAIT on every
master), C<cluster_wait_ok(timeout =E<gt> S)>, C<cluster_kill($port,
signal =E<gt> 'KILL')>, C<cluster_wait_failover($dead, timeout =E<gt> S)>
(new master, and seconds since the kill in list context),
C<cluster_restart($port)>, C<cluster_move_slot($slot, $to_port, batch,
pause, migrating =E<gt> sub, migrated =E<gt> sub, wait)> (IMPORTING,
MIGRATING, MIGRATE in batches, SETSLOT NODE everywhere; returns the keys
moved), C<redis_cmdstat($port, $command)> (INFO commandstats calls).
Cluster nodes are not standalone servers (C<redis_port> never names
one); C<cleanup> kills them with SIGKILL.  Config placeholders
%%CLUSTER_PORT_n%% (1-based, start order) and %%CLUSTER_SEEDS%%.

nginx: C<write_config($http, %opts)> (workers, master, log_level,
access_log, main, worker_connections, module =E<gt> 0 to skip load_module;
placeholders %%PORT%%, %%REDIS_PORT%%, %%BACKEND_PORT%%, %%TMP%%,
%%PORT_name%%), C<nginx_t>, C<start_nginx(port =E<gt> N|undef)>,
C<stop_nginx>, C<reload>, C<worker_pids(all =E<gt> 1)>, C<nginx_pid>.

HTTP: C<get($path, %headers)>, C<request(%args)>, C<raw_request($bytes,
%args)>, C<start_request(%args)> / C<finish_request($h)>,
C<keepalive(\@reqs, %opts)>, C<concurrent(\@reqs, %opts)>.  Responses are
hashrefs with status, reason, headers, header_list, body, raw, elapsed and
error (set on timeout/connect failure/malformed response).

Fake servers: C<fake_server($sub, port =E<gt> N)>, C<stop_fake_server($port)>,
canned subs C<fake_garbage([$bytes])>, C<fake_reset>, C<fake_silent>,
C<fake_reply($bytes)>; echo backend C<start_backend>, C<stop_backend>.

Load: C<start_load(clients =E<gt> 8, request =E<gt> sub { ($client, $n)
... }, duration, pause, keepalive, timeout)> forks client processes that
request until C<stop_load($load)>, which returns every request's record
(client, n, path, tag, start, end, elapsed, status, error, body, headers,
retried, reopened, keepalive) ordered by start time.

Logs: C<error_log>, C<log_lines(qr//)>, C<check_error_log(ignore =E<gt>
qr//, name =E<gt> ...)> (exactly one Test::More test).

=cut
