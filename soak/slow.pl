#!/usr/bin/perl

# The soak's hostile side: a few connections that send slowly, stall until
# client_body_timeout, or go away in the middle of a body (FIN or RST) or
# right after sending a whole request.  One request per connection; every
# request names its kind in X-Soak-Kind like the wrk mix does.
#
#   slow.pl --port P --seconds S --procs N --out FILE --flows FILE
#           [--body-timeout SECONDS]
#
# FILE gets "kind status count" lines (status 0: no answer, as expected
# for aborts; cut_off: abandoned because the load was over); --flows gets
# the flow SIDs of the POSTs that were aborted after being sent whole, so
# run.sh can check that their update locks were released.

use strict;
use warnings;

use Getopt::Long;
use IO::Socket::INET;
use Socket qw(SOL_SOCKET SO_LINGER);
use POSIX ();
use Time::HiRes qw(sleep time);

my %o = (procs => 6, seconds => 10, 'body-timeout' => 3);
GetOptions(\%o, 'port=i', 'seconds=f', 'procs=i', 'out=s', 'flows=s',
           'body-timeout=f')
    or die "usage: see the comment at the top\n";

$SIG{PIPE} = 'IGNORE';

my $FORM = 'application/x-www-form-urlencoded';
my $deadline = time + $o{seconds};

sub esc {
    my ($v) = @_;
    $v =~ s/([^A-Za-z0-9\-._~])/sprintf('%%%02X', ord $1)/ge;
    return $v;
}

sub ids {
    my ($n) = @_;
    my $base = int rand 1_000_000;
    return map { sprintf('+1555%07d', ($base + $_) % 10_000_000) } 1 .. $n;
}

sub form { join '&', map { 'TestUsers=' . esc($_) } @_ }

sub json { '{"TestUsers": [' . join(', ', map { "\"$_\"" } @_) . ']}' }

sub chunked {
    my ($body) = @_;
    my $out = '';
    while (length $body) {
        my $piece = substr($body, 0, 1 + int rand 300, '');
        $out .= sprintf("%x\r\n%s\r\n", length $piece, $piece);
    }
    return $out . "0\r\n\r\n";
}

my $seq = 0;

sub flow {
    $seq++;
    return sprintf('FW%08x%08x%016x', $$, 0x5107, $seq);
}

sub request {
    my ($kind, $sid, $ctype, $body, $chunked) = @_;
    my $h = "POST /v2/Flows/$sid/TestUsers HTTP/1.1\r\nHost: localhost\r\n"
          . "X-Soak-Kind: $kind\r\nConnection: close\r\n"
          . "Content-Type: $ctype\r\n";
    if ($chunked) {
        return ($h . "Transfer-Encoding: chunked\r\n\r\n", chunked($body));
    }
    return ($h . 'Content-Length: ' . length($body) . "\r\n\r\n", $body);
}

sub connect_gw {
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$o{port}",
                                  Timeout => 5);
    binmode $s if $s;
    return $s;
}

# the status of the answer, 0 when the connection closed without one
sub status_of {
    my ($s, $timeout) = @_;
    my $buf = '';
    my $end = time + $timeout;
    my $rin = '';
    vec($rin, fileno $s, 1) = 1;
    while (time < $end) {
        my $n = select(my $rout = $rin, undef, undef, $end - time);
        last if $n <= 0;
        my $r = sysread($s, $buf, 65536, length $buf);
        last unless $r;
        return $1 if $buf =~ m{^HTTP/1\.\d (\d{3})};
    }
    return $buf =~ m{^HTTP/1\.\d (\d{3})} ? $1 : 0;
}

# a request head is always sent whole: nginx ends a request cut in its head
# before any location (and so the module) sees it, with no audit record
sub trickle {
    my ($s, $data, $max_piece, $pause, $head) = @_;
    while (length $data) {
        return 0 if time > $deadline && !$head;   # the load is over: give up
        my $piece = substr($data, 0, 1 + int rand $max_piece, '');
        return 0 unless defined syswrite($s, $piece);
        sleep $pause * (0.5 + rand);
    }
    return 1;
}

