#!/usr/bin/perl
# Turns what bench/run.sh collected in OUT into Markdown (OUT/report.md).
#
#   report.pl OUT
#
# Per case and gateway: the median over rounds of req/s, p99 latency and
# the worker's CPU time per request; ratios are medians of per-round
# ratios (the gateways ran back to back in each round, so drift cancels).

use strict;
use warnings;

use POSIX qw(sysconf _SC_CLK_TCK);

my ($out) = @ARGV;
die "usage: $0 OUT\n" unless $out;

my $tick_us = 1e6 / (sysconf(_SC_CLK_TCK) || 100);

sub slurp {
    my ($f) = @_;
    open my $fh, '<', "$out/$f" or return '';
    local $/;
    return scalar <$fh>;
}

sub median {
    my @v = sort { $a <=> $b } grep { defined } @_;
    return undef unless @v;
    return @v % 2 ? $v[$#v / 2] : ($v[@v / 2 - 1] + $v[@v / 2]) / 2;
}

sub minmax {
    my @v = sort { $a <=> $b } grep { defined } @_;
    return (@v ? ($v[0], $v[-1]) : (0, 0));
}

sub thousands {
    my ($v) = @_;
    my $s = sprintf('%.0f', $v);
    1 while $s =~ s/^(-?\d+)(\d{3})/$1,$2/;
    return $s;
}

my @CASES = qw(get post1 post10 post100 post100x290);
my %DESC = (
    get         => 'GET',
    post1       => 'POST, 1 identity (15 B)',
    post10      => 'POST, 10 identities (15 B)',
    post100     => 'POST, 100 identities (15 B), 2.5 KB',
    post100x290 => 'POST, 100 identities (290 B), 30 KB',
);
my @CFG = qw(a b c);
my %CFGNAME = (a => '(a) proxy_pass', b => '(b) module', c => '(c) Lua');

my $machine = slurp('machine.txt');
print "# Benchmark results\n\n```\n$machine```\n\n";


# --- wrk -------------------------------------------------------------------------

my (%run, %rounds);    # {cfg}{case}{round} = {...}

for my $line (split /\n/, slurp('wrk.tsv')) {
    my ($round, $cfg, $case, $res) = split /\t/, $line;
    next if $round eq 'rss' || $round eq '0';
    my %h = $res =~ /(\w+)=(\d+)/g;
    next unless $h{requests} && $h{duration_us};
    $h{rps} = $h{requests} / $h{duration_us} * 1e6;
    $h{cpu_us} = $h{cpu_ticks} * $tick_us / $h{requests};
    $h{cpu_us_ns} = $h{cpu_ns} / 1e3 / $h{requests};
    $h{util} = 100 * $h{cpu_ns} / 1e3 / $h{duration_us};
    $h{up_util} = 100 * ($h{upstream_cpu_ns} // 0) / 1e3 / $h{duration_us};
    $run{$cfg}{$case}{$round} = \%h;
    $rounds{$round} = 1;
}

my @R = sort { $a <=> $b } keys %rounds;
my %T;    # figures the targets are judged on

sub med {
    my ($cfg, $case, $k) = @_;
    return median(map { $run{$cfg}{$case}{$_} ? $run{$cfg}{$case}{$_}{$k} : undef } @R);
}

# per-round ratio of x/y of key k, median and range
sub ratio {
    my ($x, $y, $case, $k) = @_;
    my @r = map {
        my ($p, $q) = ($run{$x}{$case}{$_}, $run{$y}{$case}{$_});
        $p && $q && $q->{$k} ? $p->{$k} / $q->{$k} : undef;
    } @R;
    return (median(@r), minmax(@r));
}

sub diff {
    my ($x, $y, $case, $k) = @_;
    my @r = map {
        my ($p, $q) = ($run{$x}{$case}{$_}, $run{$y}{$case}{$_});
        $p && $q ? $p->{$k} - $q->{$k} : undef;
    } @R;
    return (median(@r), minmax(@r));
}

if (@R) {
    print "## Throughput (wrk, ", scalar(@R), " interleaved rounds, medians)\n\n";
    print "The \"by CPU\" columns are the ratio of what one fully busy gateway core\n"
        . "could serve, 1 / (worker CPU per request): the measured req/s are capped\n"
        . "by whichever CPU saturates first (see \"Where the load went\").\n\n";
    print "| case | (a) req/s | (b) req/s | (b)/(a) [range] | (b)/(a) by CPU | (c) req/s | (c)/(a) | (b)/(c) [range] | (b)/(c) by CPU |\n";
    print "|---|---:|---:|---:|---:|---:|---:|---:|---:|\n";
    for my $case (@CASES) {
        next unless $run{a}{$case};
        my ($ba, $bamin, $bamax) = ratio('b', 'a', $case, 'rps');
        my ($ca) = ratio('c', 'a', $case, 'rps');
        my ($bc, $bcmin, $bcmax) = ratio('b', 'c', $case, 'rps');
        my ($cap_ba) = ratio('a', 'b', $case, 'cpu_us_ns');
        my ($cap_bc) = ratio('c', 'b', $case, 'cpu_us_ns');
        $T{tput}{$case} = $ba;
        $T{cap}{$case} = $cap_ba;
        $T{bc}{$case} = $bc;
        $T{cap_bc}{$case} = $cap_bc;
        printf "| %s | %s | %s | %.2f [%.2f–%.2f] | %.2f | %s | %.2f | %.2f [%.2f–%.2f] | %.2f |\n",
            $DESC{$case}, thousands(med('a', $case, 'rps')),
            thousands(med('b', $case, 'rps')), $ba, $bamin, $bamax, $cap_ba,
            thousands(med('c', $case, 'rps')), $ca, $bc, $bcmin, $bcmax, $cap_bc;
    }

    print "\n## Latency (p99, ms, median of rounds; p50 in parentheses)\n\n";
    print "| case | (a) | (b) | (c) |\n|---|---:|---:|---:|\n";
    for my $case (@CASES) {
        next unless $run{a}{$case};
        printf "| %s | %s |\n", $DESC{$case}, join(' | ', map {
            sprintf('%.2f (%.2f)', med($_, $case, 'p99_us') / 1e3,
                    med($_, $case, 'p50_us') / 1e3) } @CFG);
    }

    print "\n## Server CPU per request (µs, the gateway worker's utime+stime / requests served)\n\n";
    print "Medians of rounds; \"added\" is the median of per-round differences to (a),\n"
        . "with its range; the schedstat column is the same from /proc/PID/schedstat\n"
        . "(nanosecond on-CPU time) as a cross-check of the 10 ms tick counts.\n\n";
    print "| case | (a) | (b) | (b) added [range] | (b) added, schedstat | (c) | (c) added |\n";
    print "|---|---:|---:|---:|---:|---:|---:|\n";
    for my $case (@CASES) {
        next unless $run{a}{$case};
        my ($db, $dbmin, $dbmax) = diff('b', 'a', $case, 'cpu_us');
        my ($dbn) = diff('b', 'a', $case, 'cpu_us_ns');
        my ($dc) = diff('c', 'a', $case, 'cpu_us');
        $T{cpu}{$case} = $db;
        $T{cpu_ns}{$case} = $dbn;
        printf "| %s | %.1f | %.1f | %+.1f [%+.1f … %+.1f] | %+.1f | %.1f | %+.1f |\n",
            $DESC{$case}, med('a', $case, 'cpu_us'), med('b', $case, 'cpu_us'),
            $db, $dbmin, $dbmax, $dbn, med('c', $case, 'cpu_us'), $dc;
    }

    print "\n## Where the load went (medians, % of one CPU over the run)\n\n";
    print "gateway worker = the measured worker's own CPU time / wall time; server CPU /\n"
        . "load CPU busy = how busy CPU $1 / CPU $2 were, whoever used them (other\n"
        . "processes on the machine included).\n\n"
        if $machine =~ /server_cpu=(\d+) load_cpu=(\d+)/;
    print "| case | gateway | gateway worker | upstream worker | server CPU busy | load CPU busy |\n";
    print "|---|---|---:|---:|---:|---:|\n";
    for my $case (@CASES) {
        for my $cfg (@CFG) {
            next unless $run{$cfg}{$case};
            printf "| %s | %s | %.0f | %.0f | %.0f | %.0f |\n", $DESC{$case},
                $CFGNAME{$cfg}, med($cfg, $case, 'util'), med($cfg, $case, 'up_util'),
                med($cfg, $case, 'server_cpu_busy_pct'),
                med($cfg, $case, 'load_cpu_busy_pct');
        }
    }

    print "\n## Every round (req/s; worker CPU µs/request)\n\n";
    print "| case | round | (a) | (b) | (c) |\n|---|---:|---:|---:|---:|\n";
    for my $case (@CASES) {
        for my $r (@R) {
            next unless $run{a}{$case}{$r};
            printf "| %s | %d | %s |\n", $case, $r, join(' | ', map {
                my $h = $run{$_}{$case}{$r};
                $h ? sprintf('%s; %.1f', thousands($h->{rps}), $h->{cpu_us}) : '-' } @CFG);
        }
    }

    my ($req, $fwdmin, $fwdmax, $st, $oth) = (0, undef, undef, 0, 0);
    for my $cfg (@CFG) {
        for my $case (@CASES) {
            for my $r (@R) {
                my $h = $run{$cfg}{$case}{$r} or next;
                $req += $h->{requests};
                my $d = $h->{forwarded} - $h->{requests};
                $fwdmin = $d if !defined $fwdmin || $d < $fwdmin;
                $fwdmax = $d if !defined $fwdmax || $d > $fwdmax;
                $st += $h->{status_errors};
                $oth += $h->{$_} for qw(connect_errors read_errors write_errors timeouts);
            }
        }
    }
    printf "\n## Checks\n\n- %s requests measured; answers other than 2xx: %d; socket errors and\n"
         . "  timeouts: %d.\n- The upstream answers 200 only when it sees the service\n"
         . "  credential (401 otherwise), so every 2xx is a request that was judged and\n"
         . "  forwarded with the credential injected.\n"
         . "- Requests the upstream received minus requests wrk completed, per run:\n"
         . "  %d to %d (requests still in flight when wrk stopped; never negative means\n"
         . "  nothing wrk counted was answered by the gateway itself).\n",
        thousands($req), $st, $oth, $fwdmin // 0, $fwdmax // 0;
}


# --- preflight ------------------------------------------------------------------------

my $pre = slurp('preflight.tsv');
if ($pre) {
    my @l = split /\n/, $pre;
    my $bad = grep { /MISMATCH/ } @l;
    printf "- Functional checks before the load (%d requests with curl): %s.\n",
        scalar(@l), $bad ? "$bad MISMATCHES" : 'all as expected';
    print "\n| gateway | request | expected | got |\n|---|---|---:|---:|\n";
    for (@l) {
        my @f = split /\t/;
        print "| $f[0] | $f[1] | $f[2] | $f[3] |\n";
    }
}

my $errlogs = slurp('errorlogs.txt');
print "\nError logs ([alert], [crit], [emerg], crashed workers):\n\n```\n$errlogs```\n" if $errlogs;


# --- form decoder -------------------------------------------------------------------------

my $form = slurp('form.txt');
if ($form) {
    my %label = (
        ids290 => 'decoder + checks, 290-byte identities',
        ids15  => 'decoder + checks, 15-byte identities (%2B escape)',
        ids290_word => 'same, portable word-at-a-time scanner, 290-byte identities',
        ids15_word  => 'same, portable word-at-a-time scanner, 15-byte identities',
    );
    print "\n## Form decoder alone (bench/form_bench.c: ~30 KB bodies fed in 4 KB pieces)\n\n";
    print "Best of 20 timed slices (median in parentheses); MB/s of raw body bytes.\n\n";
    print "| build | what | identities | MB/s | µs per body |\n|---|---|---:|---:|---:|\n";
    for (split /\n/, $form) {
        my ($build, $name) = /^(\S+)\t(\S+)\t/ or next;
        my %h = /(\w+)=([\d.]+)/g;
        printf "| %s | %s | %d | %s (%s) | %.1f |\n", $build, $label{$name} // $name,
            $h{identities}, thousands($h{MB_per_s}), thousands($h{median_MB_per_s} // 0),
            $h{ns_per_body} / 1e3;
        $T{form}{"$build $name"} = $h{MB_per_s} unless $name =~ /crc/;
    }

    my $fi = slurp('form-instr.txt');
    if ($fi) {
        print "\nInstructions per body byte (callgrind, decoder + checks, 200 bodies;\n"
            . "independent of machine load):\n\n| build | body | instructions/byte |\n|---|---|---:|\n";
        for (split /\n/, $fi) {
            my ($build, $name, $v) = /^(\S+)\t(\S+)\tinstructions_per_byte=([\d.]+)/ or next;
            printf "| %s | %s | %s |\n", $build,
                $name eq 'ids290' ? '290-byte identities' : '15-byte identities', $v;
            $T{form_ipb}{"$build $name"} = $v;
        }
    }
}


# --- RSS ------------------------------------------------------------------------------------

my $rss = slurp('rss.txt');
if ($rss) {
    my ($b) = $rss =~ /rss_kb_before=(\d+)/;
    my ($a) = $rss =~ /rss_kb_after=(\d+)/;
    my ($n) = $rss =~ /total_requests=(\d+)/;
    my ($st) = $rss =~ /total_requests=\d+ status_errors=(\d+)/;
    my ($secs) = $rss =~ / seconds=(\d+)\n/;
    my @rss = ($rss =~ /rss_kb=(\d+)/g);
    my ($lo, $hi) = minmax(@rss, $b, $a);
    $T{rss} = [$b, $a, $n, $hi - $lo];
    printf "\n## Worker RSS of a fresh (b) under the 10-identity POST\n\n"
         . "%s requests in %s s after a 5 s warm-up (non-2xx: %s)%s: VmRSS %s kB\n"
         . "before, %s kB after (%+d kB); lowest and highest reading %s and %s kB.\n\n```\n%s```\n",
        thousands($n // 0), $secs // '?', $st // '?',
        $rss =~ /stopped_at_time_cap/ ? ' (stopped at the time cap)' : '',
        $b // '?', $a // '?', ($a // 0) - ($b // 0), $lo, $hi, $rss;
}


# --- callgrind --------------------------------------------------------------------------------

my $cg = slurp('callgrind.md');
print "\n$cg" if $cg;


# --- targets ------------------------------------------------------------------------------------

print "\n## Targets\n\n| target | measured | met? |\n|---|---|---|\n";

sub verdict { $_[0] ? 'met' : '**missed**' }

if ($T{tput}) {
    for my $case (@CASES) {
        next unless defined $T{tput}{$case};
        printf "| (b) ≥ 0.95 × (a) throughput, %s | %.2f (by CPU: %.2f) | %s |\n",
            $DESC{$case}, $T{tput}{$case}, $T{cap}{$case},
            verdict($T{tput}{$case} >= 0.95);
    }
    for my $case (qw(get post1 post10 post100x290)) {
        next unless defined $T{cpu}{$case};
        my $lim = $case eq 'post100x290' ? 15 : 2;
        printf "| (b) adds ≤ %d µs CPU/request, %s | %+.1f µs (schedstat %+.1f) | %s |\n",
            $lim, $DESC{$case}, $T{cpu}{$case}, $T{cpu_ns}{$case},
            verdict($T{cpu}{$case} <= $lim);
    }
    if (defined $T{cpu}{post100}) {
        printf "| (no target) CPU added, %s | %+.1f µs | — |\n", $DESC{post100}, $T{cpu}{post100};
    }
    if (defined $T{bc}{post100x290}) {
        printf "| (b) ≥ 3 × (c) throughput, 30 KB body | %.2f × (by CPU: %.2f ×) | %s |\n",
            $T{bc}{post100x290}, $T{cap_bc}{post100x290},
            verdict($T{bc}{post100x290} >= 3);
    }
}
if ($T{form}) {
    for my $k (sort keys %{ $T{form} }) {
        next unless $k =~ /^-O2 /;
        printf "| form decoding ≥ 1 GB/s (%s) | %s MB/s%s | %s |\n",
            $k, thousands($T{form}{$k}),
            defined $T{form_ipb}{$k} ? " ($T{form_ipb}{$k} instructions/byte)" : '',
            verdict($T{form}{$k} >= 1000);
    }
}
if ($T{rss}) {
    my ($b, $a, $n, $span) = @{ $T{rss} };
    printf "| RSS flat within 1 MB over %s requests | %+d kB (span of all readings %d kB) | %s |\n",
        thousands($n // 0), $a - $b, $span, verdict(abs($a - $b) <= 1024 && $span <= 1024);
}
