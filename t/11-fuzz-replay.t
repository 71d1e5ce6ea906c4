#!/usr/bin/perl
# Regression replay of the fuzz corpora: each build/fuzz-replay/<name>
# (t/fuzz/fuzz_<name>.c linked with t/fuzz/replay.c, no libFuzzer; built
# by `make fuzz-replay`) runs over every file in t/fuzz/corpus/<name>/.
# It must exit 0, and its count must say that every file was run.

use strict;
use warnings;
use FindBin;
use Test::More;

my $root = "$FindBin::Bin/..";
my @targets = sort map { m{/fuzz_(\w+)\.c$} ? $1 : () }
              glob("$root/t/fuzz/fuzz_*.c");

BAIL_OUT("no fuzz targets in t/fuzz") unless @targets;

for my $name (@targets) {
    my $bin = "$root/build/fuzz-replay/$name";

    BAIL_OUT("$bin is missing: run `make fuzz-replay`") unless -x $bin;

    subtest $name => sub {
        my @files = sort grep { -f } glob("$root/t/fuzz/corpus/$name/*");

        cmp_ok(scalar @files, '>', 0, "t/fuzz/corpus/$name has seeds");

        # list form: names are passed as they are, no shell
        my $pid = open(my $fh, '-|') // die "fork: $!";
        if ($pid == 0) {
            open STDERR, '>&', \*STDOUT or die "dup: $!";
            exec { $bin } $bin, @files or die "exec $bin: $!";
        }
        my @out = <$fh>;
        close $fh;
        my $status = $?;

        # the driver names each input before running it: the last name
        # is the one that failed
        is($status, 0, "$name exits 0 on its corpus")
            or diag(grep({ !/^replay: / } @out),
                    (grep { /^replay: / } @out)[-1] // "no input run\n");

        my ($count) = map { /^replayed (\d+) inputs$/ ? $1 : () } @out;
        is($count, scalar @files, "$name ran every file");
    };
}

done_testing();
