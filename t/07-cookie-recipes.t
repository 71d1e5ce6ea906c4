#!/usr/bin/perl
# Signed cookies without nginx: build/loyalty-cookie and the recipes in
# docs/recipes/ (Python, PHP, Node.js) must reproduce the independently
# computed values of t/fixtures/cookie-vectors.txt; verify, tampering,
# key file checks and keygen; docs/cookie-signing.md must quote the
# recipes unchanged.  python3, php and node are required: a missing one
# fails the test (make deps installs them).

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use File::Spec;
use File::Temp ();
use POSIX ();
use Test::More;

my $root    = File::Spec->rel2abs("$FindBin::Bin/..");
my $tool    = "$root/build/loyalty-cookie";
my $vectors = "$root/t/fixtures/cookie-vectors.txt";
my $doc     = "$root/docs/cookie-signing.md";
my $now     = 1800000000;

my %recipes = (
    python => { bin => 'python3', file => "$root/docs/recipes/sign.py",
                func => qr/^(def sign\(.*?)(?=^\S)/ms },
    php    => { bin => 'php', file => "$root/docs/recipes/sign.php",
                func => qr/^(function sign\(.*?^\}\n)/ms },
    node   => { bin => 'node', file => "$root/docs/recipes/sign.js",
                func => qr/^(function sign\(.*?^\}\n)/ms },
);

my $tmp = File::Temp->newdir('loyalty-cookie-XXXXXX', TMPDIR => 1);
my $files = 0;

sub slurp {
    my ($path) = @_;
    open my $fh, '<', $path or die "$path: $!";
    local $/;
    return scalar <$fh>;
}

sub in_path {
    my ($bin) = @_;
    for my $dir (File::Spec->path) {
        return "$dir/$bin" if -f "$dir/$bin" && -x _;
    }
    return undef;
}

# runs a command without a shell; returns (exit status, stdout, stderr)
sub run {
    my @cmd = @_;
    my ($out, $err) = map { "$tmp/run.$_" } qw(out err);

    my $pid = fork;
    die "fork: $!" unless defined $pid;

    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', $out or POSIX::_exit(126);
        open STDERR, '>', $err or POSIX::_exit(126);
        { no warnings 'exec'; exec { $cmd[0] } @cmd; }
        POSIX::_exit(127);
    }

    waitpid $pid, 0;
    my $rc = $? & 127 ? 128 + ($? & 127) : $? >> 8;

    return ($rc, slurp($out), slurp($err));
}

# writes a key file with the given mode; returns its path
sub key_file {
    my ($mode, @keys) = @_;
    my $path = "$tmp/keys." . ++$files;

    open my $fh, '>', $path or die "$path: $!";
    print $fh "# test keys, current key first\n\n", map { "$_\n" } @keys;
    close $fh or die "$path: $!";
    chmod $mode, $path or die "chmod $path: $!";

    return $path;
}

# changes the character at pos to another one of the same kind, so that
# the value stays well-formed and only the signature can tell
sub tamper {
    my ($s, $pos) = @_;
    my $c = substr $s, $pos, 1;

    my $r = $c =~ /[0-9]/ ? ($c + 1) % 10
          : $c eq '-'     ? '_'
          : $c eq '_'     ? '-'
          : $c eq 'A'     ? 'B'
          :                 'A';

    substr($s, $pos, 1) = $r;
    return $s;
}


# --- prerequisites: fail, never skip ----------------------------------------

ok(-x $tool, 'build/loyalty-cookie is built')
    or diag('run `make`');

for my $name (sort keys %recipes) {
    my $bin = $recipes{$name}{bin};
    ok(defined in_path($bin), "$bin is installed")
        or diag("$bin is missing: run `make deps`");
}


# --- vectors ----------------------------------------------------------------

my @vectors;

for my $line (split /\n/, slurp($vectors)) {
    next if $line =~ /^#/ || $line !~ /\S/;
    my @f = split /\t/, $line, -1;
    die "bad vector line: $line\n" unless @f == 4;
    push @vectors, { key => $f[0], id => $f[1], expires => $f[2],
                     cookie => $f[3] };
}

cmp_ok(scalar @vectors, '>=', 6, 'at least 6 vectors');
ok((grep { length $_->{id} == 64 } @vectors), 'a 64-character id');
ok((grep { length $_->{key} == 128 } @vectors), 'a 64-byte key');
ok((grep { $_->{expires} < $now } @vectors), 'an expired vector');
ok((grep { $_->{expires} >= $now } @vectors), 'an unexpired vector');

