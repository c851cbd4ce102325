#!/usr/bin/perl

# Credential custody: the upstream gets exactly one Authorization, the
# service's, whatever the client sent; access checks judge the client's own
# request; nothing else (other locations, mirrors, error pages, logs,
# $remote_user) ever sees the service credential.

use strict;
use warnings;

use Test::More;
use JSON::PP;
use lib 't/lib';
use StudioTest;
use Time::HiRes qw(sleep);

my $t = StudioTest->new;
$t->start_upstream;
$t->start_upstream('other');

$t->write_file('htpasswd', "alice:{PLAIN}wonderland\n");
my $SERVICE_B64 = (split / /, BASIC)[1];

$t->start_nginx(<<"CONF");
    log_format st '\$remote_user|\$http_authorization|\$studio_testusers_result|\$http_x_who';
    access_log %%DIR%%/logs/access.log st;

    studio_testusers_credentials %%CRED%%;

    server {
        listen 127.0.0.1:%%PORT%%;

        location /v2/ {
            studio_testusers on;
            proxy_pass http://%%UPSTREAM%%;
        }
        location /headers/v2/ {
            studio_testusers on;
            studio_testusers_pass_header X-Filler-7;
            rewrite ^/headers(/.*)\$ \$1 break;
            proxy_set_header Host studio.twilio.com;
            proxy_set_header X-Request-Id \$request_id;
            proxy_set_header Accept application/json;
            proxy_pass http://%%UPSTREAM%%;
        }
        location /plain/ {
            proxy_pass http://%%UPSTREAM_OTHER%%;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_BASIC%%;
        location /v2/ {
            auth_basic "team";
            auth_basic_user_file %%DIR%%/htpasswd;
            studio_testusers on;
            proxy_pass http://%%UPSTREAM%%;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_ANY%%;
        location /v2/ {
            satisfy any;
            allow 127.0.0.1;
            deny all;
            auth_basic "team";
            auth_basic_user_file %%DIR%%/htpasswd;
            studio_testusers on;
            proxy_pass http://%%UPSTREAM%%;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_ALL%%;
        location /v2/ {
            satisfy all;
            deny 127.0.0.1;
            auth_basic "team";
            auth_basic_user_file %%DIR%%/htpasswd;
            studio_testusers on;
            proxy_pass http://%%UPSTREAM%%;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_AUTHREQ%%;
        location /v2/ {
            auth_request /auth;
            studio_testusers on;
            proxy_pass http://%%UPSTREAM%%;
        }
        location = /auth {
            internal;
            if (\$http_authorization ~ "$SERVICE_B64") {
                return 500;
            }
            if (\$http_authorization = "Bearer letmein") {
                return 204;
            }
            return 401;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_MIRROR%%;
        log_subrequest on;
        location /v2/ {
            studio_testusers on;
            studio_testusers_audit_log %%DIR%%/logs/mirror-audit.log;
            studio_testusers_pass_header X-Standin-Delay;
            mirror /mirror;
            proxy_pass http://%%UPSTREAM%%;
        }
        location = /mirror {
            internal;
            proxy_set_header X-Standin-Delay "";
            proxy_pass http://%%UPSTREAM_OTHER%%\$request_uri;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_FALLBACK%%;
        location /v2/ {
            studio_testusers on;
            proxy_pass http://127.0.0.1:%%PORT_DEAD%%;
            error_page 502 = \@fallback;
        }
        location \@fallback {
            proxy_pass http://%%UPSTREAM_OTHER%%;
        }
    }
CONF

sub one_service_auth {
    my ($name, $up) = @_;
    my $rec = $t->recorded($up);
    is(scalar @$rec, 1, "$name: forwarded once");
    is_deeply([ StudioTest::header_values($rec->[0] // { headers => [] },
                                          'Authorization') ],
              [ BASIC ], "$name: exactly one Authorization, the service's");
    $t->clear_recorded($up);
    return $rec->[0];
}

my $FORM = 'Content-Type: application/x-www-form-urlencoded';

for my $case (
    [ 'no client Authorization', [] ],
    [ 'client Basic', [ 'Authorization: Basic ' . ('A' x 40) ] ],
    [ 'client Bearer', [ 'Authorization: Bearer abc.def.ghi' ] ],
    [ 'client junk', [ 'Authorization: !!junk!!' ] ],
    [ 'lower-case name', [ 'authorization: Basic eDp5' ] ],
) {
    my ($name, $h) = @$case;
    my $r = $t->get(PATH, headers => $h);
    is($r->{status}, 200, "GET, $name: 200");
    one_service_auth("GET, $name");

    $r = $t->post_form('TestUsers=a', headers => $h);
    is($r->{status}, 200, "POST, $name: 200");
    one_service_auth("POST, $name");
}

# nginx itself refuses a duplicate Authorization header before any module
{
    my $r = $t->post_form('TestUsers=a',
        headers => [ 'Authorization: Basic eDp5', 'authorization: Bearer x' ]);
    is($r->{status}, 400, 'two client Authorization headers: nginx says 400');
    is(scalar @{ $t->recorded }, 0, 'two client Authorization headers: nothing forwarded');
}

# more than 20 headers: the list has parts of 20, every part is walked
for my $pos (0, 19, 20, 30) {
    my @h = map { "X-Filler-$_: $_" } 1 .. 35;
    splice @h, $pos, 0, 'Authorization: Bearer client';
    my $r = $t->post_form('TestUsers=a', headers => \@h);
    is($r->{status}, 200, "36+ headers, client Authorization at $pos: 200");
    my $rec = one_service_auth("36+ headers, client Authorization at $pos");
    is(scalar(grep { $_->[0] =~ /^X-Filler-/ } @{ $rec->{headers} }), 0,
       "36+ headers, at $pos: headers a Twilio client does not need are dropped");
    is_deeply([ StudioTest::header_values($rec, 'X-Filler-7') ], [],
       "36+ headers, at $pos: X-Filler-7 dropped");
}

# only what a Twilio client needs goes upstream
{
    my @h = ('Accept: application/json', 'Accept-Charset: utf-8',
             'User-Agent: twilio-node/6.3.1', 'X-Request-Id: abc',
             'Cookie: session=1', 'Proxy-Authorization: Basic eDp5',
             'X-Forwarded-For: 10.0.0.1', 'X-Forwarded-Host: evil',
             'X-HTTP-Method-Override: DELETE', 'Content-Encoding: gzip',
             'Accept-Encoding: gzip', 'Forwarded: for=1.2.3.4');
    my $r = $t->post_form('TestUsers=a', headers => \@h);
    is($r->{status}, 200, 'header allowlist: forwarded');
    my $rec = one_service_auth('header allowlist');
    my %got = map { lc $_->[0] => 1 } @{ $rec->{headers} };
    for my $n (qw(accept accept-charset user-agent x-request-id content-type content-length)) {
        ok($got{$n}, "header allowlist: $n forwarded");
    }
    for my $n (qw(cookie proxy-authorization x-forwarded-for x-forwarded-host
                  x-http-method-override content-encoding accept-encoding forwarded)) {
        ok(!$got{$n}, "header allowlist: $n dropped");
    }
}

# proxy_set_header lines in the location: dedupe still works
{
    my $r = $t->post_form('TestUsers=a', path => '/headers' . PATH,
        headers => [ 'Authorization: Bearer client', 'Accept: */*', 'X-Filler-7: kept' ]);
    is($r->{status}, 200, 'proxy_set_header location: 200');
    my $rec = one_service_auth('proxy_set_header location');
    is_deeply([ StudioTest::header_values($rec, 'Host') ], [ 'studio.twilio.com' ],
              'proxy_set_header Host applied');
    is_deeply([ StudioTest::header_values($rec, 'Accept') ], [ 'application/json' ],
              'proxy_set_header Accept replaced the client one');
    is($rec->{target}, PATH, 'rewritten target forwarded');
    is_deeply([ StudioTest::header_values($rec, 'X-Filler-7') ], [ 'kept' ],
              'studio_testusers_pass_header forwards a header by name');
}

# outside the module's location: the client's own header, never the service's
{
    my $r = $t->get('/plain/x', headers => [ 'Authorization: Bearer mine' ]);
    my $rec = $t->recorded('other');
    is_deeply([ map { StudioTest::header_values($_, 'Authorization') } @$rec ],
              [ 'Bearer mine' ], 'other location: the client header only');
    $t->clear_recorded('other');
}

# the client's headers stay the request's own for logs and variables
{
    my $r = $t->post_form('TestUsers=a', headers => [ 'X-Who: zed' ]);
    is($r->{status}, 200, 'X-Who: forwarded');
    my $rec = one_service_auth('X-Who');
    is_deeply([ StudioTest::header_values($rec, 'X-Who') ], [], 'X-Who is not forwarded');
}

# rejected: nothing forwarded at all
$t->post_form('TestUsers=%00', headers => [ 'Authorization: Bearer x' ]);
is(scalar @{ $t->recorded }, 0, 'rejected: nothing forwarded');

# --- access checks judge the client's own request -------------------------------

sub get_on {
    my ($port, @h) = @_;
    my $c = $t->connect($t->port($port));
    $c->send(StudioTest::raw_request('GET', PATH, headers => \@h));
    return $c->response;
}

my $alice = 'Authorization: Basic ' . MIME::Base64::encode_base64('alice:wonderland', '');

my $r = get_on('basic');
is($r->{status}, 401, 'auth_basic: no credentials, 401');
is(scalar @{ $t->recorded }, 0, 'auth_basic 401: nothing forwarded');

$r = get_on('basic', 'Authorization: Basic ' . MIME::Base64::encode_base64('alice:wrong', ''));
is($r->{status}, 401, 'auth_basic: wrong password, 401');

$r = get_on('basic', $alice);
is($r->{status}, 200, 'auth_basic: alice, forwarded');
one_service_auth('auth_basic alice');

$r = get_on('any');
is($r->{status}, 200, 'satisfy any, allowed address: forwarded without a password');
one_service_auth('satisfy any');

$r = get_on('all', $alice);
is($r->{status}, 403, 'satisfy all with deny: 403 even with a password');
is(scalar @{ $t->recorded }, 0, 'satisfy all 403: nothing forwarded');

$r = get_on('authreq');
is($r->{status}, 401, 'auth_request: denied');
$r = get_on('authreq', 'Authorization: Bearer letmein');
is($r->{status}, 200, 'auth_request: the client token is judged, not the service one');
one_service_auth('auth_request');

# --- mirrors and error pages never carry it ---------------------------------------

$r = get_on('mirror', 'Authorization: Bearer mine');
is($r->{status}, 200, 'mirror location: 200');
one_service_auth('mirror location main request');
for (1 .. 20) { last if @{ $t->recorded('other') }; sleep 0.05 }
my $m = $t->recorded('other');
is(scalar @$m, 1, 'mirror subrequest sent');
is_deeply([ StudioTest::header_values($m->[0] // { headers => [] }, 'Authorization') ],
          [ 'Bearer mine' ], 'mirror subrequest: the client\'s own header, never the service one');
$t->clear_recorded('other');

# log_subrequest on: the mirror, done first, must not write the main
# request's audit record before the main request has its answer
for (1 .. 200) { last if $t->read_file('logs/mirror-audit.log') =~ /\n/; sleep 0.05 }
$t->write_file('logs/mirror-audit.log', '');    # the mirror request above is logged
$r = get_on('mirror', 'X-Standin-Delay: 0.5');
is($r->{status}, 200, 'mirror with log_subrequest: 200');
for (1 .. 200) { last if $t->read_file('logs/mirror-audit.log') =~ /\n/; sleep 0.05 }
my @mrec = map { JSON::PP::decode_json($_) } grep { length }
    split /\n/, $t->read_file('logs/mirror-audit.log');
is(scalar @mrec, 1, 'mirror with log_subrequest: one audit record');
is($mrec[0] && $mrec[0]{upstream_status}, 200,
   'mirror with log_subrequest: the record has the main request\'s upstream answer');
$t->clear_recorded;
$t->clear_recorded('other');

$r = get_on('fallback', 'Authorization: Bearer mine');
my $f = $t->recorded('other');
is(scalar @$f, 1, 'error_page fallback reached the other upstream');
is_deeply([ StudioTest::header_values($f->[0] // { headers => [] }, 'Authorization') ],
          [ 'Bearer mine' ], 'error_page fallback: the client\'s own header, never the service one');
$t->clear_recorded('other');

# --- nothing shows the service credential -----------------------------------------

$t->stop_nginx;
my $access = $t->read_file('logs/access.log');
like($access, qr/^alice\|Basic /m, '$remote_user is the client user');
like($access, qr/^-\|-\|forwarded\|zed$/m,
     'a dropped header is still \$http_x_who for the log of a forwarded request');
for my $secret (SID, SECRET, $SERVICE_B64) {
    unlike($access, qr/\Q$secret\E/, "access log never shows " . substr($secret, 0, 6) . '...');
    unlike($t->error_log, qr/\Q$secret\E/, "error log never shows " . substr($secret, 0, 6) . '...');
}

$t->done;
