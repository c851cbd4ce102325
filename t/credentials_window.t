#!/usr/bin/perl

# The credential is lent only while proxy_pass builds its request.  When
# proxy_pass fails synchronously (a missing unix socket, no live peers),
# nginx finalizes the request and follows error_page from inside that call:
# auth_request, mirror, return, another proxy_pass or a cached
# $http_authorization there must never see the service credential.

use strict;
use warnings;

use Test::More;
use Time::HiRes qw(sleep);
use lib 't/lib';
use StudioTest;

my $t = StudioTest->new;
$t->{expect_alert} = qr/\[crit\] .* connect\(\) to unix:.*missing\.sock failed/;
$t->start_upstream;
$t->start_upstream('other');

my $B64 = (split / /, BASIC)[1];

$t->start_nginx(<<'CONF');
    studio_testusers_credentials %%CRED%%;
    log_format auth '[$http_authorization] $status';

    upstream down {
        server 127.0.0.1:%%PORT_DEAD1%% max_fails=1 fail_timeout=60s;
        server 127.0.0.1:%%PORT_DEAD2%% max_fails=1 fail_timeout=60s;
    }

    server {
        listen 127.0.0.1:%%PORT%%;
        access_log %%DIR%%/logs/window.log auth;

        location /v2/ {
            studio_testusers on;
            proxy_set_header X-Client-Auth $http_authorization;
            proxy_pass http://unix:%%DIR%%/missing.sock;
            error_page 502 /errors/502;
        }

        location = /errors/502 {
            internal;
            auth_request /_auth;
            mirror /_mirror;
            proxy_pass http://%%UPSTREAM_OTHER%%/error-page;
        }

        location = /_auth {
            internal;
            proxy_pass http://%%UPSTREAM_OTHER%%/auth;
        }

        location = /_mirror {
            internal;
            proxy_pass http://%%UPSTREAM_OTHER%%/mirror;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_RET%%;
        access_log %%DIR%%/logs/window.log auth;
        location /v2/ {
            studio_testusers on;
            proxy_pass http://down;
            error_page 502 = @ret;
        }
        location @ret {
            return 502 "[$http_authorization]";
        }
    }

    server {
        listen 127.0.0.1:%%PORT_RETRY%%;
        location /v2/ {
            studio_testusers on;
            proxy_pass http://unix:%%DIR%%/missing.sock;
            error_page 502 = @retry;
        }
        location @retry {
            studio_testusers on;
            proxy_pass http://%%UPSTREAM%%;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_SUB%%;
        location /other/ {
            mirror /v2/Flows/not-a-flow/Evil;
            proxy_pass http://%%UPSTREAM_OTHER%%;
        }
        location /v2/ {
            studio_testusers on;
            proxy_pass http://%%UPSTREAM%%;
        }
    }
CONF

sub on {
    my ($port, $method, $path, %o) = @_;
    my $c = $t->connect($t->port($port));
    $c->send(StudioTest::raw_request($method, $path, %o));
    return $c->response;
}

sub no_service_credential {
    my ($name) = @_;
    my @auth = map { StudioTest::header_values($_, 'Authorization'),
                     StudioTest::header_values($_, 'X-Client-Auth') }
               @{ $t->recorded('other') };
    ok(!grep({ /\Q$B64\E/ } @auth), "$name: no service credential reached "
       . scalar(@{ $t->recorded('other') }) . ' error-page requests');
}

for my $i (1 .. 3) {
    my $r = on('http', 'GET', PATH, headers => [ 'Authorization: Bearer team' ]);
    ok($r, "synchronous failure $i: answered");
    unlike($r->{body} // '', qr/\Q$B64\E/, "synchronous failure $i: not in the body");
}
sleep 0.3;
no_service_credential('error page with auth_request, mirror and proxy_pass');
$t->clear_recorded('other');

for my $i (1 .. 3) {
    my $r = on('ret', 'POST', PATH, headers => [ 'Content-Type: application/x-www-form-urlencoded',
                                                'Authorization: Bearer team' ],
               body => "TestUsers=$i");
    is($r->{status}, 502, "no live upstreams $i: 502");
    unlike($r->{body}, qr/\Q$B64\E/, "no live upstreams $i: return \$http_authorization shows no credential");
}

my $r = on('retry', 'GET', PATH, headers => [ 'Authorization: Bearer team' ]);
is($r->{status}, 200, 'error_page into another studio location: served');
my $rec = $t->recorded;
is(scalar @$rec, 1, 'retry location forwarded once');
is_deeply([ StudioTest::header_values($rec->[0] // { headers => [] }, 'Authorization') ],
          [ BASIC ], 'retry location: exactly one Authorization, the service one');
$t->clear_recorded;

$r = on('sub', 'DELETE', '/other/x?q=1', body => 'Evil=1');
sleep 0.3;
is(scalar @{ $t->recorded }, 0, 'a subrequest into a studio location is never forwarded');
like($t->error_log, qr/studio_testusers: subrequest refused/, 'the refused subrequest is logged');

$t->stop_nginx;
unlike($t->read_file('logs/window.log'), qr/\Q$B64\E/,
       'a $http_authorization evaluated while lent is not cached into the access log');
unlike($t->error_log, qr/credential header is not last/, 'no alert about the credential header');

$t->done;
