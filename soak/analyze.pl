#!/usr/bin/perl

# Reads what soak/run.sh left in its scratch directory (gateway access and
# audit logs across rotations, error logs, the stand-in's access log, wrk's
# and the slow clients' tallies, fd/RSS/temp-file measurements), prints a
# summary and one line per check, and exits 1 when a check failed.

use strict;
use warnings;

use Getopt::Long;
# Cpanel::JSON::XS when there (run.sh installs it): JSON::PP takes a minute
# for the records of a 60 s soak
my $JSON_CLASS = eval { require Cpanel::JSON::XS; 'Cpanel::JSON::XS' }
                 // do { require JSON::PP; 'JSON::PP' };

my %o = (seconds => 0, connections => 0);
GetOptions(\%o, 'dir=s', 'seconds=i', 'connections=i') or die "usage\n";
my $D = $o{dir} or die "--dir is required\n";

my $MAX_WORKER_RSS_MB = $ENV{SOAK_MAX_WORKER_RSS_MB} // 64;
my $MAX_MASTER_GROWTH_MB = $ENV{SOAK_MAX_MASTER_GROWTH_MB} // 16;

# --- what each kind of request must get ---------------------------------------------
#
# kind => [ allowed statuses, reason the access log must show (undef: none) ]

my %expect = (
    warmup                    => [ [200], undef ],
    get                       => [ [200], undef ],
    get_hot                   => [ [200], undef ],
    get_chunked_empty         => [ [200], undef ],
    post_form                 => [ [200], undef ],
    post_form_big             => [ [200], undef ],
    post_form_long            => [ [200], undef ],
    post_form_chunked         => [ [200], undef ],
    post_form_charset         => [ [200], undef ],
    post_json                 => [ [200], undef ],
    post_json_chunked         => [ [200], undef ],
    post_hot                  => [ [200, 409], undef ],   # 409: update_in_progress
    lock_sweep                => [ [200], undef ],
    bad_path                  => [ [404], 'path_not_found' ],
    query                     => [ [400], 'query_string' ],
    bad_method                => [ [405], 'method_not_allowed' ],
    get_with_body             => [ [400], 'get_with_body' ],
    get_chunked_body          => [ [400], 'get_with_body' ],
    content_type_unsupported  => [ [415], 'content_type_unsupported' ],
    content_type_duplicate    => [ [400], 'content_type_duplicate' ],
    missing_identities        => [ [400], 'missing_identities' ],
    malformed_escape          => [ [400], 'malformed_escape' ],
    malformed_form            => [ [400], 'malformed_form' ],
    unknown_parameter         => [ [400], 'unknown_parameter' ],
    identity_empty            => [ [400], 'identity_empty' ],
    identity_too_long         => [ [400], 'identity_too_long' ],
    identity_invalid_utf8     => [ [400], 'identity_invalid_utf8' ],
    identity_control_char     => [ [400], 'identity_control_char' ],
    duplicate_identity        => [ [400], 'duplicate_identity' ],
    malformed_json            => [ [400], 'malformed_json' ],
    json_invalid_identity     => [ [400], 'identity_control_char' ],
    json_unknown_member       => [ [400], 'unknown_parameter' ],
    json_empty                => [ [400], 'missing_identities' ],
    # the slow side (soak/slow.pl)
    slow_form                 => [ [200], undef ],
    slow_chunked              => [ [200], undef ],
    slow_json                 => [ [200], undef ],
    expect_continue           => [ [200], undef ],
    pipeline_get              => [ [200], undef ],
    pipeline_reject           => [ [400], 'malformed_escape' ],
    pipeline_post             => [ [200], undef ],
    stall_body                => [ [408], '*' ],   # client_body_timeout
    abort_body                => [ [400, 499], '*' ],
    abort_rst                 => [ [400, 499], '*' ],
    abort_after_request       => [ [200, 400, 499], '*' ],
);

my @fail;
my @report;

sub check {
    my ($ok, $name, $detail) = @_;    # $ok in scalar context, see the callers
    push @report, sprintf('  %-4s %s%s', $ok ? 'ok' : 'FAIL', $name,
                          defined $detail && length $detail ? ": $detail" : '');
    push @fail, $name unless $ok;
}

