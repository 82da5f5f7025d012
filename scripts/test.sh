#!/bin/sh
# The README's test command: installs what is missing, then runs every test.
# Each integration test starts the servers it needs itself (the local identity endpoint
# in-process, a throwaway PostgreSQL cluster from the Debian binaries, Azurite from npm), so
# nothing has to be started by hand.
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

# Azurite, pinned, from npm; kept outside the tracked files (.cache/ is ignored).
AZURITE_VERSION=3.37.0
AZURITE_DIR="${AZURITE_DIR:-$(pwd)/.cache/azurite-$AZURITE_VERSION}"
export AZURITE_DIR
if [ ! -f "$AZURITE_DIR/node_modules/azurite/dist/src/blob/main.js" ]; then
    echo "installing Azurite $AZURITE_VERSION into $AZURITE_DIR"
    mkdir -p "$AZURITE_DIR"
    (cd "$AZURITE_DIR" && npm install --no-audit --no-fund --loglevel=error "azurite@$AZURITE_VERSION")
fi

cargo test --all-features --no-fail-fast "$@"
