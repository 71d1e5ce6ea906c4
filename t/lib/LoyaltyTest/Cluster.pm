package LoyaltyTest::Cluster;

# Redis Cluster: start cluster-enabled nodes and join them, read the
# cluster's view (info, slots, roles, masters, replicas), hash slots
# (CRC16 with {hash tags}), commands routed to the master of their key
# (following MOVED and ASK), waiting for a healthy cluster, killing a
# node and waiting for its failover, restarting it, and moving a slot.
# A part of LoyaltyTest (t/lib/LoyaltyTest.pm): its methods run on a
# LoyaltyTest object and use the RESP client of LoyaltyTest::Redis.

use strict;
use warnings;

use Exporter qw(import);
use File::Path ();
use Time::HiRes qw(time sleep);

use LoyaltyTest::Core qw(_slurp _alive _wait_child _terminate);

our @EXPORT_OK = qw(crc16 cluster_slot_of);

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

1;
