#!/usr/bin/env bash
# `make bench`: what the module costs, against a plain proxy_pass and
# against the same rules written with lua-nginx-module.  See
# bench/README.md for what is measured, why, and the last results.
#
# Three gateways side by side, one worker each, pinned to CPU 0:
#   (a) base    proxy_pass + static proxy_set_header Authorization
#   (b) module  studio_testusers on + proxy_pass
#   (c) lua     access_by_lua_block (bench/studio_gate.lua) + proxy_pass
# in front of one local upstream nginx (CPU 1) that answers 200 only when
# it sees the service credential; wrk runs on CPU 1 too.
#
# Knobs (environment):
#   BENCH_ROUNDS=7  BENCH_DURATION=3 (s per run)  BENCH_CONNECTIONS=16
#   BENCH_RSS_REQUESTS=1000000  BENCH_RSS_MAX_SECONDS=120
#   BENCH_CALLGRIND_REQUESTS=2000  BENCH_OUT=bench/results
#   BENCH_SKIP="rss callgrind"   (any of: form wrk rss callgrind)
#
# Only 127.0.0.1; every load is bounded by time (wrk -d) or count.

set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD

ROUNDS=${BENCH_ROUNDS:-7}
DURATION=${BENCH_DURATION:-3}
CONNS=${BENCH_CONNECTIONS:-16}
RSS_REQUESTS=${BENCH_RSS_REQUESTS:-1000000}
RSS_MAX_SECONDS=${BENCH_RSS_MAX_SECONDS:-120}
CG_REQUESTS=${BENCH_CALLGRIND_REQUESTS:-2000}
CG_WARM=100
OUT=${BENCH_OUT:-$ROOT/bench/results}
SKIP=" ${BENCH_SKIP:-} "
SERVER_CPU=0
LOAD_CPU=1

log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }
skip() { [[ "$SKIP" == *" $1 "* ]]; }

T0=$(date +%s)


# --- what this script needs beyond tools/install-deps.sh --------------------

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v valgrind >/dev/null || need+=(valgrind)
command -v callgrind_annotate >/dev/null || need+=(valgrind)
for p in libnginx-mod-http-lua libnginx-mod-http-ndk procps; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' \
        || need+=("$p")
done

if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    export DEBIAN_FRONTEND=noninteractive RUNLEVEL=1
    $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1 \
        || { $sudo apt-get update -qq \
             && $sudo apt-get install -y -qq --no-install-recommends \
                    "${need[@]}" >/dev/null; }
fi

MODULE_SO=$ROOT/objs/ngx_http_studio_testusers_module.so
[ -f "$MODULE_SO" ] || die "$MODULE_SO is missing: run 'make build'"

# Debian's snippets say "load_module modules/…so;" relative to nginx's own
# prefix; we run with -p elsewhere, so take the absolute paths.  The NDK
# must be loaded before the Lua module.
NDK_SO=$(dpkg -L libnginx-mod-http-ndk | grep '/ndk_http_module\.so$' | head -1)
LUA_SO=$(dpkg -L libnginx-mod-http-lua | grep '/ngx_http_lua_module\.so$' | head -1)
[ -f "$NDK_SO" ] && [ -f "$LUA_SO" ] || die "lua-nginx-module .so files not found"

[ "$(nproc)" -ge 2 ] || log "WARNING: fewer than 2 CPUs: pinning puts everything on CPU 0"
[ "$(nproc)" -ge 2 ] || LOAD_CPU=0


# --- scratch directory, credentials, ports ----------------------------------

