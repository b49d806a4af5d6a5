# The scoring image: the model, its manifest and the serving code on the locked `serving` deps.
# Built from the context `scoring_image` assembles (requirements.txt, project/, model/).
# Every external image is a build argument: Python's slim image, or, where no registry answers,
# the base deploy/docker/python-base.sh builds from Debian packages (python3 only, no pip, an
# externally managed system Python). Both work: everything goes into a venv of its own.
ARG PYTHON_BASE=python:3.11.11-slim-bookworm
FROM ${PYTHON_BASE}

ARG UV_VERSION=0.13.9
# The host's CA bundle, given (and mounted for the build alone) where TLS goes through an
# inspecting proxy; empty elsewhere. Never copied into the image.
ARG CA_BUNDLE=""

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    MLOPS_HOME=/tmp/mlops

RUN groupadd --system --gid 10001 scoring \
    && useradd --system --uid 10001 --gid scoring --no-create-home --shell /usr/sbin/nologin scoring

WORKDIR /app

# Dependencies first: this layer is reused for every model that ships with the same lock.
# uv comes from PyPI at its pinned version, in a throwaway venv of the build.
COPY requirements.txt /app/requirements.txt
RUN if [ -n "$CA_BUNDLE" ]; then export PIP_CERT="$CA_BUNDLE" SSL_CERT_FILE="$CA_BUNDLE"; fi \
    && python3 -m venv /opt/venv \
    && python3 -m venv /tmp/uv \
    && /tmp/uv/bin/pip install --quiet --no-cache-dir --disable-pip-version-check "uv==${UV_VERSION}" \
    && /tmp/uv/bin/uv pip install --quiet --no-cache --python /opt/venv/bin/python --requirement /app/requirements.txt \
    && rm -rf /tmp/uv

# The Azure profile's additions (Blob Storage request log, App Insights), a layer of their own so the
# one above is shared; empty for an image that serves the local profile.
COPY requirements-azure.txt /app/requirements-azure.txt
RUN if [ -s /app/requirements-azure.txt ]; then \
        if [ -n "$CA_BUNDLE" ]; then export PIP_CERT="$CA_BUNDLE" SSL_CERT_FILE="$CA_BUNDLE"; fi \
        && python3 -m venv /tmp/uv \
        && /tmp/uv/bin/pip install --quiet --no-cache-dir --disable-pip-version-check "uv==${UV_VERSION}" \
        && /tmp/uv/bin/uv pip install --quiet --no-cache --python /opt/venv/bin/python --requirement /app/requirements-azure.txt \
        && rm -rf /tmp/uv; \
    fi

COPY project/ /app/project/
RUN if [ -n "$CA_BUNDLE" ]; then export PIP_CERT="$CA_BUNDLE"; fi \
    && /opt/venv/bin/pip install --quiet --no-cache-dir --disable-pip-version-check --no-deps /app/project \
    && rm -rf /app/project

COPY --chown=scoring:scoring model/ /app/model/

USER 10001:10001
EXPOSE 8080

HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/health/ready', timeout=2).status != 200)"]

# The same entry point the local targets run; keys come from MLOPS_SCORING_KEYS (a Secret).
ENTRYPOINT ["mlops-assets", "serve", "--model-dir", "/app/model", "--host", "0.0.0.0", "--port", "8080"]
CMD ["--workers", "2"]
