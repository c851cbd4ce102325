#!/usr/bin/perl

# The POST body: Content-Type rules, strict form decoding, identity rules,
# and the same verdict for every shape the body can arrive in.  What is
# forwarded is byte for byte what was validated.

use strict;
use warnings;

use Test::More;
use Time::HiRes qw(sleep);
use lib 't/lib';
use StudioTest;

my $t = StudioTest->new;
$t->start_upstream;

my $loc = <<'LOC';
        location /v2/ {
            studio_testusers on;
            studio_testusers_credentials %%CRED%%;
            proxy_pass http://%%UPSTREAM%%;
        }
LOC

$t->start_nginx(<<"CONF");
    server {
        listen 127.0.0.1:%%PORT%%;
        $loc
    }
    server {
        listen 127.0.0.1:%%PORT_SMALL%%;
        client_body_buffer_size 1k;
        $loc
    }
    server {
        listen 127.0.0.1:%%PORT_FILEONLY%%;
        client_body_in_file_only on;
        $loc
    }
    server {
        listen 127.0.0.1:%%PORT_UNBUFFERED%%;
        proxy_request_buffering off;
        client_body_buffer_size 1k;
        $loc
    }
    server {
        listen 127.0.0.1:%%PORT_LIMITS%%;
        client_max_body_size 1k;
        client_body_timeout 1s;
        access_log %%DIR%%/logs/limits.log;
        $loc
    }
    server {
        listen 127.0.0.1:%%PORT_H2%% http2;
        client_body_buffer_size 1k;
        $loc
    }
CONF

my $FORM = 'Content-Type: application/x-www-form-urlencoded';

sub post {
    my ($body, %o) = @_;
    my $c = $t->connect($o{port} ? $t->port($o{port}) : undef);
    my $req = StudioTest::raw_request('POST', PATH,
        headers => $o{headers} // [ $FORM ], body => $body,
        ($o{chunked} ? (chunked => 1) : ()));
    if ($o{slow}) {
        $c->send_slowly($req, $o{slow}, 0.01);
    } else {
        $c->send($req);
    }
    return $c->response;
}

sub forwarded_ok {
    my ($r, $body, $name) = @_;
    is($r && $r->{status}, 200, "$name: forwarded, 200") or diag($r && $r->{body});
    my $rec = $t->recorded;
    is(scalar @$rec, 1, "$name: upstream saw one request");
    is($rec->[0]{body}, $body, "$name: upstream got the exact bytes");
    is_deeply([ StudioTest::header_values($rec->[0], 'Content-Length') ],
              [ length $body ], "$name: upstream got the right Content-Length");
    $t->clear_recorded;
}

sub rejected_ok {
    my ($r, $status, $message, $name) = @_;
    is($r && $r->{status}, $status, "$name: $status");
    is($r && $r->{json} && $r->{json}{message}, $message, "$name: message")
        if defined $message;
    is(scalar @{ $t->recorded }, 0, "$name: nothing reached the upstream");
    $t->clear_recorded;
}

# --- what the official clients send -------------------------------------------

my $node = 'TestUsers=%2B15555550100&TestUsers=client%3Aalice'
         . '&TestUsers=whatsapp%3A%2B15555550101';
forwarded_ok(post($node), $node, 'node client body');

forwarded_ok(post('TestUsers=client%3Aalice+smith&TestUsers=%2B1555'),
             'TestUsers=client%3Aalice+smith&TestUsers=%2B1555', 'space as +');

forwarded_ok(post($node, headers => [
        'Content-Type: application/x-www-form-urlencoded; charset=UTF-8',
        'Accept-Encoding: utf-8' ]),
    $node, 'java: charset=UTF-8');

forwarded_ok(post('TestUsers=a', headers => [
        'Content-Type: APPLICATION/X-WWW-Form-Urlencoded ; charset="utf-8"' ]),
    'TestUsers=a', 'media type case-insensitive, quoted charset');