W=$(mktemp -d /tmp/studio-bench-XXXXXX)
chmod 755 "$W"          # workers run as nobody
mkdir -p "$OUT"
rm -f "$OUT"/*.tsv "$OUT"/*.txt "$OUT"/*.md "$OUT"/*.out

MASTERS=()
VG_PID=""

cleanup() {
    local pid
    [ -n "$VG_PID" ] && kill -TERM "$VG_PID" 2>/dev/null || true
    for pid in "${MASTERS[@]}"; do
        kill -QUIT "$pid" 2>/dev/null || true
    done
    sleep 0.5
    for pid in "${MASTERS[@]}"; do
        # still ours (its command line names the scratch directory)?
        grep -qF "$W" "/proc/$pid/cmdline" 2>/dev/null \
            && kill -TERM "$pid" 2>/dev/null || true
    done
    if [ -z "${BENCH_KEEP:-}" ]; then
        rm -rf "$W"
    else
        log "scratch kept: $W"
    fi
}
trap cleanup EXIT

# a private copy: a concurrent `make build` must not swap it mid-run
cp "$MODULE_SO" "$W/module.so"
mkdir -p "$W/lua"
cp "$ROOT/bench/studio_gate.lua" "$W/lua/"

# fake values, the test suite's: not a real Twilio account
SID=AC0123456789abcdef0123456789abcdef
SECRET=testsecret0123456789abcdefABCDEF
printf '%s:%s\n' "$SID" "$SECRET" > "$W/credentials"
chmod 600 "$W/credentials"
BASIC="Basic $(printf '%s:%s' "$SID" "$SECRET" | base64 -w0)"

free_port() {
    perl -MIO::Socket::INET -e '
        my $s = IO::Socket::INET->new(LocalAddr => "127.0.0.1:0",
                                      Listen => 1, ReuseAddr => 1) or die $@;
        print $s->sockport, "\n";'
}

declare -A PORT WORKER
for n in up a b c rss cga cgb; do
    PORT[$n]=$(free_port)
done


# --- configurations -----------------------------------------------------------

# worker_cpu_affinity mask of one CPU: 1, 10, 100, ...
mask() {
    printf '1%*s' "$1" '' | tr ' ' 0
}

# conf NAME AFFINITY MAIN_EXTRA HTTP_EXTRA LOCATION [single]
conf() {
    local name=$1 affinity=$2 main=$3 http=$4 location=$5 single=${6:-}
    local d=$W/$name proc

    mkdir -p "$d/tmp" "$d/logs"

    if [ -n "$single" ]; then
        proc="master_process off;
daemon off;"
    else
        proc="daemon on;
master_process on;
worker_cpu_affinity $affinity;"
    fi

    cat > "$d/nginx.conf" <<CONF
$main
$proc
worker_processes 1;
pid $d/nginx.pid;
error_log $d/logs/error.log notice;

events {
    worker_connections 1024;
}

http {
    access_log off;
    client_body_temp_path $d/tmp/client_body;
    proxy_temp_path $d/tmp/proxy;
    fastcgi_temp_path $d/tmp/fastcgi;
    uwsgi_temp_path $d/tmp/uwsgi;
    scgi_temp_path $d/tmp/scgi;

    keepalive_requests 1000000;

    # the 30 KB bodies stay in memory in all three gateways
    client_body_buffer_size 64k;
    client_max_body_size 1m;

$http

    upstream studio {
        server 127.0.0.1:${PORT[up]};
        keepalive 32;
        keepalive_requests 1000000;
    }

    server {
        listen 127.0.0.1:${PORT[$name]};

        location /v2/Flows/ {
$location
            proxy_pass http://studio;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }

        location = /stub {
            stub_status;
        }
    }
}
CONF
}

LOC_BASE="            proxy_set_header Authorization \"$BASIC\";"
LOC_MODULE="            studio_testusers on;
            studio_testusers_credentials $W/credentials;"
LOC_LUA="            access_by_lua_block { require(\"studio_gate\").check() }"
MAIN_MODULE="load_module $W/module.so;"
MAIN_LUA="load_module $NDK_SO;
load_module $LUA_SO;"
HTTP_LUA="    lua_package_path \"$W/lua/?.lua;;\";
    init_by_lua_block { require(\"studio_gate\").init(\"$W/credentials\") }"

conf a "$(mask "$SERVER_CPU")" "" "" "$LOC_BASE"
conf b "$(mask "$SERVER_CPU")" "$MAIN_MODULE" "" "$LOC_MODULE"
conf c "$(mask "$SERVER_CPU")" "$MAIN_LUA" "$HTTP_LUA" "$LOC_LUA"
conf rss "$(mask "$SERVER_CPU")" "$MAIN_MODULE" "" "$LOC_MODULE"
conf cga 1 "" "" "$LOC_BASE" single
conf cgb 1 "$MAIN_MODULE" "" "$LOC_MODULE" single

# the upstream: 200 and a Twilio-like body, but only with the service
# credential, so every 2xx wrk counts proves the credential was injected
mkdir -p "$W/up/tmp" "$W/up/logs"
cat > "$W/up/nginx.conf" <<CONF
daemon on;
master_process on;
worker_processes 1;
worker_cpu_affinity $(mask "$LOAD_CPU");
pid $W/up/nginx.pid;
error_log $W/up/logs/error.log notice;

events {
    worker_connections 1024;
}

http {
    access_log off;
    client_body_temp_path $W/up/tmp/client_body;
    keepalive_requests 1000000;
    client_body_buffer_size 64k;
    default_type application/json;

    server {
        listen 127.0.0.1:${PORT[up]};

        location / {
            if (\$http_authorization != "$BASIC") {
                return 401 '{"code": 20003, "status": 401}';
            }

            return 200 '{"sid": "FW0123456789abcdef0123456789abcdef", "test_users": ["+15555550001"], "url": "https://studio.twilio.com/v2/Flows/FW0123456789abcdef0123456789abcdef/TestUsers"}';
        }

        location = /stub {
            stub_status;
        }
    }
}
CONF

start() {
    local name=$1 d=$W/$1 master i

    /usr/sbin/nginx -t -q -p "$d/" -c "$d/nginx.conf" -e "$d/logs/error.log" \
        || die "nginx -t failed for $name"
    /usr/sbin/nginx -p "$d/" -c "$d/nginx.conf" -e "$d/logs/error.log" \
        || die "nginx $name did not start"

    for i in $(seq 100); do
        [ -s "$d/nginx.pid" ] && break
        sleep 0.05
    done
    master=$(cat "$d/nginx.pid")
    MASTERS+=("$master")

    for i in $(seq 100); do
        WORKER[$name]=$(ps -o pid= --ppid "$master" | head -1 | tr -d ' ')
        [ -n "${WORKER[$name]}" ] && break
        sleep 0.05
    done
    [ -n "${WORKER[$name]}" ] || die "no worker for $name"
}

stub_requests() {
    curl -s "http://127.0.0.1:$1/stub" | awk 'NR == 3 { print $3 }'
}

# utime+stime in clock ticks, and the scheduler's on-CPU nanoseconds
cpu_of() {
    local pid=$1 stat ticks ns
    stat=$(cat "/proc/$pid/stat")
    stat=${stat##*) }
    # after "comm)": state is field 3, utime field 14, stime field 15
    ticks=$(awk '{ print $12 + $13 }' <<<"$stat")
    ns=$(cut -d' ' -f1 "/proc/$pid/schedstat" 2>/dev/null || echo 0)
    echo "$ticks $ns"
}

# busy and total jiffies of one CPU, from /proc/stat
cpu_busy() {
    awk -v c="cpu$1" '$1 == c { t = 0; for (i = 2; i <= 9; i++) t += $i;
                                 print t - $5 - $6, t }' /proc/stat
}

rss_kb() {
    awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
}


# --- machine -------------------------------------------------------------------

{
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "nproc: $(nproc)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
    echo "cpu MHz: $(grep -m1 'cpu MHz' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
    echo "kernel: $(uname -r)"
    echo "nginx: $(/usr/sbin/nginx -v 2>&1 | sed 's/^nginx version: //')"
    echo "lua-nginx-module: $(dpkg-query -W -f='${Version}' libnginx-mod-http-lua)"
    echo "wrk: $(wrk -v 2>&1 | head -1 | awk '{ print $2 }')"
    echo "valgrind: $(valgrind --version)"
    echo "gcc: $(gcc -dumpfullversion)"
    echo "commit: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD -- ngx_studio_testusers_module config 2>/dev/null || echo ' (module sources modified in work tree)')"
    echo "module.so sha256: $(sha256sum "$W/module.so" | cut -c1-16)"
    echo "loadavg at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "settings: rounds=$ROUNDS duration=${DURATION}s connections=$CONNS wrk_threads=1 server_cpu=$SERVER_CPU load_cpu=$LOAD_CPU"
} > "$OUT/machine.txt"
cat "$OUT/machine.txt" >&2


# --- the form decoder on its own ------------------------------------------------

if ! skip form; then
    log "form decoder microbenchmark"
    # -O2 is the target's build; -O is what the module gets from nginx's
    # own CFLAGS (objs Makefile: "-pipe -O -W ..."), shown for comparison
    : > "$OUT/form.txt"
    : > "$OUT/form-instr.txt"
    for opt in -O2 -O; do
        gcc -std=c99 $opt -Wall -Wextra -Werror -I "$ROOT/ngx_studio_testusers_module" \
            -o "$W/form_bench$opt" "$ROOT/bench/form_bench.c" \
            "$ROOT/ngx_studio_testusers_module/ngx_http_studio_testusers_form.c" \
            "$ROOT/ngx_studio_testusers_module/ngx_http_studio_testusers_validate.c"
        taskset -c "$SERVER_CPU" "$W/form_bench$opt" 2 | sed "s/^/$opt\t/" >> "$OUT/form.txt"

        # and the noise-free figure: instructions per body byte
        for fcase in ids290 ids15; do
            for n in 0 200; do
                valgrind --tool=callgrind --callgrind-out-file="$W/form$opt-$fcase-$n.out" \
                    "$W/form_bench$opt" -n "$n" "$fcase" > "$W/form$opt-$fcase-$n.txt" 2>/dev/null
            done
            lo=$(awk '/^totals:/ { print $2 }' "$W/form$opt-$fcase-0.out")
            hi=$(awk '/^totals:/ { print $2 }' "$W/form$opt-$fcase-200.out")
            bytes=$(sed -E 's/.*body_bytes=([0-9]+).*/\1/' "$W/form$opt-$fcase-200.txt")
            printf '%s\t%s\tinstructions_per_byte=%s\n' "$opt" "$fcase" \
                "$(perl -e "printf '%.2f', ($hi - $lo) / (200 * $bytes)")" >> "$OUT/form-instr.txt"
        done
    done
    cat "$OUT/form.txt" "$OUT/form-instr.txt" >&2
