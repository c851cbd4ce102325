#!/usr/bin/perl

# Path, query and method rules, judged on the raw request target; Twilio's
# error shape; nothing rejected reaches the upstream; keep-alive and
# pipelining survive every kind of rejection.

use strict;
use warnings;

use Test::More;
use lib 't/lib';
use StudioTest;

my $t = StudioTest->new;
$t->start_upstream;
$t->start_nginx(<<'CONF');
    log_format st '$request_method $status $studio_testusers_result '
                  '$studio_testusers_reason $studio_testusers_flow_sid '
                  '$studio_testusers_identities';
    server {
        listen 127.0.0.1:%%PORT%%;
        access_log %%DIR%%/logs/access.log st;
        location / {
            studio_testusers on;
            studio_testusers_credentials %%CRED%%;
            proxy_pass http://%%UPSTREAM%%;
        }
    }
CONF

sub twilio_error {
    my ($r, $status, $code, $name) = @_;
    is($r->{status}, $status, "$name: status $status");
    like($r->{headers}{'content-type'} // '', qr{^application/json}, "$name: JSON");
    is_deeply([ sort keys %{ $r->{json} // {} } ],
              [ qw(code message more_info status) ], "$name: Twilio error keys");
    is($r->{json}{code}, $code, "$name: code $code");
    is($r->{json}{status}, $status, "$name: status in body");
    is($r->{json}{more_info}, "https://www.twilio.com/docs/errors/$code",
       "$name: more_info");
}

my $r = $t->get(PATH);
is($r->{status}, 200, 'GET forwarded');
is($r->{json}{sid}, FLOW, 'GET answer from upstream');
is(scalar @{ $t->recorded }, 1, 'upstream saw the GET');
is($t->recorded->[0]{target}, PATH, 'forwarded target is the raw one');

$t->clear_recorded;

# hostile and near-miss paths: 404 with Twilio's code, nothing forwarded
my $F = FLOW;
(my $lower = $F) =~ s/^FW/fw/;
my @paths = (
    "/v2/Flows/$F/TestUsers/", "/v2/Flows/$F//TestUsers", "//v2/Flows/$F/TestUsers",
    "/v2/Flows/$F/./TestUsers", "/v2/Flows/$F/x/../TestUsers",
    "/v2/Flows/%46W" . substr($F, 2) . "/TestUsers", "/v2/Flows/$F/Test%55sers",
    "/v2/Flows/$F/TestUsers;x=1", "/v2/Flows/$F;/TestUsers", "/v2/flows/$F/TestUsers",
    "/v2/Flows/$F/testusers", "/V2/Flows/$F/TestUsers", "/v2/Flows/$lower/TestUsers",
    "/v2/Flows/FW" . ('X' x 32) . "/TestUsers", "/v2/Flows/FW" . ('0' x 31) . "/TestUsers",
    "/v2/Flows/FW" . ('0' x 33) . "/TestUsers", "/v2/Flows/$F", "/v2/Flows/$F/Revisions",
    "/", "/v2/Flows", "/v2/Flows/$F/TestUsers%2F",
    "/v2/Flows/$F/TestUsers/..", "/v1/Flows/$F/TestUsers",
);

# nginx itself refuses a few before any module runs: still never forwarded
$r = $t->get("/v2/Flows/$F/TestUsers%00");
is($r->{status}, 400, 'an escaped NUL is refused by nginx itself');


for my $p (@paths) {
    $r = $t->get($p);
    twilio_error($r, 404, 20404, "GET $p");
    is($r->{json}{message}, 'The requested resource was not found',
       "GET $p: message does not echo the path");
}

# absolute-form request target: the path part is what proxy_pass forwards
$r = $t->get("http://localhost" . PATH);
is($r->{status}, 200, 'absolute-form target with the right path is accepted');
$r = $t->get("http://localhost/v2/Flows/$F/TestUsers/");
is($r->{status}, 404, 'absolute-form target with a wrong path is 404');

$t->clear_recorded;

for my $q ('?', '?a=1', '?TestUsers=x') {
    $r = $t->get(PATH . $q);
    twilio_error($r, 400, 20001, "query '$q'");
}

$r = $t->get("/v2/Flows/$F/TestUsers/?a=1");
is($r->{status}, 404, 'a bad path with a query is 404');

for my $m (qw(PUT DELETE PATCH HEAD OPTIONS PROPFIND)) {
    $r = $t->request($m, PATH);
    is($r->{status}, 405, "$m: 405");
    is($r->{headers}{allow}, 'GET, POST', "$m: Allow header");
    if ($m ne 'HEAD') {
        twilio_error($r, 405, 20004, $m);
    }
}

$r = $t->get(PATH, headers => [ 'Content-Length: 5' ], body => 'hello');
twilio_error($r, 400, 20001, 'GET with a body');

$r = $t->get(PATH, headers => [ 'Transfer-Encoding: chunked' ],
             body => "5\r\nhello\r\n0\r\n\r\n");
twilio_error($r, 400, 20001, 'GET with a chunked body');

is(scalar @{ $t->recorded }, 0, 'no rejected request reached the upstream');

$r = $t->get(PATH, headers => [ 'Transfer-Encoding: chunked' ],
             body => "0\r\n\r\n");
is($r->{status}, 200, 'GET with an empty chunked body is forwarded');

$r = $t->get(PATH, headers => [ 'Content-Type: application/x-www-form-urlencoded' ]);
is($r->{status}, 200, 'GET with Content-Type (go, ruby, php) is forwarded');

$r = $t->get(PATH, headers => [ 'Content-Length: 0' ]);
is($r->{status}, 200, 'GET with Content-Length: 0 is forwarded');

# every kind of rejection keeps the connection usable
my @rejections = (
    [ 'GET', "/v2/Flows/$F/TestUsers/", [], undef, 404 ],
    [ 'GET', PATH . '?x', [], undef, 400 ],
    [ 'DELETE', PATH, [], undef, 405 ],
    [ 'PUT', PATH, [ 'Content-Type: application/x-www-form-urlencoded' ],
      'TestUsers=a', 405 ],
    [ 'GET', PATH, [], 'body!', 400 ],
    [ 'POST', PATH, [ 'Content-Type: text/plain' ], 'TestUsers=a', 415 ],
    [ 'POST', PATH, [ 'Content-Type: application/x-www-form-urlencoded',
                      'Content-Type: application/x-www-form-urlencoded' ],
      'TestUsers=a', 400 ],
    [ 'POST', PATH, [ 'Content-Type: application/x-www-form-urlencoded' ],
      'TestUsers=%zz', 400 ],
    [ 'POST', PATH, [ 'Content-Type: application/x-www-form-urlencoded' ],
      'TestUsers=' . ('a' x 301), 400 ],
    [ 'POST', PATH, [ 'Content-Type: application/x-www-form-urlencoded' ],
      '', 400 ],
);

$t->clear_recorded;

for my $rej (@rejections) {
    my ($m, $p, $h, $b, $status) = @$rej;
    my $c = $t->connect;
    $c->send(StudioTest::raw_request($m, $p, headers => $h, body => $b,
                                     keepalive => 1));
    $r = $c->response;
    is($r && $r->{status}, $status, "keep-alive: $m $p rejected with $status");
    $c->send(StudioTest::raw_request('GET', PATH, keepalive => 1));
    $r = $c->response;
    is($r && $r->{status}, 200, "keep-alive: next request after $status served");
}

is(scalar @{ $t->recorded }, scalar @rejections, 'only the follow-up requests were forwarded');

# pipelined: a rejection, a valid POST, another rejection, a valid GET
$t->clear_recorded;
my $c = $t->connect;
$c->send(join '',
    StudioTest::raw_request('DELETE', PATH, keepalive => 1),
    StudioTest::raw_request('POST', PATH, keepalive => 1,
        headers => [ 'Content-Type: application/x-www-form-urlencoded' ],
        body => 'TestUsers=%2B15555550100'),
    StudioTest::raw_request('POST', PATH, keepalive => 1,
        headers => [ 'Content-Type: application/x-www-form-urlencoded' ],
        body => 'TestUsers=%00'),
    StudioTest::raw_request('GET', PATH));
my @statuses = map { my $x = $c->response; $x ? $x->{status} : 'none' } 1 .. 4;
is("@statuses", '405 200 400 200', 'pipelined requests answered in order');
is(scalar @{ $t->recorded }, 2, 'pipelined: two forwarded');
is($t->recorded->[0]{body}, 'TestUsers=%2B15555550100', 'pipelined: body forwarded intact');

# one info line per rejection, naming the reason, with no client bytes
$r = $t->get("/v2/Flows/$F/TestUsers/\x1b[31mred");
my $log = $t->error_log;
like($log, qr/\[info\] .* studio_testusers: rejected, path_not_found, client:/,
     'info line names the reason');
like($log, qr/studio_testusers: rejected, identity_control_char \(value 1\)/,
     'info line names the value position');

$t->stop_nginx;
my $access = $t->read_file('logs/access.log');
like($access, qr/^DELETE 405 rejected method_not_allowed \Q$F\E 0$/m,
     'variables: a rejected DELETE');
like($access, qr/^POST 200 forwarded - \Q$F\E 1$/m, 'variables: a forwarded POST');
like($access, qr/^GET 404 rejected path_not_found - 0$/m, 'variables: a 404 has no flow sid');

$t->done;
