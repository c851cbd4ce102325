package StudioTest;

# A small harness for the module's tests (Perl core modules only): starts
# the real /usr/sbin/nginx with a generated configuration, every path
# inside a scratch directory, on free loopback ports, in front of the
# Twilio stand-in that records exactly what arrived; talks raw HTTP/1.1 and
# HTTP/2 to it; and fails the test on [alert], [crit] or leaked sockets in
# the error log.

use strict;
use warnings;

use Cwd qw(abs_path);
use Exporter qw(import);
use File::Basename qw(dirname);
use File::Path qw(make_path remove_tree);
use File::Temp qw(tempdir);
use IO::Select;
use IO::Socket::INET;
use JSON::PP;
use MIME::Base64 qw(encode_base64);
use POSIX qw(WNOHANG);
use Test::More;
use Time::HiRes qw(sleep time);

our @EXPORT = qw(SID SECRET FLOW FLOW2 PATH BASIC form_body);

# fake values for tests only: not a real Twilio account
use constant SID    => 'AC0123456789abcdef0123456789abcdef';
use constant SECRET => 'testsecret0123456789abcdefABCDEF';
use constant FLOW   => 'FW0123456789abcdef0123456789abcdef';
use constant FLOW2  => 'FWfedcba9876543210fedcba9876543210';
use constant PATH   => '/v2/Flows/' . FLOW . '/TestUsers';
use constant BASIC  => 'Basic ' . encode_base64(SID . ':' . SECRET, '');

my $ROOT = abs_path(dirname(__FILE__) . '/../..');

sub root { $ROOT }

sub form_body {
    return join '&', map {
        my $v = $_;
        $v =~ s/([^A-Za-z0-9\-._~])/sprintf('%%%02X', ord $1)/ge;
        "TestUsers=$v";
    } @_;
}


sub new {
    my ($class, %opts) = @_;

    my $module = $ENV{STUDIO_MODULE}
                 // "$ROOT/objs/ngx_http_studio_testusers_module.so";
    plan(skip_all => "$module is missing: run 'make build'") unless -f $module;
    plan(skip_all => '/usr/sbin/nginx is missing') unless -x '/usr/sbin/nginx';

    my $dir = tempdir('studio-test-XXXXXX', TMPDIR => 1,
                      CLEANUP => !$ENV{TEST_KEEP});

    my $self = bless { dir => $dir, module => $module, ports => {},
                       pids => [] }, $class;

    # workers run as nobody when the master is root: they must reach tmp/
    chmod 0755, $dir;
    mkdir "$dir/$_" for qw(tmp logs);

    $self->write_file('credentials', SID . ':' . SECRET . "\n", 0600);

    diag("scratch directory $dir") if $ENV{TEST_KEEP};

    return $self;
}

sub dir { $_[0]{dir} }

sub has_master { !$ENV{STUDIO_VALGRIND} }

# the nginx command line, with the sanitizer runtime when asked
sub nginx_bin {
    my @env;
    push @env, "'LD_PRELOAD=$ENV{STUDIO_PRELOAD}'" if $ENV{STUDIO_PRELOAD};
    push @env, 'ASAN_OPTIONS=detect_leaks=0:abort_on_error=1'
        if $ENV{STUDIO_PRELOAD};
    return @env ? "env @env /usr/sbin/nginx" : '/usr/sbin/nginx';
}

sub write_file {
    my ($self, $name, $content, $mode) = @_;
    my $path = $name =~ m{^/} ? $name : "$self->{dir}/$name";

    make_path(dirname($path));
    open my $fh, '>', $path or die "$path: $!";
    binmode $fh;
    print $fh $content;
    close $fh;
    chmod $mode, $path if defined $mode;

    return $path;
}

sub read_file {
    my ($self, $name) = @_;
    my $path = $name =~ m{^/} ? $name : "$self->{dir}/$name";

    open my $fh, '<', $path or return '';
    binmode $fh;
    local $/;
    return scalar <$fh>;
}

# a free loopback port per name, stable for the test's life
sub port {
    my ($self, $name) = @_;
    $name //= 'http';

    return $self->{ports}{$name} //= do {
        my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1:0',
                                      Listen => 1, ReuseAddr => 1)
            or die "no free port: $@";
        my $port = $s->sockport;
        close $s;
        $port;
    };
}