for my $v (@vectors) {
    my $name = "id $v->{id}, expires $v->{expires}";
    my $keys = key_file(0600, $v->{key});
    my ($rc, $out, $err);

    ($rc, $out, $err) = run($tool, 'sign', '--key-file', $keys,
                            '--id', $v->{id}, '--expires', $v->{expires});
    is($out, "$v->{cookie}\n", "loyalty-cookie sign: $name");
    is($rc, 0, "loyalty-cookie sign exits 0: $name") or diag($err);

    for my $lang (sort keys %recipes) {
        my $r = $recipes{$lang};

        ($rc, $out, $err) = run($r->{bin}, $r->{file}, $v->{key}, $v->{id},
                                $v->{expires});
        is($out, "$v->{cookie}\n", "$lang recipe: $name") or diag($err);
        is($rc, 0, "$lang recipe exits 0: $name");
    }

    ($rc, $out, $err) = run($tool, 'verify', '--key-file', $keys,
                            '--now', $now, '--', $v->{cookie});

    if ($v->{expires} >= $now) {
        is($out, "ok $v->{id} $v->{expires}\n", "verify ok: $name");
        is($rc, 0, "verify ok exits 0: $name");
    } else {
        is($out, "expired\n", "verify expired: $name");
        is($rc, 1, "verify expired exits 1: $name");
    }

    # one character changed in the id, in the expiry, in the signature

    my $c = $v->{cookie};
    my $e = length($v->{id}) + 1;
    my $s = length($c) - 20;

    for my $pos (0, $e + length($v->{expires}) - 1, $s) {
        my $bad = tamper($c, $pos);

        ($rc, $out) = run($tool, 'verify', '--key-file', $keys,
                          '--now', $now, '--', $bad);
        is($out, "bad_signature\n", "tampered at $pos: $name");
        is($rc, 1, "tampered exits 1: $name");
    }

    # a key that is not the first one still verifies

    my $rotated = key_file(0640, $vectors[0]{key} eq $v->{key}
                                 ? $vectors[1]{key} : $vectors[0]{key},
                           $v->{key});

    ($rc, $out) = run($tool, 'verify', '--key-file', $rotated,
                      '--now', 0, '--', $c);
    is($out, "ok $v->{id} $v->{expires}\n", "second key verifies: $name");
}


# --- verify: format, order, boundary, first key signs ------------------------

{
    my $v = $vectors[0];
    my $keys = key_file(0600, $v->{key});
    my ($rc, $out, $err);

    for my $bad ('42', '42.4102444800', "$v->{cookie}x", "x.y.$v->{cookie}",
                 '4.2.' . ('A' x 42), 'a b.1.' . ('A' x 43), '')
    {
        ($rc, $out) = run($tool, 'verify', '--key-file', $keys, '--', $bad);
        is($out, "malformed\n", "malformed: \"$bad\"");
        is($rc, 1, "malformed exits 1: \"$bad\"");
    }

    # an expired forgery is bad_signature: the signature comes first

    my $forged = tamper($v->{cookie}, length($v->{cookie}) - 5);
    ($rc, $out) = run($tool, 'verify', '--key-file', $keys,
                      '--now', '9999999999999', '--', $forged);
    is($out, "bad_signature\n", 'expired forgery is bad_signature');

    # valid while now <= expires

    ($rc, $out) = run($tool, 'sign', '--key-file', $keys, '--id', 'edge',
                      '--expires', $now);
    chomp(my $edge = $out);

    ($rc, $out) = run($tool, 'verify', '--key-file', $keys, '--now', $now,
                      $edge);
    is($out, "ok edge $now\n", 'valid in its last second');

    ($rc, $out) = run($tool, 'verify', '--key-file', $keys,
                      '--now', $now + 1, $edge);
    is($out, "expired\n", 'expired one second later');

    # sign uses the first key only

    my $two = key_file(0600, $vectors[1]{key}, $v->{key});
    ($rc, $out) = run($tool, 'sign', "--key-file=$two", "--id=$v->{id}",
                      "--expires=$v->{expires}");
    chomp(my $first = $out);
    isnt($first, $v->{cookie}, 'sign does not use the second key');

    ($rc, $out) = run($tool, 'verify', '--key-file',
                      key_file(0600, $vectors[1]{key}), $first);
    is($out, "ok $v->{id} $v->{expires}\n", 'sign uses the first key');

    ($rc, $out) = run($tool, 'verify', '--key-file', $keys, $first);
    is($out, "bad_signature\n", 'another key does not verify');

    # --ttl

    my $t0 = time;
    ($rc, $out) = run($tool, 'sign', '--key-file', $keys, '--id', 'ttl_1',
                      '--ttl', 3600);
    chomp(my $ttl = $out);
    my ($exp) = $ttl =~ /^ttl_1\.(\d+)\.[A-Za-z0-9_-]{43}$/;
    ok(defined $exp && $exp >= $t0 + 3600 && $exp <= time + 3600,
       '--ttl expires ttl seconds from now');
}


# --- refused arguments and key files -----------------------------------------

