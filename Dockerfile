# authsvc container image (BuildKit; Dockerfile syntax 1.2+, built into Docker >= 20.10).
#
#   DOCKER_BUILDKIT=1 docker build -t authsvc .
#
# The base is pinned by digest (python:3.11-slim-bookworm). Where no registry is reachable,
# any Debian-like image with python3 and python3-venv stands in through PYTHON_IMAGE, e.g. the
# one scripts/debian-base.sh makes with debootstrap (scripts/image-check.sh builds and checks
# the image that way and prints its size):
#
#   docker build --build-arg PYTHON_IMAGE=authsvc-base:bookworm -t authsvc .
#
# Migrations are NOT applied when the service starts: run them as a separate, one-off command
# (a Kubernetes Job / init container of the deploy pipeline, see deploy/) before rolling out
# a new version:
#
#   docker run --rm --env-file authsvc.env authsvc db upgrade
#   docker run -d  --env-file authsvc.env -p 8000:8000 \
#       --read-only --tmpfs /tmp:size=16m authsvc                  # = authsvc serve
#
# so that a fleet of replicas (or sidecars) starting at once does not race to change the
# schema, and a failed migration stops the rollout instead of crash-looping every replica.
# (`db upgrade` also takes a PostgreSQL advisory lock, so an accidental concurrent run is
# harmless.) Until the schema is current, GET /readyz answers 503, so new replicas take no
# traffic. The migration command reads the same AUTHSVC_* environment as the service.
#
# Read-only root filesystem: the image writes nothing outside /tmp (gunicorn's worker
# heartbeats go to /dev/shm, no .pyc files are written, logs go to stdout), so it runs with
# `--read-only --tmpfs /tmp` (Kubernetes: readOnlyRootFilesystem plus an emptyDir on /tmp).
#
# Other commands: `docker run --rm --env-file authsvc.env authsvc db status`, `... worker`,
# `... keys list`, `... outbox status`; `... --help` lists them all.

# Verify/update with: docker buildx imagetools inspect python:3.11-slim-bookworm
ARG PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:a36c24f9cbdf4fd0f52d67f0823eeac19c2028c637cecc392d97f980d4fec56b

# --------------------------------------------------------------------------- builder
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src

# Only what the wheel needs (pyproject names README.md as the long description).
COPY pyproject.toml README.md ./
COPY authsvc ./authsvc

# Build the wheel in a throw-away venv (Debian's python3 has no pip of its own), then install
# it (without extras: no pgserver, no test tools; dependencies from binary wheels only) into
# the venv that is copied as a whole into the runtime image.
# Behind a TLS-inspecting proxy, hand pip the CA bundle as a build secret (never stored in a
# layer): docker build --secret id=pip-ca,src=/etc/ssl/certs/ca-certificates.crt ...
RUN --mount=type=secret,id=pip-ca \
    if [ -s /run/secrets/pip-ca ]; then export PIP_CERT=/run/secrets/pip-ca; fi \
 && python3 -m venv /opt/build \
 && /opt/build/bin/pip wheel --no-deps --wheel-dir /wheels . \
 && python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --only-binary=:all: /wheels/authsvc-*.whl \
 && /opt/venv/bin/pip uninstall --yes pip setuptools wheel

# Trim what can never run: byte-code (compiled below for what the service imports), test
# suites shipped inside packages, and the twilio SDK's 40-odd product domains other than
# `twilio.rest.api` (the Messages API of adapters/sms.py). Client reaches each domain only
# through a lazily importing property, so the rest are dead weight (~20 MB);
# scripts/image-check.sh sends a real SMS through this image to prove it. Babel ships CLDR data
# for 1,149 locales (~35 MB); the service formats dates for the locales of authsvc.i18n.LOCALES
# (en, ja) only, so every other locale's data goes (root.dat, their parent, stays), and a date
# is formatted in each kept locale to prove nothing it needs went.
RUN site=$(/opt/venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') \
 && find /opt/venv -name '__pycache__' -prune -exec rm -rf {} + \
 && find "$site" -depth -mindepth 2 -type d \( -name tests -o -name test \) -exec rm -rf {} + \
 && find "$site/twilio/rest" -mindepth 1 -maxdepth 1 -type d ! -name api -exec rm -rf {} + \
 && /opt/venv/bin/python -c 'import twilio.rest; from twilio.rest import Client; Client("AC" + "0" * 32, "x").messages' \
 && /opt/venv/bin/python -c 'import pathlib, babel; from authsvc.i18n import LOCALES; \
        data = pathlib.Path(babel.__file__).parent / "locale-data"; keep = {"root", *LOCALES}; \
        [p.unlink() for p in data.glob("*.dat") if p.stem not in keep]' \
 && /opt/venv/bin/python -c 'import datetime; from authsvc.i18n import LOCALES, format_time; \
        print([format_time(datetime.datetime(2026, 1, 2, 3, 4, tzinfo=datetime.timezone.utc), l) for l in LOCALES])'

# --------------------------------------------------------------------------- runtime
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="authsvc" \
      org.opencontainers.image.description="Hardened two-factor authentication microservice for payment apps"

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    AUTHSVC_MIGRATIONS_DIR=/app/migrations \
    AUTHSVC_BIND=0.0.0.0:8000

# A fixed, unprivileged uid/gid (no login shell, no home to write to).
RUN groupadd --system --gid 10001 authsvc \
 && useradd --system --uid 10001 --gid authsvc --no-create-home --home-dir /app \
            --shell /usr/sbin/nologin authsvc

COPY --from=builder /opt/venv /opt/venv
# Byte-code for exactly what a start imports (stdlib included), compiled once here because the
# root filesystem is read-only at run time; anything else compiles in memory when first used.
RUN env -u PYTHONDONTWRITEBYTECODE /opt/venv/bin/python -c "import authsvc.cli, authsvc.app, \
        authsvc.workers, authsvc.sync_worker, authsvc.adapters.sms, gunicorn.app.base, gunicorn.arbiter, gunicorn.glogging, gunicorn.workers.gthread, \
        gunicorn.workers.sync, limits.storage, redis, twilio.rest.api.v2010.account.message, \
        email.mime.text, smtplib, logging.config"
# Plain-SQL migrations, read by `authsvc db upgrade|status` and by /readyz (config.py reads
# AUTHSVC_MIGRATIONS_DIR). Owned by root: the service only reads them.
COPY migrations /app/migrations

WORKDIR /app
USER 10001:10001

EXPOSE 8000

# No curl in the slim image: probe /healthz with the standard library, on the port from
# AUTHSVC_BIND.
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["python3", "-c", "import os, sys, urllib.request; port = os.environ.get('AUTHSVC_BIND', '0.0.0.0:8000').rpartition(':')[2]; sys.exit(0 if urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4).status == 200 else 1)"]

ENTRYPOINT ["authsvc"]
CMD ["serve"]
