#!/usr/bin/perl

# The audit trail: one JSON line per judged request, across workers,
# keep-alive, log rotation and reloads; HMAC tokens instead of identities;
# added/removed against the list Twilio last returned; failures counted,
# logged, and with audit_required a POST refused before Twilio sees it.

use strict;
use warnings;

use Digest::SHA qw(hmac_sha256_hex);
use IO::Socket::INET;
use JSON::PP;
use POSIX ();
use Test::More;
use Time::HiRes qw(sleep);
use lib 't/lib';
use StudioTest;

my $t = StudioTest->new;
$t->{workers} = 2;
$t->start_upstream;

my $KEY = 'ab' x 32;
$t->write_file('audit.key', "$KEY\n", 0600);
$t->write_file('htpasswd', "alice:{PLAIN}a\nbob:{PLAIN}b\n");

my $syslog = IO::Socket::INET->new(Proto => 'udp', LocalAddr => '127.0.0.1:0')
    or die "udp: $@";
my $syslog_port = $syslog->sockport;

my $conf = <<"CONF";
    studio_testusers_credentials %%CRED%%;
    studio_testusers_zone studio:1m;

    server {
        listen 127.0.0.1:%%PORT%%;
        access_log %%DIR%%/logs/access.log;

        location /v2/ {
            auth_basic "t";
            auth_basic_user_file %%DIR%%/htpasswd;
            studio_testusers on;
            studio_testusers_audit_log %%DIR%%/logs/audit.log;
            studio_testusers_audit_hmac_key %%DIR%%/audit.key;
            studio_testusers_actor \$remote_user;
            proxy_pass http://%%UPSTREAM%%;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_NOKEY%%;
        location /v2/ {
            studio_testusers on;
            studio_testusers_audit_log %%DIR%%/logs/nokey.log;
            proxy_pass http://%%UPSTREAM%%;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_RAW%%;
        location /v2/ {
            studio_testusers on;
            studio_testusers_audit_log syslog:server=127.0.0.1:$syslog_port,tag=studio;
            studio_testusers_audit_raw_identities on;
            proxy_pass http://%%UPSTREAM%%;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_FULL%%;
        location /v2/ {
            studio_testusers on;
            studio_testusers_audit_log /dev/full;
            proxy_pass http://%%UPSTREAM%%;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_REQUIRED%%;
        location /v2/ {
            studio_testusers on;
            studio_testusers_audit_log /dev/full;
            studio_testusers_audit_required on;
            proxy_pass http://%%UPSTREAM%%;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_REQUIREDOK%%;
        location /v2/ {
            studio_testusers on;
            studio_testusers_audit_log %%DIR%%/logs/required.log;
            studio_testusers_audit_hmac_key %%DIR%%/audit.key;
            studio_testusers_audit_required on;
            proxy_pass http://%%UPSTREAM%%;
        }
    }
CONF

$t->start_nginx($conf);

my $json = JSON::PP->new;
my $FORM = 'Content-Type: application/x-www-form-urlencoded';
my %auth = (alice => 'Authorization: Basic YWxpY2U6YQ==',
            bob => 'Authorization: Basic Ym9iOmI=');

sub token { hmac_sha256_hex($_[0], $KEY) }

sub records {
    my ($file) = @_;
    my @lines = split /\n/, $t->read_file($file);
    return map { my $r = eval { $json->decode($_) }; $r // { torn => $_ } } @lines;
}

sub send_on {
    my ($c, $method, $path, $who, $body) = @_;
    $c->send(StudioTest::raw_request($method, $path, keepalive => 1,
        headers => [ $auth{$who}, defined $body ? $FORM : () ], body => $body));
    return $c->response;
}

sub req {
    my ($port, $method, $who, $body, $flow) = @_;
    my $c = $t->connect($port ? $t->port($port) : undef);
    my $path = '/v2/Flows/' . ($flow // FLOW) . '/TestUsers';
    $c->send(StudioTest::raw_request($method, $path,
        headers => [ $who ? $auth{$who} : (), defined $body ? $FORM : () ],
        body => $body));
    return $c->response;
}

# --- the schema, the tokens, added and removed ---------------------------------

my @seq = (
    # who, method, identities (POST) => expected added, removed, baseline
    [ 'alice', 'POST', [ '+15555550100', 'client:alice' ], undef, undef, 'unknown' ],
    [ 'bob', 'GET' ],
    [ 'bob', 'POST', [ '+15555550100', 'client:bob', 'client:carol' ],
      [ 'client:bob', 'client:carol' ], [ 'client:alice' ], 'known' ],
    [ 'alice', 'POST', [ 'client:bob', 'client:carol' ],
      [], [ '+15555550100' ], 'known' ],
);

for my $s (@seq) {
    my ($who, $method, $ids) = @$s;
    my $r = req(undef, $method, $who, $ids ? form_body(@$ids) : undef);
    is($r->{status}, 200, "$who $method: 200");
}

req(undef, 'POST', 'alice', 'TestUsers=%2B1555&TestUsers=%00');
req(undef, 'DELETE', 'bob');
req(undef, 'POST', 'alice', 'TestUsers=dup-a&TestUsers=dup-b&TestUsers=dup-a');
req(undef, 'POST', undef, 'TestUsers=a');    # auth_basic says 401 first

$t->stop_nginx;

my @recs = records('logs/audit.log');
is(scalar @recs, 7, 'one record per judged request (401 by auth_basic is not ours)');

for my $i (0 .. 3) {
    my ($who, $method, $ids, $added, $removed, $baseline) = @{ $seq[$i] };
    my $r = $recs[$i];
    my $name = "record $i ($who $method)";

    is($r->{v}, 1, "$name: version");
    is($r->{event}, 'request', "$name: event");
    like($r->{time}, qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/, "$name: UTC time in ms");
    like($r->{request_id}, qr/^[0-9a-f]{32}$/, "$name: request id");
    is($r->{actor}, $who, "$name: actor");
    is($r->{client}, '127.0.0.1', "$name: client");
    is($r->{method}, $method, "$name: method");
    is($r->{flow_sid}, FLOW, "$name: flow");
    is($r->{result}, 'forwarded', "$name: result");
    is($r->{reason}, undef, "$name: no reason");
    is($r->{upstream_status}, 200, "$name: upstream status");
    ok(defined $r->{upstream_response_time_ms}, "$name: upstream time");
    is($r->{status}, 200, "$name: final status");

    if ($method eq 'POST') {
        my %u = map { $_ => 1 } @$ids;
        is($r->{identities}, scalar @$ids, "$name: identity count");
        is_deeply($r->{identity_tokens}, [ sort map { token($_) } keys %u ],
                  "$name: tokens are HMAC-SHA256 with the key, as openssl computes");
        is($r->{baseline}, $baseline, "$name: baseline $baseline");
        if ($added) {
            is($r->{added}, scalar @$added, "$name: added count");
            is($r->{removed}, scalar @$removed, "$name: removed count");
            is_deeply($r->{added_tokens}, [ sort map { token($_) } @$added ],
                      "$name: added tokens");
            is_deeply($r->{removed_tokens}, [ sort map { token($_) } @$removed ],
                      "$name: removed tokens");
        } else {
            ok(!exists $r->{added}, "$name: no diff without a baseline");
        }
    }
}

is($recs[4]{result}, 'rejected', 'rejected POST recorded');
is($recs[4]{reason}, 'identity_control_char', 'rejected POST: reason');
is($recs[4]{status}, 400, 'rejected POST: status');
is($recs[4]{upstream_status}, undef, 'rejected POST: no upstream');
is($recs[5]{reason}, 'method_not_allowed', 'rejected DELETE: reason');
is($recs[6]{reason}, 'duplicate_identity', 'refused duplicate: reason');
is($recs[6]{identities}, 2, 'refused duplicate: the two accepted values counted');
is_deeply($recs[6]{identity_tokens}, [ sort map { token($_) } qw(dup-a dup-b) ],
          'refused duplicate: tokens of the accepted values only');

# nothing personal or secret anywhere
my $all = join '', map { $t->read_file("logs/$_") } qw(audit.log error.log access.log);
for my $needle ('15555550100', 'client:alice', 'client%3Aalice', SECRET, $KEY) {
    unlike($all, qr/\Q$needle\E/, "no '$needle' in audit, error or access log");
}

# --- several workers, keep-alive, reopen and reload under load ------------------

if ($t->has_master) {

$t->write_file('logs/audit.log', '');
$t->start_nginx($conf);

my ($clients, $per) = (6, 90);
my @pids;

for my $k (1 .. $clients) {
    my $pid = fork // die;
    if ($pid == 0) {
        my $c = $t->connect;
        for my $i (1 .. $per) {
            my @req = $i % 3 == 0 ? ('POST', PATH, 'alice', "TestUsers=%2B1555000$k$i")
                    : $i % 3 == 1 ? ('GET', PATH, 'bob')
                    : ('POST', PATH, 'alice', 'TestUsers=%zz');
            my $r;
            for (1 .. 3) {
                # a reload closes idle keep-alive connections: send again
                $r = send_on($c, @req);
                last if $r;
                $c = $t->connect;
            }
            POSIX::_exit(1) unless $r;
            $c = $t->connect if ($r->{headers}{connection} // '') =~ /close/;
            sleep 0.01;
        }
        POSIX::_exit(0);
    }
    push @pids, $pid;
}

sleep 0.25;
rename $t->dir . '/logs/audit.log', $t->dir . '/logs/audit.log.1';
$t->signal('USR1');
sleep 0.25;
$t->reload;
sleep 0.25;
rename $t->dir . '/logs/audit.log', $t->dir . '/logs/audit.log.2';
$t->signal('USR1');

my $lost = 0;
for (@pids) {
    waitpid $_, 0;
    $lost++ if $?;
}
is($lost, 0, 'every client got every answer');
$t->stop_nginx;

for my $f (qw(audit.log.1 audit.log.2 audit.log)) {
    ok(scalar(records("logs/$f")) > 0, "$f got records: rotation happened under load");
}

my @load = map { records("logs/$_") } qw(audit.log.1 audit.log.2 audit.log);
is(scalar @load, $clients * $per, "$clients x $per requests: exactly as many records "
   . 'across rotation and reload');
is(scalar(grep { $_->{torn} } @load), 0, 'no torn or interleaved lines');
is(scalar(grep { $_->{result} eq 'rejected' && $_->{reason} eq 'malformed_escape' } @load),
   $clients * $per / 3, 'rejections recorded with their reason');
my %ids = map { $_->{request_id} => 1 } @load;
is(scalar keys %ids, $clients * $per, 'every record is a different request');

my %tok;
for my $r (grep { $_->{identity_tokens} } @load) {
    $tok{ $r->{identity_tokens}[0] }++;
}
my $k1 = token('+155500013');
is($tok{$k1}, 1, 'tokens stable across workers and reloads');

}

# --- without a key: counts only; raw only when asked; syslog ----------------------

$t->start_nginx($conf);

req('nokey', 'POST', undef, form_body('+15555550100', 'client:x'));
req('nokey', 'POST', undef, form_body('+15555550100', 'client:y', 'client:z'));

my $r = req('raw', 'POST', undef, form_body('+15555550177'));
is($r->{status}, 200, 'syslog location: forwarded');

$syslog->blocking(0);
my $got = '';
for (1 .. 40) {
    my $buf;
    last if defined $syslog->recv($buf, 65536) && length($got = $buf);
    sleep 0.05;
}
like($got, qr/^<\d+>\w{3} [ \d]\d \d\d:\d\d:\d\d \S+ studio: \{/, 'syslog record with nginx syslog header');
my ($sj) = $got =~ /(\{.*\})/;
my $srec = eval { $json->decode($sj) } // {};
is_deeply($srec->{identity_values}, [ '+15555550177' ], 'raw identities only when asked');

# --- a log that cannot be written -------------------------------------------------

$t->clear_recorded;
$r = req('full', 'POST', undef, 'TestUsers=a');
is($r->{status}, 200, 'audit write failure without audit_required: forwarded');
is(scalar @{ $t->recorded }, 1, 'without audit_required: reached the upstream');
$t->clear_recorded;

$r = req('required', 'POST', undef, 'TestUsers=a');
is($r->{status}, 503, 'audit_required and an unwritable log: 503');
is($r->{json}{code}, 20503, 'audit_required: Twilio-shaped');
is(scalar @{ $t->recorded }, 0, 'audit_required: nothing reached the upstream');

$r = req('required', 'GET');
is($r->{status}, 200, 'audit_required: GET still served');
$t->clear_recorded;

$r = req('requiredok', 'POST', undef, 'TestUsers=b');
is($r->{status}, 200, 'audit_required with a writable log: forwarded');

$t->stop_nginx;

my @nokey = records('logs/nokey.log');
ok(!exists $nokey[1]{identity_tokens}, 'no key: no tokens');
is($nokey[1]{baseline}, 'known', 'no key: baseline known');
is($nokey[1]{added}, 2, 'no key: added count');
is($nokey[1]{removed}, 1, 'no key: removed count');
ok(!exists $nokey[1]{added_tokens}, 'no key: no added tokens');

my @req = records('logs/required.log');
is_deeply([ map { $_->{event} } @req ], [ 'intent', 'request' ],
          'audit_required: an intent record before the request record');
is_deeply($req[0]{identity_tokens}, [ token('b') ], 'intent record: tokens');
is($req[0]{result}, 'forwarded', 'intent record: the POST is being forwarded');
is($req[0]{reason}, undef, 'intent record: no reason');
ok(!exists $req[0]{status}, 'intent record: no final status yet');

my @fails = $t->error_log =~ /\[error\].*studio_testusers: audit record to "\/dev\/full" not written/g;
ok(@fails >= 3, 'each failed write logged at error level (' . scalar(@fails) . ')');

$t->done;
