#!/usr/bin/env bash
# A container registry on loopback with htpasswd auth: the local stand-in for Azure Container
# Registry (Debian's docker-registry is the CNCF distribution registry, the same protocol).
#   scripts/registry.sh start DIR PORT USER   the password is read from stdin, never an argument;
#                                             data, config, log and pid live in DIR
#   scripts/registry.sh stop DIR
# It speaks plain HTTP, so podman needs --tls-verify=false for it ([image] tls_verify = false).
# The tests start and stop it themselves (tests/fixtures/registry.py).
set -euo pipefail

START_TIMEOUT_TENTHS=300   # 30 s

case "${1:-}" in
  start)
    dir="${2:?usage: scripts/registry.sh start DIR PORT USER}"
    port="${3:?usage: scripts/registry.sh start DIR PORT USER}"
    user="${4:?usage: scripts/registry.sh start DIR PORT USER}"
    for tool in docker-registry htpasswd; do
      command -v "$tool" >/dev/null || {
        echo "registry.sh: $tool is missing (apt-get install docker-registry apache2-utils)" >&2
        exit 1
      }
    done
    mkdir -p "$dir/data"
    # -i: the password comes from stdin; -B: bcrypt, which the registry requires.
    htpasswd -iBc "$dir/htpasswd" "$user" 2>/dev/null
    # Paths go in through environment overrides, so no path is ever quoted into YAML.
    cat > "$dir/config.yml" <<'YAML'
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: /var/lib/docker-registry
  delete:
    enabled: true
http:
  addr: 127.0.0.1:5000
auth:
  htpasswd:
    realm: shardrun-test-registry
    path: /etc/docker/registry/htpasswd
YAML
    REGISTRY_HTTP_ADDR="127.0.0.1:$port" \
    REGISTRY_HTTP_SECRET="$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')" \
    REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY="$dir/data" \
    REGISTRY_AUTH_HTPASSWD_PATH="$dir/htpasswd" \
      setsid docker-registry serve "$dir/config.yml" >"$dir/registry.log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" > "$dir/registry.pid"
    for _ in $(seq 1 "$START_TIMEOUT_TENTHS"); do
      if ! kill -0 "$pid" 2>/dev/null; then
        echo "registry.sh: the registry exited; see $dir/registry.log" >&2
        exit 1
      fi
      if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        exit 0
      fi
      sleep 0.1
    done
    kill "$pid" 2>/dev/null || true
    echo "registry.sh: the registry did not listen on 127.0.0.1:$port in time" >&2
    exit 1
    ;;
  stop)
    dir="${2:?usage: scripts/registry.sh stop DIR}"
    [ -f "$dir/registry.pid" ] || exit 0
    pid="$(cat "$dir/registry.pid")"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$dir/registry.pid"
    ;;
  *)
    echo "usage: scripts/registry.sh start DIR PORT USER | stop DIR" >&2
    exit 2
    ;;
esac