fi


# --- servers, and proof that they judge ------------------------------------------

start up
start a
start b
start c

log "workers: up=${WORKER[up]} a=${WORKER[a]} b=${WORKER[b]} c=${WORKER[c]}"

FLOW=FW0123456789abcdef0123456789abcdef
URL_PATH=/v2/Flows/$FLOW/TestUsers

# check NAME EXPECTED-STATUS DESCRIPTION CURL-ARGS...
check() {
    local name=$1 want=$2 what=$3 got
    shift 3
    got=$(curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Basic Y2xpZW50OnRlYW0=' \
              "$@" 2>/dev/null || true)
    printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$what" "$want" "$got" \
        "$([ "$got" = "$want" ] && echo ok || echo MISMATCH)" >> "$OUT/preflight.tsv"
    [ "$got" = "$want" ]
}

preflight_ok=1
# 300 KB, far beyond client_body_buffer_size: nginx spills it to a temp
# file (the Lua gate then reads it back with ngx.req.get_body_file())
perl -e 'print join("&", map { sprintf("TestUsers=u-%04d-", $_) . ("y" x 283) } 1 .. 1000)' \
    > "$W/big.form"
perl -e 'print join("&", map { sprintf("TestUsers=u-%04d-", $_) . ("y" x 283) } 1 .. 999, 5)' \
    > "$W/big-dup.form"
FORM='Content-Type: application/x-www-form-urlencoded'
for n in a b c; do
    u=http://127.0.0.1:${PORT[$n]}
    check "$n" 200 "GET" "$u$URL_PATH" || preflight_ok=0
    check "$n" 200 "POST 10 identities" -H "$FORM" \
        --data-binary "$(printf 'TestUsers=%%2B155555500%02d&' $(seq 10) | sed 's/&$//')" \
        "$u$URL_PATH" || preflight_ok=0
    [ "$n" = a ] && continue
    check "$n" 400 "duplicate identity" -H "$FORM" \
        --data-binary 'TestUsers=%2B15555550001&TestUsers=%2B15555550001' "$u$URL_PATH" || preflight_ok=0
    check "$n" 400 "control character" -H "$FORM" \
        --data-binary 'TestUsers=a%01b' "$u$URL_PATH" || preflight_ok=0
    check "$n" 400 "C1 control (U+0085)" -H "$FORM" \
        --data-binary 'TestUsers=a%C2%85b' "$u$URL_PATH" || preflight_ok=0
    check "$n" 400 "invalid UTF-8" -H "$FORM" \
        --data-binary 'TestUsers=%C3%28' "$u$URL_PATH" || preflight_ok=0
    check "$n" 400 "surrogate (ED A0 80)" -H "$FORM" \
        --data-binary 'TestUsers=%ED%A0%80' "$u$URL_PATH" || preflight_ok=0
    check "$n" 400 "301-byte identity" -H "$FORM" \
        --data-binary "TestUsers=$(head -c 301 /dev/zero | tr '\0' x)" "$u$URL_PATH" || preflight_ok=0
    check "$n" 200 "300-byte identity" -H "$FORM" \
        --data-binary "TestUsers=$(head -c 300 /dev/zero | tr '\0' x)" "$u$URL_PATH" || preflight_ok=0
    check "$n" 200 "300 KB body (temp file)" -H "$FORM" \
        --data-binary @"$W/big.form" "$u$URL_PATH" || preflight_ok=0
    check "$n" 400 "300 KB body, duplicate at the end" -H "$FORM" \
        --data-binary @"$W/big-dup.form" "$u$URL_PATH" || preflight_ok=0
    check "$n" 400 "empty field" -H "$FORM" \
        --data-binary 'TestUsers=a&&TestUsers=b' "$u$URL_PATH" || preflight_ok=0
    check "$n" 400 "malformed escape" -H "$FORM" \
        --data-binary 'TestUsers=a%2' "$u$URL_PATH" || preflight_ok=0
    check "$n" 400 "unknown parameter" -H "$FORM" \
        --data-binary 'Foo=a' "$u$URL_PATH" || preflight_ok=0
    check "$n" 415 "Content-Type text/plain" -H 'Content-Type: text/plain' \
        --data-binary 'TestUsers=a' "$u$URL_PATH" || preflight_ok=0
    check "$n" 404 "Flow SID of 31 hex digits" \
        "$u/v2/Flows/FW0123456789abcdef0123456789abcde/TestUsers" || preflight_ok=0
    check "$n" 400 "query string" "$u$URL_PATH?x=1" || preflight_ok=0
    check "$n" 405 "DELETE" -X DELETE "$u$URL_PATH" || preflight_ok=0
done

column -t -s $'\t' "$OUT/preflight.tsv" >&2 || cat "$OUT/preflight.tsv" >&2
[ "$preflight_ok" = 1 ] || die "a gateway does not behave as expected (see $OUT/preflight.tsv)"


# --- wrk, interleaved rounds ---------------------------------------------------

# name method identities identity-bytes flows
CASES=(
    "get GET 0 15 1024"
    "post1 POST 1 15 1024"
    "post10 POST 10 15 1024"
    "post100 POST 100 15 1024"
    "post100x290 POST 100 290 256"
)

# run_wrk CONFIG CASE ROUND SECONDS [tsv]
run_wrk() {
    local cfg=$1 cs=$2 round=$3 secs=$4 tsv=${5:-} c m ids len flows
    local wpid=${WORKER[$cfg]} before after ub ua res upb upa s0b s0a s1b s1a

    for c in "${CASES[@]}"; do
        set -- $c
        [ "$1" = "$cs" ] && { m=$2; ids=$3; len=$4; flows=$5; }
    done

    ub=$(stub_requests "${PORT[up]}")
    before=$(cpu_of "$wpid")
    upb=$(cpu_of "${WORKER[up]}")
    s0b=$(cpu_busy "$SERVER_CPU")
    s1b=$(cpu_busy "$LOAD_CPU")

    res=$(BENCH_METHOD=$m BENCH_IDS=$ids BENCH_IDLEN=$len BENCH_FLOWS=$flows \
          taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${secs}s" --timeout 5s \
              -s "$ROOT/bench/wrk.lua" "http://127.0.0.1:${PORT[$cfg]}/" \
          | grep '^WRKRESULT') || die "wrk failed ($cfg $cs)"

    after=$(cpu_of "$wpid")
    upa=$(cpu_of "${WORKER[up]}")
    s0a=$(cpu_busy "$SERVER_CPU")
    s1a=$(cpu_busy "$LOAD_CPU")
    ua=$(stub_requests "${PORT[up]}")

    [ -d "/proc/$wpid" ] || die "worker of $cfg ($wpid) is gone"

    # requests the upstream saw, less the stub request that counted them
    res="$res forwarded=$((ua - ub - 1))"
    res="$res cpu_ticks=$(( ${after% *} - ${before% *} ))"
    res="$res cpu_ns=$(( ${after#* } - ${before#* } ))"
    res="$res upstream_cpu_ns=$(( ${upa#* } - ${upb#* } ))"
    # how busy each CPU was, whoever used it (other processes included)
    res="$res server_cpu_busy_pct=$(( 100 * (${s0a% *} - ${s0b% *}) / (${s0a#* } - ${s0b#* } + 1) ))"
    res="$res load_cpu_busy_pct=$(( 100 * (${s1a% *} - ${s1b% *}) / (${s1a#* } - ${s1b#* } + 1) ))"

    if [ -n "$tsv" ]; then
        printf '%s\t%s\t%s\t%s\n' "$round" "$cfg" "$cs" "$res" >> "$tsv"
    fi

    case $res in
        *" status_errors=0 "*) ;;
        *) die "non-2xx answers: $cfg $cs: $res" ;;
    esac

    echo "$res"
}

