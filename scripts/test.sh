#!/bin/sh
# The README's test command: installs what is missing, then runs every test.
# Each integration test starts the servers it needs itself (the local identity endpoint
# in-process, a throwaway PostgreSQL cluster from the Debian binaries), so nothing has to be
# started by hand.
set -eu
cd "$(dirname "$0")/.."

# PostgreSQL server binaries (tests start their own clusters from them).
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    echo "installing the Debian package postgresql (server binaries for the tests)"
    export DEBIAN_FRONTEND=noninteractive
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends postgresql >/dev/null
fi

cargo test --all-features --no-fail-fast "$@"
