#!/usr/bin/perl

# studio_testusers_metrics: Prometheus text, counters shared by all workers
# and kept across a reload, checked against the requests sent.

use strict;
use warnings;

use Digest::SHA qw(sha256_hex);
use Test::More;
use Time::HiRes qw(sleep);
use lib 't/lib';
use StudioTest;

my $t = StudioTest->new;
$t->{workers} = 2 if $t->has_master;
$t->start_upstream;

my $conf = <<'CONF';
    studio_testusers_credentials %%CRED%%;
    studio_testusers_zone studio:1m;

    server {
        listen 127.0.0.1:%%PORT%%;
        location /v2/ {
            studio_testusers on;
            studio_testusers_pass_header X-Standin-Delay;
            studio_testusers_audit_log %%DIR%%/logs/audit.log;
            proxy_pass http://%%UPSTREAM%%;
        }
        location = /metrics {
            studio_testusers_metrics;
        }
    }
    server {
        listen 127.0.0.1:%%PORT_DOWN%%;
        location /v2/ {
            studio_testusers on;
            proxy_pass http://127.0.0.1:%%PORT_DEAD%%;
        }
    }
CONF

$t->start_nginx($conf);

my $FORM = 'Content-Type: application/x-www-form-urlencoded';

$t->get(PATH) for 1 .. 3;
$t->post_form('TestUsers=a') for 1 .. 2;
$t->request('DELETE', PATH);
$t->get('/v2/Flows/x/TestUsers') for 1 .. 2;
$t->post_form('TestUsers=%zz');
{
    my $c = $t->connect($t->port('down'));
    $c->send(StudioTest::raw_request('GET', PATH));
    $c->response;
}
{
    my $slow = $t->connect;
    $slow->send(StudioTest::raw_request('POST', PATH, body => 'TestUsers=b',
        headers => [ $FORM, 'X-Standin-Delay: 0.6' ]));
    sleep 0.2;
    is($t->post_form('TestUsers=c')->{status}, 409, 'a conflict for the counters');
    $slow->response(5);
}

sub scrape {
    my $r = $t->get('/metrics');
    is($r->{status}, 200, 'metrics: 200');
    like($r->{headers}{'content-type'}, qr{^text/plain; version=0\.0\.4}, 'Prometheus text format');
    my %m;
    for (split /\n/, $r->{body}) {
        next if /^#/;
        my ($k, $v) = /^(\S+) (\S+)$/ or next;
        $m{$k} = $v;
    }
    return (\%m, $r->{body});
}

# the log phase, where requests are counted, may end after the answer
sleep 0.5;
my ($m, $text) = scrape();

sub req { 'studio_testusers_requests_total{method="' . $_[0] . '",result="'
          . $_[1] . '",reason="' . ($_[2] // '') . '"}' }

is($m->{ req('GET', 'forwarded') }, 4, 'GET forwarded: 4 (one to a dead upstream)');
is($m->{ req('POST', 'forwarded') }, 3, 'POST forwarded: 3 (two plus the slow one)');
is($m->{ req('other', 'rejected', 'method_not_allowed') }, 1, 'DELETE refused: 1');
is($m->{ req('GET', 'rejected', 'path_not_found') }, 2, 'bad paths: 2');
is($m->{ req('POST', 'rejected', 'malformed_escape') }, 1, 'malformed escape: 1');
is($m->{ req('POST', 'rejected', 'update_in_progress') }, 1, 'conflict: 1');
is($m->{'studio_testusers_update_conflicts_total'}, 1, 'conflicts counter');
is($m->{'studio_testusers_upstream_responses_total{class="2xx"}'}, 6, 'upstream 2xx: 6');
is($m->{'studio_testusers_upstream_responses_total{class="5xx"}'}, 1, 'upstream refused counted as 5xx (502)');
is($m->{'studio_testusers_upstream_response_seconds_count'}, 7, 'histogram count');
is($m->{'studio_testusers_upstream_response_seconds_bucket{le="+Inf"}'}, 7, 'histogram +Inf');
ok($m->{'studio_testusers_upstream_response_seconds_bucket{le="0.250"}'} <= 6,
   'the slow answer is above 250 ms');
is($m->{'studio_testusers_audit_records_total{outcome="written"}'}, 11, 'audit records written');
is($m->{'studio_testusers_audit_records_total{outcome="failed"}'}, 0, 'audit records failed');

my $fp = substr(sha256_hex(SID), 0, 12);
like($text, qr/^studio_testusers_credential_info\{fingerprint="$fp",kind="account",loaded="\d+"\} 1$/m,
     'credential info: a fingerprint of the SID');
unlike($text, qr/\Q${\ SID}\E|\Q${\ SECRET}\E|\Q${\ FLOW}\E/, 'no SID, secret or flow in the metrics');

if ($t->has_master) {
    $t->reload;
    sleep 0.5;
    $t->get(PATH);
    ($m) = scrape();
    is($m->{ req('GET', 'forwarded') }, 5, 'counters kept across a reload');
}

$t->done;
