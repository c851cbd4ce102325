#!/usr/bin/perl

# nginx -t catches credential and directive mistakes, naming the file and the
# problem, and never printing the secret.

use strict;
use warnings;

use Test::More;
use lib 't/lib';
use StudioTest;

my $t = StudioTest->new;

sub conf {
    my ($cred, $extra) = @_;
    return <<"CONF";
    server {
        listen 127.0.0.1:%%PORT%%;
        location /v2/ {
            studio_testusers on;
            ${\ (defined $cred ? "studio_testusers_credentials $cred;" : '')}
            ${\ ($extra // '')}
            proxy_pass http://%%UPSTREAM%%;
        }
    }
CONF
}

my ($rc, $out) = $t->nginx_t(conf('%%CRED%%'));
is($rc, 0, 'valid credentials pass nginx -t') or diag($out);
unlike($out, qr/accessible by other users/, 'a 0600 file gives no warning about its mode');
like($out, qr/\[warn\] studio_testusers_credentials: ".*credentials" holds an Account SID and its Auth Token; an API key \(SK\.\.\.\) for the gateway alone is safer/,
     'an Account SID credential: recommend an API key');

sub fails {
    my ($content, $re, $name, $mode) = @_;
    (my $file = "cred-$name") =~ tr/a-z0-9-/_/c;
    my $path = $t->write_file($file, $content, $mode // 0600);
    my ($rc, $out) = $t->nginx_t(conf($path));
    isnt($rc, 0, "$name: nginx -t fails");
    like($out, qr/\[emerg\] studio_testusers_credentials: "\Q$path\E" $re/,
         "$name: the message names the file and the problem");
    unlike($out, qr/\Q${\ SECRET}\E|testsecret/, "$name: no secret in the message");
}

fails('', qr/is empty/, 'empty');
fails("\n", qr/is empty/, 'blank line');
fails(SID . ':' . SECRET . "\n" . SID . ':' . SECRET . "\n",
      qr/holds more than one line/, 'two lines');
fails(SID . ':' . SECRET . "\n\n", qr/holds more than one line/, 'trailing blank line');
fails(SID . SECRET . "\n", qr/is malformed: expected one line SID:SECRET/, 'no colon');
fails('XY0123456789abcdef0123456789abcdef:' . SECRET, qr/has a malformed SID/, 'bad prefix');
fails('AC0123456789abcdef0123456789abcde:' . SECRET, qr/has a malformed SID/, 'short SID');
fails('AC0123456789abcdef0123456789abcdeg:' . SECRET, qr/has a malformed SID/, 'non-hex SID');
fails(SID . ':testsecret0123456789abcdefABCDE', qr/has a malformed secret/, 'short secret');
fails(SID . ':testsecret0123456789abcdef ABCDE', qr/has a malformed secret/, 'space in secret');
fails(SID . ':' . SECRET . ' ', qr/has a malformed secret/, 'trailing space');
fails('x' x 600, qr/is too large/, 'huge file');

($rc, $out) = $t->nginx_t(conf('%%DIR%%/no-such-file'));
isnt($rc, 0, 'missing file fails');
like($out, qr/studio_testusers_credentials: open\(\) ".*no-such-file" failed \(2: No such file/,
     'missing file: named, with the system error');

($rc, $out) = $t->nginx_t(conf('%%DIR%%'));
isnt($rc, 0, 'a directory fails');
like($out, qr/is not a regular file/, 'a directory: says so');

SKIP: {
    skip 'root reads any file', 2 if $> == 0;
    my $path = $t->write_file('cred-unreadable', SID . ':' . SECRET, 0000);
    ($rc, $out) = $t->nginx_t(conf($path));
    isnt($rc, 0, 'unreadable file fails');
    like($out, qr/Permission denied/, 'unreadable: the system error');
}

# CRLF and no final newline are one line too
for my $ending ("\r\n", '') {
    my $path = $t->write_file('cred-ending', SID . ':' . SECRET . $ending, 0600);
    ($rc, $out) = $t->nginx_t(conf($path));
    is($rc, 0, 'line ending ' . ($ending eq '' ? 'none' : 'CRLF') . ' accepted')
        or diag($out);
}

my $key = $t->write_file('cred-key', 'SK0123456789abcdef0123456789abcdef:'
                         . 'abcdefghijklmnopqrstuvwxyzABCDEF', 0600);
($rc, $out) = $t->nginx_t(conf($key));
is($rc, 0, 'an API key SID is accepted') or diag($out);
unlike($out, qr/Account SID/, 'an API key: no recommendation');

my $open = $t->write_file('cred-open', SID . ':' . SECRET . "\n", 0644);
($rc, $out) = $t->nginx_t(conf($open));
is($rc, 0, 'a world-readable file still loads');
like($out, qr/\[warn\] studio_testusers_credentials: "\Q$open\E" is accessible by other users \(mode 0644\)/,
     'a world-readable file warns');

($rc, $out) = $t->nginx_t(conf(undef));
isnt($rc, 0, 'on without credentials fails');
like($out, qr/"studio_testusers on" needs "studio_testusers_credentials"/,
     'on without credentials: says what is missing');

($rc, $out) = $t->nginx_t(conf('%%CRED%%', 'studio_testusers_credentials %%CRED%%;'));
isnt($rc, 0, 'duplicate credentials directive fails');
like($out, qr/"studio_testusers_credentials" directive is duplicate/, 'duplicate: says so');

($rc, $out) = $t->nginx_t(conf('%%CRED%%', 'studio_testusers maybe;'));
isnt($rc, 0, 'a bad flag fails');

# credentials at server level, on in the location: inherited
($rc, $out) = $t->nginx_t(<<'CONF');
    studio_testusers_credentials %%CRED%%;
    server {
        listen 127.0.0.1:%%PORT%%;
        location /v2/ {
            studio_testusers on;
            proxy_pass http://%%UPSTREAM%%;
        }
        location / {
        }
    }
CONF
is($rc, 0, 'credentials inherited from http level') or diag($out);

# --- lint: what would undo the credential, or send it anywhere ----------------

sub lint {
    my ($loc, $srv) = @_;
    return $t->nginx_t(<<"CONF");
    studio_testusers_credentials %%CRED%%;
    server {
        listen 127.0.0.1:%%PORT%%;
        ${\ ($srv // '')}
        location /v2/ {
            studio_testusers on;
            $loc
        }
    }
CONF
}

($rc, $out) = lint('proxy_pass https://127.0.0.1;');
isnt($rc, 0, 'https without verification fails');
like($out, qr/\[emerg\] studio_testusers in location "\/v2\/": "proxy_pass https:\/\/127\.0\.0\.1" needs "proxy_ssl_verify on" and "proxy_ssl_server_name on"/,
     'https without verification: says what is needed');

($rc, $out) = lint("proxy_ssl_verify on;\nproxy_pass https://127.0.0.1;");
isnt($rc, 0, 'verify without SNI fails');

($rc, $out) = lint("allow 127.0.0.1; deny all;\nproxy_ssl_verify on;\nproxy_ssl_server_name on;\n"
                   . "proxy_ssl_trusted_certificate /etc/ssl/certs/ca-certificates.crt;\n"
                   . "proxy_pass https://127.0.0.1;");
is($rc, 0, 'https with verification and SNI passes') or diag($out);
unlike($out, qr/studio_testusers in location/, 'and says nothing');

($rc, $out) = $t->nginx_t(<<'CONF');
    studio_testusers_credentials %%CRED%%;
    proxy_ssl_verify on;
    proxy_ssl_server_name on;
    proxy_ssl_trusted_certificate /etc/ssl/certs/ca-certificates.crt;
    server {
        listen 127.0.0.1:%%PORT%%;
        auth_basic "x";
        auth_basic_user_file /dev/null;
        location /v2/ {
            studio_testusers on;
            proxy_pass https://127.0.0.1;
        }
    }
CONF
is($rc, 0, 'verification and access control inherited from outer levels pass') or diag($out);
unlike($out, qr/studio_testusers in location/, 'inherited: nothing to say');

($rc, $out) = lint("proxy_set_header Authorization \$http_authorization;\nproxy_pass http://127.0.0.1:1;");
isnt($rc, 0, 'proxy_set_header Authorization fails');
like($out, qr/"proxy_set_header Authorization" would replace the Twilio credential/, 'proxy_set_header Authorization: says why');

($rc, $out) = lint("proxy_pass http://127.0.0.1:1;", "proxy_set_header authorization x;");
isnt($rc, 0, 'an inherited proxy_set_header Authorization fails');

($rc, $out) = lint("proxy_set_header Host x;\nproxy_pass http://127.0.0.1:1;", "proxy_set_header Authorization x;");
is($rc, 0, 'a location with its own proxy_set_header lines does not inherit the server ones')
    or diag($out);

($rc, $out) = lint("proxy_pass_request_headers off;\nproxy_pass http://127.0.0.1:1;");
isnt($rc, 0, 'proxy_pass_request_headers off fails');
like($out, qr/"proxy_pass_request_headers off" would drop the Twilio credential/, 'request headers off: says why');

($rc, $out) = lint("proxy_pass http://127.0.0.1:1;");
is($rc, 0, 'no access control still passes');
like($out, qr/\[warn\] studio_testusers in location "\/v2\/" has no access control/, 'no access control: warns');

for my $ac ('auth_request /auth;', 'allow 127.0.0.1;', 'deny all;') {
    ($rc, $out) = lint("$ac\nproxy_pass http://127.0.0.1:1;");
    unlike($out, qr/has no access control/, "$ac counts as access control");
}
($rc, $out) = lint("auth_basic off;\nproxy_pass http://127.0.0.1:1;");
like($out, qr/has no access control/, 'auth_basic off is no access control');

($rc, $out) = lint("allow all;\nproxy_pass http://127.0.0.1:1/v2/;");
like($out, qr/\[warn\] .*"proxy_pass http:\/\/127\.0\.0\.1:1\/v2\/" has a URI part/, 'a URI part: warns');

($rc, $out) = lint("allow all;\nproxy_pass \$http_x_url;");
isnt($rc, 0, 'proxy_pass with variables fails');
like($out, qr/"proxy_pass \$http_x_url" has variables: where the Twilio credential goes must be fixed/,
     'proxy_pass with variables: says why');

for my $d ('proxy_set_body "TestUsers=x";', 'proxy_method DELETE;', 'proxy_pass_request_body off;') {
    ($rc, $out) = lint("allow all;\n$d\nproxy_pass http://127.0.0.1:1;");
    isnt($rc, 0, "$d fails");
    like($out, qr/would forward a request other than the one judged/, "$d: says why");
}
($rc, $out) = lint("allow all;\nproxy_pass_request_body on;\nproxy_pass http://127.0.0.1:1;");
is($rc, 0, 'proxy_pass_request_body on passes') or diag($out);

($rc, $out) = $t->nginx_t("server { listen 127.0.0.1:%%PORT%%; location / { proxy_pass https://127.0.0.1; proxy_set_header Authorization x; } }");
is($rc, 0, 'locations without studio_testusers are not linted') or diag($out);

# --- audit directives -------------------------------------------------------

for my $k (
    [ 'short', 'abc', qr/must hold one line of 32 to 64 characters/ ],
    [ 'long', 'a' x 65, qr/must hold one line of 32 to 64 characters/ ],
    [ 'spaces', ('a' x 20) . ' ' . ('b' x 20), qr/must hold printable characters only/ ],
    [ 'two_lines', ('a' x 32) . "\n" . ('b' x 20), qr/must hold printable characters only/ ],
) {
    my ($name, $content, $re) = @$k;
    my $path = $t->write_file("key-$name", $content, 0600);
    ($rc, $out) = $t->nginx_t(conf('%%CRED%%', "studio_testusers_audit_log %%DIR%%/logs/a.log;\n"
                                   . "studio_testusers_audit_hmac_key $path;"));
    isnt($rc, 0, "hmac key $name: nginx -t fails");
    like($out, qr/studio_testusers_audit_hmac_key: "\Q$path\E" $re/, "hmac key $name: says why");
    unlike($out, qr/aaaaaaaa/, "hmac key $name: key not printed");
}

($rc, $out) = $t->nginx_t(conf('%%CRED%%', 'studio_testusers_audit_hmac_key %%DIR%%/nokey;'));
like($out, qr/studio_testusers_audit_hmac_key: open\(\) ".*nokey" failed/, 'missing hmac key file');

my $okkey = $t->write_file('key-ok', ('ab' x 32) . "\n", 0644);
($rc, $out) = $t->nginx_t(conf('%%CRED%%', "studio_testusers_audit_log %%DIR%%/logs/a.log;\n"
                               . "studio_testusers_audit_hmac_key $okkey;"));
is($rc, 0, 'a valid hmac key passes') or diag($out);
like($out, qr/\[warn\] studio_testusers_audit_hmac_key: .* is accessible by other users/,
     'a readable hmac key warns');

($rc, $out) = $t->nginx_t(conf('%%CRED%%', 'studio_testusers_audit_required on;'));
isnt($rc, 0, 'audit_required without audit_log fails');
like($out, qr/"studio_testusers_audit_required on" needs "studio_testusers_audit_log" to a file/,
     'audit_required without audit_log: says what is missing');

($rc, $out) = $t->nginx_t(conf('%%CRED%%', "studio_testusers_audit_required on;\n"
                               . 'studio_testusers_audit_log syslog:server=127.0.0.1:9;'));
isnt($rc, 0, 'audit_required with syslog fails');
like($out, qr/syslog over UDP cannot tell a lost record/, 'audit_required with syslog: says why');

($rc, $out) = $t->nginx_t("studio_testusers_zone nosize;\n" . conf('%%CRED%%'));
like($out, qr/invalid zone "nosize": expected name:size/, 'zone without size');
($rc, $out) = $t->nginx_t("studio_testusers_zone z:1k;\n" . conf('%%CRED%%'));
like($out, qr/zone "z:1k" is too small/, 'zone too small');
($rc, $out) = $t->nginx_t("studio_testusers_zone z:1m;\nstudio_testusers_zone y:1m;\n" . conf('%%CRED%%'));
like($out, qr/"studio_testusers_zone" directive is duplicate/, 'zone duplicate');
($rc, $out) = $t->nginx_t(conf('%%CRED%%', 'studio_testusers_audit_log syslog:nothing=1;'));
isnt($rc, 0, 'bad syslog audit target fails');
($rc, $out) = $t->nginx_t(conf('%%CRED%%', 'studio_testusers_audit_log off;'));
is($rc, 0, 'audit_log off passes');

$t->done;
