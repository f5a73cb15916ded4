# syntax=docker/dockerfile:1
# floorwatch image: one image for every role (worker, trainer, topics, simulate, alerts, ...).
#
#   docker build -t floorwatch .
#   docker run --rm floorwatch --help
#
# Built for linux/amd64: the tensorflow-cpu dependency may have no Linux arm64 wheel
# (on an arm64 host, build with --platform linux/amd64).

ARG PYTHON_VERSION=3.11

# --- build: install the project and its dependencies into a virtualenv -----------------------
FROM python:${PYTHON_VERSION}-slim AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
# .dockerignore keeps the local virtualenv, git history, caches and run state out of the context.
COPY . .
# The pip cache mount speeds up rebuilds without putting the cache in a layer.
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --upgrade pip \
    && pip install .

# --- runtime: the virtualenv only, as a non-root user ----------------------------------------
FROM python:${PYTHON_VERSION}-slim

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TF_CPP_MIN_LOG_LEVEL=3 \
    FLOORWATCH_MODEL_DIR=/models

# A fixed uid/gid so volume ownership is predictable across rebuilds. /models is created here,
# owned by that user, so a fresh named volume mounted on it is writable by the trainer.
RUN groupadd --system --gid 10001 floorwatch \
    && useradd --system --uid 10001 --gid floorwatch --create-home --home-dir /home/floorwatch \
       --shell /usr/sbin/nologin floorwatch \
    && mkdir -p /models \
    && chown floorwatch:floorwatch /models

COPY --from=build /opt/venv /opt/venv

USER floorwatch
# Writable working directory: the Faust worker keeps its data directory (<app_id>-data) in the
# current directory, and Keras its config under $HOME.
WORKDIR /home/floorwatch

VOLUME ["/models"]
# Prometheus metrics of `floorwatch worker` (set FLOORWATCH_METRICS_HOST=0.0.0.0 to reach them
# from outside the container; the default binds to loopback).
EXPOSE 9108

ENTRYPOINT ["floorwatch"]
CMD ["--help"]
