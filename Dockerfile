# syntax=docker/dockerfile:1
#
# The ACD controller image: one image for `acdctl run` (the controller) and
# `acdctl sidecar` (the WhatsApp webhook sidecar); docker-compose.yml runs both.
#
#   docker build -t acd-controller .
#   docker run --rm acd-controller --help
#
# Two stages: the first builds the project's wheel and installs it with its dependencies
# into a virtualenv (/opt/acd); the final image is python:3.11-slim plus that virtualenv
# only - no pip, no compiler, no source tree, running as an unprivileged user.

ARG PYTHON_IMAGE=python:3.11-slim

# ----------------------------------------------------------------------------- build
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
# Only what the wheel is built from (see .dockerignore): metadata first, then the package.
COPY pyproject.toml README.md ./
COPY controller ./controller
# Every dependency ships binary wheels for CPython 3.11 on amd64/arm64, so no compiler
# is needed even here. pip and setuptools are removed from the venv afterwards.
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
 && python -m venv /opt/acd \
 && /opt/acd/bin/pip install /wheels/*.whl \
 && /opt/acd/bin/pip uninstall --yes pip setuptools

# ----------------------------------------------------------------------------- final
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="acd-controller" \
      org.opencontainers.image.description="Contact-center routing for Asterisk over ARI: agents accept calls, no auto-answer" \
      org.opencontainers.image.licenses="Apache-2.0"

# No package manager front-ends for Python at run time either.
RUN python -m pip uninstall --yes pip setuptools wheel \
 && groupadd --system --gid 10001 acd \
 && useradd --system --uid 10001 --gid acd --home-dir /var/lib/acd --create-home \
            --shell /usr/sbin/nologin acd

COPY --from=build /opt/acd /opt/acd

# ACD_CONFIG: mount the queue/agent file here (docker-compose.yml does).
ENV PATH=/opt/acd/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    ACD_CONFIG=/etc/acd/acd.toml

# Working directory for relative paths (e.g. the default SQLite database ./data/...).
WORKDIR /var/lib/acd
USER 10001:10001

# A default that fits every command of the image: the settings and the queue/agent file
# are valid. docker-compose.yml replaces it with the /healthz of the controller's HTTP API
# and of the sidecar.
HEALTHCHECK --interval=30s --timeout=10s --start-period=10s --retries=3 \
    CMD ["acdctl", "check-config"]

ENTRYPOINT ["acdctl"]
CMD ["run"]
