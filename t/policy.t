#!/usr/bin/perl

# Team policies: location rules and named policies picked by team, each rule
# alone and combined, report mode, JSON bodies in every shape, and the
# per-flow update lock (409), released however the first request ends.

use strict;
use warnings;

use IO::Socket::INET;
use JSON::PP;
use POSIX ();
use Test::More;
use Time::HiRes qw(sleep time);
use lib 't/lib';
use StudioTest;

my $t = StudioTest->new;
$t->start_upstream;

my $F = FLOW;
my $F2 = FLOW2;
my $F3 = 'FW' . ('a' x 32);

# flows alike in the digits the zone's trees are keyed on
my @COLLIDE = map { 'FW' . ('0' x 8) . sprintf('%024x', $_) } 1 .. 3;

$t->write_file('htpasswd', join '', map { "$_:{PLAIN}pw\n" } qw(alpha beta gamma dave));

my $loc = <<'LOC';
            studio_testusers on;
            studio_testusers_pass_header X-Standin-Delay;
            studio_testusers_audit_log %%DIR%%/logs/audit.log;
            proxy_pass http://%%UPSTREAM%%;
            proxy_read_timeout 2s;
LOC

$t->start_nginx(<<"CONF");
    studio_testusers_credentials %%CRED%%;

    studio_testusers_policy alpha {
        flows $F;
        methods GET POST;
        identity_pattern "^\\+[1-9][0-9]{6,14}\$";
        max_identities 3;
    }

    studio_testusers_policy beta {
        flows $F $F2;
        methods GET;
    }

    studio_testusers_policy gamma {
        identity_pattern "^client:";
        identity_pattern "^whatsapp:";
        duplicates allow;
    }

    map \$http_x_team \$team_from_header {
        default "";
        ~^(?<t>[a-z]+)\$ \$t;
    }

    server {
        listen 127.0.0.1:%%PORT%%;
        location /v2/ {
            auth_basic "teams";
            auth_basic_user_file %%DIR%%/htpasswd;
            studio_testusers_team \$remote_user;
$loc
        }
    }

    server {
        listen 127.0.0.1:%%PORT_FILEONLY%%;
        client_body_in_file_only on;
        proxy_request_buffering off;
        location /v2/ {
$loc
        }
    }

    log_format team '\$studio_testusers_team \$studio_testusers_result';

    server {
        listen 127.0.0.1:%%PORT_MAP%%;
        access_log %%DIR%%/logs/team.log team;
        location /v2/ {
            studio_testusers_team \$team_from_header;
$loc
        }
    }

    server {
        listen 127.0.0.1:%%PORT_REPORT%%;
        location /v2/ {
            studio_testusers_team \$team_from_header;
            studio_testusers_mode report;
$loc
        }
    }

    server {
        listen 127.0.0.1:%%PORT_RULES%%;
        client_body_buffer_size 1k;
        location /v2/ {
            studio_testusers_flows $F $F3 @COLLIDE;
            studio_testusers_methods POST;
            studio_testusers_max_identities 1000;
$loc
        }
    }

    server {
        listen 127.0.0.1:%%PORT_H2%% http2;
        client_body_buffer_size 1k;
        location /v2/ {
$loc
        }
    }
CONF

my $FORM = 'Content-Type: application/x-www-form-urlencoded';
my $JSONCT = 'Content-Type: application/json';

