#!/usr/bin/perl

# The Debian package (packaging/build-deb.sh) on this very machine: build
# it, `dpkg -i` it, check that it landed where Debian's own nginx modules
# land and that the stock /etc/nginx loads it through modules-enabled; run
# the system nginx with the stock configuration plus an example site in
# front of the recording stand-in and see the credential injected; then
# `dpkg -r` and `dpkg --purge` it and check that everything is gone and the
# stock configuration still passes `nginx -t`.
#
# Runs only as root with dpkg and the build tools present, and only when
# the package is not installed already.  Whatever happens, the END block
# stops the nginx it started, removes the site it wrote and purges the
# package it installed.

use strict;
use warnings;

use Test::More;
use lib 't/lib';
use StudioTest;

use IO::Socket::INET;
use IO::Socket::IP;
use MIME::Base64 qw(encode_base64);
use Time::HiRes qw(sleep);

my $PKG      = 'libnginx-mod-http-studio-testusers';
my $SO       = '/usr/lib/nginx/modules/ngx_http_studio_testusers_module.so';
my $SNIPPET  = '/usr/share/nginx/modules-available/mod-http-studio-testusers.conf';
my $ENABLED  = '/etc/nginx/modules-enabled/50-mod-http-studio-testusers.conf';
my $DOC      = "/usr/share/doc/$PKG";
my $NGINX    = '/usr/sbin/nginx';
my $CONF     = '/etc/nginx/nginx.conf';
my $PIDFILE  = '/run/nginx.pid';              # the stock nginx.conf's pid
my $SITE     = '/etc/nginx/sites-enabled/studio-testusers-deb-t';
my @TEMPDIRS = map { "/var/lib/nginx/$_" } qw(body proxy fastcgi uwsgi scgi);

plan(skip_all => 'installs a package with dpkg: run as root') if $> != 0;

for my $tool (qw(dpkg dpkg-deb dpkg-query dpkg-shlibdeps strip)) {
    plan(skip_all => "$tool is missing")
        unless grep { -x "$_/$tool" } split /:/, $ENV{PATH};
}

sub status_of {
    my ($pkg) = @_;
    my $s = `dpkg-query -W -f='\${Status}' $pkg 2>/dev/null`;
    return $s;
}

# dpkg knows the package in any state but "not-installed" (or not at all)
sub known {
    my $s = status_of($_[0]);
    return $s =~ /\S/ && $s !~ /\bnot-installed$/;
}

plan(skip_all => "$PKG is installed already: not touching it")
    if known($PKG);
plan(skip_all => 'the nginx package (the ABI the module needs) is not installed')
    unless status_of('nginx') =~ /install ok installed/;
plan(skip_all => "$CONF is missing") unless -f $CONF;
plan(skip_all => "leftover $_ exists: not touching it")
    for grep { -e $_ || -l $_ } $ENABLED, "$ENABLED.removed", $SNIPPET, $SO,
                                $SITE;

my $t = StudioTest->new;                    # skips when objs/ has no module
my $root = StudioTest::root();
my $d = $t->dir;

my $abifile = -f "$root/build/nginx-src/debian/libnginx-mod.abisubstvars"
    ? "$root/build/nginx-src/debian/libnginx-mod.abisubstvars"
    : '/usr/share/nginx/src/debian/libnginx-mod.abisubstvars';
plan(skip_all => 'nginx-dev (libnginx-mod.abisubstvars) is missing')
    unless -f $abifile;

sub stock_t {
    my $out = `$NGINX -t -c $CONF -e stderr 2>&1`;
    return ($? >> 8, $out);
}

# --- whatever happens: stop our nginx, drop our site, purge our package -----

# even `nginx -t` on the stock configuration leaves an empty /run/nginx.pid
# and the http{} block's temp directories in /var/lib/nginx behind: note
# what exists before the first one, take away what was not there
my ($armed, $installed, $site_written, $nginx_pid, $pidfile_existed,
    $pidfile_was, %tempdir_existed);

