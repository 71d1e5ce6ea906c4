package LoyaltyTest::Core;

# The harness's core: the constructor, its temp dir and ports, child
# processes (spawn, wait, terminate), writing nginx.conf, starting,
# reloading, testing (-t) and stopping nginx, reading its error log, and
# the cleanup that kills every process started, from DESTROY, END and
# INT/TERM/HUP handlers.  Base class of LoyaltyTest (t/lib/LoyaltyTest.pm),
# which adds the other parts: methods here may call theirs (write_config
# fills the cluster placeholders, cleanup stops Redis and fake servers).
# The plain helpers (_slurp, _alive, _wait_child, _terminate, _write_all)
# and the settings below are exported to the parts.

use strict;
use warnings;

use Cwd ();
use Errno qw(EINTR EAGAIN EWOULDBLOCK);
use Exporter qw(import);
use File::Basename ();
use File::Spec;
use File::Temp ();
use IO::Select;
use IO::Socket::INET;
use POSIX qw(WNOHANG);
use Scalar::Util qw(weaken refaddr);
use Time::HiRes qw(time sleep);
use Test::More ();

our @EXPORT_OK = qw($NGINX $VALGRIND $SLOW
                    _slurp _alive _wait_child _terminate _write_all);

our $NGINX        = $ENV{NGINX_BINARY}   || '/usr/sbin/nginx';

# make valgrind runs nginx under memcheck (tools/valgrind-nginx) with
# LOYALTY_VALGRIND=1: nginx starts, reloads and stops many times slower,
# so the harness's waits for it (start, workers, reload, stop, default
# client timeouts, wait_for) are $SLOW times longer.  Tests read
# $LoyaltyTest::VALGRIND and $LoyaltyTest::SLOW to relax their own timing.
our $VALGRIND     = $ENV{LOYALTY_VALGRIND} ? 1 : 0;
our $SLOW         = $VALGRIND ? ($ENV{LOYALTY_VALGRIND_SLOW} || 10) : 1;
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
        # this file lives in <root>/t/lib/LoyaltyTest/Core.pm
        my $dir = File::Basename::dirname(Cwd::abs_path(__FILE__));
        $root = Cwd::abs_path(File::Spec->catdir($dir, File::Spec->updir,
                                                 File::Spec->updir,
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
# sockets
# ---------------------------------------------------------------------------

# write all of $data before $deadline (dies on timeout or error); the
# RESP client, the HTTP client and the fake servers write with it
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