sub path { '/v2/Flows/' . ($_[0] // FLOW) . '/TestUsers' }

sub as {
    my ($port, $who, $method, $body, %o) = @_;
    my @h = @{ $o{headers} // [] };
    push @h, 'Authorization: Basic ' . MIME::Base64::encode_base64("$who:pw", '')
        if $port eq 'http' && defined $who;
    push @h, "X-Team: $who" if $port ne 'http' && defined $who;
    push @h, $o{json} ? $JSONCT : $FORM if defined $body;
    my $c = $t->connect($t->port($port));
    $c->send(StudioTest::raw_request($method, path($o{flow}), headers => \@h,
                                     body => $body));
    return $c->response;
}

sub ok_fwd {
    my ($r, $name) = @_;
    is($r && $r->{status}, 200, "$name: forwarded") or diag($r && $r->{body});
    $t->clear_recorded;
}

sub refused {
    my ($r, $status, $reason_msg, $name) = @_;
    is($r && $r->{status}, $status, "$name: $status");
    like($r && $r->{json} && $r->{json}{message} // '', $reason_msg, "$name: message");
    is(scalar @{ $t->recorded }, 0, "$name: nothing forwarded");
    $t->clear_recorded;
}

# --- named policies picked by $remote_user ---------------------------------------

ok_fwd(as('http', 'alpha', 'GET', undef), 'alpha GET own flow');
ok_fwd(as('http', 'alpha', 'POST', form_body('+15555550100', '+442071838750')),
       'alpha POST E.164');
refused(as('http', 'alpha', 'GET', undef, flow => $F2), 403,
        qr/may not use this flow/, 'alpha, other flow');
refused(as('http', 'alpha', 'POST', form_body('+15555550100', 'client:x')), 400,
        qr/^TestUsers value 2 does not match any pattern/, 'alpha, pattern');
refused(as('http', 'alpha', 'POST', form_body(map { "+1555555010$_" } 1 .. 4)), 400,
        qr/^TestUsers value 4 is more than this team may set/, 'alpha, max 3');
refused(as('http', 'alpha', 'POST', form_body('+15555550100', '+15555550100')), 400,
        qr/^TestUsers value 2 repeats an earlier value/, 'alpha, duplicate (default reject)');

ok_fwd(as('http', 'beta', 'GET', undef, flow => $F2), 'beta GET');
refused(as('http', 'beta', 'POST', form_body('+15555550100')), 403,
        qr/may not use this method/, 'beta is read-only');
refused(as('http', 'beta', 'GET', undef, flow => $F3), 403, qr/this flow/, 'beta, unlisted flow');

ok_fwd(as('http', 'gamma', 'POST', form_body('client:a', 'whatsapp:+1555', 'client:a'), flow => $F3),
       'gamma: any flow, two patterns, duplicates allowed');
refused(as('http', 'gamma', 'POST', form_body('+15555550100')), 400,
        qr/value 1 does not match any pattern/, 'gamma, pattern');

refused(as('http', 'dave', 'GET', undef), 403, qr/No policy allows this team/,
        'a team without a policy and no default: 403');

# the duplicates set grows: 600 values, a repeat of value 17 at the end
{
    my @many = map { "client:u$_" } 1 .. 600;
    ok_fwd(as('rules', undef, 'POST', form_body(@many)), '600 distinct values');
    refused(as('rules', undef, 'POST', form_body(@many, 'client:u17')), 400,
            qr/^TestUsers value 601 repeats an earlier value/, 'a repeat after 600 values');
}

my $r = as('http', 'alpha', 'POST', form_body('%zz'));
is($r->{status}, 400, 'policy never relaxes the core syntax');

# --- picked by a map on a header ----------------------------------------------------

ok_fwd(as('map', 'alpha', 'GET', undef), 'map: alpha');
refused(as('map', 'beta', 'POST', form_body('+15555550100')), 403, qr/method/, 'map: beta read-only');
refused(as('map', 'nobody', 'GET', undef), 403, qr/No policy/, 'map: unknown team');
refused(as('map', undef, 'GET', undef), 403, qr/No policy/, 'map: no header');
is(as('map', 'alpha', 'DELETE', undef)->{status}, 405, 'map: DELETE by alpha');

# the log line of the last request may follow its answer
for (1 .. 60) { last if ($t->read_file('logs/team.log') =~ tr/\n//) >= 5; sleep 0.05 }
like($t->read_file('logs/team.log'), qr/^alpha forwarded\nbeta rejected\nnobody rejected\n- rejected\nalpha rejected\n/,
     '$studio_testusers_team in the access log');

# --- report mode ----------------------------------------------------------------------

ok_fwd(as('report', 'beta', 'POST', form_body('+15555550100', '+15555550100')),
       'report: read-only team POST with a duplicate is forwarded');
ok_fwd(as('report', 'alpha', 'POST', form_body('client:x')), 'report: pattern violation forwarded');
ok_fwd(as('report', 'nobody', 'GET', undef), 'report: unknown team forwarded');
$r = as('report', 'alpha', 'POST', 'TestUsers=a%2');
is($r->{status}, 400, 'report mode never relaxes the core syntax');
$r = as('report', 'alpha', 'POST', form_body('x' x 301));
is($r->{status}, 400, 'report mode never relaxes the 300-byte limit');
$t->clear_recorded;
like($t->error_log, qr/\[info\].*report mode, would reject: method_not_permitted/,
     'report mode logs what it would have done');

# --- location-level rules ---------------------------------------------------------------

ok_fwd(as('rules', undef, 'POST', form_body('a')), 'rules: POST to a listed flow');
refused(as('rules', undef, 'GET', undef), 403, qr/method/, 'rules: GET not allowed');
refused(as('rules', undef, 'POST', form_body('a'), flow => $F2), 403, qr/flow/, 'rules: unlisted flow');

# --- JSON bodies ---------------------------------------------------------------------------

my @ids = ('+15555550100', 'client:alice smith', "caf\x{e9}", 'whatsapp:+1555');
my $json = JSON::PP->new->utf8->canonical->encode({ TestUsers => \@ids });
my @ids_bytes = map { my $x = $_; utf8::encode($x); $x } @ids;
my $expect = form_body(@ids_bytes);

sub json_ok {
    my ($r, $name) = @_;
    is($r && $r->{status}, 200, "$name: forwarded") or diag($r && $r->{body});
    my $rec = $t->recorded->[0] // { headers => [] };
    is($rec->{body}, $expect, "$name: forwarded as the equivalent form body");
    is_deeply([ StudioTest::header_values($rec, 'Content-Type') ],
              [ 'application/x-www-form-urlencoded' ], "$name: form Content-Type upstream");
    is_deeply([ StudioTest::header_values($rec, 'Content-Length') ],
              [ length $expect ], "$name: Content-Length of the form body");
    is_deeply([ StudioTest::header_values($rec, 'Transfer-Encoding') ], [],
              "$name: no Transfer-Encoding upstream");
    $t->clear_recorded;
}

json_ok(as('rules', undef, 'POST', $json, json => 1), 'JSON, one write');
{
    my $c = $t->connect($t->port('rules'));
    $c->send_slowly(StudioTest::raw_request('POST', path(),
        headers => [ $JSONCT ], body => $json), 3, 0.005);
    json_ok($c->response, 'JSON, slow client');
}
{
    my $c = $t->connect($t->port('rules'));
    my $body = $json;
    my $chunked = '';
    $chunked .= sprintf("%x\r\n%s\r\n", length($_), $_) for $body =~ /(.{1,5})/sg;
    $c->send(StudioTest::raw_request('POST', path(),
        headers => [ $JSONCT, 'Transfer-Encoding: chunked' ], body => "${chunked}0\r\n\r\n"));
    json_ok($c->response, 'JSON, chunked');
}

json_ok(as('fileonly', undef, 'POST', $json, json => 1),
        'JSON, client_body_in_file_only and proxy_request_buffering off');

my @big = map { sprintf('client:%0290d', $_) } 1 .. 100;
my $bigjson = JSON::PP->new->encode({ TestUsers => \@big });
$r = as('rules', undef, 'POST', $bigjson, json => 1);
is($r->{status}, 200, 'JSON, 30 KB through a temp file: forwarded');
is($t->recorded->[0]{body}, form_body(@big), 'JSON, 30 KB: form body upstream');
$t->clear_recorded;

$r = $t->h2_request('POST', path(), port => $t->port('h2'),
                    headers => [ [ 'content-type', 'application/json' ] ],
                    body => [ $json =~ /(.{1,7})/sg ]);
json_ok($r, 'JSON, HTTP/2 without content-length');

for my $bad (
    [ '{"TestUsers":["a"],"TestUsers":["b"]}', qr/Malformed JSON/, 'duplicate keys' ],
    [ '{"TestUsers":["a",1]}', qr/Malformed JSON/, 'non-string item' ],
    [ '{"TestUsers":[["a"]]}', qr/Malformed JSON/, 'nested array' ],
    [ '{"TestUsers":"a"}', qr/Malformed JSON/, 'not an array' ],
    [ '{"TestUsers":["a"]} x', qr/Malformed JSON/, 'trailing data' ],
    [ '{"TestUsers":["a"]}{}', qr/Malformed JSON/, 'two documents' ],
    [ "{\"TestUsers\":[\"\xff\"]}", qr/Malformed JSON/, 'invalid UTF-8' ],
    [ '{"TestUsers":["a\u0000b"]}', qr/Malformed JSON/, 'NUL escape' ],
    [ "{\"TestUsers\":[\"a\nb\"]}", qr/Malformed JSON|value 1 contains a control character/,
      'raw newline in a string' ],
    [ '{"TestUsers":["a\u0001b"]}', qr/value 1 contains a control character/, 'control escape' ],
    [ '["a"]', qr/Malformed JSON/, 'not an object' ],
    [ '{"TestUsers":["a"],"Other":1}', qr/Unknown parameter/, 'other key' ],
    [ '{"TestUsers":[]}', qr/Missing required parameter/, 'empty list' ],
    [ '{}', qr/Missing required parameter/, 'empty object' ],
    [ '', qr/Missing required parameter/, 'empty body' ],
    [ '{"TestUsers":["a","' . ('x' x 301) . '"]}', qr/value 2 is longer than 300/, 'too long' ],
    [ '{"TestUsers":["a","a"]}', qr/value 2 repeats/, 'duplicate' ],
) {
    my ($body, $re, $name) = @$bad;
    refused(as('rules', undef, 'POST', $body, json => 1), 400, $re, "JSON $name");
}

refused(as('http', 'alpha', 'POST', '{"TestUsers":["+15555550100","client:x"]}', json => 1),
        400, qr/value 2 does not match/, 'JSON goes through team rules');

# --- the update lock ---------------------------------------------------------------------

sub post_bg {
    my ($port, $delay, %o) = @_;
    my $c = $t->connect($t->port($port));
    $c->send(StudioTest::raw_request('POST', path($o{flow}),
        headers => [ $FORM, "X-Standin-Delay: $delay" ],
        body => 'TestUsers=' . ($o{id} // 'a')));
    return $c;
}

my $slow = post_bg('rules', 1);
sleep 0.3;
$r = as('rules', undef, 'POST', form_body('b'));
is($r->{status}, 409, 'a second POST for the same flow while one is in flight: 409');
is($r->{json}{code}, 20409, '409 is Twilio-shaped');
$r = as('rules', undef, 'POST', form_body('c'), flow => $F3);
is($r->{status}, 200, 'a POST for another flow meanwhile: forwarded');
$r = as('rules', undef, 'GET', undef);
my $first = $slow->response(5);
is($first && $first->{status}, 200, 'the first POST completes');
$r = as('rules', undef, 'POST', form_body('d'));
is($r->{status}, 200, 'after it completes the flow is free again');
$t->clear_recorded;

# concurrent: exactly one of two simultaneous POSTs wins
{
    my @c = map { post_bg('rules', 0.5, id => "x$_") } 1 .. 2;
    my @s = sort map { my $x = $_->response(5); $x ? $x->{status} : 0 } @c;
    is("@s", '200 409', 'two simultaneous POSTs: one forwarded, one 409');
}

# flows that share the digits the lock tree is keyed on are still told
# apart: three locks held, each flow answers 409, none is locked twice
{
    my @flows = @COLLIDE;
    my @c = map { post_bg('rules', 1, flow => $_, id => "k$_") } @flows;
    sleep 0.3;
    my @s = map { as('rules', undef, 'POST', form_body('z'), flow => $_)->{status} } @flows;
    is("@s", '409 409 409', 'flows with colliding tree keys: each one locked');
    @s = map { my $x = $_->response(5); $x ? $x->{status} : 0 } @c;
    is("@s", '200 200 200', 'flows with colliding tree keys: each first POST forwarded');
}

# released after an upstream timeout (proxy_read_timeout 2s)
$slow = post_bg('rules', 4);
$first = $slow->response(5);
is($first && $first->{status}, 504, 'upstream timeout: 504');
$r = as('rules', undef, 'POST', form_body('e'));
is($r->{status}, 200, 'lock released after the upstream timeout');

# released when the client goes away early
$slow = post_bg('rules', 3);
sleep 0.3;
close $slow->{s};
my $deadline = time + 3;
my $status;
do {
    sleep 0.2;
    $status = as('rules', undef, 'POST', form_body('f'))->{status};
} while ($status == 409 && time < $deadline);
is($status, 200, 'lock released after the client closed early');

# never outlives a crashed worker
if ($t->has_master) {
$slow = post_bg('rules', 5);
sleep 0.3;
my @workers = grep { /^\d+$/ } split /\s+/, `pgrep -P ${\ $t->nginx_pid}`;
kill 'KILL', @workers;
$t->{expect_alert} = qr/worker process \d+ exited on signal 9/;
sleep 0.5;
$r = as('rules', undef, 'POST', form_body('g'));
is($r->{status}, 200, 'a killed worker\'s lock is taken over');
like($t->error_log, qr/taking over the update lock of flow "\Q$F\E" from exited process/,
     'the take-over is logged');
}
$t->clear_recorded;

# --- audit records team, policy and report verdicts ------------------------------------------

$t->stop_nginx;
my @audit = map { JSON::PP->new->decode($_) } split /\n/, $t->read_file('logs/audit.log');
my ($rep) = grep { ($_->{mode} // '') eq 'report' && $_->{team} && $_->{team} eq 'beta' } @audit;
is($rep->{would_reject}, 'method_not_permitted', 'report mode: audit says what would have happened');
is($rep->{result}, 'forwarded', 'report mode: audit says forwarded');
my ($al) = grep { ($_->{team} // '') eq 'alpha' && $_->{result} eq 'forwarded' } @audit;
is($al->{policy}, 'alpha', 'audit: policy name');
is($al->{actor}, 'alpha', 'audit: the team is the actor when none is configured');
my ($conf) = grep { ($_->{reason} // '') eq 'update_in_progress' } @audit;
ok($conf, 'audit: 409 recorded');

# --- nginx -t ------------------------------------------------------------------------------

for my $bad (
    [ "studio_testusers_policy p { flows FWnope; }", qr/invalid flow sid "FWnope"/ ],
    [ "studio_testusers_policy p { identity_pattern \"(\"; }", qr/"identity_pattern": pcre2_compile\(\) failed/ ],
    [ "studio_testusers_policy p { max_identities 0; }", qr/"max_identities" must be a positive number/ ],
    [ "studio_testusers_policy p { colour blue; }", qr/unknown directive "colour" in studio_testusers_policy/ ],
    [ "studio_testusers_policy p { methods PUT; }", qr/invalid method "PUT"/ ],
    [ "studio_testusers_policy p { } studio_testusers_policy p { }", qr/duplicate studio_testusers_policy "p"/ ],
    [ "server { location / { studio_testusers_max_identities -1; } }", qr/must be a positive number/ ],
    [ "server { location / { studio_testusers_flows $F fw00; } }", qr/invalid flow sid "fw00"/ ],
    [ "server { location / { studio_testusers_mode loud; } }", qr/invalid value "loud"/ ],
    [ "server { location / { studio_testusers_duplicates maybe; } }", qr/takes "reject" or "allow"/ ],
) {
    my ($rc, $out) = $t->nginx_t($bad->[0]);
    isnt($rc, 0, "nginx -t fails: $bad->[0]");
    like($out, $bad->[1], "nginx -t says why: $bad->[0]");
}

$t->done;
