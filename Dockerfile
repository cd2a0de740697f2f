# syntax=docker/dockerfile:1
#
# The platform image: `python -m api` by default; the same image runs the ingest
# worker with another command. Production talks to a real MongoDB, so only the
# runtime dependencies are installed (requirements.txt): no `dev` or
# `standin` extras.

ARG PYTHON_IMAGE=python:3.13-slim

# --- build: install the project and its dependencies into a virtualenv ---------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
# Exactly the locked runtime dependencies, every file's hash checked; a layer of its
# own, so a code change does not reinstall them.
COPY requirements.txt requirements.txt
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --require-hashes --no-deps -r requirements.txt
# The build context is filtered by .dockerignore (no .venv, .git, .data, caches).
# The project itself resolves nothing: its build backend is in the lock too.
COPY . .
RUN pip install --no-deps --no-build-isolation . && pip check

# --- runtime: the virtualenv only, run by an unprivileged user ------------------
FROM ${PYTHON_IMAGE} AS runtime

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    API_HOST=0.0.0.0 \
    API_PORT=8000

RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin app

COPY --from=build /opt/venv /opt/venv

# An empty working directory: nothing shadows the installed packages, and no
# stray .env is picked up by the settings.
WORKDIR /app
USER 10001:10001

EXPOSE 8000

# /health answers 503 when MongoDB, Redis or MQTT is down; urlopen raises on it.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('API_PORT', '8000') + '/health', timeout=4)"]

CMD ["python", "-m", "api"]
