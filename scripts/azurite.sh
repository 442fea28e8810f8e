#!/usr/bin/env bash
# Azurite (the Azure Storage emulator), pinned, in the project-local folder .tools/azurite.
#   scripts/azurite.sh install            install it (idempotent; needs node and npm)
#   scripts/azurite.sh run PORT DIR       run the blob service on 127.0.0.1:PORT with data in DIR
#   scripts/azurite.sh bin                print the path of the azurite-blob program
# The tests start and stop it themselves (tests/fixtures/azurite.py); `run` is for trying things.
set -euo pipefail
cd "$(dirname "$0")/.."

AZURITE_VERSION="3.37.0"
PREFIX=".tools/azurite"
BIN="$PREFIX/node_modules/.bin/azurite-blob"

installed_version() {
  node -p "require('./$PREFIX/node_modules/azurite/package.json').version" 2>/dev/null || true
}

case "${1:-}" in
  install)
    if [ "$(installed_version)" = "$AZURITE_VERSION" ] && [ -x "$BIN" ]; then
      exit 0
    fi
    if ! command -v npm >/dev/null; then
      echo "azurite.sh: npm is missing (install the Debian packages nodejs and npm)" >&2
      exit 1
    fi
    mkdir -p "$PREFIX"
    echo "installing azurite $AZURITE_VERSION into $PREFIX"
    # --ignore-scripts: Azurite needs no install scripts; engine warnings (it asks for node 22)
    # are harmless for the blob service, which the tests check.
    npm install --silent --no-audit --no-fund --ignore-scripts --prefix "$PREFIX" \
      "azurite@$AZURITE_VERSION" >/dev/null 2>&1 || {
      echo "azurite.sh: npm install azurite@$AZURITE_VERSION failed" >&2
      exit 1
    }
    ;;
  run)
    port="${2:?usage: scripts/azurite.sh run PORT DIR}"
    dir="${3:?usage: scripts/azurite.sh run PORT DIR}"
    mkdir -p "$dir"
    exec "$BIN" --silent --location "$dir" --blobHost 127.0.0.1 --blobPort "$port" \
      --skipApiVersionCheck --disableProductStyleUrl --disableTelemetry
    ;;
  bin)
    echo "$PWD/$BIN"
    ;;
  *)
    echo "usage: scripts/azurite.sh install | run PORT DIR | bin" >&2
    exit 2
    ;;
esac
