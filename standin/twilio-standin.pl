#!/usr/bin/perl
#
# A local stand-in for Twilio Studio's Test Users API, for demos and tests.
#
#   twilio-standin.pl --listen 127.0.0.1:8081 --credentials FILE
#                     [--record FILE] [--state DIR]
#
# GET and POST /v2/Flows/{Sid}/TestUsers keep each flow's list in --state;
# HTTP Basic auth is checked against the SID:SECRET line in --credentials;
# errors come in Twilio's JSON shape.  With --record, every request that
# arrives is appended to FILE as one JSON line: method, target, version,
# headers in arrival order and case, and the body bytes exactly, so tests
# can see what the gateway forwarded.  A request header X-Standin-Delay: N
# delays the answer by N seconds (tests of slow upstreams).  Perl core
# modules only.

use strict;
use warnings;

use Fcntl qw(:flock);
use File::Temp qw(tempdir);
use Getopt::Long;
use IO::Socket::INET;
use JSON::PP;
use MIME::Base64 qw(encode_base64);
use POSIX qw(WNOHANG);

my ($listen, $credentials, $record, $state) = ('127.0.0.1:8081');

GetOptions(
    'listen=s'      => \$listen,
    'credentials=s' => \$credentials,
    'record=s'      => \$record,
    'state=s'       => \$state,
) or die "usage: $0 --listen ADDR:PORT --credentials FILE "
    . "[--record FILE] [--state DIR]\n";

die "$0: --credentials FILE is required\n" unless defined $credentials;

open my $cf, '<', $credentials or die "$0: $credentials: $!\n";
my $cred = <$cf> // '';
close $cf;
$cred =~ s/\r?\n\z//;
die "$0: $credentials: expected one line SID:SECRET\n"
    unless $cred =~ /^(?:AC|SK)[0-9a-fA-F]{32}:\S+$/;
my $expected_auth = 'Basic ' . encode_base64($cred, '');

$state //= tempdir('twilio-standin-XXXXXX', TMPDIR => 1, CLEANUP => 1);
-d $state or mkdir $state or die "$0: mkdir $state: $!\n";

my $json = JSON::PP->new->utf8->canonical;

my $server = IO::Socket::INET->new(
    LocalAddr => $listen,
    Listen    => 128,
    ReuseAddr => 1,
) or die "$0: listen $listen: $@\n";

$| = 1;
print "twilio-standin: listening on $listen\n";

$SIG{CHLD} = sub { 1 while waitpid(-1, WNOHANG) > 0 };
$SIG{TERM} = $SIG{INT} = sub { exit 0 };

while (1) {
    my $client = $server->accept or next;
    my $pid = fork;

    if (!defined $pid) {
        close $client;
        next;
    }

    if ($pid == 0) {
        close $server;
        $SIG{TERM} = $SIG{INT} = 'DEFAULT';
        serve($client);
        exit 0;
    }

    close $client;
}


