# syntax=docker/dockerfile:1
# The relevo server image (docs/deploy.md). From the repository root:
#   docker build --build-arg RELEVO_EXTRAS=postgres -t relevo:0.1.0 .
#   docker run -p 8000:8000 -e RELEVO_API_TOKEN=... -e RELEVO_ADMIN_TOKEN=... relevo:0.1.0
# Every setting is an environment variable RELEVO_* (README.md, "Settings"); the store is a
# SQLite file under RELEVO_HOME unless RELEVO_DATABASE_URL names PostgreSQL.
ARG PYTHON_VERSION=3.11

# ---- build: relevo's wheel and the wheels of what it needs, with the extras asked for
FROM python:${PYTHON_VERSION}-slim AS build
ARG RELEVO_EXTRAS=postgres
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
COPY deploy/docker/build-wheels.sh /usr/local/bin/build-wheels.sh
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN sh /usr/local/bin/build-wheels.sh /src /wheels "${RELEVO_EXTRAS}"

# ---- run: the wheels installed offline, no compiler, no build tools, a user of its own
FROM python:${PYTHON_VERSION}-slim
ARG RELEVO_EXTRAS=postgres
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    RELEVO_HOME=/var/lib/relevo
RUN groupadd --system --gid 10001 relevo \
 && useradd --system --no-log-init --uid 10001 --gid relevo --home-dir /var/lib/relevo \
      --create-home --shell /usr/sbin/nologin relevo
# the wheels are mounted for this step only: they never become a layer of the image
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    --mount=type=bind,source=deploy/docker/install.sh,target=/install.sh \
    sh /install.sh /wheels "${RELEVO_EXTRAS}"
USER 10001:10001
WORKDIR /var/lib/relevo
EXPOSE 8000
# relevo serve drains on SIGTERM (RELEVO_SHUTDOWN_DRAIN_S), then finishes in-flight requests and
# flushes the prediction log before it exits
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status != 200)"]
CMD ["relevo", "serve", "--host", "0.0.0.0", "--port", "8000"]
