#!/usr/bin/perl

# A full shared zone: remembered lists give way to update locks, so a POST
# is never refused because the gateway learnt many flows (a soak found it).

use strict;
use warnings;

use Test::More;
use lib 't/lib';
use StudioTest;

my $t = StudioTest->new;
$t->start_upstream;
$t->start_nginx(<<'CONF');
    studio_testusers_credentials %%CRED%%;
    studio_testusers_zone small:32k;
    server {
        listen 127.0.0.1:%%PORT%%;
        location /v2/ {
            studio_testusers on;
            studio_testusers_audit_log %%DIR%%/logs/audit.log;
            proxy_pass http://%%UPSTREAM%%;
        }
    }
CONF

sub flow { sprintf('FW%032x', $_[0]) }

my $c = $t->connect;
my $ok = 0;
for my $i (1 .. 400) {
    $c->send(StudioTest::raw_request('GET', '/v2/Flows/' . flow($i) . '/TestUsers',
                                     keepalive => 1));
    my $r = $c->response or do { $c = $t->connect; next };
    $ok++ if $r->{status} == 200;
}
is($ok, 400, '400 flows learnt through GET');

for my $i (1001 .. 1005) {
    my $r = $t->post_form('TestUsers=a', path => '/v2/Flows/' . flow($i) . '/TestUsers');
    is($r->{status}, 200, "POST to a new flow with a full zone: forwarded ($i)");
}

if ($t->has_master) {
    $t->reload;
    my $r = $t->post_form('TestUsers=b', path => '/v2/Flows/' . flow(2000) . '/TestUsers');
    is($r->{status}, 200, 'and after a reload');
}

$t->done;