my $u300 = 'TestUsers=' . ('a' x 300);
forwarded_ok(post($u300), $u300, '300 raw bytes');
my $e300 = 'TestUsers=' . ('%C3%A9' x 150);
forwarded_ok(post($e300), $e300, '300 bytes as escapes (150 x e-acute)');

# --- Content-Type -------------------------------------------------------------

my $ct = 'Content-Type must be application/x-www-form-urlencoded or application/json';
rejected_ok(post('TestUsers=a', headers => [ 'Content-Type: text/plain' ]),
            415, $ct, 'text/plain');
rejected_ok(post('TestUsers=a', headers => [ 'Content-Type: multipart/form-data; boundary=x' ]),
            415, $ct, 'multipart');
rejected_ok(post('TestUsers=a', headers => [
        'Content-Type: application/x-www-form-urlencoded; charset=latin1' ]),
    415, $ct, 'charset other than UTF-8');
rejected_ok(post('TestUsers=a', headers => [ 'Content-Type: application/xml' ]),
            415, $ct, 'XML');
rejected_ok(post('{}', headers => [ 'Content-Type: application/json; charset=latin1' ]),
            415, $ct, 'JSON in another charset');
rejected_ok(post('TestUsers=a', headers => []), 415, $ct, 'no Content-Type');
rejected_ok(post('TestUsers=a', headers => [ $FORM, $FORM ]), 400,
            'More than one Content-Type header', 'two Content-Type headers');
rejected_ok(post('TestUsers=a', headers => [ $FORM, 'Content-type: text/plain' ]),
            400, 'More than one Content-Type header', 'two, different case');

my $missing = 'Missing required parameter TestUsers in the post body';
rejected_ok(post(''), 400, $missing, 'empty body (Content-Length: 0)');
rejected_ok(post('', headers => []), 400, $missing, 'empty body, no Content-Type');
{
    my $c = $t->connect;
    $c->send("POST ${\ PATH} HTTP/1.0\r\n$FORM\r\n\r\n");
    rejected_ok($c->response, 400, $missing, 'HTTP/1.0 POST without a length');
}

# --- form syntax and identity rules -------------------------------------------

my @bad = (
    [ 'TestUsers=%zz', 'Malformed percent-escape in the post body', 'bad escape' ],
    [ 'TestUsers=a%2', 'Malformed percent-escape in the post body', 'cut escape' ],
    [ 'TestUsers=a&', 'Malformed form body: empty field or unescaped \'=\' in a value', 'trailing &' ],
    [ 'TestUsers=a&&TestUsers=b', 'Malformed form body: empty field or unescaped \'=\' in a value', 'empty pair' ],
    [ 'TestUsers=a=b', 'Malformed form body: empty field or unescaped \'=\' in a value', 'raw = in value' ],
    [ 'TestUsers=a&Foo=b', 'Unknown parameter in the post body: only TestUsers is accepted', 'other key' ],
    [ 'TestUsers[]=a', 'Unknown parameter in the post body: only TestUsers is accepted', 'array key' ],
    [ 'testusers=a', 'Unknown parameter in the post body: only TestUsers is accepted', 'lower-case key' ],
    [ 'TestUsers=a&TestUsers=', 'TestUsers value 2 is empty', 'empty value' ],
    [ 'TestUsers', 'TestUsers value 1 is empty', 'key without =' ],
    [ 'TestUsers=a&TestUsers=b&TestUsers=' . ('x' x 301),
      'TestUsers value 3 is longer than 300 bytes', 'too long' ],
    [ 'TestUsers=' . ('%C3%A9' x 150) . 'x', 'TestUsers value 1 is longer than 300 bytes', '301 bytes' ],
    [ 'TestUsers=%C3%28', 'TestUsers value 1 is not valid UTF-8', 'bad UTF-8' ],
    [ 'TestUsers=%C0%AF', 'TestUsers value 1 is not valid UTF-8', 'overlong' ],
    [ 'TestUsers=%ED%A0%80', 'TestUsers value 1 is not valid UTF-8', 'surrogate' ],
    [ 'TestUsers=%2B1555%0A', 'TestUsers value 1 contains a control character', 'newline' ],
    [ "TestUsers=a\tb", 'TestUsers value 1 contains a control character', 'raw tab' ],
    [ 'TestUsers=%C2%85', 'TestUsers value 1 contains a control character', 'C1 control' ],
    [ 'TestUsers=%7F', 'TestUsers value 1 contains a control character', 'DEL' ],
);