if ! skip wrk; then
    log "warm-up: 1 s per gateway and case"
    for c in "${CASES[@]}"; do
        for cfg in a b c; do
            run_wrk "$cfg" "${c%% *}" 0 1 > /dev/null
        done
    done

    log "measuring: $ROUNDS rounds x ${#CASES[@]} cases x 3 gateways x ${DURATION}s"
    ORDERS=("a b c" "b c a" "c a b" "a c b" "c b a" "b a c")

    for round in $(seq "$ROUNDS"); do
        for c in "${CASES[@]}"; do
            for cfg in ${ORDERS[$(( (round - 1) % 6 ))]}; do
                res=$(run_wrk "$cfg" "${c%% *}" "$round" "$DURATION" "$OUT/wrk.tsv")
                log "round $round ${c%% *} $cfg: $(sed -E 's/.*requests=([0-9]+).*duration_us=([0-9]+).*p99_us=([0-9]+).*cpu_ns=([0-9]+).*/\1 req, p99 \3 us/' <<<"$res")"
            done
        done
    done
fi


# --- RSS of (b) over a long run ----------------------------------------------------

# A fresh (b) of its own, so "before" is a worker that has only been warmed
# up; then the 10-identity POST in 10 s chunks until RSS_REQUESTS were
# served (or RSS_MAX_SECONDS passed), VmRSS read after every chunk.

