#!/usr/bin/env bash
# Soak test: SOAK_SECONDS (default 60) of mixed valid, invalid and hostile
# traffic against nginx with the module (2 workers, audit and access logs),
# in front of a fast local Twilio stand-in (a second nginx), with
# `nginx -s reload` every 5 s and log rotation (rename, create) +
# `nginx -s reopen` every 7 s.
# Prints a summary and a verdict; exits non-zero when a check fails.
#
#   SOAK_SECONDS=60 soak/run.sh          (or: make soak SOAK_SECONDS=60)
#
# Other knobs: SOAK_CONNECTIONS (256), SOAK_THREADS (2), SOAK_SLOW_PROCS (6),
# SOAK_RELOAD_EVERY (5), SOAK_REOPEN_EVERY (7), SOAK_ZONE (1m: the size of
# studio_testusers_zone), SOAK_MAX_WORKER_RSS_MB (64) and
# SOAK_MAX_MASTER_GROWTH_MB (16) (bounds on private memory), SOAK_KEEP=1
# keeps the scratch directory as it is (when a check fails it is kept
# anyway, with its large logs gzipped).
# Everything listens on 127.0.0.1 only, on free ports.

set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD

SECONDS_LOAD=${SOAK_SECONDS:-60}
CONNECTIONS=${SOAK_CONNECTIONS:-256}
THREADS=${SOAK_THREADS:-2}
SLOW_PROCS=${SOAK_SLOW_PROCS:-6}
RELOAD_EVERY=${SOAK_RELOAD_EVERY:-5}
REOPEN_EVERY=${SOAK_REOPEN_EVERY:-7}
BODY_TIMEOUT=3          # client_body_timeout of the gateway, seconds
ZONE=${SOAK_ZONE:-1m}    # studio_testusers_zone size
KEEPALIVE=3             # keepalive_timeout towards clients and upstream

NGINX=/usr/sbin/nginx
MODULE=$ROOT/objs/ngx_http_studio_testusers_module.so

# fake values for tests only: not a real Twilio API key
SID=SK0123456789abcdef0123456789abcdef
SECRET=testsecret0123456789abcdefABCDEF

log() { printf 'soak: [%s] %s\n' "$(date +%T)" "$*"; }
die() { printf 'soak: %s\n' "$*" >&2; exit 2; }

[[ $SECONDS_LOAD =~ ^[0-9]+$ ]] && (( SECONDS_LOAD >= 3 )) \
    || die "SOAK_SECONDS must be a whole number of seconds, at least 3"
[ -x "$NGINX" ] || die "$NGINX is missing: run 'make deps'"
[ -f "$MODULE" ] || die "$MODULE is missing: run 'make build'"

# --- tools: wrk and a fast JSON parser for Perl, from Debian -------------------------

