# One image for the web server and the workers (see docker-compose.yml).
FROM python:3.11-slim
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /srv/collapsewatch
RUN pip install --index-url "${TORCH_INDEX_URL}" "torch>=2.2,<3"
COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY worker ./worker
COPY migrations ./migrations
COPY templates ./templates
# Editable: migrations/ and templates/ are read from this directory at run time.
RUN pip install -e .
RUN useradd --create-home collapsewatch && mkdir -p /data/artifacts && chown collapsewatch /data/artifacts
USER collapsewatch
EXPOSE 8000
CMD ["collapsewatch", "up", "--host", "0.0.0.0", "--port", "8000"]
