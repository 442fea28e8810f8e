#!/usr/bin/env bash
# Rehearse a cloud run offline: Azurite (Blob Storage) and shardrun's Azure Batch emulator on
# loopback, then `shardrun run` of a job file whose [storage] and [batch] point at them.
#   bash scripts/rehearse.sh [JOB]     (default: examples/wordcount/job-batch.toml)
# Needs the Azure extra and Azurite: `bash scripts/install-test-deps.sh` installs both.
set -euo pipefail
cd "$(dirname "$0")/.."

job="${1:-examples/wordcount/job-batch.toml}"
blob_port="${SHARDRUN_REHEARSE_BLOB_PORT:-10000}"
batch_port="${SHARDRUN_REHEARSE_BATCH_PORT:-10010}"
work="$(mktemp -d -t shardrun-rehearse-XXXXXX)"

bash scripts/azurite.sh install
bash scripts/azurite.sh run "$blob_port" "$work/azurite" >"$work/azurite.log" 2>&1 &
azurite_pid=$!
.venv/bin/python -m shardrun.emulator --port "$batch_port" --node-start-seconds 1 \
  >"$work/emulator.log" 2>&1 &
emulator_pid=$!
trap 'kill "$azurite_pid" "$emulator_pid" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT

for _ in $(seq 1 100); do  # both listen within a few seconds
  if (exec 3<>"/dev/tcp/127.0.0.1/$blob_port") 2>/dev/null \
     && (exec 3<>"/dev/tcp/127.0.0.1/$batch_port") 2>/dev/null; then
    break
  fi
  sleep 0.2
done

# The emulators' published development keys (Azurite's README; shardrun.emulator), not secrets.
export AZURE_STORAGE_KEY="Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
AZURE_BATCH_KEY="$(.venv/bin/python -c 'from shardrun.emulator import DEV_ACCOUNT_KEY; print(DEV_ACCOUNT_KEY)')"
export AZURE_BATCH_KEY

.venv/bin/shardrun run "$job"