need=()
command -v wrk >/dev/null || need+=(wrk)
perl -MCpanel::JSON::XS -e 1 2>/dev/null || need+=(libcpanel-json-xs-perl)
if [ ${#need[@]} -gt 0 ]; then
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || die "${need[*]} missing and we are not root"
        sudo=sudo
    fi
    log "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive RUNLEVEL=1
    if ! $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" \
            >/dev/null 2>&1
    then
        $sudo apt-get update -qq
        $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" \
            >/dev/null || command -v wrk >/dev/null || die "cannot install wrk"
    fi
fi
for tool in wrk perl curl ps; do
    command -v $tool >/dev/null || die "$tool is missing"
done

# --- scratch directory, ports ---------------------------------------------------

DIR=$(mktemp -d /tmp/studio-soak-XXXXXX)
chmod 755 "$DIR"            # workers run as nobody when the master is root
GW=$DIR/gw
UP=$DIR/up
mkdir -p "$GW/logs" "$GW/tmp" "$UP/logs" "$UP/tmp"

free_port() {
    perl -MIO::Socket::INET -e \
        'print IO::Socket::INET->new(LocalAddr => "127.0.0.1:0", Listen => 1)->sockport'
}
GW_PORT=$(free_port)
UP_PORT=$(free_port)
while [ "$UP_PORT" = "$GW_PORT" ]; do UP_PORT=$(free_port); done

printf '%s:%s\n' "$SID" "$SECRET" > "$DIR/credentials"
chmod 600 "$DIR/credentials"
printf '%s\n' "$(printf 'soak' | sha256sum | cut -c1-64)" > "$DIR/audit.key"
chmod 600 "$DIR/audit.key"
BASIC="Basic $(printf '%s:%s' "$SID" "$SECRET" | base64 -w0)"

MEASURE=$DIR/measure
: > "$MEASURE"
measure() { printf '%s %s\n' "$1" "$2" >> "$MEASURE"; }

BG_PIDS=()
STATUS=1

stop_nginx() {   # prefix
    local pidf=$1/nginx.pid pid i
    [ -s "$pidf" ] || return 0
    pid=$(cat "$pidf")
    kill -QUIT "$pid" 2>/dev/null || return 0
    for i in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -TERM "$pid" 2>/dev/null || true
    sleep 0.5
    kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
    local p
    for p in "${BG_PIDS[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    for p in "${BG_PIDS[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    stop_nginx "$GW"
    stop_nginx "$UP"
    if [ "$STATUS" -eq 0 ] && [ -z "${SOAK_KEEP:-}" ]; then
        rm -rf "$DIR"
        return
    fi
    if [ -z "${SOAK_KEEP:-}" ]; then
        # the evidence of a failure, smaller: a 60 s run logs ~1 GB
        find "$DIR" -name '*.log*' ! -name '*.gz' -size +1M -exec gzip -1 {} + \
            2>/dev/null || true
    fi
    log "scratch directory kept: $DIR ($(du -sh "$DIR" | cut -f1))"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the fast Twilio stand-in: nginx answering Twilio-shaped 200s -----------------

cat > "$UP/nginx.conf" <<EOF
daemon on;
master_process on;
worker_processes 1;
worker_rlimit_nofile 8192;
pid $UP/nginx.pid;
error_log $UP/logs/error.log error;

events {
    worker_connections 4096;
}

http {
    client_body_temp_path $UP/tmp/client_body;
    proxy_temp_path $UP/tmp/proxy;
    fastcgi_temp_path $UP/tmp/fastcgi;
    uwsgi_temp_path $UP/tmp/uwsgi;
    scgi_temp_path $UP/tmp/scgi;

    client_max_body_size 4m;
    client_body_buffer_size 64k;
    keepalive_timeout ${KEEPALIVE}s;
    keepalive_requests 100000;
    map_hash_bucket_size 128;

    # only the service credential, and only what the gateway may forward
    map \$http_authorization \$auth_ok {
        "$BASIC"  1;
        default   0;
    }
    map "\$request_method:\$http_content_type" \$shape_ok {
        "GET:"                                        1;
        "~^POST:application/x-www-form-urlencoded(;|\$)" 1;
        default                                       0;
    }

    log_format up '\$request_method|\$status|\$http_content_type|\$content_length';
    access_log $UP/logs/access.log up buffer=64k flush=1s;

    server {
        listen 127.0.0.1:$UP_PORT backlog=4096;
        default_type application/json;

        location ~ "^/v2/Flows/(?<sid>FW[0-9a-fA-F]{32})/TestUsers\$" {
            if (\$auth_ok = 0) {
                return 401 '{"code": 20003, "message": "Authenticate", "status": 401}';
            }
            if (\$shape_ok = 0) {
                return 418 '{"code": 0, "message": "stand-in: not a request the gateway may forward", "status": 418}';
            }
            return 200 '{"sid": "\$sid", "test_users": [], "url": "https://studio.twilio.com/v2/Flows/\$sid/TestUsers"}';
        }

        location / {
            return 418 '{"code": 0, "message": "stand-in: not a request the gateway may forward", "status": 418}';
        }
    }
}
EOF

# --- the gateway ------------------------------------------------------------------

cat > "$GW/nginx.conf" <<EOF
load_module $MODULE;

daemon on;
master_process on;
worker_processes 2;
worker_rlimit_nofile 8192;
pid $GW/nginx.pid;
error_log $GW/logs/error.log error;

events {
    worker_connections 4096;
}

http {
    client_body_temp_path $GW/tmp/client_body;
    proxy_temp_path $GW/tmp/proxy;
    fastcgi_temp_path $GW/tmp/fastcgi;
    uwsgi_temp_path $GW/tmp/uwsgi;
    scgi_temp_path $GW/tmp/scgi;

    studio_testusers_credentials $DIR/credentials;
    studio_testusers_zone studio:$ZONE;

    log_format soak '\$msec|\$pid|\$request_id|\$status|\$request_method|'
                    '\$studio_testusers_result|\$studio_testusers_reason|'
                    '\$soak_kind|\$upstream_status|\$request_length|'
                    '\$request_time';

    upstream twilio {
        server 127.0.0.1:$UP_PORT;
        keepalive 32;
        keepalive_timeout ${KEEPALIVE}s;
    }

    server {
        listen 127.0.0.1:$GW_PORT backlog=4096;

        keepalive_timeout ${KEEPALIVE}s;
        client_body_buffer_size 1k;         # most POST bodies go to a temp file
        client_body_timeout ${BODY_TIMEOUT}s;
        client_max_body_size 1m;

        access_log $GW/logs/access.log soak;

        location / {
            # read before the module forwards the request: it keeps only
            # the headers Twilio needs, and \$http_x_soak_kind is gone then
            set \$soak_kind \$http_x_soak_kind;

            allow 127.0.0.1;
            deny all;

            studio_testusers on;
            studio_testusers_audit_log $GW/logs/audit.log;
            studio_testusers_audit_hmac_key $DIR/audit.key;
            studio_testusers_actor \$soak_kind;

            proxy_pass http://twilio;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_connect_timeout 5s;
            proxy_read_timeout 30s;
        }
    }
}
EOF

ngx() {   # prefix, args...
    local p=$1
    shift
    "$NGINX" -p "$p/" -c "$p/nginx.conf" -e "$p/logs/error.log" "$@"
}

ngx "$UP" -t -q || die "stand-in configuration refused"
ngx "$GW" -t -q || die "gateway configuration refused"
ngx "$UP"
ngx "$GW"

wait_file() { local i; for i in $(seq 1 100); do [ -s "$1" ] && return 0; sleep 0.05; done; return 1; }
wait_file "$UP/nginx.pid" || die "the stand-in did not start"
wait_file "$GW/nginx.pid" || die "the gateway did not start"
MASTER=$(cat "$GW/nginx.pid")

workers() {        # current (not shutting down) workers of the gateway
    ps --ppid "$MASTER" -o pid=,args= | awk '/worker process$/ { print $1 }'
}
old_workers() {
    ps --ppid "$MASTER" -o pid=,args= | awk '/shutting down/ { print $1 }' || true
}
nfd() { ls "/proc/$1/fd" 2>/dev/null | wc -l; }
# kB of resident memory: VmRSS, or RssAnon (private: without the shared
# zone's pages, which every worker touches and VmRSS counts)
rss() { awk -v f="${2:-VmRSS}:" '$1 == f { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }

# the quiet gateway: workers' and master's fds and RSS
wait_quiet() {     # seconds; true when no old worker is left
    local i
    for i in $(seq 1 $(( $1 * 10 ))); do
        [ -z "$(old_workers)" ] && [ "$(workers | wc -l)" -eq 2 ] && return 0
        sleep 0.1
    done
    return 1
}

# --- warm-up, one reload, baseline -------------------------------------------------

FLOW0=FW0000000000000000000000000000beef
for i in 1 2 3; do
    curl -sS -o /dev/null -H 'X-Soak-Kind: warmup' \
        "http://127.0.0.1:$GW_PORT/v2/Flows/$FLOW0/TestUsers"
    curl -sS -o /dev/null -H 'X-Soak-Kind: warmup' \
        -H 'Content-Type: application/x-www-form-urlencoded' \
        --data "$(perl -e 'print join "&", map { "TestUsers=%2B1555000$_" } 1000 .. 1099')" \
        "http://127.0.0.1:$GW_PORT/v2/Flows/$FLOW0/TestUsers"
done
ngx "$GW" -s reload
sleep 0.5
wait_quiet 20 || die "warm-up: old workers did not exit"
sleep 0.5

BASE_FD=0
for w in $(workers); do
    n=$(nfd "$w")
    (( n > BASE_FD )) && BASE_FD=$n
    ls -l "/proc/$w/fd" > "$DIR/fd-baseline-$w.txt" 2>/dev/null || true
done
BASE_MASTER_FD=$(nfd "$MASTER")
measure worker_fd_baseline "$BASE_FD"
measure master_fd_baseline "$BASE_MASTER_FD"
for f in VmRSS RssAnon; do
    measure "master_${f}_start_kb" "$(rss "$MASTER" $f)"
    wr=0
    for w in $(workers); do r=$(rss "$w" $f); (( r > wr )) && wr=$r; done
    measure "worker_${f}_start_kb" "$wr"
done

log "gateway 127.0.0.1:$GW_PORT (master $MASTER), stand-in 127.0.0.1:$UP_PORT"
log "load: ${SECONDS_LOAD}s, $CONNECTIONS connections, $THREADS wrk threads," \
    "$SLOW_PROCS slow/aborting clients; reload every ${RELOAD_EVERY}s," \
    "reopen every ${REOPEN_EVERY}s"

# --- load -------------------------------------------------------------------------------

# RSS of master and workers, once a second: time, master VmRSS and RssAnon,
# number of workers (old ones included), their largest VmRSS and RssAnon
(
    while :; do
        wmax=0; amax=0; nw=0
        for w in $(ps --ppid "$MASTER" -o pid= 2>/dev/null); do
            r=$(rss "$w"); a=$(rss "$w" RssAnon); nw=$(( nw + 1 ))
            (( r > wmax )) && wmax=$r
            (( a > amax )) && amax=$a
        done
        echo "$(date +%s) $(rss "$MASTER") $(rss "$MASTER" RssAnon) $nw $wmax $amax"
        sleep 1
    done
) > "$DIR/rss.txt" 2>/dev/null &
SAMPLER=$!
BG_PIDS+=("$SAMPLER")

LOAD_START=$(date +%s.%N)
measure load_start "$LOAD_START"

SOAK_WRK_STATS=$DIR/wrk.txt wrk -t "$THREADS" -c "$CONNECTIONS" -d "${SECONDS_LOAD}s" \
    --timeout 10s -s "$ROOT/soak/mix.lua" "http://127.0.0.1:$GW_PORT/" \
    > "$DIR/wrk.out" 2>&1 &
WRK=$!
BG_PIDS+=("$WRK")

perl "$ROOT/soak/slow.pl" --port "$GW_PORT" --seconds "$SECONDS_LOAD" \
    --procs "$SLOW_PROCS" --body-timeout "$BODY_TIMEOUT" \
    --out "$DIR/slow.txt" --flows "$DIR/aborted-flows.txt" \
    > "$DIR/slow.out" 2>&1 &
SLOW=$!
BG_PIDS+=("$SLOW")

# reloads and reopens, rotating the logs like Debian's logrotate rule for
# nginx: rename, create the new file for the workers' user ("create"), then
# reopen.  Without "create", a reopen right after a reload can race: the
# `nginx -s reopen` process creates the file as root, and new workers forked
# while the master's reopen flag was set reopen it before the master chowns
# it, "[emerg] open() ... (13: Permission denied)" (nginx itself, the same
# for access_log)
WORKER_USER=$(ps -o user= -p "$(workers | head -1)")
reloads=0
reopens=0
reload_failed=0
for (( t = 1; t < SECONDS_LOAD; t++ )); do
    sleep 1
    if (( t % RELOAD_EVERY == 0 )); then
        if ngx "$GW" -s reload 2>>"$DIR/signals.err"; then
            reloads=$(( reloads + 1 ))
        else
            reload_failed=$(( reload_failed + 1 ))
        fi
    fi
    if (( t % REOPEN_EVERY == 0 )); then
        # not in the same instant as a reload: a master that opens the
        # logs for its new cycle between the rename and the create writes
        # to a file "create" then unlinks, for access_log as much as for
        # the audit log (the new workers' lines until they reopen are lost)
        (( t % RELOAD_EVERY == 0 )) && sleep 0.5
        reopens=$(( reopens + 1 ))
        for f in audit.log access.log; do
            mv "$GW/logs/$f" "$GW/logs/$f.$reopens" 2>/dev/null || true
            install -m 0644 -o "$WORKER_USER" /dev/null "$GW/logs/$f" \
                2>/dev/null || : > "$GW/logs/$f"
        done
        ngx "$GW" -s reopen 2>>"$DIR/signals.err" \
            || reload_failed=$(( reload_failed + 1 ))
    fi
done
measure reloads "$reloads"
measure reloads_planned "$(( (SECONDS_LOAD - 1) / RELOAD_EVERY ))"
measure reopens_planned "$(( (SECONDS_LOAD - 1) / REOPEN_EVERY ))"
measure reopens "$reopens"
measure signal_failures "$reload_failed"

wrk_rc=0
wait "$WRK" || wrk_rc=$?
LOAD_END=$(date +%s.%N)
measure load_end "$LOAD_END"
measure wrk_exit "$wrk_rc"
slow_rc=0
wait "$SLOW" || slow_rc=$?
measure slow_exit "$slow_rc"
log "load done; draining"

# --- after the load ---------------------------------------------------------------------

# old workers must finish (a leaked connection keeps one alive for ever)
t0=$(date +%s.%N)
if wait_quiet 30; then
    measure old_workers_left 0
else
    measure old_workers_left "$(old_workers | wc -l)"
fi
measure drain_seconds "$(awk -v a="$(date +%s.%N)" -v b="$t0" 'BEGIN { printf "%.1f", a - b }')"

# every update lock is free again: a POST to each hot flow and to each flow
# whose POST was aborted after it was sent gets 200, not 409
perl -MIO::Socket::INET -e '
    my ($port, $file, @hot) = @ARGV;
    open my $fh, "<", $file; chomp(my @flows = <$fh>);
    my ($ok, $bad) = (0, 0); my %st;
    my $body = "TestUsers=%2B15550009999";
    my $c;
    for my $sid (@hot, @flows) {
        next unless $sid =~ /^FW[0-9a-f]{32}$/;
        for my $try (1 .. 2) {
            $c ||= IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port", Timeout => 5) or die "connect: $!";
            print $c "POST /v2/Flows/$sid/TestUsers HTTP/1.1\r\nHost: localhost\r\nX-Soak-Kind: lock_sweep\r\n"
                   . "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: " . length($body) . "\r\n\r\n$body";
            my $head = ""; my $line;
            while (defined($line = <$c>)) { $head .= $line; last if $line eq "\r\n" }
            if ($head =~ m{^HTTP/1\.1 (\d+)} ) {
                my $s = $1; my ($len) = $head =~ /Content-Length: (\d+)/i;
                read($c, my $b, $len // 0);
                $c = undef if $head =~ /Connection: close/i;
                $st{$s}++; last;
            }
            $c = undef;
        }
    }
    print join(" ", map { "$_:$st{$_}" } sort keys %st), "\n";
' "$GW_PORT" "$DIR/aborted-flows.txt" \
    FW00000000000000000000000000000001 FW00000000000000000000000000000002 \
    FW00000000000000000000000000000003 FW00000000000000000000000000000004 \
    > "$DIR/sweep.txt" 2>&1 || true
measure lock_sweep "$(tr ' ' ',' < "$DIR/sweep.txt")"

# idle keep-alive connections (clients' and upstream's) close; then every
# worker must be back to the baseline's fd count
end_fd=0
for i in $(seq 1 $(( (KEEPALIVE + 10) * 10 ))); do
    end_fd=0
    for w in $(workers); do
        n=$(nfd "$w"); (( n > end_fd )) && end_fd=$n
    done
    (( end_fd <= BASE_FD )) && [ -z "$(old_workers)" ] && break
    sleep 0.1
done
measure worker_fd_end "$end_fd"
for w in $(workers); do
    ls -l "/proc/$w/fd" > "$DIR/fd-end-$w.txt" 2>/dev/null || true
done
measure master_fd_end "$(nfd "$MASTER")"
for f in VmRSS RssAnon; do
    measure "master_${f}_end_kb" "$(rss "$MASTER" $f)"
    wr=0
    for w in $(workers); do r=$(rss "$w" $f); (( r > wr )) && wr=$r; done
    measure "worker_${f}_end_kb" "$wr"
done

# no request body may stay behind
find "$GW/tmp/client_body" -type f > "$DIR/leftover-temp.txt" 2>/dev/null || true
measure temp_files_left "$(wc -l < "$DIR/leftover-temp.txt")"

kill "$SAMPLER" 2>/dev/null || true
wait "$SAMPLER" 2>/dev/null || true

# stop the gateway gracefully, so that every record is written, then count
pid=$MASTER
kill -QUIT "$pid"
for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$pid" 2>/dev/null && measure gateway_quit "stuck" || measure gateway_quit ok
stop_nginx "$UP"

rc=0
perl "$ROOT/soak/analyze.pl" --dir "$DIR" --seconds "$SECONDS_LOAD" \
    --connections "$CONNECTIONS" || rc=$?
STATUS=$rc
exit "$rc"
