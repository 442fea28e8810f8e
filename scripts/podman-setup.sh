#!/usr/bin/env bash
# Configure podman so it runs containers in a sandbox like CI's: no systemd, cgroups v1 (hybrid),
# and no CAP_SYS_RESOURCE. It needs runc (crun fails: "cgroups in hybrid mode not supported"), the
# cgroupfs manager, and default ulimits it is allowed to set (the defaults fail with "setrlimit ...
# Operation not permitted"). Writes one drop-in file; safe to run twice; harmless on a normal host.
set -euo pipefail

CONF_DIR=/etc/containers/containers.conf.d
CONF="$CONF_DIR/50-shardrun-sandbox.conf"
WANT='# Written by shardrun scripts/podman-setup.sh (see docs/containers.md).
[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"'

if [ -f "$CONF" ] && [ "$(cat "$CONF")" = "$WANT" ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO mkdir -p "$CONF_DIR"
printf '%s\n' "$WANT" | $SUDO tee "$CONF" >/dev/null
echo "podman configured: $CONF"
