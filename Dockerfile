# The service in a container: the wheel (code and models) in a virtual environment,
# run as a non-root user by `sentiment-clf serve` (gunicorn, gevent workers, both tiers).
#
# The build context is a wheelhouse, nothing else (.dockerignore): `make image` fills
# dist/wheels with the project's wheel and every pinned dependency for Linux x86_64 and
# Python 3.11, so the build installs with --no-index and needs no network.
#
#   make image                                   # docker build -t sentiment-clf .
#   docker run --read-only --tmpfs /tmp -v sentiment-clf-data:/data -p 5000:5000 sentiment-clf
#
# BASE: any image with Python 3.11 as python3 (with venv): the official slim image by
# default, or one built from Debian's packages where no registry is reachable.
ARG BASE=python:3.11-slim

FROM ${BASE} AS install
COPY dist/wheels /wheels
RUN python3 -m venv /opt/sentiment-clf \
    && /opt/sentiment-clf/bin/pip install --no-index --find-links /wheels --no-cache-dir --no-compile \
       --disable-pip-version-check --quiet sentiment-clf \
    && /opt/sentiment-clf/bin/python -m compileall -q /opt/sentiment-clf/lib

FROM ${BASE}
COPY --from=install /opt/sentiment-clf /opt/sentiment-clf
# The SQLite database and retraining reports live on the /data volume; the rest of the
# file system may be read-only (gunicorn's and the metrics' temporary files go to /tmp).
RUN useradd --system --uid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin app \
    && mkdir -p /data && chown app /data
ENV PATH=/opt/sentiment-clf/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    SENTIMENT_CLF_HOST=0.0.0.0 SENTIMENT_CLF_PORT=5000 SENTIMENT_CLF_DATA_DIR=/data
USER 10001
VOLUME /data
EXPOSE 5000
# gunicorn stops on SIGTERM: it finishes the requests in flight, then exits 0.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python3", "-c", "import os, sys, urllib.request; port = os.environ['SENTIMENT_CLF_PORT']; sys.exit(urllib.request.urlopen(f'http://127.0.0.1:{port}/ready', timeout=2).status != 200)"]
CMD ["sentiment-clf", "serve"]
