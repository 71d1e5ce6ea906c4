#!/usr/bin/perl
# The Debian package, in Debian's own nginx layout: make deb's
# libnginx-mod-http-loyalty installed with dpkg -i (Depends on the
# nginx-abi its nginx provides; the .so in /usr/lib/nginx/modules, the
# snippet in /usr/share/nginx/modules-available, enabled in
# /etc/nginx/modules-enabled by its postinst), a site in
# /etc/nginx/conf.d, nginx -t on Debian's /etc/nginx/nginx.conf as it is,
# Debian's nginx started the way its service unit does, and one
# personalized request through it.  Afterwards nginx is stopped, the site
# removed and the package purged: /etc/nginx, the nginx logs and dpkg's
# database are as they were (checked).
#
# Needs root (or passwordless sudo).  Leaves alone, and skips on, a
# machine where the package is installed already or Debian's nginx
# service is running.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use LoyaltyTest;
use Cwd ();
use Digest::MD5 ();
use File::Find ();
use File::Temp ();
use IO::Socket::INET;
use POSIX ();
use Socket ();
use Time::HiRes qw(time sleep);

my $ROOT      = Cwd::abs_path("$FindBin::Bin/..");
my $PKG       = 'libnginx-mod-http-loyalty';
my $NGINX     = '/usr/sbin/nginx';    # Debian's, whatever NGINX_BINARY says
my $ETC       = '/etc/nginx';
my $SO        = '/usr/lib/nginx/modules/ngx_http_loyalty_module.so';
my $AVAILABLE = '/usr/share/nginx/modules-available/mod-http-loyalty.conf';
my $ENABLED   = "$ETC/modules-enabled/50-mod-http-loyalty.conf";
my $SITE      = "$ETC/conf.d/loyalty-deb-test.conf";
my $DEFAULT   = "$ETC/sites-enabled/default";
my @LOGS      = ('/var/log/nginx/error.log', '/var/log/nginx/access.log');
my $SERVICE_G = 'daemon on; master_process on;';   # as nginx.service

# --- privileges ---------------------------------------------------------------

my @SUDO;
if ($> != 0) {
    if (system('sudo -n true >/dev/null 2>&1') == 0) {
        @SUDO = ('sudo', '-n');
    } else {
        BAIL_OUT("t/16-deb.t installs a Debian package and runs Debian's "
                 . "nginx service: run the tests as root or with "
                 . "passwordless sudo");
    }
}

# runs a command, stdout and stderr to one string; returns (status, output)
my $running;    # its pid: a signal may end the test while dpkg -i runs
sub run {
    my (@cmd) = @_;
    my $pid = open(my $fh, '-|');
    die "fork: $!" unless defined $pid;
    if ($pid == 0) {
        open STDERR, '>&', \*STDOUT;
        open STDIN, '<', '/dev/null';
        exec { $cmd[0] } @cmd or POSIX::_exit(127);
    }
    $running = $pid;
    local $/;
    my $out = <$fh> // '';
    close $fh;
    undef $running;
    return ($?, $out);
}
sub root_run { run(@SUDO, @_) }

sub slurp {
    my ($f) = @_;
    open my $fh, '<:raw', $f or return undef;
    local $/;
    return scalar <$fh>;
}

