# syntax=docker/dockerfile:1
#
# authsvc container image.
#
#   docker build -t authsvc .
#
# Migrations are NOT applied when the service starts: run them as a separate, one-off command
# (a Kubernetes Job / init step of the deploy pipeline) before rolling out a new version:
#
#   docker run --rm --env-file authsvc.env authsvc db upgrade
#   docker run -d  --env-file authsvc.env -p 8000:8000 authsvc          # = authsvc serve
#
# so that a fleet of replicas (or sidecars) starting at once does not race to change the
# schema, and a failed migration stops the rollout instead of crash-looping every replica.
# (`db upgrade` also takes a PostgreSQL advisory lock, so an accidental concurrent run is
# harmless.) Until the schema is current, GET /readyz answers 503, so new replicas take no
# traffic. The migration command reads the same AUTHSVC_* environment as the service.
#
# Other commands: `docker run --rm --env-file authsvc.env authsvc db status`, `... worker`.

ARG PYTHON_IMAGE=python:3.11-slim

# --------------------------------------------------------------------------- builder
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src

# Only what the wheel needs (pyproject names README.md as the long description).
COPY pyproject.toml README.md ./
COPY authsvc ./authsvc

# Build the wheel, then install it (and its dependencies, from binary wheels) into a venv
# that is copied as a whole into the runtime image.
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
 && python -m venv /opt/venv \
 && /opt/venv/bin/pip install --only-binary=:all: /wheels/authsvc-*.whl \
 && /opt/venv/bin/pip uninstall --yes pip setuptools wheel \
 && find /opt/venv -name '__pycache__' -prune -exec rm -rf {} +

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
# Plain-SQL migrations, read by `authsvc db upgrade|status` and by /readyz (config.py reads
# AUTHSVC_MIGRATIONS_DIR). Owned by root: the service only reads them.
COPY migrations /app/migrations

WORKDIR /app
USER 10001:10001

EXPOSE 8000

# No curl in the slim image: probe /healthz with the standard library, on the port from
# AUTHSVC_BIND.
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('AUTHSVC_BIND', '0.0.0.0:8000').rpartition(':')[2]; sys.exit(0 if urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4).status == 200 else 1)"]

ENTRYPOINT ["authsvc"]
CMD ["serve"]
