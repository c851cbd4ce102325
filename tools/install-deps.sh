#!/usr/bin/env bash
# Installs the Debian packages the build, the tests and `make run` need,
# and the pinned npm packages of the Node.js client test.  Idempotent:
# does nothing when everything is present.
set -euo pipefail

cd "$(dirname "$0")/.."

packages=(
    nginx-core          # /usr/sbin/nginx, the binary the module loads into
    nginx-dev           # headers and build system in /usr/share/nginx/src
    libjansson-dev
    libssl-dev
    libpcre2-dev zlib1g-dev   # nginx's configure checks for them
    make gcc
    clang libclang-rt-14-dev  # libFuzzer and sanitizers
    perl curl
    wrk                 # load for the soak test (and the benchmarks)
    libcpanel-json-xs-perl    # the soak's analysis reads ~10^5 JSON lines
    nodejs npm          # the Twilio Node.js helper library test
)

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null \
            | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done

# a node from outside Debian is fine: only npm and node are needed
if command -v node >/dev/null && command -v npm >/dev/null; then
    missing=("${missing[@]/nodejs}")
    missing=("${missing[@]/npm}")
fi

want=()
for p in "${missing[@]}"; do
    [ -n "$p" ] && want+=("$p")
done

if [ ${#want[@]} -gt 0 ]; then
    echo "install-deps: installing ${want[*]}"
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || {
            echo "install-deps: need root to install ${want[*]}" >&2
            exit 1
        }
        sudo=sudo
    fi
    # no service start from package scripts: the tests run their own nginx
    export DEBIAN_FRONTEND=noninteractive RUNLEVEL=1
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends "${want[@]}" \
        > /dev/null
fi

if [ ! -d t/node/node_modules/twilio ]; then
    echo "install-deps: npm ci in t/node"
    (cd t/node && npm ci --no-audit --no-fund --loglevel=error)
fi