sub root_write {
    my ($path, $content, $mode) = @_;
    my $tmp = File::Temp->new;
    print $tmp $content;
    close $tmp;
    my ($st, $out) = root_run('install', '-m', sprintf('%04o', $mode // 0644),
                              "$tmp", $path);
    die "install $path: $out" if $st;
}

sub pkg_status {
    my ($st, $out) = run('dpkg-query', '-W',
                         '-f=${db:Status-Status} ${Version}', $PKG);
    return $st ? 'not-installed' : $out;
}

# the pid file of Debian's nginx, found the way /etc/init.d/nginx does
sub pid_file {
    my $conf = slurp("$ETC/nginx.conf") // '';
    $conf =~ s/#[^\n]*//g;
    return $conf =~ /(?:^|[;{}])\s*pid\s+([^;\s]+)\s*;/ ? $1 : '/run/nginx.pid';
}
my $PIDFILE = pid_file();

# a process counts as gone once it is a zombie: the master daemonizes,
# and PID 1 of a container may never reap it
sub proc_alive {
    my ($pid) = @_;
    my $stat = slurp("/proc/$pid/stat") // return 0;
    return $stat =~ /^\d+ \(.*\) (\S)/s && $1 ne 'Z' && $1 ne 'X';
}

sub pidfile_pid {
    my $p = slurp($PIDFILE) // return undef;
    return $p =~ /^\s*(\d+)\s*$/ ? $1 : undef;
}

sub children_of {
    my ($ppid) = @_;
    my @kids;
    for my $stat (glob '/proc/[0-9]*/stat') {
        my $s = slurp($stat) // next;
        push @kids, $1 if $s =~ /^(\d+) \(.*\) \S (\d+) /s && $2 == $ppid;
    }
    return @kids;
}

# true if something listens on TCP port $port (any address, v4 or v6)
sub port_busy {
    my ($port) = @_;
    my $hex = sprintf '%04X', $port;
    for my $f ('/proc/net/tcp', '/proc/net/tcp6') {
        my $c = slurp($f) // next;
        return 1 if $c =~ /^\s*\d+: [0-9A-F]+:$hex [0-9A-F]+:0000 0A /mi;
    }
    return 0;
}

sub ipv6_works {
    socket(my $s, Socket::AF_INET6(), Socket::SOCK_STREAM(), 0) or return 0;
    my $ok = bind($s, Socket::pack_sockaddr_in6(0, Socket::IN6ADDR_ANY()));
    close $s;
    return $ok ? 1 : 0;
}

# /etc/nginx as a map path => type, mode, content digest or link target
sub snapshot {
    my %snap;
    File::Find::find({ no_chdir => 1, wanted => sub {
        my $p = $File::Find::name;
        my @st = lstat $p or return;
        my $mode = sprintf '%04o', $st[2] & 07777;
        if (-l _) {
            $snap{$p} = 'link ' . readlink($p);
        } elsif (-d _) {
            $snap{$p} = "dir $mode";
        } else {
            my $c = slurp($p);
            $snap{$p} = "file $mode "
                . (defined $c ? Digest::MD5::md5_hex($c) : 'unreadable');
        }
    } }, $ETC);
    return \%snap;
}

# --- preconditions ------------------------------------------------------------

if (pkg_status() !~ /^not-installed/) {
    plan skip_all => "$PKG is installed on this machine (" . pkg_status()
        . "); this test installs and purges it itself, so it leaves that "
        . "installation alone (dpkg -P $PKG to run it)";
}
if (my $pid = pidfile_pid()) {
    plan skip_all => "Debian's nginx service is running (pid $pid in "
        . "$PIDFILE); this test starts and stops it itself, so it leaves "
        . "it alone" if proc_alive($pid);
}
-x $NGINX or BAIL_OUT("$NGINX is missing: make deps installs Debian's nginx");

my $t = LoyaltyTest->new;

# --- state and its restoration -------------------------------------------------

my $etc_before = snapshot();
sub log_size { my ($f) = @_; -e $f ? (-s _ || 0) : undef }
my %log_size   = map { $_ => log_size($_) } @LOGS;
my %done;            # what the test changed, undone by cleanup()
my ($master, @workers);

sub stop_nginx {
    my $pid = $master;
    unless ($pid) {    # the start failed half-way: the service's master?
        $pid = pidfile_pid();
        return 1 unless $pid && (slurp("/proc/$pid/cmdline") // '')
                                =~ /daemon on; master_process on;/;
    }
    return 1 unless proc_alive($pid);
    @workers = children_of($pid) unless @workers;
    # nginx.service's ExecStop, aimed at the master started here rather
    # than at whatever the pid file names by then
    root_run('start-stop-daemon', '--quiet', '--stop', '--retry', 'QUIT/5',
             '--pid', $pid);
    my $deadline = time + 10;
    while (grep { proc_alive($_) } $pid, @workers) {
        if (time > $deadline) {
            root_run('kill', '-KILL', grep { proc_alive($_) } $pid, @workers);
            last;
        }
        sleep 0.1;
    }
    sleep 0.2;
    return !grep { proc_alive($_) } $pid, @workers;
}

sub cleanup {
    my @problems;
    if (my $pid = $running) {    # let it finish (dpkg holds its lock)
        my $deadline = time + 120;
        sleep 0.1 while waitpid($pid, POSIX::WNOHANG()) == 0
                        && time < $deadline;
        undef $running;
    }
    if (delete $done{nginx}) {
        push @problems, 'nginx did not stop' unless stop_nginx();
    }
    if (delete $done{site}) {
        my ($st, $out) = root_run('rm', '-f', $SITE);
        push @problems, "rm $SITE: $out" if $st;
    }
    if (my $d = delete $done{default}) {
        if (exists $d->{link}) {
            my ($st, $out) = root_run('ln', '-s', $d->{link}, $DEFAULT);
            push @problems, "restoring $DEFAULT: $out" if $st;
        } elsif (!eval { root_write($DEFAULT, $d->{content}, $d->{mode}); 1 }) {
            push @problems, "restoring $DEFAULT: $@";
        }
    }
    if (delete $done{package}) {
        my ($st, $out) = root_run('dpkg', '-P', $PKG);
        push @problems, "dpkg -P $PKG: $out" if $st;
    }
    if (delete $done{logs}) {
        for my $log (@LOGS) {
            my $size = $log_size{$log};
            if (!defined $size) {
                root_run('rm', '-f', $log);
            } elsif (log_size($log) > $size) {
                my ($st, $out) = root_run('truncate', '-s', $size, $log);
                push @problems, "truncate $log: $out" if $st;
            }
        }
    }
    return @problems;
}

END {
    local ($?, $!, $@);
    if (%done) {
        my @p = cleanup();
        print STDERR "# t/16-deb.t cleanup: $_\n" for @p;
    }
}

# --- the package ---------------------------------------------------------------

my ($st, $out) = run('make', '-C', $ROOT, '--no-print-directory', 'deb');
unless (ok !$st, 'make deb') {
    diag $out;
    done_testing;
    exit 1;
}

my ($changelog) = (slurp("$ROOT/debian/changelog") // '')
    =~ /^\S+ \((?:\d+:)?([^)]+)\)/;
my (undef, $arch) = run('dpkg', '--print-architecture');
chomp $arch;
my $deb = "$ROOT/build/${PKG}_${changelog}_$arch.deb";
ok -f $deb, "build/${PKG}_${changelog}_$arch.deb";

(undef, my $provides) = run('dpkg-query', '-W', '-f=${Provides}', 'nginx');
my ($abi) = $provides =~ /(nginx-abi-[^\s,]+)/;
(undef, my $depends) = run('dpkg-deb', '-f', $deb, 'Depends');
ok $abi && $depends =~ /(?:^|,\s*)\Q$abi\E(?:,|\s*$)/,
    "Depends on the ABI Debian's nginx provides (" . ($abi // 'none')
    . ')' or diag "Depends: $depends";

(undef, my $contents) = run('dpkg-deb', '-c', $deb);
like $contents, qr{ \./usr/lib/nginx/modules/ngx_http_loyalty_module\.so$}m,
    'the package holds the module';
like $contents, qr{ \./usr/share/nginx/modules-available/mod-http-loyalty\.conf$}m,
    'and its modules-available snippet';

# --- install, enable -----------------------------------------------------------

$done{logs} = 1;
$done{package} = 1;
($st, $out) = root_run('dpkg', '-i', $deb);
ok !$st, "dpkg -i" or diag $out;
like pkg_status(), qr/^installed \Q$changelog\E$/, "$PKG is installed";
ok -f $SO, "$SO installed";
is slurp($AVAILABLE), "load_module modules/ngx_http_loyalty_module.so;\n",
    'the snippet loads the module';
is readlink($ENABLED), $AVAILABLE,
    'postinst enabled it: modules-enabled/50-mod-http-loyalty.conf';

# --- a site, nginx -t ----------------------------------------------------------

# Debian's default site listens on port 80, v4 and v6: off while the test
# runs if that cannot work here
if (-e $DEFAULT || -l $DEFAULT) {
    my $why = port_busy(80) ? 'port 80 is in use'
            : !ipv6_works()  ? 'IPv6 is not available'
            : undef;
    if ($why) {
        note "disabling $DEFAULT for the test: $why";
        $done{default} = -l $DEFAULT
            ? { link => readlink $DEFAULT }
            : { content => slurp($DEFAULT), mode => (stat $DEFAULT)[2] & 07777 };
        ($st, $out) = root_run('rm', '-f', $DEFAULT);
        die "rm $DEFAULT: $out" if $st;
    }
}

$t->start_redis;
$t->redis('HSET', 'loyalty:customer:4242', 'tier', 'gold', 'points', '1234');
my $port = $t->free_port;
my $redis_port = $t->redis_port;

$done{site} = 1;
root_write($SITE, <<"CONF");
# written by t/16-deb.t of ngx_loyalty_module, removed when it ends
server {
    listen 127.0.0.1:$port;
    loyalty on;
    loyalty_redis 127.0.0.1:$redis_port;

    location / {
        return 200 "status=\$loyalty_status tier=\$loyalty_tier points=\$loyalty_points\\n";
    }
}
CONF

($st, $out) = root_run($NGINX, '-t');
ok !$st && $out =~ /syntax is ok/ && $out =~ /test is successful/,
    'nginx -t with /etc/nginx/nginx.conf' or diag $out;

($st, $out) = root_run($NGINX, '-T');
like $out, qr{^# configuration file \Q$ENABLED\E:\nload_module modules/ngx_http_loyalty_module\.so;$}m,
    'nginx.conf loads the module through modules-enabled';

# --- Debian's nginx, as nginx.service starts it --------------------------------

$done{nginx} = 1;
($st, $out) = root_run($NGINX, '-t', '-q', '-g', $SERVICE_G);
ok !$st, 'ExecStartPre: nginx -t -q' or diag $out;
($st, $out) = root_run($NGINX, '-g', $SERVICE_G);
ok !$st, 'ExecStart: nginx daemonizes' or diag $out;

ok $t->wait_for(sub {
        $master = pidfile_pid();
        $master && proc_alive($master)
            && IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                     PeerPort => $port, Timeout => 1);
    }, 10), "nginx runs (pid file $PIDFILE) and listens on 127.0.0.1:$port";
@workers = children_of($master) if $master;

my $r = $t->request(path => '/', port => $port,
                    headers => [ Cookie => 'loyalty_id=4242' ]);
is $r->{status}, 200, 'personalized request: 200' or diag explain $r;
is $r->{body}, "status=ok tier=gold points=1234\n",
    'personalized request: status ok, tier gold, points';

my $log_size = $log_size{$LOGS[0]} // 0;
(undef, my $errors) = root_run('tail', '-c', '+' . ($log_size + 1), $LOGS[0]);
my @bad = grep { /\[(?:emerg|alert|crit)\]/ } split /\n/, $errors;
ok !@bad, 'no [emerg], [alert] or [crit] in /var/log/nginx/error.log'
    or diag join "\n", @bad;

# --- stop, purge: the machine as it was ----------------------------------------

my @problems = cleanup();
ok !@problems, 'nginx stopped, site removed, package purged, logs restored'
    or diag join "\n", @problems;

ok !(grep { proc_alive($_) } grep { defined } $master, @workers),
    'no nginx process left';
ok !-e $PIDFILE, "no $PIDFILE left";
like pkg_status(), qr/^not-installed/, "$PKG is not installed any more";
ok !-e $SO && !-e $AVAILABLE, 'the module and its snippet are gone';
ok !-l $ENABLED && !-l "$ENABLED.removed", 'no link in modules-enabled';
is_deeply snapshot(), $etc_before, "$ETC is as it was";
is_deeply { map { $_ => log_size($_) } @LOGS }, \%log_size,
    'the nginx logs are as they were';

done_testing;
