#!/usr/bin/env bash
# Runs the app from the task contract's environment, the way a container ENTRYPOINT does
# (the classic guide's myapp_wrapper.sh). shardrun sets these for every task, as Azure Batch would:
#   INPUT_PATH   the task's input piece
#   OUTPUT_PATH  where the task's output must be written
#   CONFIG_PATH  the job's config.json
# The database named in config.json is looked for in the working directory (shardrun links the
# [app] files there), then beside the config file.
set -euo pipefail

: "${INPUT_PATH:?INPUT_PATH is not set}"
: "${OUTPUT_PATH:?OUTPUT_PATH is not set}"
: "${CONFIG_PATH:?CONFIG_PATH is not set}"

# The app sits beside this script: in the example folder, or in /app inside an image.
here="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
exec python3 "${here}/price_orders.py" -i "${INPUT_PATH}" -o "${OUTPUT_PATH}" -c "${CONFIG_PATH}"