sub serve {
    my ($c) = @_;
    my $buf = '';

    binmode $c;

    while (1) {
        my $req = read_request($c, \$buf) or return;

        log_request($req) if defined $record;

        # tests make a slow Twilio with this request header
        if (my $delay = $req->{header}{'x-standin-delay'}) {
            select(undef, undef, undef, $delay) if $delay =~ /^\d+(?:\.\d+)?$/;
        }

        my ($status, $body, @extra) = handle($req);

        my $close = ($req->{header}{connection} // '') =~ /close/i
            || $req->{version} ne 'HTTP/1.1';

        my $reason = { 200 => 'OK', 400 => 'Bad Request',
                       401 => 'Unauthorized', 404 => 'Not Found',
                       405 => 'Method Not Allowed' }->{$status} // 'Error';

        print $c "HTTP/1.1 $status $reason\r\n",
            "Content-Type: application/json\r\n",
            "Content-Length: " . length($body) . "\r\n",
            @extra,
            ($close ? "Connection: close\r\n" : ''),
            "\r\n", $body;

        return if $close;
    }
}


sub read_more {
    my ($c, $buf) = @_;
    my $n = sysread($c, $$buf, 65536, length $$buf);
    return $n;
}


sub read_request {
    my ($c, $buf) = @_;

    while ($$buf !~ /\r\n\r\n/) {
        read_more($c, $buf) or return;
    }

    $$buf =~ s/\A(.*?)\r\n\r\n//s;
    my ($line, @lines) = split /\r\n/, $1;
    my ($method, $target, $version) = split / /, $line, 3;

    my (@headers, %header);
    for (@lines) {
        my ($k, $v) = /^([^:]+):[ \t]*(.*?)[ \t]*$/ or next;
        push @headers, [$k, $v];
        push @{ $header{lc $k . '[]'} }, $v;
        $header{lc $k} //= $v;
    }

    my $body = '';

    if (($header{'transfer-encoding'} // '') =~ /chunked/i) {
        while (1) {
            while ($$buf !~ /\r\n/) { read_more($c, $buf) or return }
            $$buf =~ s/\A([0-9a-fA-F]+)[^\r]*\r\n// or return;
            my $size = hex $1;
            if ($size == 0) {
                while ($$buf !~ /\A\r\n/ && $$buf !~ /\r\n\r\n/) {
                    read_more($c, $buf) or return;
                }
                $$buf =~ s/\A(?:.*?\r\n)?\r\n//s;
                last;
            }
            while (length $$buf < $size + 2) { read_more($c, $buf) or return }
            $body .= substr($$buf, 0, $size);
            substr($$buf, 0, $size + 2) = '';
        }

    } elsif (my $len = $header{'content-length'}) {
        while (length $$buf < $len) { read_more($c, $buf) or return }
        $body = substr($$buf, 0, $len);
        substr($$buf, 0, $len) = '';
    }

    return { method => $method, target => $target, version => $version,
             headers => \@headers, header => \%header, body => $body };
}


sub log_request {
    my ($req) = @_;
    my %r = map { $_ => $req->{$_} } qw(method target version headers body);

    open my $fh, '>>', $record or die "$0: $record: $!\n";
    flock $fh, LOCK_EX;
    print $fh JSON::PP->new->canonical->ascii->encode(\%r), "\n";
    close $fh;
}


sub error {
    my ($status, $code, $message, @extra) = @_;
    return ($status, $json->encode({
        code => $code, message => $message, status => $status,
        more_info => "https://www.twilio.com/docs/errors/$code",
    }), @extra);
}


sub handle {
    my ($req) = @_;

    my $auths = $req->{header}{'authorization[]'} // [];

    if (@$auths != 1 || $auths->[0] ne $expected_auth) {
        return error(401, 20003, 'Authenticate',
                     "WWW-Authenticate: Basic realm=\"Twilio API\"\r\n");
    }

    my ($sid) = $req->{target} =~ m{^/v2/Flows/(FW[0-9a-fA-F]{32})/TestUsers$}
        or return error(404, 20404, 'The requested resource '
                        . "$req->{target} was not found");

    my $file = "$state/$sid.json";

    if ($req->{method} eq 'POST') {
        my @users;

        for my $pair (split /&/, $req->{body}, -1) {
            my ($k, $v) = split /=/, $pair, 2;
            for ($k, $v) {
                next unless defined;
                tr/+/ /;
                s/%([0-9a-fA-F]{2})/chr hex $1/ge;
            }
            push @users, $v // '' if $k eq 'TestUsers';
        }

        return error(400, 20001,
                     'Missing required parameter TestUsers in the post body')
            unless @users;

        my @utf8 = map { my $s = $_; utf8::decode($s); $s } @users;

        open my $fh, '>', "$file.$$" or die "$0: $file.$$: $!\n";
        print $fh $json->encode(\@utf8);
        close $fh;
        rename "$file.$$", $file or die "$0: rename $file: $!\n";

    } elsif ($req->{method} ne 'GET') {
        return error(405, 20004, 'Method not allowed');
    }

    my $users = [];

    if (open my $fh, '<', $file) {
        local $/;
        $users = $json->decode(<$fh>);
    }

    my $body = $json->encode({
        sid        => $sid,
        test_users => $users,
        url        => "https://studio.twilio.com/v2/Flows/$sid/TestUsers",
    });

    return (200, $body);
}
