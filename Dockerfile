# One image for the worker and the API (docker-compose.yml picks the command).
# PYTHON_IMAGE: any Debian-based image with Python 3.11+ and its venv module; the default is
# the public one. scripts/compose-check builds from a local Debian image instead.
ARG PYTHON_IMAGE=python:3.11-slim
FROM ${PYTHON_IMAGE}
# Extra CA certificates (e.g. of an HTTPS proxy) for pip and the asset fetch: *.crt files in
# docker/ca-certificates/ (empty in the repository) are trusted during the build.
COPY docker/ca-certificates/ /usr/local/share/ca-certificates/
RUN update-ca-certificates > /dev/null
WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
COPY aggregates ./aggregates
COPY streams ./streams
COPY web ./web
COPY producers ./producers
# A virtual environment: works on images whose system Python is managed by apt too.
# The src/storemon/* links point at the folders above; a regular install copies them in.
RUN python3 -m venv /opt/storemon \
    && /opt/storemon/bin/pip install --no-cache-dir --disable-pip-version-check . \
    && useradd --create-home storemon \
    && install -d -o storemon -g storemon /home/storemon/state
ENV PATH=/opt/storemon/bin:$PATH
# The dashboard's charting library, fetched and checked at build time.
ENV STOREMON_ASSETS_DIR=/opt/storemon/assets
RUN storemon assets
USER storemon
# The worker's volume is mounted here; the folder exists (owned by storemon) so a new named
# volume starts with that owner instead of root.
ENV STOREMON_STATE_DIR=/home/storemon/state
ENTRYPOINT ["storemon"]
