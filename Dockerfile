# One image for the worker and the API (docker-compose.yml picks the command).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
COPY aggregates ./aggregates
COPY streams ./streams
COPY web ./web
COPY producers ./producers
# The src/storemon/* links point at the folders above; a regular install copies them in.
RUN pip install --no-cache-dir . && useradd --create-home storemon
# The dashboard's charting library, fetched and checked at build time.
ENV STOREMON_ASSETS_DIR=/opt/storemon/assets
RUN storemon assets
USER storemon
ENV STOREMON_STATE_DIR=/home/storemon/state
ENTRYPOINT ["storemon"]