# --- the recording upstream ------------------------------------------------

sub start_upstream {
    my ($self, $name) = @_;
    $name //= 'upstream';

    my $port = $self->port($name);
    my $record = "$self->{dir}/$name.jsonl";
    $self->write_file($record, '');

    my $pid = fork // die "fork: $!";

    if ($pid == 0) {
        open STDOUT, '>', "$self->{dir}/logs/$name.log";
        open STDERR, '>&', \*STDOUT;
        exec $^X, "$ROOT/standin/twilio-standin.pl",
            '--listen', "127.0.0.1:$port",
            '--credentials', "$self->{dir}/credentials",
            '--record', $record,
            '--state', do { mkdir "$self->{dir}/$name-state";
                            "$self->{dir}/$name-state" };
        die "exec: $!";
    }

    push @{ $self->{pids} }, $pid;
    $self->{record}{$name} = $record;
    $self->wait_port($port) or die "upstream did not start on $port";

    return $port;
}

# a misbehaving upstream: reads a request, writes the given bytes, closes;
# stopped with the others
sub start_raw_upstream {
    my ($self, $name, $answer) = @_;

    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1:0', Listen => 16,
                                  ReuseAddr => 1) or die "listen: $@";
    my $pid = fork // die "fork: $!";

    if ($pid == 0) {
        while (my $c = $s->accept) {
            my $buf;
            sysread $c, $buf, 65536;
            print $c $answer;
            close $c;
        }
        POSIX::_exit(0);
    }

    push @{ $self->{pids} }, $pid;
    $self->{ports}{$name} = $s->sockport;
    close $s;

    return $self->{ports}{$name};
}