if ! skip rss; then
    start rss
    wpid=${WORKER[rss]}

    log "RSS: warming up a fresh (b) (worker $wpid) for 5 s"
    run_wrk rss post10 rss 5 > "$W/rss-warm"

    before_kb=$(rss_kb "$wpid")
    total=0
    errors=0
    t_start=$(date +%s)
    chunk=0
    : > "$W/rss-chunks"

    while [ "$total" -lt "$RSS_REQUESTS" ] \
          && [ $(( $(date +%s) - t_start )) -lt "$RSS_MAX_SECONDS" ]; do
        chunk=$((chunk + 1))
        res=$(run_wrk rss post10 rss 10)
        n=$(sed -E 's/.*requests=([0-9]+).*/\1/' <<<"$res")
        e=$(sed -E 's/.*status_errors=([0-9]+).*/\1/' <<<"$res")
        total=$((total + n))
        errors=$((errors + e))
        echo "chunk=$chunk requests=$n total=$total rss_kb=$(rss_kb "$wpid")" >> "$W/rss-chunks"
    done

    {
        echo "target_requests=$RSS_REQUESTS max_seconds=$RSS_MAX_SECONDS"
        echo "rss_kb_before=$before_kb"
        echo "rss_kb_after=$(rss_kb "$wpid")"
        echo "total_requests=$total status_errors=$errors seconds=$(( $(date +%s) - t_start ))"
        [ "$total" -ge "$RSS_REQUESTS" ] || echo "stopped_at_time_cap=1"
        echo "warm-up: $(cat "$W/rss-warm")"
        cat "$W/rss-chunks"
    } > "$OUT/rss.txt"
    cat "$OUT/rss.txt" >&2
