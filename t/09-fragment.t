#!/usr/bin/perl
# The loyalty fragment and its injection: ladder math, the offer catalog
# (rules, refresh, invalid catalogs), escaping, HTML injection with the
# marker split at every position, JSON splicing, and the responses that
# must pass untouched (gzip, HEAD, 304, 206, errors, no marker).

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP;
use IO::Select;
use LoyaltyTest;

my $t = LoyaltyTest->new;
my $tmp = $t->tmp;
$t->start_redis;

sub customer {
    my ($id, %f) = @_;
    $t->redis('DEL', "loyalty:customer:$id");
    $t->redis('HSET', "loyalty:customer:$id", %f);
}

customer('b0', tier => 'bronze', points => 0);
customer('b499', tier => 'bronze', points => 499);
customer('s500', tier => 'silver', points => 500);
customer('g2k', tier => 'gold', points => 2000, cashback => '12.50',
         segments => 'vip,newsletter', referral_code => 'GOLD-2K',
         first_order => '2020-01-31', birthday => '02-29',
         offers => qq([{"id":"p1","title":"Personal <b>&</b> \xe2\x80\xa8"},)
                 . '{"id":"bad"}]');
customer('p9', tier => 'platinum', points => 9000);
customer('odd', tier => 'wood', points => 10);
customer('badfields', tier => 'gold', points => 1000, cashback => '-1',
         segments => 'a b', first_order => '2021-02-30', birthday => '13-01',
         referral_code => '<x>', offers => '{"not":"an array"}');

my $catalog = [
    { id => 'all', title => 'For everyone', badge => 'star',
      url => '/deals' },
    { id => 'gold', title => 'Gold </script><!-- deal', tiers => ['gold'] },
    { id => 'silverup', title => 'Silver and up', min_tier => 'silver' },
    { id => 'vip', title => 'VIP', segments => ['vip', 'x'] },
    { id => 'rich', title => 'Rich', min_points => 5000 },
    { id => 'past', title => 'Over', until => '2000-01-01' },
];
$t->redis('SET', 'loyalty:offers', encode_json($catalog));

mkdir "$tmp/html";
sub write_html {
    my ($name, $text) = @_;
    open my $f, '>', "$tmp/html/$name" or die $!;
    print $f $text;
    close $f;
}
my $page = "<!DOCTYPE html>\n<html><head><title>Shop</title></head>"
         . "<body><p>Hello</p></body></html>\n";
write_html('index.html', $page);
write_html('nomarker.html', "<html><body>no head</body></html>\n");
write_html('upper.html', "<HTML><HEAD></HEAD><BODY></BODY></HTML>\n");
write_html('ssi.html', "<head></head>tier=<!--# echo var=\"loyalty_tier\" -->\n");

# an upstream that sends a page in two pieces split at a given byte, with
# a pause between them, so nginx's filters get separate buffers
my $split_port = $t->fake_server(sub {
    my ($s) = @_;
    my ($req, $buf) = ('', '');
    while ($req !~ /\r\n\r\n/) {
        last unless sysread($s, $buf, 4096);
        $req .= $buf;
    }
    my ($k) = $req =~ m{GET /split/(\d+)};
    my $body = $page;
    my $head = "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n"
             . "Content-Length: " . length($body) . "\r\nConnection: close\r\n\r\n";
    syswrite($s, $head . substr($body, 0, $k));
    select(undef, undef, undef, 0.03);
    syswrite($s, substr($body, $k));
});

# an upstream with fixed answers per path
my %answers = (
    '/gzip' => [ "Content-Type: text/html\r\nContent-Encoding: gzip\r\n",
                 "\x1f\x8b\x08\x00fake-gzip-bytes</head>" ],
    '/json/nested' => [ "Content-Type: application/json; charset=utf-8\r\n",
                 qq( {"a":{"b":[1,2,{"c":null}]},"u":"\\u00e9\x{c3}\x{a9}",)
                 . qq( "n":123456789012345678901234567890, "f":1e400 }\n) ],
    '/json/empty' => [ "Content-Type: application/json\r\n", "{}" ],
    '/json/has' => [ "Content-Type: application/json\r\n",
                     qq({"loyalty":"mine","x":1}) ],
    '/json/array' => [ "Content-Type: application/json\r\n", qq([1,2,3]) ],
    '/json/invalid' => [ "Content-Type: application/json\r\n", qq({"a":1,}) ],
    '/json/big' => [ "Content-Type: application/json\r\n",
                     '{"pad":"' . ('x' x 3000) . '"}' ],
    '/json/html' => [ "Content-Type: text/html\r\n", qq({"a":1}) ],
    '/notfound' => [ "Content-Type: text/html\r\n", "<head></head>gone", 404 ],
);
my $fixed_port = $t->fake_server(sub {
    my ($s) = @_;
    my ($req, $buf) = ('', '');
    while ($req !~ /\r\n\r\n/) {
        last unless sysread($s, $buf, 4096);
        $req .= $buf;
    }
    my ($path) = $req =~ m{^\w+ (\S+)};
    my ($h, $b, $st) = @{ $answers{$path} // [ "", "?", 500 ] };
    $st //= 200;
    syswrite($s, "HTTP/1.1 $st X\r\n${h}Content-Length: " . length($b)
                 . "\r\nConnection: close\r\n\r\n$b");
});

$t->write_config(<<"CONF", log_level => 'info');
loyalty_redis 127.0.0.1:%%REDIS_PORT%%;
loyalty_offers_refresh 300ms;
loyalty_offers_max 4;
loyalty_tier bronze 0 label=Bronze;
loyalty_tier silver 500 "label=Silver <b>";
loyalty_tier gold 1000 label=Gold;
loyalty_tier platinum 5000;

server {
    listen 127.0.0.1:%%PORT%%;
    root $tmp/html;
    loyalty on;

    location = /vars {
        return 200 "\$loyalty_json|\$loyalty_offers|\$loyalty_next_tier|\$loyalty_points_to_next";
    }

    location / {
        loyalty_inject html;
    }

    location = /ssi.html {
        loyalty_inject html;
        ssi on;
    }

    location /split/ {
        loyalty_inject html;
        proxy_pass http://127.0.0.1:$split_port;
        proxy_buffering off;
    }

    location /marker/ {
        loyalty_inject html;
        loyalty_inject_marker "</BODY>";
        alias $tmp/html/;
    }

    location /fixed/ {
        loyalty_inject html;
        proxy_pass http://127.0.0.1:$fixed_port/;
    }

    location /json/ {
        loyalty_inject json;
        loyalty_inject_json_max_size 1k;
        proxy_pass http://127.0.0.1:$fixed_port;
    }

    location = /json/html {
        loyalty_inject json;
        loyalty_inject_types text/html;
        proxy_pass http://127.0.0.1:$fixed_port;
    }
}
CONF
$t->start_nginx;

sub get {
    my ($path, $id, @h) = @_;
    return $t->request(path => $path,
                       headers => [ (defined $id ? (Cookie => "loyalty_id=$id")
                                                 : ()), @h ]);
}

sub frag {
    my ($id) = @_;
    my ($json) = split /\|/, get('/vars', $id)->{body};
    return decode_json($json);
}

ok $t->wait_for(sub { scalar @{ frag('g2k')->{offers} // [] } > 1 }, 5),
    'the catalog is loaded';

# --- ladder -----------------------------------------------------------------

my $f = frag('b0');
is_deeply [ @$f{qw(tier label points next_tier points_to_next progress)} ],
    [ 'bronze', 'Bronze', 0, 'silver', 500, 0 ], 'bronze at 0';
$f = frag('b499');
is_deeply [ @$f{qw(next_tier points_to_next progress)} ],
    [ 'silver', 1, 0.998 ], 'bronze one below silver';
$f = frag('s500');
is_deeply [ @$f{qw(label next_tier points_to_next progress)} ],
    [ 'Silver <b>', 'gold', 500, 0 ], 'silver exactly at its minimum';
$f = frag('p9');
ok !exists $f->{next_tier} && !exists $f->{points_to_next},
    'top tier: no next tier';
is $f->{progress}, 1, 'top tier: progress 1';
ok !exists $f->{label}, 'tier without a label: no label member';
$f = frag('odd');
is $f->{tier}, 'wood', 'tier not in the ladder: shown as is';
ok !exists $f->{progress} && !exists $f->{next_tier},
    'tier not in the ladder: no progress';

my @v = split /\|/, get('/vars', 'b499')->{body}, -1;
is_deeply [ @v[2, 3] ], [ 'silver', '1' ],
    '$loyalty_next_tier and $loyalty_points_to_next';
@v = split /\|/, get('/vars', 'p9')->{body}, -1;
is_deeply [ @v[2, 3] ], [ '', '' ], 'empty at the top tier';

# --- the full record ----------------------------------------------------------

$f = frag('g2k');
is $f->{cashback}, 12.5, 'cashback';
is $f->{referral_code}, 'GOLD-2K', 'referral code';
is_deeply $f->{segments}, [ 'vip', 'newsletter' ], 'segments';
is $f->{offers}[0]{id}, 'p1', 'personal offers first';
is scalar(grep { $_->{id} eq 'bad' } @{ $f->{offers} }), 0,
    'invalid personal offer dropped';
is_deeply [ map { $_->{id} } @{ $f->{offers} } ],
    [ 'p1', 'all', 'gold', 'silverup' ], 'eligible offers, capped at 4';
is_deeply $f->{offers}[1], { id => 'all', title => 'For everyone',
    badge => 'star', url => '/deals' }, 'pass-through members kept';
ok !exists $f->{offers}[2]{tiers}, 'conditions are not shown';

my $raw = (split /\|/, get('/vars', 'g2k')->{body})[0];
unlike $raw, qr/[<>&]/, 'no raw < > & in $loyalty_json';
unlike $raw, qr/\x{e2}\x{80}\x{a8}/, 'no raw U+2028';
like $raw, qr/\\u003c\/script\\u003e\\u003c!--/, '</script><!-- escaped';
like $raw, qr/\\u2028/, 'U+2028 escaped';

$f = frag('badfields');
is_deeply [ sort keys %$f ],
    [ sort qw(status tier points next_tier points_to_next progress label
              offers) ],
    'invalid optional fields are dropped, the rest is used';
ok scalar($t->log_lines(qr/\[warn\].*loyalty record field "cashback" dropped/)),
    'a dropped field is logged';

is get('/vars', undef)->{body}, '{"status":"anonymous"}|[]||',
    'anonymous fragment';
is((split /\|/, get('/vars', 'nobody')->{body})[0], '{"status":"unknown"}',
    'unknown customer fragment');

# --- catalog refresh and invalid catalogs -----------------------------------

$t->redis('SET', 'loyalty:offers',
          encode_json([ { id => 'new', title => 'Fresh' } ]));
ok $t->wait_for(sub { (frag('b0')->{offers}[0]{id} // '') eq 'new' }, 5),
    'a changed catalog is picked up after the refresh interval';

$t->redis('SET', 'loyalty:offers', '[{"id":"x","title":');
sleep 1;
is frag('b0')->{offers}[0]{id}, 'new', 'invalid JSON keeps the last good catalog';
ok scalar($t->log_lines(qr/\[error\].*loyalty offers catalog "loyalty:offers" is invalid/)),
    'an invalid catalog is logged';

$t->redis('DEL', 'loyalty:offers');
ok $t->wait_for(sub { !exists frag('b0')->{offers} }, 5),
    'a deleted catalog means no catalog offers';

# --- HTML injection -----------------------------------------------------------

my $r = get('/index.html', 'g2k');
is $r->{status}, 200, 'page served';
my ($script) = $r->{body} =~ m{<script type="application/json" id="loyalty-data">(.*?)</script></head>};
ok defined $script, 'fragment inserted right before </head>';
is_deeply decode_json($script), frag('g2k'), 'the inserted fragment is $loyalty_json';
(my $stripped = $r->{body}) =~ s{<script type="application/json" id="loyalty-data">.*?</script>}{};
is $stripped, $page, 'the rest of the page is byte for byte the same';
is $r->{headers}{'cache-control'}, 'private', 'Cache-Control: private';
ok !exists $r->{headers}{'content-length'}, 'no Content-Length';
ok !exists $r->{headers}{etag} && !exists $r->{headers}{'last-modified'},
    'no ETag or Last-Modified';

like get('/index.html', undef)->{body},
    qr{<script type="application/json" id="loyalty-data">\{"status":"anonymous"\}</script></head>},
    'anonymous visitors get the anonymous fragment';
like get('/upper.html', 'b0')->{body}, qr{<HEAD><script [^>]+>.*</script></HEAD>},
    'the marker matches in any letter case';
is get('/nomarker.html', 'b0')->{body}, "<html><body>no head</body></html>\n",
    'a page without the marker passes unchanged';
like get('/marker/index.html', 'b0')->{body},
    qr{<p>Hello</p><script [^>]+>\{.*\}</script></body>},
    'loyalty_inject_marker (given in upper case)';
like get('/ssi.html', 's500')->{body},
    qr{^<head><script [^>]+>.*</script></head>tier=silver$}s,
    'SSI and injection together';

my $ok = 0;
my $n = length $page;
for my $k (1 .. $n - 1) {
    my $b = get("/split/$k", 'b0')->{body} // '';
    (my $s = $b) =~ s{<script type="application/json" id="loyalty-data">\{[^<]*\}</script>(?=</head>)}{};
    $ok++ if $s eq $page && $b ne $page;
}
is $ok, $n - 1, "marker found and page intact when split at each of " . ($n - 1)
    . ' positions';

# --- responses that pass untouched --------------------------------------------

$r = get('/fixed/gzip', 'b0');
is $r->{body}, "\x1f\x8b\x08\x00fake-gzip-bytes</head>", 'gzip body untouched';
ok !exists $r->{headers}{'cache-control'}, 'gzip: headers untouched';

$r = get('/fixed/notfound', 'b0');
is $r->{status}, 404, '404 passes';
is $r->{body}, '<head></head>gone', '404 body untouched';

$r = $t->request(method => 'HEAD', path => '/index.html',
                 headers => [ Cookie => 'loyalty_id=b0' ]);
is $r->{status}, 200, 'HEAD: 200';
is $r->{body}, '', 'HEAD: no body';

my @st = stat("$tmp/html/index.html");
my $lm = do { my @g = gmtime($st[9]);
              sprintf '%s, %02d %s %d %02d:%02d:%02d GMT',
                  (qw(Sun Mon Tue Wed Thu Fri Sat))[$g[6]], $g[3],
                  (qw(Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec))[$g[4]],
                  $g[5] + 1900, @g[2, 1, 0] };
$r = get('/index.html', 'b0', 'If-Modified-Since' => $lm);
is $r->{status}, 304, '304 for a conditional request';
is $r->{body}, '', '304: no body';

$r = get('/index.html', 'b0', Range => 'bytes=0-9');
ok(($r->{status} == 206 && $r->{body} eq substr($page, 0, 10))
   || ($r->{status} == 200 && $r->{body} =~ /loyalty-data/),
   "range request: a correct 206 slice or a whole injected page ($r->{status})");

# --- JSON splicing --------------------------------------------------------------

$r = get('/json/nested', 'b0');
my $body = $answers{'/json/nested'}[1];
(my $want = $body) =~ s/}\n$//;
like $r->{body}, qr/^\Q$want\E,"loyalty":\{"status":"ok"[^\n]*\}\}\n$/s,
    'member spliced before the final }, the original bytes kept';
like $r->{body}, qr/"n":123456789012345678901234567890, "f":1e400/,
    'big numbers untouched';
is $r->{headers}{'cache-control'}, 'private', 'JSON: Cache-Control: private';

is get('/json/empty', undef)->{body}, '{"loyalty":{"status":"anonymous"}}',
    'empty object: no comma';
is get('/json/has', 'b0')->{body}, '{"loyalty":"mine","x":1}',
    'an existing loyalty member: unchanged';
is get('/json/array', 'b0')->{body}, '[1,2,3]', 'an array: unchanged';
is get('/json/invalid', 'b0')->{body}, '{"a":1,}', 'invalid JSON: unchanged';
is get('/json/big', 'b0')->{body}, $answers{'/json/big'}[1],
    'larger than loyalty_inject_json_max_size: unchanged';
like get('/json/html', 'b0')->{body}, qr/^\{"a":1,"loyalty":\{/,
    'loyalty_inject_types replaces the default type';
ok scalar($t->log_lines(qr/\[info\].*JSON body larger than 1024 bytes/)),
    'oversize logged at info';
ok scalar($t->log_lines(qr/\[info\].*already has a "loyalty" member/)),
    'existing member logged at info';
ok scalar($t->log_lines(qr/\[info\].*not a JSON object/)),
    'non-object logged at info';

$t->check_error_log;
$t->stop_nginx;

# --- configuration errors -------------------------------------------------------

for ([ 'loyalty_tier gold 100; loyalty_tier silver 50;',
       qr/"loyalty_tier" "silver": tiers must be given in ascending min_points order/ ],
     [ 'loyalty_tier gold x;', qr/"loyalty_tier" has an invalid min_points "x"/ ],
     [ 'loyalty_tier gold 1 colour=red;', qr/unknown parameter "colour=red"/ ],
     [ 'loyalty_inject css;', qr/"loyalty_inject" directive has an invalid value "css": use off, html or json/ ],
     [ 'loyalty_inject_marker "";', qr/"loyalty_inject_marker" directive must not be empty/ ],
     [ 'loyalty_offers_refresh 0;', qr/"loyalty_offers_refresh" directive must be greater than zero/ ],
     [ 'loyalty_offers_max many;', qr/"loyalty_offers_max" directive invalid number/ ],
     [ 'loyalty_inject_json_max_size big;', qr/"loyalty_inject_json_max_size" directive invalid value/ ])
{
    my ($line, $re) = @$_;
    $t->write_config("loyalty_redis 127.0.0.1:1; $line"
                     . ' server { listen 127.0.0.1:%%PORT%%; }');
    my ($rc, $out) = $t->nginx_t;
    isnt $rc, 0, "nginx -t fails: $line";
    like $out, $re, "message: $line";
}

done_testing;
