#!/usr/bin/perl
# The demo storefront (make demo) in a real browser: starts demo/run.sh as
# `make demo` does, then, for each sample customer of demo/customers.txt
# and for an anonymous visitor, loads the page in Debian's chromium
# (headless, --dump-dom after following /login/<name> with its signed
# cookie) and checks what shop.js rendered from #loyalty-data: the tier
# badge, points, progress to the next tier, cashback, referral code, the
# offers, the A/B variant, the join prompt and the status notes.  The
# expected values are computed here, independently of the module: the
# ladder, the offer rules applied to the records in the demo's Redis and
# today's date, and the documented A/B hash.  Each page is also saved as
# a screenshot (<test dir>/screenshots/<name>.png; KEEP_TEST_DIR=1 keeps
# them).  Finally the demo is stopped as Ctrl-C would, and must leave
# nothing behind.
#
# chromium comes from `make deps` (tools/install-deps.sh); CHROMIUM
# names another binary.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Digest::SHA qw(sha256);
use Encode qw(decode);
use JSON::PP;
use POSIX qw(WNOHANG);
use Time::HiRes qw(time sleep);
use Time::Local qw(timegm);
use LoyaltyTest;

my $t = LoyaltyTest->new;
my $tmp = $t->tmp;
my $root = $t->root;

# --- what the demo is expected to show (its configuration) -----------------

# demo/nginx.conf.in: loyalty_tier lines, loyalty_offers_max,
# loyalty_ab badge 50% classic * progress_bar
my @LADDER = ([ bronze => 0, 'Bronze' ], [ silver => 1000, 'Silver' ],
              [ gold => 5000, 'Gold' ], [ platinum => 20000, 'Platinum' ]);
my $OFFERS_MAX = 6;

# --- prerequisites ---------------------------------------------------------

my $chromium = $ENV{CHROMIUM};
unless ($chromium) {
    for my $dir (split /:/, $ENV{PATH} // '') {
        for my $name (qw(chromium chromium-browser)) {
            if (-x "$dir/$name") {
                $chromium = "$dir/$name";
                last;
            }
        }
        last if $chromium;
    }
}

unless ($chromium && -x $chromium) {
    fail('chromium is installed');
    diag(($chromium ? "CHROMIUM=$chromium is not an executable"
                    : 'no chromium in PATH')
         . ": the browser test needs Debian's chromium; run `make deps` "
         . "(or: apt-get install chromium), or set CHROMIUM to a "
         . "Chromium binary");
    done_testing;
    exit;
}

for my $f ("$root/build/ngx_http_loyalty_module.so",
           "$root/build/loyalty-cookie")
{
    BAIL_OUT("$f is missing: run make first") unless -e $f;
}

# --- the demo --------------------------------------------------------------

my $demo_pid;
my $demo_out = "$tmp/demo.out";

sub slurp {
    my ($file) = @_;
    open my $fh, '<:raw', $file or return '';
    local $/;
    return scalar(<$fh>) // '';
}

# stops run.sh as Ctrl-C does (its INT/TERM trap cleans up); returns its
# exit status, undef when it had to be killed
sub stop_demo {
    my ($sig) = @_;
    return unless $demo_pid;
    my $pid = $demo_pid;
    undef $demo_pid;
    kill $sig // 'INT', $pid;
    my $deadline = time + 15;
    while (time < $deadline) {
        return $? if waitpid($pid, WNOHANG) == $pid;
        sleep 0.05;
    }
    kill 'KILL', -$pid, $pid;
    waitpid($pid, 0);
    return undef;
}

END {
    local ($?, $!, $@);
    stop_demo('TERM');
}

$demo_pid = fork // die "fork: $!";
if ($demo_pid == 0) {
    POSIX::setpgid(0, 0);
    # run.sh traps these to clean up: they must not arrive ignored
    $SIG{$_} = 'DEFAULT' for qw(INT TERM HUP);
    $ENV{TMPDIR} = $tmp;
    delete $ENV{DEMO_PORT};
    # make valgrind: run.sh's own waits are not made for nginx under
    # memcheck, and the other tests cover the module's code under it
    delete $ENV{NGINX_BINARY} if $LoyaltyTest::VALGRIND;
    open STDIN, '<', '/dev/null';
    open STDOUT, '>', $demo_out or POSIX::_exit(126);
    open STDERR, '>&', \*STDOUT;
    exec 'sh', "$root/demo/run.sh" or POSIX::_exit(127);
}