# every request the upstream received, in order
sub recorded {
    my ($self, $name) = @_;
    my $json = JSON::PP->new;

    return [ map { $json->decode($_) }
             split /\n/, $self->read_file($self->{record}{$name // 'upstream'}) ];
}

sub clear_recorded {
    my ($self, $name) = @_;
    $self->write_file($self->{record}{$name // 'upstream'}, '');
}

# values of a header in a recorded request, names compared case-insensitively
sub header_values {
    my ($req, $name) = @_;
    return map { $_->[1] } grep { lc $_->[0] eq lc $name } @{ $req->{headers} };
}


# --- nginx ------------------------------------------------------------------

sub config {
    my ($self, $http) = @_;
    my $d = $self->{dir};

    $http =~ s/%%PORT(?:_(\w+))?%%/$self->port($1 ? lc $1 : 'http')/ge;
    $http =~ s/%%UPSTREAM(?:_(\w+))?%%/'127.0.0.1:'
                                       . $self->port($1 ? lc $1 : 'upstream')/ge;
    $http =~ s/%%DIR%%/$d/g;
    $http =~ s/%%CRED%%/$d\/credentials/g;

    return <<"CONF";
load_module $self->{module};
${\ ($self->{main_conf} // '')}
${\ ($ENV{STUDIO_VALGRIND} ? "daemon off;\nmaster_process off;"
                           : "daemon on;\nmaster_process on;")}
worker_processes ${\ ($self->{workers} // 1)};
pid $d/nginx.pid;
error_log $d/logs/error.log ${\ ($self->{log_level} // 'info')};

events {
    worker_connections 1024;
}

http {
    client_body_temp_path $d/tmp/client_body;
    proxy_temp_path $d/tmp/proxy;
    fastcgi_temp_path $d/tmp/fastcgi;
    uwsgi_temp_path $d/tmp/uwsgi;
    scgi_temp_path $d/tmp/scgi;

$http
}
CONF
}

# runs `nginx -t`; returns (exit status, output)
sub nginx_t {
    my ($self, $http) = @_;
    my $conf = $self->write_file('test.conf', $self->config($http));
    my $bin = nginx_bin();
    my $out = `$bin -t -p $self->{dir}/ -c $conf -e $self->{dir}/logs/t.log 2>&1`;
    return ($? >> 8, $out);
}

sub start_nginx {
    my ($self, $http) = @_;
    my $d = $self->{dir};

    $self->write_file('nginx.conf', $self->config($http));

    if ($ENV{STUDIO_VALGRIND}) {
        my $pid = fork // die "fork: $!";
        if ($pid == 0) {
            open STDOUT, '>>', "$d/logs/valgrind.out";
            open STDERR, '>&', \*STDOUT;
            exec 'valgrind', '--tool=memcheck', '--leak-check=no',
                '--num-callers=30', "--log-file=$d/logs/valgrind.%p.log",
                '/usr/sbin/nginx', '-p', "$d/", '-c', "$d/nginx.conf",
                '-e', "$d/logs/error.log";
            die "exec valgrind: $!";
        }
        $self->{valgrind_pid} = $pid;
        $self->{nginx} = 1;
        for (1 .. 600) {
            last if IO::Socket::INET->new(PeerAddr => '127.0.0.1:' . $self->port);
            sleep 0.05;
        }
        return $self;
    }

    my $bin = nginx_bin();
    my $out = `$bin -p $d/ -c $d/nginx.conf -e $d/logs/error.log 2>&1`;
    die "nginx did not start: $out" if $?;

    for (1 .. 100) {
        last if -s "$d/nginx.pid";
        sleep 0.05;
    }

    $self->{nginx} = 1;
    $self->wait_port($self->port) or die "nginx is not listening";

    return $self;
}

sub nginx_pid {
    my ($self) = @_;
    my $pid = $self->read_file('nginx.pid');
    chomp $pid;
    return $pid;
}

sub signal {
    my ($self, $sig) = @_;
    kill $sig, $self->nginx_pid;
}

sub reload {
    my ($self, $http) = @_;
    $self->write_file('nginx.conf', $self->config($http)) if defined $http;
    my $d = $self->{dir};
    my $bin = nginx_bin();
    my $out = `$bin -p $d/ -c $d/nginx.conf -e $d/logs/error.log -s reload 2>&1`;
    die "reload: $out" if $?;
}

sub stop_nginx {
    my ($self) = @_;
    return unless $self->{nginx};

    if (my $vpid = delete $self->{valgrind_pid}) {
        $self->{nginx} = 0;

        # without a master, QUIT exits at once: let requests end first
        sleep 1;
        kill 'QUIT', $vpid;
        for (1 .. 400) {
            last if waitpid($vpid, POSIX::WNOHANG()) > 0;
            sleep 0.05;
        }
        kill 'KILL', $vpid if kill 0, $vpid;
        return;
    }

    my $pid = $self->nginx_pid;
    $self->{nginx} = 0;
    return unless $pid;

    kill 'QUIT', $pid;
    for (1 .. 100) {
        return unless kill 0, $pid;
        sleep 0.05;
    }
    kill 'TERM', $pid;
    sleep 0.2;
    kill 'KILL', $pid if kill 0, $pid;
}

sub wait_port {
    my ($self, $port) = @_;
    for (1 .. 100) {
        my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port");
        return 1 if $s;
        sleep 0.05;
    }
    return 0;
}

sub error_log { $_[0]->read_file('logs/error.log') }

# the last test of every file: stop everything, then no alerts may remain
sub done {
    my ($self) = @_;

    $self->stop_nginx;
    $self->stop_upstreams;

    my @bad = grep { /\[(?:alert|crit|emerg)\]|open socket|Sanitizer|runtime error/ }
              grep { !$self->{expect_alert} || !/$self->{expect_alert}/ }
              split /\n/, $self->error_log;

    is(join("\n", @bad), '', 'no alerts or leaked sockets in error log');

    if ($ENV{STUDIO_VALGRIND}) {
        # memcheck errors whose stack passes through the module
        my @errors;
        for my $log (glob "$self->{dir}/logs/valgrind.*.log") {
            my $text = $self->read_file($log);
            for my $block (split /\n==\d+== \n/, $text) {
                push @errors, $block
                    if $block =~ /studio_testusers|stu_/
                       && $block =~ /Invalid|uninitialised|Mismatched|overlap|free/;
            }
        }
        is(join("\n\n", @errors), '', 'no memcheck errors in the module');
    }

    done_testing();
}

sub stop_upstreams {
    my ($self) = @_;
    for my $pid (@{ $self->{pids} }) {
        kill 'TERM', $pid;
        waitpid $pid, 0;
    }
    $self->{pids} = [];
}

sub DESTROY {
    my ($self) = @_;
    local $?;
    $self->stop_nginx;
    $self->stop_upstreams;
}


# --- HTTP/1.1 client ----------------------------------------------------------

sub connect {
    my ($self, $port) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1:'
                                  . ($port // $self->port), Timeout => 5)
        or die "connect: $@";
    binmode $s;
    $s->autoflush(1);
    return bless { s => $s, buf => '' }, 'StudioTest::Conn';
}

# a request as bytes; Connection: close unless keepalive => 1
sub raw_request {
    my ($method, $target, %o) = @_;
    my @h = @{ $o{headers} // [] };
    my $body = $o{body};

    unshift @h, 'Host: localhost' unless $o{no_host};
    push @h, 'Content-Length: ' . length $body
        if defined $body && !grep { /^(?:content-length|transfer-encoding):/i } @h;
    push @h, 'Connection: close'
        unless $o{keepalive} || grep { /^connection:/i } @h;

    my $r = "$method $target HTTP/1.1\r\n" . join('', map { "$_\r\n" } @h)
            . "\r\n";
    $r .= $body if defined $body;

    return $r;
}

# one request on a fresh connection; returns the parsed response
sub request {
    my ($self, $method, $target, %o) = @_;
    my $c = $self->connect;
    $c->send(raw_request($method, $target, %o));
    return $c->response(undef, $method eq 'HEAD');
}

sub get { my $self = shift; $self->request('GET', @_) }

sub post_form {
    my ($self, $body, %o) = @_;
    return $self->request('POST', $o{path} // PATH,
        %o,
        headers => [ 'Content-Type: application/x-www-form-urlencoded',
                     @{ $o{headers} // [] } ],
        body => $body);
}


package StudioTest::Conn;

use Time::HiRes qw(sleep time);

sub send {
    my ($self, $data) = @_;
    local $SIG{PIPE} = 'IGNORE';
    return syswrite($self->{s}, $data) // 0;
}

# send in pieces with pauses, like a slow client
sub send_slowly {
    my ($self, $data, $piece, $pause) = @_;
    while (length $data) {
        $self->send(substr($data, 0, $piece, ''));
        sleep($pause // 0.05);
    }
}

sub fill {
    my ($self, $timeout) = @_;
    my $sel = IO::Select->new($self->{s});
    return 0 unless $sel->can_read($timeout // 5);
    my $n = sysread($self->{s}, $self->{buf}, 65536, length $self->{buf});
    return $n ? $n : 0;
}

# one response: status line, headers, body by Content-Length or chunked;
# undef on timeout or close before a whole response
sub response {
    my ($self, $timeout, $head) = @_;
    my $deadline = time + ($timeout // 5);

    while ($self->{buf} !~ /\r\n\r\n/) {
        return undef if time > $deadline || !$self->fill($deadline - time);
    }

    $self->{buf} =~ s/\A(.*?)\r\n\r\n//s;
    my ($line, @lines) = split /\r\n/, $1;
    my ($status) = $line =~ m{^HTTP/\d\.\d (\d{3})} or return undef;

    my (%h, @headers);
    for (@lines) {
        my ($k, $v) = /^([^:]+):\s*(.*)$/ or next;
        push @headers, [$k, $v];
        $h{lc $k} = exists $h{lc $k} ? "$h{lc $k}, $v" : $v;
    }

    my $body = '';

    if ($head) {
        # no body after a response to HEAD

    } elsif (($h{'transfer-encoding'} // '') =~ /chunked/) {
        while (1) {
            while ($self->{buf} !~ /\r\n/) {
                return undef if !$self->fill($deadline - time);
            }
            $self->{buf} =~ s/\A([0-9a-f]+)\r\n//i or return undef;
            my $n = hex $1;
            while (length $self->{buf} < $n + 2) {
                return undef if !$self->fill($deadline - time);
            }
            $body .= substr($self->{buf}, 0, $n);
            substr($self->{buf}, 0, $n + 2) = '';
            last if $n == 0;
        }

    } elsif (defined $h{'content-length'}) {
        while (length $self->{buf} < $h{'content-length'}) {
            return undef if !$self->fill($deadline - time);
        }
        $body = substr($self->{buf}, 0, $h{'content-length'}, '');

    } elsif (($h{connection} // '') =~ /close/) {
        1 while $self->fill($deadline - time);
        $body = $self->{buf};
        $self->{buf} = '';
    }

    my $json = eval { JSON::PP->new->decode($body) };

    return { status => $status, headers => \%h, header_list => \@headers,
             body => $body, json => $json, line => $line };
}

# true when the server closed the connection (within the timeout)
sub closed {
    my ($self, $timeout) = @_;
    my $sel = IO::Select->new($self->{s});
    return 0 unless $sel->can_read($timeout // 2);
    my $n = sysread($self->{s}, my $b, 1);
    return !$n;
}


package StudioTest;

# --- HTTP/2 (prior knowledge, cleartext) ---------------------------------------

sub _h2_int {
    my ($value, $bits, $first) = @_;
    my $max = (1 << $bits) - 1;
    return chr($first | $value) if $value < $max;
    my $out = chr($first | $max);
    $value -= $max;
    while ($value >= 128) {
        $out .= chr(($value & 0x7f) | 0x80);
        $value >>= 7;
    }
    return $out . chr($value);
}

sub _h2_frame {
    my ($type, $flags, $stream, $payload) = @_;
    my $len = length $payload;
    return pack('C3 C C N', $len >> 16, ($len >> 8) & 0xff, $len & 0xff,
                $type, $flags, $stream) . $payload;
}

# headers: [name, value] pairs after the pseudo-headers; body: DATA frame
# payloads, the last with END_STREAM (none: END_STREAM on HEADERS)
sub h2_request {
    my ($self, $method, $path, %o) = @_;
    my $c = $self->connect($o{port} // $self->port('h2'));
    my @pieces = @{ $o{body} // [] };

    my $block = '';
    for my $h ([':method', $method], [':scheme', 'http'], [':path', $path],
               [':authority', 'localhost'], @{ $o{headers} // [] })
    {
        $block .= "\x00" . _h2_int(length $h->[0], 7, 0) . $h->[0]
                  . _h2_int(length $h->[1], 7, 0) . $h->[1];
    }

    $c->send("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" . _h2_frame(4, 0, 0, ''));
    $c->send(_h2_frame(1, 0x4 | (@pieces ? 0 : 0x1), 1, $block));

    for my $i (0 .. $#pieces) {
        $c->send(_h2_frame(0, $i == $#pieces ? 0x1 : 0, 1, $pieces[$i]));
        sleep($o{pause}) if $o{pause};
    }

    my %static = (8 => 200, 9 => 204, 10 => 206, 11 => 304, 12 => 400,
                  13 => 404, 14 => 500);
    my ($status, $body, $end) = (undef, '');
    my $deadline = time + 5;

    while (!$end && time < $deadline) {
        while (length $c->{buf} < 9) {
            last unless $c->fill($deadline - time);
        }
        last if length $c->{buf} < 9;

        my ($l1, $l2, $l3, $type, $flags, $stream) =
            unpack('C3 C C N', $c->{buf});
        my $len = ($l1 << 16) | ($l2 << 8) | $l3;

        while (length $c->{buf} < 9 + $len) {
            last unless $c->fill($deadline - time);
        }
        last if length $c->{buf} < 9 + $len;

        substr($c->{buf}, 0, 9) = '';
        my $payload = substr($c->{buf}, 0, $len, '');
        $stream &= 0x7fffffff;

        if ($type == 4 && !($flags & 1)) {
            $c->send(_h2_frame(4, 1, 0, ''));

        } elsif ($type == 1 && $stream == 1) {
            my $b = ord $payload;
            if ($b & 0x80) {
                $status = $static{$b & 0x7f};
            } elsif (($b & 0x3f) == 8) {
                $status = substr($payload, 2, 3);
            }
            $end = 1 if $flags & 1;

        } elsif ($type == 0 && $stream == 1) {
            $body .= $payload;
            $end = 1 if $flags & 1;

        } elsif ($type == 3 || $type == 7) {
            last;
        }
    }

    my $json = eval { JSON::PP->new->decode($body) };

    return { status => $status // 0, body => $body, json => $json };
}

1;