my @scenarios = (
    # a slow but steady sender: every byte arrives, the answer is 200
    [ slow_form => 4, sub {
        my ($s, $sid) = @_;
        my ($h, $b) = request('slow_form', $sid, $FORM, form(ids(1 + int rand 60)));
        trickle($s, $h, 40, 0.02, 1);
        trickle($s, $b, 200, 0.03) or return;
        return status_of($s, 10);
    } ],
    [ slow_chunked => 3, sub {
        my ($s, $sid) = @_;
        my ($h, $b) = request('slow_chunked', $sid, $FORM, form(ids(1 + int rand 80)), 1);
        syswrite($s, $h);
        trickle($s, $b, 150, 0.03) or return;
        return status_of($s, 10);
    } ],
    [ slow_json => 2, sub {
        my ($s, $sid) = @_;
        my ($h, $b) = request('slow_json', $sid, 'application/json',
                              json(ids(1 + int rand 60)));
        syswrite($s, $h);
        trickle($s, $b, 100, 0.03) or return;
        return status_of($s, 10);
    } ],
    # stops sending halfway: nginx's client_body_timeout ends it (408)
    [ stall_body => 1, sub {
        my ($s, $sid) = @_;
        my ($h, $b) = request('stall_body', $sid, $FORM, form(ids(80)));
        syswrite($s, $h . substr($b, 0, length($b) / 2));
        return status_of($s, $o{'body-timeout'} + 5);
    } ],
    # goes away in the middle of the body, politely or with a reset
    [ abort_body => 2, sub {
        my ($s, $sid) = @_;
        my ($h, $b) = request('abort_body', $sid, $FORM, form(ids(80)),
                              rand() < 0.5);
        syswrite($s, $h);
        trickle($s, substr($b, 0, int rand length $b), 400, 0.01);
        sleep rand 0.2;
        return 0;
    } ],
    [ abort_rst => 2, sub {
        my ($s, $sid) = @_;
        my ($h, $b) = request('abort_rst', $sid, $FORM, form(ids(80)),
                              rand() < 0.5);
        syswrite($s, $h);
        trickle($s, substr($b, 0, int rand length $b), 400, 0.01);
        setsockopt($s, SOL_SOCKET, SO_LINGER, pack('ii', 1, 0));
        return 0;
    } ],
    # three pipelined requests, the middle one refused in its body: the
    # connection must stay in step, answers in order
    [ pipeline => 2, sub {
        my ($s, $sid) = @_;
        my $get = "GET /v2/Flows/$sid/TestUsers HTTP/1.1\r\nHost: localhost\r\n"
                . "X-Soak-Kind: pipeline_get\r\n\r\n";
        my ($h1, $b1) = request('pipeline_reject', $sid, $FORM,
                                form(ids(40)) . '&TestUsers=%zz&' . form(ids(40)),
                                rand() < 0.5);
        my ($h2, $b2) = request('pipeline_post', $sid, $FORM, form(ids(5)));
        $h1 =~ s/Connection: close\r\n//;
        syswrite($s, $get . $h1 . $b1 . $h2 . $b2);
        my @st = responses($s, 3, 10);
        return join('-', @st) || 0;
    } ],
    # Expect: 100-continue, as Java and .NET clients send it: the body
    # follows "100 Continue"
    [ expect_continue => 1, sub {
        my ($s, $sid) = @_;
        my ($h, $b) = request('expect_continue', $sid, $FORM, form(ids(1 + int rand 80)));
        $h =~ s/\r\n\r\n\z/\r\nExpect: 100-continue\r\n\r\n/;
        syswrite($s, $h);
        my $first = status_of($s, 5);
        return "no-100-$first" unless $first == 100;
        syswrite($s, $b);
        my @st = responses($s, 1, 10);
        return $st[0] // 0;
    } ],
    # sends a whole POST and goes away before the answer: its update lock
    # must still be released
    [ abort_after_request => 2, sub {
        my ($s, $sid, $flows) = @_;
        my ($h, $b) = request('abort_after_request', $sid, $FORM,
                              form(ids(1 + int rand 60)), rand() < 0.5);
        syswrite($s, $h . $b);
        push @$flows, $sid;
        sleep rand 0.003;
        setsockopt($s, SOL_SOCKET, SO_LINGER, pack('ii', 1, 0)) if rand() < 0.5;
        return 0;
    } ],
);

