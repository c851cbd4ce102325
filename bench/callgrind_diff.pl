#!/usr/bin/perl
# Instructions per request from pairs of callgrind runs (bench/run.sh):
# each configuration and case ran twice, with LO and with LO + N requests;
# (hi - lo) / N cancels start-up, configuration loading and shutdown.
#
#   callgrind_diff.pl DIR
#
# DIR holds NAME-CASE-{lo,hi}.incl-{no,yes}.txt (callgrind_annotate output,
# self and inclusive) and CASE.n (N).  NAME is cga (plain proxy_pass) or cgb
# (the module).  Prints Markdown.

use strict;
use warnings;

my ($dir) = @ARGV;
die "usage: $0 DIR\n" unless $dir;

# function name => Ir.  callgrind splits a function into several
# file:function entries (code inlined from other files): self costs are
# summed over them; inclusive ones each cover the whole call, so the
# largest is taken.
sub load {
    my ($file) = @_;
    my $inclusive = $file =~ /incl-yes/;
    my (%fn, $total);

    open my $fh, '<', $file or die "$file: $!";
    while (<$fh>) {
        if (/^\s*([\d,]+)\s+(?:\([\d.]+%\)\s+)?PROGRAM TOTALS/) {
            ($total = $1) =~ tr/,//d;
            next;
        }
        next unless /^\s*([\d,]+)\s+(?:\([\d.]+%\)\s+)?(\S.*?)\s*$/;
        my ($ir, $what) = ($1, $2);
        $ir =~ tr/,//d;
        $what =~ s/\s+\[[^\]]*\]$//;              # [object]
        $what =~ s/^.*://;                         # file:
        next if $what eq '' || $what =~ /^[\d<(]/;
        if ($inclusive) {
            $fn{$what} = $ir if !defined $fn{$what} || $ir > $fn{$what};
        } else {
            $fn{$what} += $ir;
        }
    }
    close $fh;

    return ($total // 0, \%fn);
}

sub per_request {
    my ($name, $case, $incl) = @_;
    my $n = do {
        open my $fh, '<', "$dir/$case.n" or die "$dir/$case.n: $!";
        my $v = <$fh>;
        chomp $v;
        $v;
    };
    my ($tl, $lo) = load("$dir/$name-$case-lo.incl-$incl.txt");
    my ($th, $hi) = load("$dir/$name-$case-hi.incl-$incl.txt");
    my %d;
    for my $f (keys %$hi) {
        $d{$f} = (($hi->{$f} // 0) - ($lo->{$f} // 0)) / $n;
    }
    return (($th - $tl) / $n, \%d, $n);
}

sub fmt {
    my ($v) = @_;
    my $s = sprintf('%.0f', $v);
    1 while $s =~ s/^(-?\d+)(\d{3})/$1,$2/;
    return $s;
}

my @cases = map { m{/([^/]+)\.n$} ? $1 : () } sort glob("$dir/*.n");
my %order = (get => 0, post1 => 1, post10 => 2, post100 => 3, post100x290 => 4);
@cases = sort { ($order{$a} // 9) <=> ($order{$b} // 9) } @cases;

print "### Instructions per request (callgrind)\n\n";
print "Each number is (instructions of a run with LO + N requests minus those of\n"
    . "a run with LO requests) / N, so start-up and shutdown cancel out.\n\n";
print "| case | N | (a) base | (b) module | (b) - (a) | (b) / (a) |\n";
print "|---|---:|---:|---:|---:|---:|\n";

my %res;
for my $case (@cases) {
    my ($ta, $fa, $n) = per_request('cga', $case, 'no');
    my ($tb, $fb) = per_request('cgb', $case, 'no');
    my (undef, $ib) = per_request('cgb', $case, 'yes');
    $res{$case} = [$ta, $fa, $tb, $fb, $ib];
    printf "| %s | %d | %s | %s | %s | %.3f |\n", $case, $n, fmt($ta), fmt($tb),
        fmt($tb - $ta), $ta ? $tb / $ta : 0;
}

print "\n### (b): the module's own functions, instructions per request\n\n";
print "Self = in the function itself (with what the compiler inlined into it);\n"
    . "inclusive = with everything it calls.  Functions under 1 instruction per\n"
    . "request are left out.\n\n";

for my $case (@cases) {
    my ($ta, $fa, $tb, $fb, $ib) = @{ $res{$case} };
    print "#### $case\n\n| function | self | inclusive |\n|---|---:|---:|\n";
    my @f = grep { /^(?:ngx_http_studio_testusers_|stu_)/ && ($fb->{$_} >= 1 || ($ib->{$_} // 0) >= 1) }
            keys %$fb;
    my $sum = 0;
    for my $f (sort { $fb->{$b} <=> $fb->{$a} } @f) {
        printf "| `%s` | %s | %s |\n", $f, fmt($fb->{$f}), fmt($ib->{$f} // 0);
        $sum += $fb->{$f};
    }
    printf "| **all module functions, self** | **%s** | |\n\n", fmt($sum);

    print "Largest per-function differences, (b) - (a), self instructions per request:\n\n";
    print "| function | (a) | (b) | (b) - (a) |\n|---|---:|---:|---:|\n";
    my %all = (%$fa, %$fb);
    my @d = sort { abs(($fb->{$b} // 0) - ($fa->{$b} // 0)) <=> abs(($fb->{$a} // 0) - ($fa->{$a} // 0)) }
            keys %all;
    for my $f (@d[0 .. ($#d < 11 ? $#d : 11)]) {
        my $d = ($fb->{$f} // 0) - ($fa->{$f} // 0);
        next if abs($d) < 1;
        printf "| `%s` | %s | %s | %s |\n", $f, fmt($fa->{$f} // 0), fmt($fb->{$f} // 0), fmt($d);
    }
    print "\n";
}
