#!/usr/bin/env bash
# Install everything the test suite needs on Debian, idempotently: system packages, the Python
# package with its dev extras in .venv, and the pinned npm tools in .tools/. Safe to run twice.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive

# System packages. Each part of the suite adds what it needs here.
APT_PACKAGES=(
  parallel            # bench/local_overhead.py compares against GNU parallel
  python3-venv
  chromium            # tests/test_report.py renders the run report in headless Chromium
  chromium-driver     # ... driven by selenium through the system chromedriver
  podman              # tests/test_container_*.py, test_image_*.py: tasks as containers
  runc                # ... podman's OCI runtime here (crun fails on hybrid cgroups)
  busybox-static      # ... the test images are FROM scratch with a static busybox
  docker-registry     # ... a loopback registry, the stand-in for Azure Container Registry
  apache2-utils       # ... htpasswd, for that registry's auth
  mmdebstrap          # tests/test_batch_registry.py: an offline Debian base image with python3
  pandoc              # tests/test_examples.py: examples/pandoc, a real program writing to stdout
)

# Azurite (tests/fixtures/azurite.py) runs on node; keep a node that is already there.
if ! command -v npm >/dev/null; then APT_PACKAGES+=(nodejs npm); fi

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing system packages: ${missing[*]}"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[dev]"

# Azurite, pinned, into .tools/azurite (git-ignored): the blob store's tests run against it.
bash scripts/azurite.sh install

# podman settings this sandbox needs (runc, cgroupfs, ulimits it may set): docs/containers.md.
bash scripts/podman-setup.sh

echo "test dependencies ready"
