# syntax=docker/dockerfile:1
# Two images from one file (docker-compose.yml builds both):
#   docker build --target web .                             the server: no torch (locks/web.txt)
#   docker build --target worker --build-arg TORCH=cpu .    a worker with the CPU build of torch
#   docker build --target worker --build-arg TORCH=cuda .   a worker with PyPI's CUDA build of torch
# Dependencies come only from the hash-pinned lock of each image (pip --require-hashes --no-deps),
# generated from pyproject.toml's extras by `make locks` (docs/deploy.md).
# The base image is pinned by version; pin it by digest too with
#   --build-arg PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:<digest of your registry's copy>
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# The application's files, copied once and shared by both images.
FROM scratch AS source
COPY pyproject.toml README.md alembic.ini /
COPY collapsewatch /collapsewatch
COPY app /app
COPY worker /worker
COPY migrations /migrations
COPY templates /templates
COPY examples/digits-svmax.yaml /examples/digits-svmax.yaml

FROM ${PYTHON_IMAGE} AS base
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# A non-root user that owns its data directory; named volumes mounted under /data (artifacts,
# secrets) start with this ownership. The code under /srv/collapsewatch stays root's (read-only).
RUN groupadd --system --gid 10001 collapsewatch \
 && useradd --system --uid 10001 --gid collapsewatch --home-dir /data --shell /usr/sbin/nologin collapsewatch \
 && mkdir -p /data/artifacts /data/secrets /data/worker \
 && chown -R collapsewatch:collapsewatch /data \
 && chmod 0700 /data/secrets
WORKDIR /srv/collapsewatch

FROM base AS web
COPY locks/web.txt /tmp/requirements.txt
RUN pip install --require-hashes --no-deps -r /tmp/requirements.txt && rm /tmp/requirements.txt
COPY --from=source / /srv/collapsewatch/
# editable: templates/ and migrations/ are read next to the code
RUN pip install --no-deps --no-build-isolation -e /srv/collapsewatch
USER collapsewatch
WORKDIR /data
EXPOSE 8000
CMD ["collapsewatch", "serve", "--host", "0.0.0.0", "--port", "8000"]

FROM base AS worker
# cpu or cuda: which lock (and so which torch build) the worker gets
ARG TORCH=cpu
# where pip finds the CPU build of torch (torch==X+cpu is not on PyPI); its hash is in the lock
ARG TORCH_FIND_LINKS=https://download.pytorch.org/whl/torch/
COPY locks/worker-${TORCH}.txt /tmp/requirements.txt
RUN pip install --require-hashes --no-deps --find-links "${TORCH_FIND_LINKS}" -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt
COPY --from=source / /srv/collapsewatch/
RUN pip install --no-deps --no-build-isolation -e /srv/collapsewatch
USER collapsewatch
WORKDIR /data/worker
CMD ["collapsewatch", "worker", "--gpus", "none"]