fi


# --- instructions per request with callgrind -------------------------------------------

# cg_run NAME CASE COUNT OUTFILE
cg_run() {
    local name=$1 cs=$2 count=$3 outfile=$4 d=$W/$1 c m ids len i

    for c in "${CASES[@]}"; do
        set -- $c
        [ "$1" = "$cs" ] && { m=$2; ids=$3; len=$4; }
    done

    rm -f "$d/nginx.pid"
    taskset -c "$SERVER_CPU" valgrind --tool=callgrind -q \
        --callgrind-out-file="$outfile" \
        /usr/sbin/nginx -p "$d/" -c "$d/nginx.conf" -e "$d/logs/error.log" \
        2> "$outfile.valgrind.log" &
    VG_PID=$!

    for i in $(seq 600); do
        curl -s -o /dev/null "http://127.0.0.1:${PORT[$name]}/stub" && break
        sleep 0.1
    done

    taskset -c "$LOAD_CPU" perl "$ROOT/bench/client.pl" "${PORT[$name]}" \
        "$m" "$ids" "$len" "$count" > "$outfile.client" \
        || die "callgrind run $name $cs: not every answer was 200: $(cat "$outfile.client")"

    kill -QUIT "$VG_PID"
    wait "$VG_PID" || true
    VG_PID=""
}

