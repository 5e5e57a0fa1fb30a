#!/usr/bin/env bash
# Build the container image, run it as an operator would (read-only root filesystem, against
# the local PostgreSQL and the test fakes) and print its size. See scripts/image_check.py.
#
#   bash scripts/image-check.sh [--base IMAGE] [--tag TAG] [--no-build]
#
# Needs a running container engine (docker) and the project's venv with the TEST extras
# (.venv, made by `bash .ci/run` or `python3 -m venv .venv && .venv/bin/pip install -e '.[dev,test]'`):
# the check drives the image with the test suite's fakes of Twilio and SMTP.
#
# A check that cannot run FAILS (exit 2) and says why: a missing check must not look like a
# pass. To skip it on purpose, set AUTHSVC_IMAGE_CHECK=0 (it then says so and exits 0).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ "${AUTHSVC_IMAGE_CHECK:-1}" = "0" ]; then
    echo "image check SKIPPED on request (AUTHSVC_IMAGE_CHECK=0): the image was neither built nor checked"
    exit 0
fi

engine=""
for candidate in /usr/bin/docker "$(command -v docker || true)"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ] && "$candidate" info >/dev/null 2>&1; then
        engine="$candidate"
        break
    fi
done
if [ -z "$engine" ]; then
    echo "image check FAILED: no container engine running (start docker, e.g. apt-get install docker.io" \
         "and dockerd; or set AUTHSVC_IMAGE_CHECK=0 to skip the check on purpose)" >&2
    exit 2
fi
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import tests.support.fake_twilio, aiosmtpd, psycopg' 2>/dev/null; then
    echo "image check FAILED: it needs the project's venv with the test extras" \
         "(bash .ci/run once, or python3 -m venv .venv && .venv/bin/pip install -e '.[dev,test]')" >&2
    exit 2
fi
exec .venv/bin/python scripts/image_check.py "$@"
