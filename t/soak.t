#!/usr/bin/perl

# The soak test, short: soak/run.sh (what `make soak` runs) for
# SOAK_SECONDS, 10 unless set: 256 keep-alive connections of mixed valid,
# invalid and hostile traffic, slow and aborting clients, reloads and log
# rotation, then no 5xx, no lost audit record, no alert, no leaked fd,
# temp file or update lock, bounded memory.  Passes iff it exits 0.

use strict;
use warnings;

use Cwd qw(abs_path);
use File::Basename qw(dirname);
use Test::More;

my $root = abs_path(dirname(__FILE__) . '/..');
my $module = "$root/objs/ngx_http_studio_testusers_module.so";

plan(skip_all => "$module is missing: run 'make build'") unless -f $module;
plan(skip_all => '/usr/sbin/nginx is missing') unless -x '/usr/sbin/nginx';

my $have_wrk = grep { -x "$_/wrk" } split /:/, $ENV{PATH} // '';
plan(skip_all => 'wrk is missing and cannot be installed (not root)')
    if !$have_wrk && $> != 0;

my $seconds = $ENV{SOAK_SECONDS} // 10;
$ENV{SOAK_SECONDS} = $seconds;

# niced, so the tests running beside it under `prove -j` keep their pace;
# bounded, whatever happens
my $limit = $seconds + 120;
my $out = `cd '$root' && timeout --kill-after=10 $limit nice -n 10 soak/run.sh 2>&1`;
my $rc = $? == -1 ? 255 : $? >> 8;

my ($verdict) = $out =~ /^(VERDICT: .*)$/m;
is($rc, 0, "soak/run.sh for $seconds s: " . ($verdict // "exit $rc"))
    ? note($out) : diag($out);

done_testing();