{
    my $key = $vectors[0]{key};
    my $good = key_file(0600, $key);
    my ($rc, $out, $err);

    for my $id ('a.b', 'a b', '', 'x' x 65, "caf\xc3\xa9") {
        ($rc, $out, $err) = run($tool, 'sign', '--key-file', $good,
                                '--id', $id, '--expires', 1);
        is($rc, 2, "bad id refused: \"$id\"");
        is($out, '', "nothing printed for bad id \"$id\"");
        like($err, qr/invalid id/, "bad id message: \"$id\"");
    }

    for my $args ([], ['--expires', 1, '--ttl', 1], ['--expires', '-1'],
                  ['--expires', '1x'], ['--ttl', '99999999999999999999'],
                  ['--bogus', 1], ['--expires', 1, 'extra'])
    {
        ($rc, $out, $err) = run($tool, 'sign', '--key-file', $good,
                                '--id', 'a', @$args);
        is($rc, 2, "sign @$args: refused");
        isnt($err, '', "sign @$args: message");
    }

    ($rc) = run($tool, 'verify', '--key-file', $good);
    is($rc, 2, 'verify without a value');

    ($rc) = run($tool, 'frobnicate');
    is($rc, 2, 'unknown command');

    ($rc) = run($tool);
    is($rc, 2, 'no command');

    ($rc, $out) = run($tool, '--help');
    is($rc, 0, '--help exits 0');
    like($out, qr/^Usage:.*sign.*verify.*keygen/s, '--help prints usage');

    my $cookie = $vectors[0]{cookie};
    my %bad = (
        'world-readable' => [ key_file(0644, $key), qr/readable by other/ ],
        'world-readable 0604' => [ key_file(0604, $key),
                                   qr/readable by other/ ],
        'missing' => [ "$tmp/no-such-file", qr/No such file/ ],
        'a directory' => [ "$tmp", qr/not a regular file/ ],
        'short key' => [ key_file(0600, substr($key, 0, 62)),
                         qr/line 3: key is shorter than 32 bytes/ ],
        'not hex' => [ key_file(0600, 'g' . substr($key, 1)),
                       qr/line 3: a key must be hex digits only/ ],
        'no key' => [ key_file(0600), qr/no key found/ ],
    );

    for my $case (sort keys %bad) {
        my ($file, $re) = @{ $bad{$case} };

        ($rc, $out, $err) = run($tool, 'sign', '--key-file', $file,
                                '--id', 'a', '--expires', 1);
        is($rc, 2, "sign refuses a key file: $case");
        is($out, '', "sign prints nothing: $case");
        like($err, $re, "sign says why: $case");
        unlike($err, qr/\Q${\ substr($key, 4, 40)}\E/i,
               "no key material in the message: $case");

        ($rc, $out, $err) = run($tool, 'verify', '--key-file', $file,
                                $cookie);
        is($rc, 2, "verify refuses a key file: $case");
        is($out, '', "verify prints nothing: $case");
        like($err, $re, "verify says why: $case");
    }

    # keys are never printed by sign or verify

    ($rc, $out, $err) = run($tool, 'sign', '--key-file', $good, '--id', 'a',
                            '--expires', 1);
    unlike("$out$err", qr/\Q$key\E/i, 'sign does not print the key');

    ($rc, $out, $err) = run($tool, 'verify', '--key-file', $good, $cookie);
    unlike("$out$err", qr/\Q$key\E/i, 'verify does not print the key');
}


# --- keygen -------------------------------------------------------------------

{
    my ($rc, $out, $err) = run($tool, 'keygen');
    is($rc, 0, 'keygen exits 0');
    like($out, qr/\A[0-9a-f]{64}\n\z/, 'keygen prints 64 hex digits');

    my ($rc2, $out2) = run($tool, 'keygen');
    isnt($out2, $out, 'keygen makes a new key each time');

    chomp(my $key = $out);
    my $keys = key_file(0600, $key);

    ($rc, $out) = run($tool, 'sign', '--key-file', $keys, '--id', 'round-1',
                      '--ttl', 60);
    chomp(my $cookie = $out);
    is($rc, 0, 'sign with a generated key');

    ($rc, $out) = run($tool, 'verify', '--key-file', $keys, $cookie);
    like($out, qr/^ok round-1 \d+\n\z/, 'generated key round trip');
    is($rc, 0, 'round trip exits 0');

    for my $lang (sort keys %recipes) {
        my $r = $recipes{$lang};

        ($rc, $out) = run($r->{bin}, $r->{file}, $key, 'round-2',
                          4102444800);
        chomp(my $c = $out);
        ($rc, $out) = run($tool, 'verify', '--key-file', $keys, $c);
        is($out, "ok round-2 4102444800\n",
           "$lang recipe with a generated key verifies");
    }
}


# --- the documentation quotes the recipes unchanged ---------------------------

{
    my $text = slurp($doc);

    for my $lang (sort keys %recipes) {
        my $r = $recipes{$lang};
        my $src = slurp($r->{file});
        my ($func) = $src =~ $r->{func};

        ok(defined $func && $func =~ /\S/, "$lang recipe has a sign function");
        ok(defined $func && index($text, $func) >= 0,
           "docs/cookie-signing.md contains the $lang sign function");
        ok(index($text, $src) >= 0,
           "docs/cookie-signing.md quotes the whole $lang recipe");
    }
}

done_testing();
