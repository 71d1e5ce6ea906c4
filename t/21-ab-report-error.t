#!/usr/bin/perl
# loyalty_ab_report when Redis fails (issue 13, defect 2): the error text
# is kept by the report itself (the connection's error text is freed with
# the connection, before the posted event writes the report), and it is
# escaped in the JSON: quotes, backslashes, control characters, and
# "<", ">", "&" as \u003c, \u003e, \u0026, like the module's other JSON.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP;
use LoyaltyTest;

my $t = LoyaltyTest->new;

# a protocol error: hiredis says 'Protocol error, got "<" as reply type
# byte' and frees the connection, error text and all
my $garbage = $t->fake_server(LoyaltyTest::fake_garbage("<garbage\r\n"));

# an error reply with every kind of character that needs escaping
my $errtext = "ERR <b>\"q\" & \\ tab\there \x01\x1f";
my $erreply = $t->fake_server(LoyaltyTest::fake_reply("-$errtext\r\n"));

# an error reply that is not UTF-8
my $latin = $t->fake_server(LoyaltyTest::fake_reply("-ERR caf\xe9\r\n"));

# the report reads every test of the configuration, so each fake gets a
# configuration (and nginx) of its own
sub start_with {
    my ($fake) = @_;
    $t->stop_nginx;
    $t->write_config(<<"CONF");
server {
    listen 127.0.0.1:%%PORT%%;
    loyalty_redis 127.0.0.1:$fake;
    loyalty_ab t 50% a * b;

    location = /report {
        loyalty_ab off;
        loyalty_ab_report;
    }
}
CONF
    $t->start_nginx;
}

# the report of each server as ($response, $decoded or undef)
sub report {
    my ($port, $format) = @_;
    my $r = $t->request(path => '/report' . ($format ? "?format=$format" : ''),
                        port => $port);
    my $j = eval { JSON::PP->new->decode($r->{body}) };
    return ($r, $j);
}

# a connection's first command may wait for the connect: ask until the
# fake answered
sub report_error {
    my ($port, $format) = @_;
    my ($r, $j);
    $t->wait_for(sub {
        ($r, $j) = report($port, $format);
        ($r->{status} // 0) == 503 && $r->{body} !~ /not connected/;
    }, 10);
    return ($r, $j);
}

{
    start_with($garbage);
    my ($r, $j) = report_error($t->port);
    is $r->{status}, 503, 'protocol error: 503';
    like $r->{headers}{'content-type'}, qr{^application/json},
        'protocol error: JSON';
    ok $j, 'protocol error: the body parses as JSON' or diag $r->{body};
    is $j && $j->{error}, 'redis: Protocol error, got "<" as reply type byte',
        'protocol error: the error text intact, read after the connection '
        . 'was freed';
    unlike $r->{body}, qr/[<>&]/, 'protocol error: no raw "<", ">", "&"';
    like $r->{body}, qr/\\u003c/, 'protocol error: "<" written as \u003c';

    # the text format reports errors in JSON too
    ($r, $j) = report_error($t->port, 'text');
    is $j && $j->{error}, 'redis: Protocol error, got "<" as reply type byte',
        'protocol error, format=text: the same JSON error';
}

{
    start_with($erreply);
    my ($r, $j) = report_error($t->port);
    is $r->{status}, 503, 'error reply: 503';
    ok $j, 'error reply: the body parses as JSON' or diag $r->{body};
    is $j && $j->{error}, "redis: $errtext",
        'error reply: Redis\'s text, every character kept';
    unlike $r->{body}, qr/[<>&\x00-\x09\x0b-\x1f\x7f-\xff]/,
        'error reply: no raw "<", ">", "&", control or non-ASCII bytes';
    like $r->{body},
        qr/\\u003cb\\u003e\\"q\\" \\u0026 \\\\ tab\\there \\u0001\\u001f/i,
        'error reply: escaped as JSON and for <script>';
}

{
    start_with($latin);
    my ($r, $j) = report_error($t->port);
    is $r->{status}, 503, 'error reply not UTF-8: 503';
    ok $j, 'error reply not UTF-8: the body parses as JSON'
        or diag $r->{body};
    is $j && $j->{error}, 'redis: ERR caf?',
        'error reply not UTF-8: the byte replaced by "?"';
}

$t->stop_nginx;
$t->check_error_log;

done_testing;