$pidfile_existed = -e $PIDFILE;
$pidfile_was = slurp($PIDFILE) if $pidfile_existed;
# nginx also chowns existing ones to its worker user (www-data here)
$tempdir_existed{$_} = -d $_ ? [ (stat _)[2, 4, 5] ] : undef for @TEMPDIRS;
$armed = 1;

{
    my ($rc, $out) = stock_t();
    plan(skip_all => "the stock $CONF fails nginx -t already: $out") if $rc;
}

sub stop_nginx {
    return unless $nginx_pid;
    my $pid = $nginx_pid;
    my @workers = children($pid);

    kill 'QUIT', $pid;
    for (1 .. 200) {
        last unless kill 0, $pid;
        sleep 0.05;
    }
    for my $sig ('TERM', 'KILL') {
        last unless kill 0, $pid;
        kill $sig, $pid;
        sleep 0.5;
    }
    kill 'KILL', grep { kill 0, $_ } @workers;
    $nginx_pid = undef;

    return !kill(0, $pid) && !grep { kill 0, $_ } @workers;
}

sub restore {
    return unless $armed;
    stop_nginx();
    unlink $SITE if $site_written;
    $site_written = 0;
    dpkg('--purge', $PKG) if $installed && known($PKG);
    $installed = 0;

    # what `nginx -t` and the run left: an empty or stale pid file, empty
    # temp directories
    unlink $PIDFILE
        if !$pidfile_existed && -f $PIDFILE && !grep { kill 0, $_ } read_pid();
    if ($pidfile_existed && !-e $PIDFILE && open my $fh, '>', $PIDFILE) {
        print $fh $pidfile_was // '';       # our nginx took it on exit
        close $fh;
    }
    for (@TEMPDIRS) {
        my $was = $tempdir_existed{$_};
        if (!$was) {
            rmdir $_ if -d $_;
        } elsif (-d $_) {
            my ($mode, $uid, $gid) = @$was;
            chown $uid, $gid, $_;
            chmod $mode & 07777, $_;
        }
    }
}

# the temp directories are as they were: absent, or same owner and mode
sub tempdirs_as_before {
    for (@TEMPDIRS) {
        my $was = $tempdir_existed{$_};
        return 0 if !$was && -e $_;
        next if !$was;
        my @now = -d $_ ? (stat _)[2, 4, 5] : ();
        return 0 unless "@now" eq "@$was";
    }
    return 1;
}

END {
    local $?;
    restore();
}

$SIG{INT} = $SIG{TERM} = sub { die "interrupted\n" };


# --- helpers --------------------------------------------------------------

sub slurp {
    my ($path) = @_;
    open my $fh, '<', $path or return undef;
    local $/;
    return scalar <$fh>;
}

sub read_pid {
    my $pid = slurp($PIDFILE) // '';
    return $pid =~ /^(\d+)/ ? ($1) : ();
}

# direct children of a process, from /proc
sub children {
    my ($ppid) = @_;
    my @kids;
    opendir my $dh, '/proc' or return;
    for my $p (grep { /^\d+$/ } readdir $dh) {
        my $stat = slurp("/proc/$p/stat") // next;
        push @kids, $p if $stat =~ /\)\s+\S\s+(\d+)/ && $1 == $ppid;
    }
    return @kids;
}

# dpkg with its lock shared with whatever else runs apt: wait for it
sub dpkg {
    my @args = @_;
    my ($out, $rc);
    local $ENV{DEBIAN_FRONTEND} = 'noninteractive';
    for (1 .. 60) {
        $out = `dpkg @args 2>&1`;
        $rc = $? >> 8;
        last unless $rc && $out =~ /lock/i;
        sleep 2;
    }
    return ($rc, $out);
}

sub can_bind {
    my ($host) = @_;
    my $s = IO::Socket::IP->new(LocalHost => $host, LocalPort => 80,
                                Listen => 1, ReuseAddr => 1,
                                ($host eq '::' ? (V6Only => 1) : ()));
    return $s ? 1 : 0;
}


# --- build ------------------------------------------------------------------