for my $b (@bad) {
    my $r = post($b->[0]);
    rejected_ok($r, 400, $b->[1], $b->[2]);
    is($r->{json}{code}, 20001, "$b->[2]: code 20001");
    unlike($r->{body}, qr/\Q@{[ substr($b->[0], 10) ]}\E/, "$b->[2]: value not echoed")
        if length $b->[0] > 12;
}

# --- every shape of body --------------------------------------------------------

my @ids = map { sprintf('+1555%07d', $_) } 1 .. 100;
my $small = form_body(@ids[0 .. 9]);
my $big = form_body(map { 'client:' . ('u' x 276) . sprintf('%07d', $_) } 1 .. 100);
my $bad_big = $big;
$bad_big =~ s/(.*)TestUsers=client/$1TestUsers=cl%ZZient/s;   # value 100

ok(length $big > 28000, 'big body is about 30 KB');

for my $shape (
    [ 'one write', {} ],
    [ 'slow client, 3-byte pieces', { slow => 3 } ],
    [ 'slow client, 1-byte pieces', { slow => 1 } ],
    [ 'temp file (client_body_buffer_size 1k)', { port => 'small' } ],
    [ 'client_body_in_file_only', { port => 'fileonly' } ],
    [ 'proxy_request_buffering off', { port => 'unbuffered' } ],
) {
    my ($name, $o) = @$shape;
    my $body = $o->{slow} ? $small : $big;
    forwarded_ok(post($body, %$o), $body, "$name: valid");

    my $bad = $o->{slow} ? $small . '&TestUsers=%0' : $bad_big;
    my $r = post($bad, %$o);
    rejected_ok($r, 400, $o->{slow} ? 'Malformed percent-escape in the post body'
                                    : 'Malformed percent-escape in the post body',
                "$name: invalid");
}

my $r = post($bad_big =~ s/%ZZ/%00/r, port => 'small');
rejected_ok($r, 400, 'TestUsers value 100 contains a control character',
            'temp file: position of the 100th value');

# chunked, with chunk boundaries inside escapes and the key
sub chunked {
    my ($body, @sizes) = @_;
    my $out = '';
    while (length $body) {
        my $n = shift(@sizes) // 7;
        my $piece = substr($body, 0, $n, '');
        $out .= sprintf("%x\r\n%s\r\n", length $piece, $piece);
    }
    return $out . "0\r\n\r\n";
}

my $te = [ $FORM, 'Transfer-Encoding: chunked' ];

for my $port (undef, 'small', 'fileonly', 'unbuffered') {
    my $name = 'chunked' . ($port ? " ($port)" : '');
    for my $body ($small, $big) {
        my $r = post(chunked($body, 4, 1, 2, 3, 11), headers => $te,
                     port => $port);
        forwarded_ok($r, $body, "$name, " . length($body) . ' bytes');
    }
    rejected_ok(post(chunked($bad_big, 9, 3), headers => $te, port => $port),
                400, 'Malformed percent-escape in the post body', "$name: invalid");
}

rejected_ok(post(chunked(''), headers => $te), 400, $missing, 'chunked, empty');

# a slow chunked sender
{
    my $c = $t->connect;
    $c->send_slowly(StudioTest::raw_request('POST', PATH, headers => $te,
                                            body => chunked($small, 5)), 17, 0.01);
    forwarded_ok($c->response, $small, 'chunked, slow');
}

