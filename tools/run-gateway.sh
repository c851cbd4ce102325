#!/usr/bin/env bash
# `make run`: start nginx with the module on 127.0.0.1:8080 in the
# foreground (Ctrl-C stops it).
#
#   TWILIO_CREDENTIALS=FILE  forward to https://studio.twilio.com with the
#                            SID:SECRET line in FILE (TLS verified, SNI on)
#   (unset)                  forward to the bundled Twilio stand-in on
#                            127.0.0.1:8081, with demo credentials
#   PORT, STANDIN_PORT       change the two ports
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
run="$top/build/run"
port=${PORT:-8080}
standin_port=${STANDIN_PORT:-8081}
flow=FW0123456789abcdef0123456789abcdef

mkdir -p "$run/logs" "$run/tmp"
chmod 0755 "$run"

# whatever ends this script (Ctrl-C, kill, a supervisor) ends nginx and the
# stand-in with it, so that nothing is left holding the ports
standin_pid=
nginx_pid=
stop() {
    [ -n "$nginx_pid" ] && kill -QUIT "$nginx_pid" 2>/dev/null \
        && wait "$nginx_pid" 2>/dev/null
    [ -n "$standin_pid" ] && kill "$standin_pid" 2>/dev/null
    return 0
}
trap stop EXIT
trap 'exit 0' INT TERM HUP

if [ -n "${TWILIO_CREDENTIALS:-}" ]; then
    credentials=$(readlink -f "$TWILIO_CREDENTIALS")
    upstream=$(cat <<CONF
            proxy_pass https://studio.twilio.com;
            proxy_ssl_server_name on;
            proxy_ssl_name studio.twilio.com;
            proxy_ssl_verify on;
            proxy_ssl_verify_depth 3;
            proxy_ssl_trusted_certificate /etc/ssl/certs/ca-certificates.crt;
            proxy_set_header Host studio.twilio.com;
CONF
)
    target="https://studio.twilio.com"
else
    # demo credentials for the stand-in only, made fresh for each run
    credentials="$run/demo-credentials"
    secret=$(head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 32)
    while [ ${#secret} -lt 32 ]; do secret="${secret}0"; done
    (umask 077; echo "SK00000000000000000000000000000000:$secret" > "$credentials")

    perl "$top/standin/twilio-standin.pl" --listen "127.0.0.1:$standin_port" \
        --credentials "$credentials" --state "$run/standin-state" \
        > "$run/logs/standin.log" 2>&1 &
    standin_pid=$!

    upstream="            proxy_pass http://127.0.0.1:$standin_port;"
    target="the local Twilio stand-in on 127.0.0.1:$standin_port"
fi

cat > "$run/nginx.conf" <<CONF
load_module $top/objs/ngx_http_studio_testusers_module.so;

daemon off;
worker_processes 1;
pid $run/nginx.pid;
error_log $run/logs/error.log info;
error_log stderr notice;

events {
    worker_connections 1024;
}

http {
    client_body_temp_path $run/tmp/client_body;
    proxy_temp_path $run/tmp/proxy;
    fastcgi_temp_path $run/tmp/fastcgi;
    uwsgi_temp_path $run/tmp/uwsgi;
    scgi_temp_path $run/tmp/scgi;

    log_format studio '\$remote_addr "\$request" \$status '
                      'flow=\$studio_testusers_flow_sid '
                      'identities=\$studio_testusers_identities '
                      'result=\$studio_testusers_result '
                      'reason=\$studio_testusers_reason';
    access_log $run/logs/access.log studio;
    access_log /dev/stdout studio;

    studio_testusers_credentials $credentials;
    studio_testusers_audit_log $run/logs/audit.log;

    server {
        listen 127.0.0.1:$port;

        location /v2/Flows/ {
            # the demo is for this machine only; real teams authenticate
            # (auth_basic, auth_request, client certificates)
            allow 127.0.0.1;
            deny all;

            studio_testusers on;
$upstream
        }
    }
}
CONF

/usr/sbin/nginx -t -q -p "$run/" -c "$run/nginx.conf" -e "$run/logs/error.log"

u="http://127.0.0.1:$port/v2/Flows/$flow/TestUsers"
cat <<MSG

  Gateway: http://127.0.0.1:$port  ->  $target
  Config:  $run/nginx.conf     Logs: $run/logs/
  Audit:   $run/logs/audit.log (one JSON line per judged request)
  No Twilio credentials needed on the client side: the gateway adds them.

  Try:
    curl -s $u
    curl -s $u --data-urlencode 'TestUsers=+15555550100' --data-urlencode 'TestUsers=client:alice'
    curl -s $u --data 'TestUsers=%00'                 # 400: a control character
    curl -s -X DELETE $u                              # 405
    curl -s "http://127.0.0.1:$port/v2/Flows/FWnope/TestUsers"   # 404

  Ctrl-C stops it.

MSG

/usr/sbin/nginx -p "$run/" -c "$run/nginx.conf" -e "$run/logs/error.log" &
nginx_pid=$!
wait "$nginx_pid"