chomp(my $version = slurp("$root/packaging/VERSION") // '');
my ($abi) = (slurp($abifile) // '') =~ /^nginx:abi=(\S+)/m;

my $out = `$root/packaging/build-deb.sh -o $d/deb 2>&1`;
is($? >> 8, 0, 'packaging/build-deb.sh builds the package') or diag($out);
my ($deb) = $out =~ m{^(/\S+\.deb)\s*\z}m;
chomp(my $arch = `dpkg --print-architecture`);

is($deb, "$d/deb/${PKG}_${version}_$arch.deb",
   'named package_VERSION_arch.deb, VERSION from packaging/VERSION');
die "no package was built\n" unless $deb && -f $deb;

my %f = map { my $v = `dpkg-deb -f $deb $_`; chomp $v; ($_ => $v) }
        qw(Package Version Architecture Depends Section);
is($f{Package}, $PKG, 'Package');
is($f{Version}, $version, 'Version');
is($f{Section}, 'httpd', 'Section httpd, as Debian\'s modules');
ok($abi, "nginx-dev names the ABI: $abi");
like($f{Depends}, qr/^\Q$abi\E,/, 'Depends on the nginx ABI first');
like(`dpkg-query -W -f='\${Provides}' nginx`, qr/(?:^|[ ,])\Q$abi\E(?:$|,)/,
     'the installed nginx provides exactly that ABI');
like($f{Depends}, qr/\blibjansson4 \(>= [^)]+\)/, 'Depends on libjansson4');
like($f{Depends}, qr/\blibssl3 \(>= [^)]+\)/, 'Depends on libssl3');

my %in_deb = map { m{\s\.(/\S*?)/?$} ? ($1 => 1) : () } `dpkg-deb -c $deb`;
# docs over 4 kB are compressed, as dh_compress does: the README may be
ok($in_deb{"$DOC/README.md"} || $in_deb{"$DOC/README.md.gz"},
   "package ships $DOC/README.md or README.md.gz");
ok($in_deb{$_}, "package ships $_")
    for $SO, $SNIPPET, "$DOC/copyright",
        "$DOC/docs/ngx_http_studio_testusers_module.md.gz",
        "$DOC/examples/studio-testusers.conf";
ok(!grep({ m{^/etc/} } keys %in_deb),
   'nothing under /etc: the symlink is the maintainer scripts\' job');


# --- install ------------------------------------------------------------------

$installed = 1;
my ($rc, $dout) = dpkg('-i', $deb);
is($rc, 0, 'dpkg -i installs it') or diag($dout);
note($dout);
like(status_of($PKG), qr/install ok installed/, 'dpkg says installed');

ok(-f $SO, "$SO is there");
is((stat $SO)[2] & 07777, 0644, 'module mode 0644');
is(slurp($SNIPPET), "load_module modules/ngx_http_studio_testusers_module.so;\n",
   'modules-available snippet loads it relative to the prefix');
is(readlink($ENABLED), $SNIPPET,
   'postinst enabled it: modules-enabled/50-mod-http-studio-testusers.conf');
ok(-f "$DOC/README.md" || -f "$DOC/README.md.gz", "$DOC/README.md(.gz)");
ok(-f "$DOC/$_", "$DOC/$_") for qw(copyright changelog.gz
    docs/ngx_http_studio_testusers_module.md.gz docs/audit.md.gz
    docs/policies.md.gz examples/studio-testusers.conf);

($rc, $out) = stock_t();
is($rc, 0, 'stock nginx.conf passes nginx -t with the module enabled')
    or diag($out);
$out = `$NGINX -T -c $CONF -e stderr 2>&1`;
like($out, qr{^# configuration file \Q$ENABLED\E:\n
              load_module\ modules/ngx_http_studio_testusers_module\.so;}mx,
     'nginx -T: loaded through modules-enabled');


# --- the system nginx, stock configuration plus an example site --------------

