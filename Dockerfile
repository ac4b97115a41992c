# The service in a container: slim Python, a non-root user, the README's gunicorn
# entry point. (Docker cannot run on the project's build machines; the command
# below is the one the tests start: gunicorn --chdir sentiment-clf 'app:create_app()'.)
# gunicorn.conf.py runs gevent workers, so the server needs no buffering proxy in front
# against slow or idle clients: SENTIMENT_CLF_KEEPALIVE (5 s) bounds how long a
# connection may wait or dribble its request head, SENTIMENT_CLF_WORKER_CONNECTIONS
# (1000) how many one worker holds.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    SENTIMENT_CLF_HOST=0.0.0.0 SENTIMENT_CLF_PORT=5000 SENTIMENT_CLF_DATA_DIR=/data

WORKDIR /app
# Serving needs only requirements.txt (no scikit-learn, scipy, pandas or matplotlib).
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY pyproject.toml README.md gunicorn.conf.py ./
COPY sentiment-clf/ sentiment-clf/
# The project itself, as make installs it: editable, so lib/models stays beside the code.
RUN pip install --no-deps -e .
RUN useradd --create-home --uid 10001 app && mkdir -p /data && chown app /data
USER app
VOLUME /data
EXPOSE 5000

HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD python -c "import urllib.request, sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:5000/ready', timeout=2).status != 200)"

CMD ["gunicorn", "--chdir", "sentiment-clf", "app:create_app()"]
