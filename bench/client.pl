#!/usr/bin/perl
# A fixed number of requests, one after another on one keep-alive
# connection (reconnecting if the server closes it), built like
# bench/wrk.lua's; for the callgrind runs of bench/run.sh, where wrk's
# duration-bound load would not give a fixed count.
#
#   client.pl PORT GET|POST IDS IDLEN COUNT
#
# Prints "statuses: 200=N ..." and exits 1 unless every answer was 200.

use strict;
use warnings;

use IO::Socket::INET;

my ($port, $method, $nids, $idlen, $count) = @ARGV;
die "usage: $0 PORT METHOD IDS IDLEN COUNT\n" unless defined $count;

my $flows = 1024;

sub identity {
    my ($k) = @_;
    return sprintf('%%2B1555555%04d', $k) if $idlen == 15;
    my $s = sprintf('u-%04d-', $k);
    return $s . ('x' x ($idlen - length $s));
}

my $body = $method eq 'POST'
    ? join('&', map { 'TestUsers=' . identity($_) } 1 .. $nids) : undef;

sub request {
    my ($n) = @_;
    my $path = sprintf('/v2/Flows/FW%032x/TestUsers', $n % $flows + 1);
    my $r = "$method $path HTTP/1.1\r\nHost: gateway.test\r\n"
          . "Authorization: Basic Y2xpZW50OnRlYW0tc2VjcmV0\r\n";
    if (defined $body) {
        $r .= "Content-Type: application/x-www-form-urlencoded\r\n"
            . 'Content-Length: ' . length($body) . "\r\n";
    }
    return $r . "\r\n" . ($body // '');
}

my ($sock, $buf);

sub connect_server {
    $sock = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port",
                                  Timeout => 60)
        or die "connect 127.0.0.1:$port: $@\n";
    binmode $sock;
    $buf = '';
}

sub fill {
    my $n = sysread($sock, $buf, 65536, length $buf);
    return $n;
}

my %status;
connect_server();

for my $i (0 .. $count - 1) {
    my $req = request($i);
    my $off = 0;
    while ($off < length $req) {
        my $w = syswrite($sock, $req, length($req) - $off, $off);
        die "write: $!\n" unless defined $w;
        $off += $w;
    }

    while ($buf !~ /\r\n\r\n/) {
        fill() or die "connection closed before a response (request $i)\n";
    }

    $buf =~ s/\A(.*?)\r\n\r\n//s;
    my $head = $1;
    my ($st) = $head =~ m{^HTTP/1\.\d (\d{3})} or die "bad response: $head\n";
    my ($len) = $head =~ /^Content-Length:\s*(\d+)/mi;
    die "no Content-Length in response\n" unless defined $len;

    while (length $buf < $len) {
        fill() or die "connection closed in a response body\n";
    }
    substr($buf, 0, $len) = '';

    $status{$st}++;

    if ($head =~ /^Connection:\s*close/mi) {
        close $sock;
        connect_server();
    }
}

print 'statuses: ', join(' ', map { "$_=$status{$_}" } sort keys %status),
      "\n";

exit(((keys %status) == 1 && $status{200}) ? 0 : 1);