SKIP: {
    my $running = grep { kill 0, $_ } read_pid();
    skip "an nginx runs from $PIDFILE already", 9 if $running;
    skip 'port 80 (the stock default site) is not free', 9
        unless can_bind('0.0.0.0');
    skip 'no IPv6 here for the stock default site\'s [::]:80', 9
        unless can_bind('::');

    my $uport = $t->start_upstream;
    my $port = $t->port;

    open my $fh, '>', $SITE or die "$SITE: $!";
    $site_written = 1;
    print $fh <<"SITE";
# written by t/deb.t (pid $$) and removed by it
server {
    listen 127.0.0.1:$port;

    access_log $d/logs/access.log;
    error_log $d/logs/error.log info;

    studio_testusers_credentials $d/credentials;

    location /v2/Flows/ {
        studio_testusers on;
        proxy_pass http://127.0.0.1:$uport;
    }
}
SITE
    close $fh;

    ($rc, $out) = stock_t();
    is($rc, 0, 'stock nginx.conf with the example site passes nginx -t')
        or diag($out);

    $out = `$NGINX -c $CONF -e $d/logs/error.log 2>&1`;
    is($? >> 8, 0, "system nginx starts with $CONF") or diag($out);

    for (1 .. 100) {
        last if read_pid();
        sleep 0.05;
    }
    ($nginx_pid) = read_pid();
    ok($nginx_pid && kill(0, $nginx_pid), "master runs, pid in $PIDFILE");
    ok($t->wait_port($port), 'the example site listens');
    ok($t->wait_port(80), 'the stock default site listens on port 80');

    my $r = $t->get(PATH, headers =>
        [ 'Authorization: Basic ' . encode_base64('team:password', '') ]);
    is($r && $r->{status}, 200, 'GET through the gateway answered 200')
        or diag(explain($r));

    my $rec = $t->recorded;
    is(scalar @$rec, 1, 'the upstream got the request');
    is_deeply([ StudioTest::header_values($rec->[0] // {}, 'Authorization') ],
              [ BASIC ],
              'with the service credential only, the client\'s dropped');

    $r = $t->request('DELETE', PATH);
    ok($r && $r->{status} == 405 && @{ $t->recorded } == 1,
       'a DELETE is refused by the module and never forwarded');
}

ok(!$nginx_pid || stop_nginx(), 'nginx and its workers stopped');
ok(!grep({ kill 0, $_ } read_pid()), "nothing runs from $PIDFILE");

if ($site_written) {
    unlink $SITE;
    $site_written = 0;
}
ok(!-e $SITE, 'example site removed');


# --- remove, purge ------------------------------------------------------------

($rc, $dout) = dpkg('-r', $PKG);
is($rc, 0, 'dpkg -r removes it') or diag($dout);
note($dout);
ok(!-e $SO, "$SO is gone");
ok(!-e $SNIPPET, "$SNIPPET is gone");
ok(!-l $ENABLED && !-e $ENABLED, 'modules-enabled symlink is gone');
ok(-l "$ENABLED.removed",
   'prerm set it aside as .removed until the purge, as Debian\'s modules do');

($rc, $out) = stock_t();
is($rc, 0, 'stock nginx.conf passes nginx -t after dpkg -r') or diag($out);

($rc, $dout) = dpkg('--purge', $PKG);
is($rc, 0, 'dpkg --purge purges it') or diag($dout);
note($dout);
$installed = 0;
ok(!known($PKG), 'dpkg no longer knows it');
ok(!-l "$ENABLED.removed", 'no modules-enabled/*.removed left behind');
ok(!-e $DOC, "$DOC is gone");

($rc, $out) = stock_t();
is($rc, 0, 'stock nginx.conf passes nginx -t after the purge') or diag($out);
$out = `$NGINX -T -c $CONF -e stderr 2>&1`;
unlike($out, qr/studio_testusers/, 'nginx -T no longer mentions the module');

restore();
ok(!-e $PIDFILE, "no $PIDFILE left behind") unless $pidfile_existed;
ok(tempdirs_as_before(), '/var/lib/nginx temp directories as they were');

$t->done;