# reads whole responses (Content-Length or chunked) until n or a timeout;
# returns their statuses
sub responses {
    my ($s, $n, $timeout) = @_;
    my ($buf, @st) = ('');
    my $end = time + $timeout;
    my $rin = '';
    vec($rin, fileno $s, 1) = 1;
    while (@st < $n) {
        if ($buf =~ /\A(HTTP\/1\.\d (\d{3})[^\r]*\r\n(.*?)\r\n\r\n)/s) {
            my ($head, $status, $fields) = ($1, $2, $3);
            my $rest = substr($buf, length $head);
            if ($fields =~ /^Content-Length:\s*(\d+)/mi) {
                if (length $rest >= $1) {
                    $buf = substr($rest, $1);
                    push @st, $status;
                    next;
                }
            } elsif ($fields =~ /^Transfer-Encoding:\s*chunked/mi) {
                if ($rest =~ /\A((?:[0-9a-fA-F]+\r\n)(?:.*?))\r\n0\r\n\r\n/s
                    || $rest =~ /\A0\r\n\r\n/)
                {
                    $rest =~ s/\A.*?\r\n0\r\n\r\n//s or $rest =~ s/\A0\r\n\r\n//;
                    $buf = $rest;
                    push @st, $status;
                    next;
                }
            } else {
                push @st, $status;
                last;
            }
        }
        my $wait = $end - time;
        last if $wait <= 0;
        my $k = select(my $rout = $rin, undef, undef, $wait);
        last if $k <= 0;
        my $r = sysread($s, $buf, 65536, length $buf);
        last unless $r;
    }
    return @st;
}

my $total = 0;
$total += $_->[1] for @scenarios;

my @kids;
for my $k (1 .. $o{procs}) {
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        srand($$ ^ time);
        my (%count, @flows);
        while (time < $deadline) {
            my $r = rand $total;
            my $sc;
            for (@scenarios) {
                $sc = $_;
                last if ($r -= $_->[1]) < 0;
            }
            # a stall outlasting the run would keep the gateway busy after it
            next if $sc->[0] eq 'stall_body'
                    && time + $o{'body-timeout'} + 1 > $deadline;
            my $s = connect_gw() or do { $count{"connect_failed 0"}++; sleep 0.1; next };
            my $status = $sc->[2]->($s, flow(), \@flows);
            close $s;
            # undef: abandoned when the load ended
            $count{"$sc->[0] " . ($status // 'cut_off')}++;
        }
        open my $out, '>', "$o{out}.$k" or die "$o{out}.$k: $!";
        print $out "$_ $count{$_}\n" for sort keys %count;
        close $out;
        open my $fl, '>', "$o{flows}.$k" or die "$o{flows}.$k: $!";
        print $fl "$_\n" for @flows;
        close $fl;
        POSIX::_exit(0);
    }
    push @kids, $pid;
}

# stopped early (run.sh interrupted): take the children along
$SIG{TERM} = $SIG{INT} = sub { kill 'TERM', @kids; exit 1 };

my $failed = 0;
for (@kids) {
    waitpid $_, 0;
    $failed++ if $?;
}

# one file for run.sh
my %count;
my @flows;
for my $k (1 .. $o{procs}) {
    for my $f ([ "$o{out}.$k", \%count ], [ "$o{flows}.$k", undef ]) {
        open my $in, '<', $f->[0] or next;
        while (<$in>) {
            chomp;
            if ($f->[1]) {
                my ($key, $n) = /^(.*) (\d+)$/ or next;
                $count{$key} += $n;
            } else {
                push @flows, $_;
            }
        }
        close $in;
        unlink $f->[0];
    }
}
open my $out, '>', $o{out} or die "$o{out}: $!";
print $out "$_ $count{$_}\n" for sort keys %count;
close $out;
open my $fl, '>', $o{flows} or die "$o{flows}: $!";
print $fl "$_\n" for @flows;
close $fl;

exit($failed ? 1 : 0);
