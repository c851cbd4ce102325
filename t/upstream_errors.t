#!/usr/bin/perl

# When Twilio cannot be reached, times out or answers garbage, the client
# still gets Twilio's error shape (so the helper libraries show code and
# message), the audit records it, and nothing echoes the credential.

use strict;
use warnings;

use JSON::PP;
use Test::More;
use Time::HiRes qw(sleep);
use lib 't/lib';
use StudioTest;

my $t = StudioTest->new;
$t->start_upstream;

# an upstream that answers garbage
my $gport = $t->start_raw_upstream('garbage-upstream',
                                   "this is not HTTP\r\n\x00\x01\r\n\r\n");

my $B64 = (split / /, BASIC)[1];

$t->start_nginx(<<"CONF");
    studio_testusers_credentials %%CRED%%;

    server {
        listen 127.0.0.1:%%PORT%%;
        location /v2/ {
            studio_testusers on;
            studio_testusers_audit_log %%DIR%%/logs/audit.log;
            proxy_pass http://127.0.0.1:%%PORT_DEAD%%;
        }
    }
    server {
        listen 127.0.0.1:%%PORT_SLOW%%;
        location /v2/ {
            studio_testusers on;
            studio_testusers_pass_header X-Standin-Delay;
            studio_testusers_audit_log %%DIR%%/logs/audit.log;
            proxy_read_timeout 1s;
            proxy_pass http://%%UPSTREAM%%;
        }
    }
    server {
        listen 127.0.0.1:%%PORT_GARBAGE%%;
        location /v2/ {
            studio_testusers on;
            studio_testusers_audit_log %%DIR%%/logs/audit.log;
            proxy_pass http://127.0.0.1:$gport;
        }
    }
CONF

sub on {
    my ($port, @h) = @_;
    my $c = $t->connect($t->port($port));
    $c->send(StudioTest::raw_request('POST', PATH, keepalive => 1,
        headers => [ 'Content-Type: application/x-www-form-urlencoded', @h ],
        body => 'TestUsers=%2B15555550100'));
    my $r = $c->response(5);
    $c->send(StudioTest::raw_request('GET', '/v2/Flows/x/TestUsers'));
    my $next = $c->response(5);
    return ($r, $next);
}

for my $case ([ 'http', 502, 20502, 'refused' ], [ 'slow', 504, 20504, 'timeout' ],
              [ 'garbage', 502, 20502, 'garbage' ]) {
    my ($port, $status, $code, $name) = @$case;
    my ($r, $next) = on($port, $port eq 'slow' ? 'X-Standin-Delay: 3' : (),
                        'Authorization: Bearer team');
    is($r && $r->{status}, $status, "upstream $name: $status");
    like($r && $r->{headers}{'content-type'} // '', qr{^application/json}, "upstream $name: JSON");
    is($r && $r->{json} && $r->{json}{code}, $code, "upstream $name: code $code");
    is($r && $r->{json} && $r->{json}{status}, $status, "upstream $name: status in the body");
    is(length($r->{body}), $r->{headers}{'content-length'} // length($r->{body}),
       "upstream $name: body length consistent");
    unlike($r->{body} . join('', values %{ $r->{headers} }), qr/\Q$B64\E|\Q${\ SECRET}\E/,
           "upstream $name: nothing echoes the credential");
    is($next && $next->{status}, 404, "upstream $name: the connection is still usable");
}

$t->stop_nginx;

my @audit = map { JSON::PP->new->decode($_) } split /\n/, $t->read_file('logs/audit.log');
my @posts = grep { $_->{method} eq 'POST' } @audit;
is(scalar @posts, 3, 'every failed forward is audited');
is_deeply([ map { $_->{status} } @posts ], [ 502, 504, 502 ], 'audit: final statuses');
is_deeply([ map { $_->{result} } @posts ], [ ('forwarded') x 3 ], 'audit: they were forwarded');
unlike($t->error_log . $t->read_file('logs/audit.log'), qr/\Q$B64\E|\Q${\ SECRET}\E/,
       'logs never show the credential');

$t->done;
