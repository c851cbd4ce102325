#!/usr/bin/perl

# What the gateway remembers of a flow's list must never be stale: a POST
# whose answer was not read whole (client gone, answer cut) makes the next
# POST's baseline "unknown".  And a request judged again after an error_page
# redirect does not conflict with its own update lock.

use strict;
use warnings;

use JSON::PP;
use Test::More;
use Time::HiRes qw(sleep);
use lib 't/lib';
use StudioTest;

my $t = StudioTest->new;
$t->start_upstream;

# an upstream that promises 1000 bytes and sends 7
my $cport = $t->start_raw_upstream('cut', "HTTP/1.1 200 OK
"
    . "Content-Type: application/json
Content-Length: 1000

{\"sid\":");

$t->start_nginx(<<"CONF");
    studio_testusers_credentials %%CRED%%;

    server {
        listen 127.0.0.1:%%PORT%%;
        location /v2/ {
            studio_testusers on;
            studio_testusers_pass_header X-Standin-Delay;
            studio_testusers_audit_log %%DIR%%/logs/audit.log;
            proxy_pass http://%%UPSTREAM%%;
        }
    }
    server {
        listen 127.0.0.1:%%PORT_CUTGW%%;
        location /v2/ {
            studio_testusers on;
            studio_testusers_audit_log %%DIR%%/logs/audit.log;
            proxy_pass http://127.0.0.1:$cport;
        }
    }
    server {
        listen 127.0.0.1:%%PORT_RETRY%%;
        location /v2/ {
            studio_testusers on;
            studio_testusers_audit_log %%DIR%%/logs/retry.log;
            proxy_pass http://127.0.0.1:%%PORT_DEAD%%;
            error_page 502 = \@retry;
        }
        location \@retry {
            studio_testusers on;
            studio_testusers_audit_log %%DIR%%/logs/retry.log;
            proxy_pass http://%%UPSTREAM%%;
        }
    }
CONF

my $FORM = 'Content-Type: application/x-www-form-urlencoded';

sub records {
    my ($f) = @_;
    return map { JSON::PP->new->decode($_) } split /\n/, $t->read_file("logs/$f");
}

sub on {
    my ($port, $method, $body, @h) = @_;
    my $c = $t->connect($t->port($port));
    $c->send(StudioTest::raw_request($method, PATH, body => $body,
        headers => [ defined $body ? $FORM : (), @h ]));
    return $c;
}

is(on('http', 'GET')->response->{status}, 200, 'GET: the gateway learns the list');
is(on('http', 'POST', 'TestUsers=a')->response->{status}, 200, 'POST a');
is(on('http', 'POST', 'TestUsers=a&TestUsers=b')->response->{status}, 200, 'POST a, b');

# the client leaves while Twilio is still working on the POST
my $c = on('http', 'POST', 'TestUsers=c', 'X-Standin-Delay: 1');
sleep 0.3;
close $c->{s};
sleep 1.2;

is(on('http', 'POST', 'TestUsers=d')->response->{status}, 200, 'POST d after the abort');

# Twilio's answer is cut short
is(on('cutgw', 'POST', 'TestUsers=e')->response(3), undef, 'a cut answer: the client gets no whole answer');
sleep 0.2;
is(on('http', 'POST', 'TestUsers=f')->response->{status}, 200, 'POST f after the cut answer');

# an error_page redirect into another studio location: no self-conflict
my $r = on('retry', 'POST', 'TestUsers=g')->response;
is($r->{status}, 200, 'error_page into another studio location: no 409 against itself');

$t->stop_nginx;

my @posts = grep { $_->{method} eq 'POST' && $_->{result} eq 'forwarded' }
            records('audit.log');
my %by = map { $_->{identities} => $_ } @posts;
is_deeply([ map { $_->{baseline} } @posts ],
          [ 'known', 'known', 'known', 'unknown', 'known', 'unknown' ],
          'baselines: a POST whose answer was not read leaves the next one unknown');
is($posts[2]{status}, 499, 'the aborted POST is recorded as 499');
is($posts[1]{added}, 1, 'POST a, b added one');

$t->done;