sub slurp {
    my ($f) = @_;
    open my $fh, '<', $f or return '';
    local $/;
    return scalar <$fh>;
}

sub kv_file {
    my %h;
    for (split /\n/, slurp($_[0])) {
        my ($k, $v) = /^(\S+)\s+(.*)$/ or next;
        $h{$k} = $v;
    }
    return %h;
}

my %m = kv_file("$D/measure");

# log files in the order they were written: NAME.1, NAME.2, ..., NAME
sub rotated {
    my ($base) = @_;
    my @f = sort { ($a =~ /\.(\d+)$/)[0] <=> ($b =~ /\.(\d+)$/)[0] }
            grep { /\.\d+$/ } glob("$base.*");
    push @f, $base if -e $base;
    return @f;
}

# --- the gateway's access log ----------------------------------------------------------

my @access_files = rotated("$D/gw/logs/access.log");
my (%by_status, %by_reason, %by_kind, %wrong, %access, %fivexx);
my ($lines, $dup_ids, $cut_off) = (0, 0, 0);
my $load_end = $m{load_end} // 9e18;

for my $f (@access_files) {
    open my $fh, '<', $f or next;
    while (my $l = <$fh>) {
        chomp $l;
        $lines++;
        my ($msec, $pid, $id, $status, $method, $result, $reason, $kind,
            $ustatus) = split /\|/, $l;
        $status //= 0;
        $kind //= '-';
        $reason //= '-';
        $by_status{$status}++;
        $by_reason{$reason}++ if $reason ne '-';
        $by_kind{$kind}{$status}++;
        $dup_ids++ if $access{$id};
        $access{$id} = { status => $status, result => $result, reason => $reason,
                         kind => $kind, msec => $msec };
        $fivexx{"$kind $status " . ($reason // '-')}++ if $status >= 500;

        my $e = $expect{$kind};
        my $ok = $e && grep { $_ == $status } @{ $e->[0] };
        if ($ok && defined $e->[1] && $e->[1] ne '*') {
            $ok = $reason eq $e->[1];
        }
        if ($ok && !defined $e->[1] && $status == 409) {
            $ok = $reason eq 'update_in_progress';
        }
        if (!$ok && $kind ne '-' && $msec >= $load_end - 1
            && ($status == 499 || ($status == 400 && $result eq '-')))
        {
            # wrk stopped in the middle of this request
            $cut_off++;
            $ok = 1;
        }
        $wrong{"kind=$kind status=$status reason=$reason"}++ unless $ok;
    }
}

# --- the audit trail ---------------------------------------------------------------------

my @audit_files = rotated("$D/gw/logs/audit.log");
my $json = $JSON_CLASS->new;
my ($records, $invalid, $intents, $audit_dup) = (0, 0, 0, 0);
my (%audit, %disagree, @invalid_samples);
my $audit_forwarded_upstream = 0;

for my $f (@audit_files) {
    open my $fh, '<', $f or next;
    while (my $l = <$fh>) {
        chomp $l;
        my $r = eval { $json->decode($l) };
        if (!$r || ref $r ne 'HASH' || !defined $r->{request_id}) {
            $invalid++;
            push @invalid_samples, substr($l, 0, 160) if @invalid_samples < 3;
            next;
        }
        if (($r->{event} // '') eq 'intent') {
            $intents++;
            next;
        }
        $records++;
        $audit_dup++ if $audit{ $r->{request_id} };
        $audit{ $r->{request_id} } = $r;
        $audit_forwarded_upstream++ if defined $r->{upstream_status};
    }
}

my @lost = grep { !$audit{$_} } keys %access;
my @extra = grep { !$access{$_} } keys %audit;

for my $id (keys %access) {
    my $r = $audit{$id} or next;
    my $a = $access{$id};
    my $why;
    if (($r->{status} // -1) != $a->{status}) {
        $why = "status audit=" . ($r->{status} // 'null') . " access=$a->{status}";
    } elsif ($a->{reason} ne '-' && ($r->{reason} // '') ne $a->{reason}) {
        $why = "reason audit=" . ($r->{reason} // 'null') . " access=$a->{reason}";
    } elsif ($a->{result} ne '-' && ($r->{result} // '') ne $a->{result}) {
        $why = "result audit=" . ($r->{result} // 'null') . " access=$a->{result}";
    }
    $disagree{"kind=$a->{kind} $why"}++ if $why;
}

# --- error logs -----------------------------------------------------------------------------

my (@alerts, %errors, $audit_write_errors);
for my $f ("$D/gw/logs/error.log", "$D/up/logs/error.log") {
    open my $fh, '<', $f or next;
    while (my $l = <$fh>) {
        chomp $l;
        if ($l =~ /\[(?:alert|crit|emerg)\]|open socket/) {
            push @alerts, $l;
        }
        if ($l =~ /\[error\]/) {
            $audit_write_errors++ if $l =~ /audit record .* not written/;
            (my $k = $l) =~ s/^\S+ \S+ \[error\] \d+#\d+: (?:\*\d+ )?//;
            $k =~ s/, client:.*//;
            $k =~ s/\d+/N/g;
            $errors{ ($f =~ m{/up/} ? 'stand-in: ' : '') . $k }++;
        }
    }
}

# --- the stand-in: what reached "Twilio" ---------------------------------------------------

my (%up_status, $up_total);
if (open my $fh, '<', "$D/up/logs/access.log") {
    while (<$fh>) {
        my (undef, $s) = split /\|/;
        $up_status{$s}++;
        $up_total++;
    }
}

# --- clients ---------------------------------------------------------------------------------

my %wrk = kv_file("$D/wrk.txt");
my %wrk_status;
for (split /\n/, slurp("$D/wrk.txt")) {
    $wrk_status{$1} = $2 if /^status (\d+) (\d+)$/;
}
my %slow;
for (split /\n/, slurp("$D/slow.txt")) {
    my ($kind, $status, $n) = split / /;
    $slow{$kind}{$status} += $n;
}
my $slow_bad = 0;
for my $k (qw(slow_form slow_chunked slow_json expect_continue)) {
    for my $s (keys %{ $slow{$k} // {} }) {
        $slow_bad += $slow{$k}{$s} if $s ne '200' && $s ne 'cut_off';
    }
}
my $pipeline_bad = 0;
for my $s (keys %{ $slow{pipeline} // {} }) {
    # in step: three answers, the refused one in the middle (a 5xx is
    # the 5xx check's business).  An old worker shutting down after a
    # reload closes keep-alive connections after the answer in progress,
    # so a prefix of the three is in step too; out of order never is.
    $pipeline_bad += $slow{pipeline}{$s} if $s !~ /^\d{3}(?:-400(?:-\d{3})?)?$/;
}

# --- RSS ---------------------------------------------------------------------------------------

my ($master_max, $master_anon_max, $worker_max, $worker_anon_max, $workers_max_n)
    = (0, 0, 0, 0, 0);
for (split /\n/, slurp("$D/rss.txt")) {
    my (undef, $mr, $ma, $nw, $wmax, $wamax) = split / /;
    next unless defined $wamax;
    $master_max = $mr if $mr > $master_max;
    $master_anon_max = $ma if $ma > $master_anon_max;
    $worker_max = $wmax if $wmax > $worker_max;
    $worker_anon_max = $wamax if $wamax > $worker_anon_max;
    $workers_max_n = $nw if $nw > $workers_max_n;
}

# --- summary -------------------------------------------------------------------------------------

sub mb { sprintf '%.1f MB', ($_[0] // 0) / 1024 }
sub counts {
    my ($h) = @_;
    return join ', ', map { "$_: $h->{$_}" } sort { $a cmp $b } keys %$h;
}

my $dur = ($m{load_end} // 0) - ($m{load_start} // 0);
my $rps = $dur > 0 ? ($wrk{requests} // 0) / $dur : 0;

print "\n=== soak summary ($o{seconds} s, $o{connections} connections) ===\n";
printf "wrk: %d requests, %.0f req/s, latency p50 %.1f ms, p99 %.1f ms, max %.1f ms\n",
    $wrk{requests} // 0, $rps, ($wrk{latency_p50_us} // 0) / 1000,
    ($wrk{latency_p99_us} // 0) / 1000, ($wrk{latency_max_us} // 0) / 1000;
printf "wrk socket errors: connect %d, read %d, write %d, timeout %d\n",
    map { $wrk{"errors_$_"} // 0 } qw(connect read write timeout);
print "wrk statuses: ", counts(\%wrk_status), "\n";
print "slow/aborting clients (client side, 0 = no answer):\n";
for my $k (sort keys %slow) {
    print "  $k: ", counts($slow{$k}), "\n";
}
print "gateway access log: $lines requests in ", scalar(@access_files), " files\n";
print "  by status: ", counts(\%by_status), "\n";
print "  rejections by reason:\n";
for my $r (sort { $by_reason{$b} <=> $by_reason{$a} } keys %by_reason) {
    printf "    %-26s %d\n", $r, $by_reason{$r};
}
print "  by kind:\n";
for my $k (sort keys %by_kind) {
    printf "    %-26s %s\n", $k, counts($by_kind{$k});
}
print "  cut off by the end of the load (499/400 in the last second): $cut_off\n";
print "audit: $records request records", ($intents ? " and $intents intent records" : ''),
      " in ", scalar(@audit_files), " files; $audit_forwarded_upstream with an upstream status\n";
print "stand-in received: ", ($up_total // 0), " requests (", counts(\%up_status), ")\n";
print "reloads: ", $m{reloads} // 0, ", reopens (with rename): ", $m{reopens} // 0,
      ", signal failures: ", $m{signal_failures} // 0, "\n";
print "RSS master (VmRSS / RssAnon): start ", mb($m{master_VmRSS_start_kb}), ' / ',
      mb($m{master_RssAnon_start_kb}), ", end ", mb($m{master_VmRSS_end_kb}), ' / ',
      mb($m{master_RssAnon_end_kb}), ", max ", mb($master_max), ' / ',
      mb($master_anon_max), "\n";
print "RSS worker (VmRSS / RssAnon): start ", mb($m{worker_VmRSS_start_kb}), ' / ',
      mb($m{worker_RssAnon_start_kb}), ", end ", mb($m{worker_VmRSS_end_kb}), ' / ',
      mb($m{worker_RssAnon_end_kb}), ", max ", mb($worker_max), ' / ',
      mb($worker_anon_max), " (up to $workers_max_n worker processes at once;",
      " VmRSS includes the shared zone's pages)\n";
print "fds: workers baseline $m{worker_fd_baseline}, after the load $m{worker_fd_end};",
      " master $m{master_fd_baseline} -> $m{master_fd_end}\n";
print "old workers drained in $m{drain_seconds} s; temp files left: $m{temp_files_left};",
      " lock sweep: $m{lock_sweep}\n";
if (%errors) {
    print "[error] lines in the error logs:\n";
    my @e = sort { $errors{$b} <=> $errors{$a} } keys %errors;
    printf "  %6d  %s\n", $errors{$_}, substr($_, 0, 150) for @e[0 .. ($#e > 7 ? 7 : $#e)];
}

# --- checks --------------------------------------------------------------------------------------

my $sum = sub { my $n = 0; $n += $_ for values %{ $_[0] }; $n };

check($lines > 0 && ($wrk{requests} // 0) > 0, 'load was applied',
      "$lines requests logged");
check(!%fivexx, 'no 5xx from the gateway',
      %fivexx ? join('; ', map { "$_ x$fivexx{$_}" } sort keys %fivexx) : '');
check(!%wrong, 'every request got the answer its kind expects',
      %wrong ? join('; ', map { "$_ x$wrong{$_}" }
                          (sort { $wrong{$b} <=> $wrong{$a} } keys %wrong)[0 .. 9])
             =~ s/(; )+$//r
             : '');
check(!$invalid, 'every audit line is valid JSON',
      $invalid ? "$invalid invalid, e.g. " . join(' | ', @invalid_samples) : '');
check(!@lost && !@extra && !$audit_dup && !$dup_ids && $records == $lines,
      'no audit record lost: one per access-log line, across rotations',
      "$records records, $lines access lines"
      . (@lost ? ', ' . scalar(@lost) . ' without a record (e.g. '
                 . join(', ', map { "$access{$_}{kind}/$access{$_}{status}" } @lost[0 .. ($#lost > 4 ? 4 : $#lost)])
                 . ')' : '')
      . (@extra ? ', ' . scalar(@extra) . ' records without an access line' : '')
      . ($audit_dup ? ", $audit_dup duplicate records" : ''));
check(!%disagree, 'audit records agree with the access log (status, reason, result)',
      %disagree ? join('; ', map { "$_ x$disagree{$_}" }
                             (sort { $disagree{$b} <=> $disagree{$a} } keys %disagree)[0 .. 5])
                  =~ s/(; )+$//r
                : '');
check(!$audit_write_errors, 'no failed audit writes', $audit_write_errors // '');
check(!@alerts, 'no [alert], [crit], [emerg] or "open socket" in the error logs',
      @alerts ? scalar(@alerts) . ', first: ' . substr($alerts[0], 0, 200) : '');
check(!$up_status{401} && !$up_status{418} && ($up_total // 0) > 0,
      'the stand-in saw only well-formed requests with the service credential',
      ($up_status{401} ? "$up_status{401} without the credential; " : '')
      . ($up_status{418} ? "$up_status{418} that should have been refused" : ''));
check(!$slow_bad, 'slow senders and Expect: 100-continue were served (200)', $slow_bad ? "$slow_bad not 200" : '');
check(!$pipeline_bad && ($slow{pipeline} || $o{seconds} < 5),
      'pipelined requests answered in step (3 answers, the refused one second)',
      $pipeline_bad ? "$pipeline_bad connections out of step: "
                      . counts($slow{pipeline}) : '');
check(($m{old_workers_left} // 1) == 0, 'old workers exited after the load',
      "drained in $m{drain_seconds} s");
check(defined $m{worker_fd_end} && $m{worker_fd_end} <= $m{worker_fd_baseline},
      'no leaked fds in workers',
      "baseline $m{worker_fd_baseline}, after $m{worker_fd_end}");
check(defined $m{master_fd_end} && $m{master_fd_end} <= $m{master_fd_baseline},
      'no leaked fds in the master', "$m{master_fd_baseline} -> $m{master_fd_end}");
check(($m{temp_files_left} // 1) == 0, 'no request body temp files left',
      $m{temp_files_left});
check(scalar(($m{lock_sweep} // '') =~ /^200:\d+$/),
      'every flow takes a POST after the load (no update lock left behind)',
      "statuses: $m{lock_sweep}");
check(($m{master_RssAnon_end_kb} // 0) - ($m{master_RssAnon_start_kb} // 0)
          <= $MAX_MASTER_GROWTH_MB * 1024,
      "master RSS bounded (private memory grows <= $MAX_MASTER_GROWTH_MB MB)",
      mb($m{master_RssAnon_start_kb}) . ' -> ' . mb($m{master_RssAnon_end_kb}));
check($worker_anon_max <= $MAX_WORKER_RSS_MB * 1024,
      "worker RSS bounded (private memory <= $MAX_WORKER_RSS_MB MB)",
      'max ' . mb($worker_anon_max));
check(($m{signal_failures} // 1) == 0
          && ($m{reloads} // -1) == ($m{reloads_planned} // -2)
          && ($m{reopens} // -1) == ($m{reopens_planned} // -2),
      'every planned reload and reopen was signalled',
      "reloads $m{reloads} of $m{reloads_planned}, reopens $m{reopens} of $m{reopens_planned}");
check(($m{gateway_quit} // '') eq 'ok', 'the gateway stopped gracefully at the end');

print "\nchecks:\n", join("\n", @report), "\n\n";
if (@fail) {
    print "VERDICT: FAIL (", scalar(@fail), " of ", scalar(@report), " checks): ",
          join('; ', @fail), "\n";
    exit 1;
}
print "VERDICT: PASS (", scalar(@report), " checks)\n";
exit 0;
