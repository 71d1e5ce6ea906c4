#!/usr/bin/perl
# Runs the C unit tests of ngx_loyalty_module/lib (built by `make unit`
# into build/unit/) and folds their TAP output into this test.

use strict;
use warnings;
use FindBin;
use Test::More;

my $root = "$FindBin::Bin/..";
my @bins = sort grep { -x } glob("$root/build/unit/test_*");

BAIL_OUT("no unit test binaries in build/unit: run `make unit`")
    unless @bins;

for my $bin (@bins) {
    my $name = $bin =~ s{.*/}{}r;

    subtest $name => sub {
        my @out = `$bin`;
        my $rc = $? >> 8;
        my ($plan) = grep { /^1\.\.\d+$/ } @out;

        ok(defined $plan, "$name printed a plan");

        for (@out) {
            chomp;
            if (/^(not )?ok \d+ - (.*)$/) {
                ok(!defined $1, $2);
            } elsif (/^#/) {
                diag($_);
            }
        }

        is($rc, 0, "$name exited 0");
    };
}

done_testing();