# Expect: 100-continue
{
    my $c = $t->connect;
    $c->send(StudioTest::raw_request('POST', PATH, headers => [ $FORM,
        'Expect: 100-continue', 'Content-Length: ' . length $small ]));
    my $cont = $c->response(2);
    is($cont && $cont->{status}, 100, 'Expect: 100 Continue sent');
    $c->send($small);
    forwarded_ok($c->response, $small, 'Expect: 100-continue');
}

# --- HTTP/2 ---------------------------------------------------------------------

my @h2ct = ([ 'content-type', 'application/x-www-form-urlencoded' ]);

sub pieces { my ($s, $n) = @_; my @p; push @p, substr($s, 0, $n, '') while length $s; @p }

$r = $t->h2_request('POST', PATH, body => [ $small ],
    headers => [ @h2ct, [ 'content-length', length $small ] ]);
forwarded_ok($r, $small, 'HTTP/2 with content-length');

$r = $t->h2_request('POST', PATH, body => [ pieces($small, 5) ], headers => \@h2ct);
forwarded_ok($r, $small, 'HTTP/2 without content-length, 5-byte DATA frames');

$r = $t->h2_request('POST', PATH, body => [ pieces($big, 1000) ], headers => \@h2ct);
forwarded_ok($r, $big, 'HTTP/2 without content-length, 30 KB to a temp file');

$r = $t->h2_request('POST', PATH, body => [ pieces($bad_big, 1000) ], headers => \@h2ct);
rejected_ok($r, 400, 'Malformed percent-escape in the post body',
            'HTTP/2 without content-length, invalid');
is($r->{json}{code}, 20001, 'HTTP/2 rejection is Twilio-shaped');

$r = $t->h2_request('POST', PATH, body => [ '' ], headers => \@h2ct);
rejected_ok($r, 400, $missing, 'HTTP/2 empty body');

$r = $t->h2_request('GET', PATH);
is($r->{status}, 200, 'HTTP/2 GET');
$t->clear_recorded;

$r = $t->h2_request('GET', PATH, body => [ 'x' ]);
rejected_ok($r, 400, 'A GET request must not carry a body', 'HTTP/2 GET with DATA');

$r = $t->h2_request('GET', PATH, body => [ '' ]);
is($r->{status}, 200, 'HTTP/2 GET with an empty DATA frame');
$t->clear_recorded;

# --- nginx's own limits still apply -----------------------------------------------

my $over = form_body(('+15555550100') x 100);

$r = post($over, port => 'limits');
is($r && $r->{status}, 413, 'client_max_body_size: 413');
is(scalar @{ $t->recorded }, 0, '413: nothing forwarded');

$r = post(chunked($over, 100), headers => $te, port => 'limits');
is($r && $r->{status}, 413, 'client_max_body_size, chunked: 413');
is(scalar @{ $t->recorded }, 0, '413 chunked: nothing forwarded');

{
    my $c = $t->connect($t->port('limits'));
    $c->send(StudioTest::raw_request('POST', PATH, headers => [ $FORM,
        'Content-Length: 100' ]) . 'TestUsers=%2B1');
    # nginx answers a body timeout by closing the connection (logged as 408)
    $r = $c->response(5);
    is($r, undef, 'stalled body: no response');
    ok($c->closed(1), 'stalled body: connection closed');
    sleep 0.2;
    like($t->read_file('logs/limits.log'), qr/" 408 /,
         'stalled body: logged as 408');
    is(scalar @{ $t->recorded }, 0, '408: nothing forwarded');
}

{
    # the client gives up half way: no hang, no leak (checked at the end)
    my $c = $t->connect($t->port('small'));
    $c->send(StudioTest::raw_request('POST', PATH, headers => [ $FORM,
        'Content-Length: ' . length $big ]) . substr($big, 0, 5000));
    close $c->{s};
}

$t->done;
