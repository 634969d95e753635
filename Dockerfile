# churnwatch worker image: `docker build -t churnwatch .` then `docker run churnwatch` runs
# `churnwatch worker` (configure it with the environment variables of stream/settings.py).
# Any other subcommand works too: `docker run churnwatch simulate --kafka ...`.

# --- build: wheels for the package and its dependencies (a compiler in case one has no wheel)
FROM python:3.11-slim AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md* ./
COPY stream ./stream
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# --- runtime
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    CHURNWATCH_WEB_HOST=0.0.0.0 \
    CHURNWATCH_WEB_PORT=6066 \
    CHURNWATCH_DATA_DIR=/data \
    CHURNWATCH_STORE=rocksdb://
COPY --from=build /wheels /wheels
RUN pip install --no-index --find-links=/wheels churnwatch \
    && rm -rf /wheels \
    && useradd --create-home --uid 10001 churnwatch \
    && mkdir -p /data \
    && chown churnwatch /data
USER churnwatch
WORKDIR /home/churnwatch
VOLUME ["/data"]
EXPOSE 6066
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('CHURNWATCH_WEB_PORT', '6066'), timeout=4)"
ENTRYPOINT ["churnwatch"]
CMD ["worker"]
