#!/usr/bin/perl

# The official Twilio Node.js helper library (npm twilio, pinned 6.3.1 in
# t/node/package.json) works unchanged through the gateway: a user's code
# with dummy credentials sets and reads the list, the upstream receives the
# library's exact wire format with the service's credential instead of the
# dummy one, and the gateway's own rejections reach the user as the
# library's RestException with Twilio's status, code and message.

use strict;
use warnings;

use Test::More;
use lib 't/lib';
use StudioTest;
use File::Spec;
use JSON::PP;
use MIME::Base64 qw(encode_base64);

my $ROOT   = StudioTest::root();
my $SCRIPT = "$ROOT/t/node/testusers-client.js";

my ($NODE) = grep { -f && -x } map { File::Spec->catfile($_, 'node') }
             File::Spec->path;
plan(skip_all => "node is missing: run 'make deps'") unless $NODE;
plan(skip_all => "t/node/node_modules/twilio is missing: run 'make deps'")
    unless -d "$ROOT/t/node/node_modules/twilio";

# the dummy credentials in testusers-client.js: they must never arrive
my $DUMMY_SID   = 'AC' . ('deadbeef' x 4);
my $DUMMY_TOKEN = 'dummy-token-not-a-secret';
my $DUMMY_B64   = encode_base64("$DUMMY_SID:$DUMMY_TOKEN", '');

my @IDS = ('+15555550100', 'client:alice', 'whatsapp:+15555550101',
           'client:bob smith');

my $t = StudioTest->new;
$t->start_upstream;

$t->start_nginx(<<'CONF');
    server {
        listen 127.0.0.1:%%PORT%%;

        location /v2/ {
            studio_testusers on;
            studio_testusers_credentials %%CRED%%;
            proxy_pass http://%%UPSTREAM%%;
        }
    }
CONF

my $GATEWAY = 'http://127.0.0.1:' . $t->port;

# runs one scenario of the node script; returns its decoded JSON output
sub node_client {
    my ($scenario) = @_;

    local $ENV{STUDIO_GATEWAY_URL};
    delete local $ENV{$_} for qw(TWILIO_REGION TWILIO_EDGE HTTP_PROXY
                                 HTTPS_PROXY http_proxy https_proxy);

    my $pid = open(my $out, '-|') // die "fork: $!";
    if ($pid == 0) {
        open STDERR, '>', $t->dir . "/logs/node-$scenario.err";
        exec $NODE, $SCRIPT, $GATEWAY, $scenario;
        die "exec $NODE: $!";
    }

    my $stdout = do { local $/; <$out> } // '';
    close $out;
    my $rc = $? >> 8;

    is($rc, 0, "$scenario: node client exits 0")
        or diag($t->read_file("logs/node-$scenario.err"));

    my $json = eval { JSON::PP->new->decode($stdout) };
    ok(ref $json eq 'HASH', "$scenario: JSON on stdout") or diag($stdout);

    return $json // {};
}

# the single request the upstream got for a scenario
sub forwarded_once {
    my ($name) = @_;
    my $rec = $t->recorded;
    is(scalar @$rec, 1, "$name: the upstream got exactly one request");
    $t->clear_recorded;
    return $rec->[0] // { headers => [], body => '' };
}

sub header_is {
    my ($req, $header, $want, $name, $label) = @_;
    is_deeply([ StudioTest::header_values($req, $header) ], [ $want ],
              "$name: exactly one $header: " . ($label // $want));
}

sub library_request_ok {
    my ($req, $name) = @_;

    header_is($req, 'Authorization', BASIC, $name, "the service's");
    header_is($req, 'Accept', 'application/json', $name);
    header_is($req, 'Accept-Charset', 'utf-8', $name);

    my @ua = StudioTest::header_values($req, 'User-Agent');
    is(scalar @ua, 1, "$name: one User-Agent");
    like($ua[0] // '', qr{^twilio-node/6\.3\.1 \(\w+ \w+\) node/v\d},
         "$name: the library's User-Agent");

    my $raw = JSON::PP->new->canonical->encode($req);
    unlike($raw, qr/\Q$DUMMY_B64\E|deadbeef|dummy-token/,
           "$name: the dummy credentials never reach upstream");
}

my $URL = 'https://studio.twilio.com' . PATH;

# --- update: four identities, including a space --------------------------

{
    my $r = node_client('update');
    is_deeply($r, { sid => FLOW, testUsers => \@IDS, url => $URL },
              'update: the library returns the identities as set');

    my $req = forwarded_once('update');
    is($req->{method}, 'POST', 'update: POST');
    is($req->{target}, PATH, 'update: the resource path, no query string');
    is($req->{body},
       'TestUsers=%2B15555550100&TestUsers=client%3Aalice'
       . '&TestUsers=whatsapp%3A%2B15555550101&TestUsers=client%3Abob%20smith',
       'update: repeated TestUsers, in order, percent-encoded, space as %20');
    is($req->{body}, form_body(@IDS), 'update: the body form_body() makes');
    header_is($req, 'Content-Type', 'application/x-www-form-urlencoded',
              'update');
    header_is($req, 'Content-Length', length $req->{body}, 'update');
    library_request_ok($req, 'update');
}

# --- fetch -----------------------------------------------------------------

{
    my $r = node_client('fetch');
    is_deeply($r, { sid => FLOW, testUsers => \@IDS, url => $URL },
              'fetch: the library reads the identities back');

    my $req = forwarded_once('fetch');
    is($req->{method}, 'GET', 'fetch: GET');
    is($req->{target}, PATH, 'fetch: the resource path');
    is($req->{body}, '', 'fetch: no body');
    is_deeply([ StudioTest::header_values($req, 'Content-Type') ], [],
              'fetch: no Content-Type (node sends none on GET)');
    library_request_ok($req, 'fetch');
}

# --- the gateway's rejections, as the library's RestException -------------

for my $case (
    [ 'empty', 400, 20001,
      'Missing required parameter TestUsers in the post body' ],
    [ 'too-long', 400, 20001, 'TestUsers value 2 is longer than 300 bytes' ],
    [ 'bad-flow', 404, 20404, 'The requested resource was not found' ],
) {
    my ($scenario, $status, $code, $message) = @$case;
    my $r = node_client($scenario);

    is($r->{status}, $status, "$scenario: RestException status $status");
    is($r->{code}, $code, "$scenario: RestException code $code");
    is($r->{message}, $message, "$scenario: RestException message");
    is($r->{moreInfo}, "https://www.twilio.com/docs/errors/$code",
       "$scenario: RestException moreInfo");
    is(scalar @{ $t->recorded }, 0, "$scenario: nothing reached upstream");
}

# the rejected updates changed nothing
{
    my $r = node_client('fetch');
    is_deeply($r->{testUsers}, \@IDS, 'after the rejections: list unchanged');
    forwarded_once('fetch after the rejections');
}

$t->done;
