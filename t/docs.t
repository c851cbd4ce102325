#!/usr/bin/perl

# Every nginx configuration shown in docs/ and examples/ passes `nginx -t`
# against the built module, so the manual cannot rot.  Substitutions: the
# module and credential paths, log paths into the scratch directory, and
# studio.twilio.com by 127.0.0.1 (no DNS here).

use strict;
use warnings;

use Test::More;
use lib 't/lib';
use StudioTest;

my $t = StudioTest->new;
my $root = StudioTest::root();
my $d = $t->dir;
$t->write_file('audit.key', ('ab' x 32) . "\n", 0600);

# a throwaway certificate for the examples with TLS listeners
system("openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=docs-test -days 2 "
       . "-keyout $d/test.key -out $d/test.crt >/dev/null 2>&1") == 0
    or BAIL_OUT('openssl could not make a test certificate');

sub localize {
    my ($conf) = @_;
    $conf =~ s{\S*modules/ngx_http_studio_testusers_module\.so}
              {$root/objs/ngx_http_studio_testusers_module.so}g;
    $conf =~ s{/etc/nginx/twilio/[\w.-]+\.credentials}{$d/credentials}g;
    $conf =~ s{/etc/nginx/twilio/audit\.key}{$d/audit.key}g;
    $conf =~ s{/etc/nginx/twilio/(?:gateway|teams-ca)\.crt}{$d/test.crt}g;
    $conf =~ s{/etc/nginx/twilio/gateway\.key}{$d/test.key}g;
    $conf =~ s{/var/log/nginx/}{$d/logs/}g;
    $conf =~ s{studio\.twilio\.com(?=;)}{127.0.0.1}g
        if $conf =~ /proxy_pass/;
    $conf =~ s{proxy_pass https://studio\.twilio\.com}{proxy_pass https://127.0.0.1}g;
    return $conf;
}

my @configs;

for my $file (glob("$root/docs/*.md")) {
    open my $fh, '<', $file or die "$file: $!";
    local $/;
    my $text = <$fh>;
    my $n = 0;
    while ($text =~ /^```nginx\n(.*?)^```/msg) {
        my $block = $1;
        $n++;
        push @configs, [ "$file block $n" =~ s{^\Q$root\E/}{}r, $block ];
    }
}

for my $file (glob("$root/examples/*.conf")) {
    open my $fh, '<', $file or die "$file: $!";
    local $/;
    push @configs, [ $file =~ s{^\Q$root\E/}{}r, scalar <$fh> ];
}

ok(@configs >= 3, 'found configurations to check: ' . scalar @configs);

for my $c (@configs) {
    my ($name, $conf) = @$c;
    ok(defined $conf && $conf =~ /\S/, "$name is not empty") or next;
    $conf = localize($conf);

    my ($rc, $out);

    if ($conf =~ /^\s*load_module/m) {
        # a whole nginx.conf
        $conf = "pid $d/nginx.pid;\nerror_log $d/logs/error.log;\n$conf";
        my $temp = join '', map { "\n    ${_}_temp_path $d/tmp/$_;" }
                           qw(client_body proxy fastcgi uwsgi scgi);
        $conf =~ s/^http \{/http {$temp/m;
        my $path = $t->write_file('doc.conf', $conf);
        my $bin = StudioTest::nginx_bin();
        $out = `$bin -t -p $d/ -c $path -e $d/logs/t.log 2>&1`;
        $rc = $? >> 8;

    } else {
        # a fragment for the http block; a credential if it has none
        $conf = "studio_testusers_credentials $d/credentials;\n$conf"
            if $conf =~ /studio_testusers on/
               && $conf !~ /studio_testusers_credentials/;
        ($rc, $out) = $t->nginx_t($conf);
    }

    is($rc, 0, "$name passes nginx -t") or diag($out);
}

$t->done;
