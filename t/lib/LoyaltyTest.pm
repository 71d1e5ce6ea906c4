package LoyaltyTest;

# Test harness for the nginx loyalty module: temp dir, nginx and redis
# process management, a tiny RESP client, Redis Cluster, an HTTP client
# and load generator, fake TCP servers and an echo backend.  Core Perl
# only.  This file only puts the parts together, one job each:
#
#   LoyaltyTest/Core.pm     constructor, temp dir, ports, processes,
#                           nginx config/start/reload/stop, logs, cleanup
#   LoyaltyTest/Redis.pm    redis-server processes and the RESP client
#   LoyaltyTest/Cluster.pm  Redis Cluster
#   LoyaltyTest/HTTP.pm     HTTP client and load generator
#   LoyaltyTest/Fake.pm     fake TCP servers and the echo backend
#
# A LoyaltyTest object inherits every part's methods; the plain functions
# and settings tests use as LoyaltyTest::NAME are imported here.  See the
# POD at the end.

use strict;
use warnings;

use LoyaltyTest::Core    qw($NGINX $VALGRIND $SLOW);
use LoyaltyTest::Redis   qw($REDIS_SERVER);
use LoyaltyTest::Cluster qw(crc16 cluster_slot_of);
use LoyaltyTest::HTTP    ();
use LoyaltyTest::Fake    qw(fake_garbage fake_reset fake_silent fake_reply);

our @ISA = qw(LoyaltyTest::Core LoyaltyTest::Redis LoyaltyTest::Cluster
              LoyaltyTest::HTTP LoyaltyTest::Fake);

our $VERSION = '0.01';

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
