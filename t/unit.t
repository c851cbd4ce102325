#!/usr/bin/perl

# The C unit tests of the form decoder, the request checks and the
# duplicates hash, run as subtests: each TAP line of build/unit/form_test,
# validate_test and hash_test becomes a test here, and each must exit 0.
# Build them with `make unit` (`make prove` and `make test` do).

use strict;
use warnings;

use File::Spec;
use FindBin;
use Test::More;

my $root = File::Spec->catdir($FindBin::Bin, File::Spec->updir);
my @tests = map { File::Spec->catfile($root, 'build', 'unit', $_) }
    qw(form_test validate_test hash_test);

my @missing = grep { !-x $_ } @tests;

plan skip_all => "not built: @missing; run `make unit`" if @missing;

plan tests => scalar @tests;

for my $bin (@tests) {
    my $name = (File::Spec->splitpath($bin))[2];

    subtest $name => sub {
        my ($plan, $seen, $failed) = (undef, 0, 0);

        open(my $fh, '-|', $bin) or die "cannot run $bin: $!";

        while (my $line = <$fh>) {
            chomp $line;

            if ($line =~ /^(not )?ok (\d+)(?: - (.*))?$/) {
                $seen++;
                $failed++ if $1;
                ok(!$1, $3 // "test $2");

                if ($2 != $seen) {
                    fail("test number $2 out of sequence, expected $seen");
                }

            } elsif ($line =~ /^1\.\.(\d+)$/) {
                $plan = $1;

            } elsif ($line =~ /^#/) {
                diag($line =~ s/^# ?//r);

            } elsif ($line ne '') {
                diag("unexpected output: $line");
            }
        }

        close($fh);
        my $status = $?;

        ok(defined $plan, "$name printed a plan");
        is($seen, $plan // -1, "$name ran as many tests as it planned");
        is($status, 0, "$name exited 0")
            or diag(sprintf('exit %d, signal %d', $status >> 8,
                            $status & 127));
        cmp_ok($seen, '>', 0, "$name ran some tests");
    };
}
