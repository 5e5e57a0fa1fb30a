#!/usr/bin/env bash
# Build the container image, run it as an operator would (read-only root filesystem, against
# the local PostgreSQL and the test fakes) and print its size. See scripts/image_check.py.
#
#   bash scripts/image-check.sh [--base IMAGE] [--tag TAG] [--no-build]
#
# Skips (exit 0) where no container engine runs, e.g. on CI machines without docker.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

engine=""
for candidate in /usr/bin/docker "$(command -v docker || true)"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ] && "$candidate" info >/dev/null 2>&1; then
        engine="$candidate"
        break
    fi
done
if [ -z "$engine" ]; then
    echo "image check skipped: no container engine running"
    exit 0
fi
if [ ! -x .venv/bin/python ]; then
    echo "image check needs the dev venv: bash .ci/run once, or python3 -m venv .venv && .venv/bin/pip install -e '.[dev,test]'" >&2
    exit 1
fi
exec .venv/bin/python scripts/image_check.py "$@"
