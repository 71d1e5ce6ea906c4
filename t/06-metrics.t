#!/usr/bin/perl
# loyalty_metrics: after a scripted sequence of requests on two workers
# the counters equal what was sent; the text parses as Prometheus
# exposition format; JSON agrees; counters survive a reload (HUP).  The
# largest output, 64 nodes with long names that need escaping, comes out
# whole and parses in both formats.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP;
use LoyaltyTest;

my $t = LoyaltyTest->new;
$t->start_redis;
$t->redis('HSET', "loyalty:customer:$_", 'tier', 'gold', 'points', $_)
    for 1 .. 20;
$t->redis('SET', 'loyalty:customer:wrongtype', 'x');
$t->redis('HSET', 'loyalty:customer:badrecord', 'tier', 'a b', 'points', 1);

$t->write_config(<<'CONF', workers => 2, access_log => 0);
loyalty_redis 127.0.0.1:%%REDIS_PORT%%;
loyalty_offers_refresh 1h;

server {
    listen 127.0.0.1:%%PORT%%;

    location / {
        loyalty on;
        return 200 "$loyalty_status\n";
    }

    location = /metrics {
        loyalty_metrics;
    }
}
CONF
$t->start_nginx;

# --- a small Prometheus text format parser ---------------------------------

sub parse_prometheus {
    my ($text) = @_;
    my (%type, %help, %samples, @errors);
    my $name_re = qr/[a-zA-Z_:][a-zA-Z0-9_:]*/;
    my $value_re = qr/[-+]?(?:\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|Inf|NaN)/;

    push @errors, 'text does not end with a newline' unless $text =~ /\n\z/;

    for my $line (split /\n/, $text) {
        if ($line =~ /^# HELP ($name_re) (.+)$/) {
            push @errors, "second HELP for $1" if $help{$1}++;
        } elsif ($line =~ /^# TYPE ($name_re) (counter|gauge|histogram|summary|untyped)$/) {
            push @errors, "second TYPE for $1" if $type{$1};
            push @errors, "TYPE after samples of $1" if $samples{$1};
            $type{$1} = $2;
        } elsif ($line =~ /^#/) {
            push @errors, "bad comment: $line";
        } elsif ($line =~ /^($name_re)(?:\{((?:$name_re="(?:[^"\\\n]|\\.)*",?)*)\})? ($value_re)$/) {
            my ($name, $labels, $value) = ($1, $2 // '', $3);
            my $family = $name;
            $family =~ s/_(bucket|sum|count)$//
                if !$type{$name} && $type{ $name =~ s/_(bucket|sum|count)$//r };
            push @errors, "sample $name before its TYPE" unless $type{$family};
            push @{ $samples{$family} }, [ $name, $labels, $value ];
        } else {
            push @errors, "unparsable line: $line";
        }
    }

    # histograms: cumulative buckets ending in +Inf == _count
    for my $f (grep { $type{$_} eq 'histogram' } keys %type) {
        my @b = grep { $_->[0] eq "${f}_bucket" } @{ $samples{$f} };
        my ($count) = map { $_->[2] } grep { $_->[0] eq "${f}_count" }
                      @{ $samples{$f} };
        push @errors, "$f has no buckets" unless @b;
        push @errors, "$f: last bucket is not +Inf"
            unless @b && $b[-1][1] eq 'le="+Inf"';
        for my $i (1 .. $#b) {
            push @errors, "$f buckets not cumulative"
                if $b[$i][2] < $b[$i - 1][2];
        }
        push @errors, "$f: +Inf bucket != _count"
            unless @b && defined $count && $b[-1][2] == $count;
        push @errors, "$f has no _sum"
            unless grep { $_->[0] eq "${f}_sum" } @{ $samples{$f} };
    }

    return { type => \%type, samples => \%samples, errors => \@errors };
}

sub value {
    my ($p, $name, $labels) = @_;
    my ($family) = grep { index($name, $_) == 0 } keys %{ $p->{type} };
    for (@{ $p->{samples}{$name} // $p->{samples}{$family} // [] }) {
        return $_->[2] if $_->[0] eq $name && $_->[1] eq ($labels // '');
    }
    return undef;
}

sub metrics {
    my $r = $t->get('/metrics');
    is $r->{status}, 200, 'metrics: 200';
    like $r->{headers}{'content-type'}, qr{^text/plain; version=0\.0\.4},
        'metrics: Prometheus content type';
    my $p = parse_prometheus($r->{body});
    is_deeply $p->{errors}, [], 'metrics text parses as Prometheus format'
        or diag $r->{body};
    return $p;
}

my $p0 = metrics();
is value($p0, 'nginx_loyalty_lookups_total', 'status="ok"'), 0,
    'starts at zero';
is $p0->{type}{nginx_loyalty_redis_latency_seconds}, 'histogram',
    'latency is a histogram';
is $p0->{type}{nginx_loyalty_redis_connections}, 'gauge',
    'connections is a gauge';
ok $t->wait_for(sub {
    value(parse_prometheus($t->get('/metrics')->{body}),
          'nginx_loyalty_redis_connections') == 4 }, 3),
    'two workers hold two connections each';

# --- the scripted sequence ----------------------------------------------------

my %sent = (ok => 0, anonymous => 0, invalid => 0, unknown => 0, error => 0);
my @script = (
    (map { [ "loyalty_id=$_", 'ok' ] } 1 .. 20),
    (map { [ "loyalty_id=$_", 'ok' ] } 1 .. 5),
    (map { [ undef, 'anonymous' ] } 1 .. 7),
    (map { [ 'loyalty_id=bad.value', 'invalid' ] } 1 .. 4),
    (map { [ "loyalty_id=nobody$_", 'unknown' ] } 1 .. 6),
    [ 'loyalty_id=wrongtype', 'error' ],
    [ 'loyalty_id=badrecord', 'error' ],
);

for (@script) {
    my ($cookie, $want) = @$_;
    my $r = $t->get('/', defined $cookie ? (Cookie => $cookie) : ());
    is $r->{body}, "$want\n", "request with " . ($cookie // 'no cookie');
    $sent{$want}++;
}
my $redis_lookups = $sent{ok} + $sent{unknown} + $sent{error};

# what Redis itself counted: the lookups (HMGET) and each worker's offer
# catalog fetches (GET); the test sends neither
sub redis_calls {
    my $stats = $t->redis('INFO', 'commandstats');
    my $n = 0;
    $n += $1 while $stats =~ /^cmdstat_(?:hmget|get):calls=(\d+)/mg;
    return $n;
}
my ($hmget) = $t->redis('INFO', 'commandstats') =~ /cmdstat_hmget:calls=(\d+)/;
is $hmget, $redis_lookups, "Redis saw $redis_lookups lookups";
my $calls = redis_calls();

my $p = metrics();
for my $s (sort keys %sent) {
    is value($p, 'nginx_loyalty_lookups_total', "status=\"$s\""), $sent{$s},
        "lookups_total{status=\"$s\"} = $sent{$s}";
}
is value($p, 'nginx_loyalty_lookups_total', 'status="timeout"'), 0,
    'no timeouts';
is value($p, 'nginx_loyalty_redis_commands_total'), $calls,
    "commands_total = $calls (lookups and catalog fetches)";
is value($p, 'nginx_loyalty_redis_replies_total'), $calls,
    "replies_total = $calls";
is value($p, 'nginx_loyalty_redis_latency_seconds_count'), $calls,
    'latency histogram counts every reply';
is value($p, 'nginx_loyalty_redis_errors_total', 'kind="reply"'), 1,
    'one error reply (WRONGTYPE)';
is value($p, 'nginx_loyalty_redis_errors_total', 'kind="record"'), 1,
    'one invalid record';
is value($p, 'nginx_loyalty_lookups_in_flight'), 0, 'nothing in flight';

# --- JSON agrees ----------------------------------------------------------------

my $r = $t->get('/metrics?format=json');
is $r->{status}, 200, 'json: 200';
like $r->{headers}{'content-type'}, qr{^application/json}, 'json: type';
my $j = eval { decode_json($r->{body}) };
ok $j, 'json parses' or diag $r->{body};
is_deeply $j->{lookups}, { %sent, timeout => 0, holdout => 0, bypass => 0 },
    'json lookups by status';
is $j->{redis}{commands}, $calls, 'json commands';
is $j->{redis}{latency_seconds}{count}, $calls, 'json latency count';
is $t->get('/metrics?format=xml')->{status}, 400, 'unknown format: 400';
is $t->request(method => 'POST', path => '/metrics')->{status}, 405,
    'POST: 405';

# --- reload keeps the counters ---------------------------------------------

$t->reload;
$p = metrics();
is value($p, 'nginx_loyalty_lookups_total', 'status="ok"'), $sent{ok},
    'lookups survive a reload';
is value($p, 'nginx_loyalty_redis_commands_total'), redis_calls(),
    'commands survive a reload';
ok $t->wait_for(sub {
    value(parse_prometheus($t->get('/metrics')->{body}),
          'nginx_loyalty_redis_connections') == 4 }, 5),
    'after the reload: old connections closed, new ones counted';

# --- Redis down -------------------------------------------------------------

$t->stop_redis;
for (1 .. 5) {
    is $t->get('/', Cookie => 'loyalty_id=1')->{body}, "error\n",
        'Redis down: error';
}
$p = metrics();
is value($p, 'nginx_loyalty_lookups_total', 'status="error"'),
    $sent{error} + 5, 'error lookups counted while Redis is down';
cmp_ok value($p, 'nginx_loyalty_redis_errors_total', 'kind="closed"'), '>=', 1,
    'closed connections counted';
ok $t->wait_for(sub {
    my $q = parse_prometheus($t->get('/metrics')->{body});
    value($q, 'nginx_loyalty_redis_errors_total', 'kind="connect"') >= 1
        && value($q, 'nginx_loyalty_redis_reconnects_total') >= 1
        && value($q, 'nginx_loyalty_redis_connections') == 0;
}, 5), 'failed reconnects counted, no connection open';

$t->check_error_log;
$t->stop_nginx;

# --- the largest output: 64 nodes with long names ---------------------------

# 65 Redis servers, one per server block, by unix socket paths that do
# not exist (connecting fails, the names are what counts): names longer
# than the 63 bytes a node's name keeps, unique within them, holding
# bytes both formats must escape; the metrics zone has room for 64.
my $tmp = $t->tmp;
my @names = ("unix:$tmp/q\"uote\\back\nline.sock",
             map { sprintf "unix:$tmp/n%02d-%s.sock", $_, "\x01" x 40 }
                 1 .. 64);
my $servers = '';
for my $i (0 .. $#names) {
    (my $conf_name = $names[$i]) =~ s/(["\\])/\\$1/g;
    $conf_name =~ s/\n/\\n/g;
    $servers .= "server {\n    listen 127.0.0.1:%%PORT%%;\n"
              . "    server_name s$i;\n"
              . "    loyalty_redis \"$conf_name\";\n"
              . "    location / { loyalty on; return 200 ok; }\n"
              . ($i == 0 ? "    location = /metrics { loyalty_metrics; }\n"
                         : '')
              . "}\n";
}
$t->write_config($servers, workers => 1, access_log => 0);
$t->start_nginx;

my %kept = map { substr($_, 0, 63) => 1 } @names;
my $m = $t->get('/metrics');
$p = parse_prometheus($m->{body});
is_deeply $p->{errors}, [], '64 nodes: the text parses as Prometheus format';
cmp_ok length $m->{body}, '>', 16384,
    '64 nodes: the text is larger than the first buffer ('
    . length($m->{body}) . ' bytes)';
like $m->{body},
    qr/nginx_loyalty_redis_node_redirects_total\{node="[^\n]*",kind="ask"\} \d+\n\z/,
    '64 nodes: the text ends with the last node\'s last series';
for my $f (qw(commands replies errors timeouts redirects)) {
    my @s = @{ $p->{samples}{"nginx_loyalty_redis_node_${f}_total"} // [] };
    my %nodes;
    for (@s) {
        my ($node) = $_->[1] =~ /^node="((?:[^"\\]|\\.)*)"/ or next;
        $node =~ s/\\(.)/$1 eq 'n' ? "\n" : $1/ge;
        $nodes{$node}++;
    }
    is scalar(@s), ($f eq 'redirects' ? 128 : 64), "64 nodes: $f series";
    is scalar(grep { $kept{$_} } keys %nodes), 64,
        "64 nodes: $f: every node name is a configured one, unescaped";
}
my $escaped = substr($names[0], 0, 63) =~ s/(["\\])/\\$1/gr =~ s/\n/\\n/gr;
ok grep({ $_->[1] eq "node=\"$escaped\"" }
        @{ $p->{samples}{nginx_loyalty_redis_node_commands_total} // [] }),
    '64 nodes: " \\ and newline are escaped in the label';

$r = $t->get('/metrics?format=json');
$j = eval { JSON::PP->new->decode($r->{body}) };
ok $j, '64 nodes: the JSON parses' or diag substr($r->{body}, 0, 300);
cmp_ok length $r->{body}, '>', 16384,
    '64 nodes: the JSON is larger than the first buffer ('
    . length($r->{body}) . ' bytes)';
is scalar(keys %{ $j->{nodes} // {} }), 64, '64 nodes in the JSON';
is scalar(grep { $kept{$_} } keys %{ $j->{nodes} // {} }), 64,
    '64 nodes: every JSON name is a configured one';
is_deeply [ sort keys %{ (values %{ $j->{nodes} })[0] // {} } ],
    [ qw(ask commands errors moved replies timeouts) ],
    '64 nodes: each JSON node has its six counters';

$t->check_error_log;
$t->stop_nginx;
done_testing;
