# The scoring image: the model, its manifest and the serving code on the locked `serving` deps.
# Built from the context `scoring_image` assembles (requirements.txt, project/, model/).
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MLOPS_HOME=/tmp/mlops

RUN groupadd --system --gid 10001 scoring \
    && useradd --system --uid 10001 --gid scoring --no-create-home --shell /usr/sbin/nologin scoring

WORKDIR /app

# Dependencies first: this layer is reused for every model that ships with the same lock.
COPY requirements.txt /app/requirements.txt
RUN pip install --no-cache-dir --requirement /app/requirements.txt

COPY project/ /app/project/
RUN pip install --no-cache-dir --no-deps /app/project && rm -rf /app/project

COPY --chown=scoring:scoring model/ /app/model/

USER 10001:10001
EXPOSE 8080

HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/health/ready', timeout=2).status != 200)"]

# The same entry point the local targets run; keys come from MLOPS_SCORING_KEYS (a Secret).
ENTRYPOINT ["mlops-assets", "serve", "--model-dir", "/app/model", "--host", "0.0.0.0", "--port", "8080"]
CMD ["--workers", "2"]