if ! skip callgrind; then
    mkdir -p "$W/cg"
    # case:N (the 30 KB case is slow under valgrind: fewer requests)
    for cgspec in "get:$CG_REQUESTS" "post10:$CG_REQUESTS" \
                  "post100x290:$(( CG_REQUESTS / 4 ))"; do
        cgcase=${cgspec%%:*}
        cgn=${cgspec#*:}
        echo "$cgn" > "$W/cg/$cgcase.n"
        for name in cga cgb; do
            log "callgrind: $name $cgcase ($CG_WARM and $((CG_WARM + cgn)) requests)"
            cg_run "$name" "$cgcase" "$CG_WARM" "$W/cg/$name-$cgcase-lo.out"
            cg_run "$name" "$cgcase" "$((CG_WARM + cgn))" "$W/cg/$name-$cgcase-hi.out"
            for lh in lo hi; do
                for incl in no yes; do
                    callgrind_annotate --auto=no --threshold=100 --inclusive=$incl \
                        "$W/cg/$name-$cgcase-$lh.out" \
                        > "$W/cg/$name-$cgcase-$lh.incl-$incl.txt" 2>/dev/null
                done
            done
        done
    done
    perl "$ROOT/bench/callgrind_diff.pl" "$W/cg" > "$OUT/callgrind.md"
    cp "$W"/cg/cgb-*-hi.incl-no.txt "$OUT/" 2>/dev/null || true
    cat "$OUT/callgrind.md" >&2
fi


# --- error logs, report ------------------------------------------------------------------

for n in up a b c rss cga cgb; do
    [ -f "$W/$n/logs/error.log" ] || continue
    bad=$(grep -cE '\[(alert|crit|emerg)\]|exited on signal' "$W/$n/logs/error.log" || true)
    echo "$n: $bad alert/crit/emerg lines" >> "$OUT/errorlogs.txt"
    grep -E '\[(alert|crit|emerg)\]|exited on signal' "$W/$n/logs/error.log" | head -5 \
        >> "$OUT/errorlogs.txt" || true
done

echo "loadavg at end: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/machine.txt"
echo "total run time: $(( $(date +%s) - T0 ))s" >> "$OUT/machine.txt"

perl "$ROOT/bench/report.pl" "$OUT" > "$OUT/report.md"
cat "$OUT/report.md"
log "report: $OUT/report.md"