my $started = $t->wait_for(sub {
    return 'up' if slurp($demo_out) =~ /^What the shop backend receives/m;
    if (waitpid($demo_pid, WNOHANG) == $demo_pid) {
        undef $demo_pid;
        return "exited with status $?";
    }
    return 0;
}, 30) || 'no URLs within 30 s';

my $out = slurp($demo_out);
is($started, 'up', 'make demo\'s run.sh starts and prints its URLs')
    or do { diag($out); done_testing; exit };

my ($url) = $out =~ m{^  storefront\s+(http://127\.0\.0\.1:\d+)/$}m;
my ($port) = ($url // '') =~ /:(\d+)$/;
my ($redis_port) = $out =~ /^  redis\s+redis-cli -p (\d+) /m;
my ($demo_tmp) = $out =~ /Ctrl-C stops it and removes (\S+)$/m;

ok($url && $redis_port && $demo_tmp, 'the storefront URL, the Redis port '
   . 'and the temporary directory are printed') or diag($out);

my %login;       # login name => customer id
my @customers;   # login names, in file order
for (split /\n/, slurp("$root/demo/customers.txt")) {
    next if /^\s*(?:#|$)/;
    my ($name, $id) = split;
    $login{$name} = $id;
    push @customers, $name;
}

like($out, qr{^  \Q$url\E/login/\Q$_\E\s}m, "login link for $_ printed")
    for @customers;
like($out, qr{^  \Q$url\E/logout\s}m, 'logout link printed');

# the key and the login cookies

my @st = stat("$demo_tmp/loyalty.keys");
is(@st ? sprintf('%04o', $st[2] & 07777) : 'missing', '0600',
   'the demo made its key file, mode 0600');

{
    my $r = $t->request(port => $port, path => '/login/gold');
    is($r->{status}, 302, '/login/gold redirects');
    is($r->{headers}{location}, "/",
       '... to the shop');
    my $sc = $r->{headers}{'set-cookie'} // '';
    my ($value) = $sc =~ /^loyalty_id=([^;]*)/;
    like($sc, qr/;\s*Path=\/(?:;|$)/, '... cookie with Path=/');
    like($sc, qr/;\s*HttpOnly(?:;|$)/, '... HttpOnly');
    like($sc, qr/;\s*SameSite=Lax(?:;|$)/, '... SameSite=Lax');
    like($sc, qr/;\s*Max-Age=86400(?:;|$)/, '... for a day');

    my $v = `"$root/build/loyalty-cookie" verify --key-file "$demo_tmp/loyalty.keys" -- "$value" 2>&1`;
    my ($vid, $exp) = $v =~ /^ok (\S+) (\d+)$/;
    is($vid, $login{gold}, '... signed with the demo key for gold\'s id')
        or diag($v);
    ok($exp && abs($exp - (time + 86400)) < 120, '... expiring in a day');

    $r = $t->request(port => $port, path => '/logout');
    is($r->{status}, 302, '/logout redirects');
    like($r->{headers}{'set-cookie'} // '', qr/^loyalty_id=;.*Max-Age=0/,
         '... and clears the cookie');

    is($t->request(port => $port, path => '/login/nobody')->{status}, 404,
       'a login name that is not a sample customer: 404');
}

# --- what the page must show, computed here -----------------------------------

my @now = localtime;
my ($TY, $TM, $TD) = ($now[5] + 1900, $now[4] + 1, $now[3]);

sub days_of {
    my ($y, $m, $d) = @_;
    return int(timegm(0, 0, 0, $d, $m - 1, $y) / 86400);
}

my $today = days_of($TY, $TM, $TD);

sub date_days {
    my ($s) = @_;
    my ($y, $m, $d) = $s =~ /^(\d{4})-(\d\d)-(\d\d)$/ or die "bad date $s";
    return days_of($y, $m, $d);
}

my %rank = map { $LADDER[$_][0] => $_ } 0 .. $#LADDER;

my $catalog = decode_json($t->redis_on($redis_port, 'GET', 'loyalty:offers'));
ok(ref $catalog eq 'ARRAY' && @$catalog, 'the demo has an offer catalog');
my %title = map { $_->{id} => $_->{title} } @$catalog;

sub record {
    my ($id) = @_;
    my $r = $t->redis_try_on($redis_port, 'HGETALL', "loyalty:customer:$id");
    return undef if ref $r ne 'ARRAY' || !@$r;
    return { @$r };
}

# the offer rules of docs/redis-schema.md, on today's local date
sub holds {
    my ($rec, $o) = @_;

    if ($o->{tiers}) {
        return 0 unless grep { $_ eq $rec->{tier} } @{ $o->{tiers} };
    }
    if (defined $o->{min_tier}) {
        return 0 unless exists $rank{ $rec->{tier} }
                        && exists $rank{ $o->{min_tier} }
                        && $rank{ $rec->{tier} } >= $rank{ $o->{min_tier} };
    }
    if (defined $o->{min_points}) {
        return 0 unless $rec->{points} >= $o->{min_points};
    }
    if ($o->{segments}) {
        my %in = map { $_ => 1 } split /,/, $rec->{segments} // '';
        return 0 unless grep { $in{$_} } @{ $o->{segments} };
    }
    if (defined $o->{from}) {
        return 0 unless $today >= date_days($o->{from});
    }
    if (defined $o->{until}) {
        return 0 unless $today <= date_days($o->{until});
    }
    if (defined $o->{first_order_within_days}) {
        return 0 unless defined $rec->{first_order};
        my $ago = $today - date_days($rec->{first_order});
        return 0 unless $ago >= 0 && $ago <= $o->{first_order_within_days};
    }
    if ($o->{birthday_month}) {
        return 0 unless defined $rec->{birthday}
                        && $rec->{birthday} =~ /^(\d\d)-/ && $1 == $TM;
    }
    return 1;
}

sub expected_offers {
    my ($rec) = @_;
    my @ids;
    if (defined $rec->{offers}) {
        push @ids, map { $_->{id} } @{ decode_json($rec->{offers}) };
        $title{ $_->{id} } = $_->{title} for @{ decode_json($rec->{offers}) };
    }
    for my $o (@$catalog) {
        last if @ids >= $OFFERS_MAX;
        push @ids, $o->{id} if holds($rec, $o);
    }
    return @ids;
}

# docs/ab-testing.md: first 8 bytes of SHA-256("badge:<id>"), big-endian,
# modulo 10000; 0-4999 classic, the rest progress_bar
sub variant {
    my ($id) = @_;
    my ($hi, $lo) = unpack 'NN', substr(sha256("badge:$id"), 0, 8);
    my $bucket = (($hi % 10000) * (4294967296 % 10000) + $lo) % 10000;
    return $bucket < 5000 ? 'classic' : 'progress_bar';
}

# --- reading chromium's DOM dump ------------------------------------------------

sub unescape {
    my ($s) = @_;
    $s =~ s/<[^>]*>//g;
    $s =~ s/&lt;/</g;
    $s =~ s/&gt;/>/g;
    $s =~ s/&quot;/"/g;
    $s =~ s/&#39;/'/g;
    $s =~ s/&nbsp;/ /g;
    $s =~ s/&amp;/&/g;
    $s =~ s/\s+/ /g;
    $s =~ s/^ | $//g;
    return $s;
}

# the element with this id: { tag, attrs (raw), inner (html), text }
sub element {
    my ($html, $id) = @_;
    $html =~ /<(\w+)((?:\s[^>]*)?\sid="\Q$id\E"[^>]*)>/ or return undef;
    my ($tag, $attrs) = ($1, $2);
    my $rest = substr($html, $+[0]);
    my $inner = $rest =~ m{^(.*?)</\Q$tag\E>}s ? $1 : '';
    return { tag => $tag, attrs => $attrs, inner => $inner,
             text => unescape($inner) };
}

sub attr {
    my ($el, $name) = @_;
    return undef unless $el;
    return $el->{attrs} =~ /\s\Q$name\E="([^"]*)"/ ? unescape($1)
         : $el->{attrs} =~ /\s\Q$name\E(?:\s|$)/ ? '' : undef;
}

sub hidden {
    my ($el) = @_;
    return defined attr($el, 'hidden') ? 1 : 0;
}

# --- chromium --------------------------------------------------------------------

my $shots = "$tmp/screenshots";
mkdir $shots or die "mkdir $shots: $!";
mkdir "$tmp/home";

# loads $path in a fresh profile: the DOM after the scripts ran (decoded
# text), and a screenshot at $shots/$name.png
sub browse {
    my ($name, $path) = @_;
    my $dom = "$tmp/$name.dom.html";
    my $log = "$tmp/$name.chromium.log";

    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        POSIX::setpgid(0, 0);
        $SIG{$_} = 'DEFAULT' for qw(INT TERM HUP);
        $ENV{HOME} = "$tmp/home";
        $ENV{XDG_CONFIG_HOME} = "$tmp/home/.config";
        $ENV{XDG_CACHE_HOME} = "$tmp/home/.cache";
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', $dom or POSIX::_exit(126);
        open STDERR, '>', $log or POSIX::_exit(126);
        exec $chromium, '--headless=new', '--no-sandbox', '--disable-gpu',
             '--disable-dev-shm-usage', '--no-first-run',
             '--no-default-browser-check', '--disable-extensions',
             '--disable-background-networking', '--disable-sync',
             '--disable-component-update', '--hide-scrollbars',
             '--password-store=basic', '--use-mock-keychain',
             '--disable-breakpad', '--disable-crash-reporter',
             "--user-data-dir=$tmp/profile-$name",
             '--window-size=1280,900', "--screenshot=$shots/$name.png",
             '--virtual-time-budget=5000',
             '--dump-dom', "$url$path"
            or POSIX::_exit(127);
    }

    my $deadline = time + 45;
    my $status;
    while (time < $deadline) {
        if (waitpid($pid, WNOHANG) == $pid) {
            $status = $?;
            last;
        }
        sleep 0.05;
    }
    unless (defined $status) {
        kill 'KILL', -$pid, $pid;
        waitpid($pid, 0);
        diag("chromium for $name did not finish in 45 s");
    }
    kill 'KILL', -$pid;     # helpers left in its process group, if any

    my $html = slurp($dom);
    unless (defined $status && $status == 0 && $html =~ /<body/) {
        diag("chromium for $name exited with "
             . ($status // 'a timeout') . "; its log:\n"
             . join("\n", grep { !/dbus|unexpected operator/ }
                          split /\n/, slurp($log)));
    }

    return decode('UTF-8', $html);
}

sub check_screenshot {
    my ($name) = @_;
    my $file = "$shots/$name.png";
    my $png = slurp($file);
    ok(length $png > 10_000 && substr($png, 0, 8) eq "\x89PNG\r\n\x1a\n",
       "$name: screenshot $name.png is a PNG of "
       . length($png) . ' bytes');
    my ($w, $h) = length $png >= 24 ? unpack('NN', substr($png, 16, 8))
                                     : (0, 0);
    is("${w}x$h", '1280x900', "$name: screenshot is 1280x900");
}

sub money {
    my ($v) = @_;
    return "\x{20ac}" . sprintf('%.2f', $v);
}

sub commify {
    my ($n) = @_;
    1 while $n =~ s/^(\d+)(\d{3})/$1,$2/;
    return $n;
}

# --- the customers with a record --------------------------------------------

my %shown;    # offer id => customers showing it

for my $name (@customers) {
    my $id = $login{$name};
    my $rec = record($id);
    next unless ref $rec eq 'HASH' && defined $rec->{tier};

    my $html = browse($name, "/login/$name");
    my $body = $html =~ /<body([^>]*)>/ ? { attrs => $1 } : undef;

    is(attr($body, 'data-rendered'), 'true', "$name: shop.js rendered");
    is(attr($body, 'data-loyalty-status'), 'ok', "$name: status ok");

    my ($tier, $points) = @$rec{qw(tier points)};
    my ($i) = grep { $LADDER[$_][0] eq $tier } 0 .. $#LADDER;
    ok(defined $i, "$name: tier $tier is in the ladder") or next;

    my $badge = element($html, 'tier-badge');
    is($badge && $badge->{text}, $LADDER[$i][2],
       "$name: badge shows the label $LADDER[$i][2]");
    is(attr($badge, 'data-tier'), $tier, "$name: badge data-tier $tier");
    ok($badge && !hidden($badge), "$name: badge visible");

    my $p = element($html, 'points');
    is($p && $p->{text}, commify($points), "$name: points "
       . commify($points));
    is(attr($p, 'data-points'), $points, "$name: data-points $points");

    my ($progress, $next, $to_next);
    if ($i < $#LADDER) {
        my ($min, $nmin) = ($LADDER[$i][1], $LADDER[$i + 1][1]);
        $progress = ($points - $min) / ($nmin - $min);
        $next = $LADDER[$i + 1][0];
        $to_next = $nmin - $points;
    } else {
        $progress = 1;
    }

    my $bar = element($html, 'progress');
    my $value = attr($bar, 'value');
    ok(defined $value && abs($value - $progress) < 0.0011,
       "$name: progress " . sprintf('%.3f', $progress))
        or diag('value ' . ($value // 'missing'));
    is(attr($bar, 'aria-valuenow'), $value, "$name: aria-valuenow");

    my $nt = element($html, 'next-tier');
    if (defined $next) {
        is(attr($nt, 'data-tier'), $next, "$name: next tier $next");
        is(attr($nt, 'data-points-to-next'), $to_next,
           "$name: $to_next points to next");
        is($nt && $nt->{text}, commify($to_next) . " points to $next",
           "$name: next-tier text");
    } else {
        is(attr($nt, 'data-tier'), '', "$name: top tier, no next tier");
        like($nt && $nt->{text}, qr/^Top tier/, "$name: top tier text");
    }

    my $cb = element($html, 'cashback');
    is($cb && $cb->{text}, money($rec->{cashback}),
       "$name: cashback " . sprintf('%.2f', $rec->{cashback}));

    my $ref = element($html, 'referral-code');
    is($ref && $ref->{text}, $rec->{referral_code},
       "$name: referral code $rec->{referral_code}");

    my @want = expected_offers($rec);
    my $list = element($html, 'offers');
    my @got = ($list ? $list->{inner} : '') =~ /data-offer-id="([^"]*)"/g;
    is_deeply(\@got, \@want, "$name: offers @want");
    $shown{$_}{$name} = 1 for @got;

    my %absent = map { $_->{id} => 1 } @$catalog;
    delete @absent{@want};
    ok(!(grep { $absent{$_} } @got), "$name: none of "
       . join(' ', sort keys %absent));

    for my $offer (@want) {
        like($list->{inner},
             qr{data-offer-id="\Q$offer\E"[^>]*>.*?\Q$title{$offer}\E}s,
             "$name: offer $offer titled");
    }

    my $v = element($html, 'variant');
    is(attr($v, 'data-variant'), variant($id),
       "$name: A/B variant " . variant($id) . ' (bucket of badge:' . $id
       . ')');
    is($v && $v->{text}, variant($id), "$name: variant shown");
    like(attr($body, 'class') // '', qr/\bab-badge-\Q${\ variant($id)}\E\b/,
         "$name: variant styles the page");

    ok(hidden(element($html, 'join')), "$name: no join prompt");
    ok(!hidden(element($html, 'loyalty')), "$name: rewards shown");
    ok(hidden(element($html, 'status-note')), "$name: no status note");

    check_screenshot($name);
}

# every rule of the catalog is visible with some sample customer, and the
# offer that ended is not
{
    my %rules;
    for my $o (@$catalog) {
        my $ended = defined $o->{until} && date_days($o->{until}) < $today;
        if ($ended) {
            ok(!$shown{ $o->{id} }, "ended offer $o->{id} shown to nobody");
            next;
        }
        ok($shown{ $o->{id} }, "offer $o->{id} shown to "
           . join(', ', sort keys %{ $shown{ $o->{id} } || {} }));
        $rules{$_} = 1 for grep { !/^(?:id|title|code|badge|url)$/ }
                           keys %$o;
    }
    is_deeply([ sort keys %rules ],
              [ sort qw(first_order_within_days birthday_month tiers
                        min_tier min_points segments from until) ],
              'the catalog uses every rule');
    ok($shown{welcome}{bronze}, 'bronze, first order days ago: welcome');
    ok($shown{birthday}{gold}, 'gold, birthday this month: birthday gift');
    ok($shown{'vip-night'}{platinum}, 'platinum, VIP segment: VIP night');
}

# --- no record, a failing lookup, no cookie -----------------------------------------

for my $name (@customers) {
    my $id = $login{$name};
    my $rec = record($id);
    next if ref $rec eq 'HASH' && defined $rec->{tier};

    # no hash at all: unknown; a key of another type: error
    my $type = $t->redis_on($redis_port, 'TYPE', "loyalty:customer:$id");
    my $status = $type eq 'none' ? 'unknown' : 'error';

    my $html = browse($name, "/login/$name");
    my $body = $html =~ /<body([^>]*)>/ ? { attrs => $1 } : undef;

    is(attr($body, 'data-rendered'), 'true', "$name: shop.js rendered");
    is(attr($body, 'data-loyalty-status'), $status, "$name: status $status");

    my $note = element($html, 'status-note');
    ok($note && !hidden($note) && length $note->{text},
       "$name: a note for the shopper: " . ($note ? $note->{text} : ''));
    is(attr($note, 'data-status'), $status, "$name: note for $status");
    ok(hidden(element($html, 'loyalty')), "$name: no rewards panel");
    ok(hidden(element($html, 'join')), "$name: no join prompt");
    is(attr(element($html, 'tier-badge'), 'data-tier'), '',
       "$name: no tier on the badge");
    unlike(element($html, 'offers')->{inner}, qr/data-offer-id/,
           "$name: no offers");
    like($html, qr/Canvas tote bag/, "$name: the shop itself is there");
    is(attr(element($html, 'variant'), 'data-variant'), variant($id),
       "$name: A/B variant " . variant($id));

    check_screenshot($name);
}

{
    my $html = browse('anonymous', '/');
    my $body = $html =~ /<body([^>]*)>/ ? { attrs => $1 } : undef;

    is(attr($body, 'data-rendered'), 'true', 'anonymous: shop.js rendered');
    is(attr($body, 'data-loyalty-status'), 'anonymous', 'anonymous: status');
    my $join = element($html, 'join');
    ok($join && !hidden($join), 'anonymous: join prompt shown');
    like($join && $join->{text}, qr/Join/, 'anonymous: join prompt text');
    my $badge = element($html, 'tier-badge');
    is($badge && $badge->{text}, 'Guest', 'anonymous: badge says Guest');
    is(attr($badge, 'data-tier'), '', 'anonymous: no tier');
    ok(hidden(element($html, 'loyalty')), 'anonymous: no rewards panel');
    ok(hidden(element($html, 'status-note')), 'anonymous: no status note');
    is(attr(element($html, 'variant'), 'data-variant'), '',
       'anonymous: no A/B variant (no customer id)');

    my $nav = element($html, 'switcher');
    like($nav && $nav->{inner}, qr{href="/login/\Q$_\E"},
         "anonymous: switcher links /login/$_") for @customers;
    like($nav && $nav->{inner}, qr{href="/logout"},
         'anonymous: switcher links /logout');

    check_screenshot('anonymous');
}

diag("screenshots kept in $shots") if $ENV{KEEP_TEST_DIR};

# --- stopping the demo ------------------------------------------------------

{
    my $nginx_pid = slurp("$demo_tmp/nginx.pid") =~ /(\d+)/ ? $1 : 0;
    my $info = $t->redis_try_on($redis_port, 'INFO', 'server');
    my $redis_pid = !ref $info && $info =~ /^process_id:(\d+)/m ? $1 : 0;
    ok($nginx_pid && $redis_pid, 'nginx and redis-server pids found');

    my $st = stop_demo('INT');
    ok(defined $st, 'the demo stops on SIGINT (Ctrl-C)');
    ok(!-e $demo_tmp, 'its temporary directory is removed');
    ok(!kill(0, $nginx_pid), 'its nginx is gone') if $nginx_pid;
    ok(!kill(0, $redis_pid), 'its redis-server is gone') if $redis_pid;
    like(slurp($demo_out), qr/demo: stopping nginx and redis-server/,
         'it says so');
}

done_testing;
