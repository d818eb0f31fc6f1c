#!/usr/bin/env bash
# Runs the Python interop suite (confluent-kafka, kafka-python, kcat) against a ferry binary.
# Usage: tests/python/run.sh FERRY_BIN   (from any directory)
# Creates tests/python/.venv on first use and installs the pinned requirements into it.
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 FERRY_BIN" >&2
  exit 2
fi
FERRY_BIN="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
if [ ! -x "$FERRY_BIN" ]; then
  echo "run.sh: $FERRY_BIN is not an executable" >&2
  exit 2
fi
export FERRY_BIN

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
stamp="$venv/.requirements.sha256"
wanted="$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)"

if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$wanted" ]; then
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
  echo "$wanted" > "$stamp"
fi

cd "$here/../.."
set +e
"$venv/bin/python" -m pytest -q -p no:cacheprovider tests/python
status=$?
set -e
exit $status
