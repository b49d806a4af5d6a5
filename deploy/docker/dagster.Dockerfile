# The code location image: mlops_assets and every locked dependency, serving the definitions to
# the Dagster webserver and daemon over gRPC (deploy/helm/values.yaml runs it as the user-code
# deployment; the K8s run launcher starts each run in a pod of this same image).
# Build from the repository root: docker build -f deploy/docker/dagster.Dockerfile -t <acr>/mlops-assets-dagster:<tag> .
# Every external image is a build argument (see scoring.Dockerfile): Python's slim image, or the
# base deploy/docker/python-base.sh builds from Debian packages where no registry answers.
ARG PYTHON_BASE=python:3.11.11-slim-bookworm
FROM ${PYTHON_BASE}

# The same uv the Makefile pins, from PyPI (no image of another registry is copied from); it also
# exports the scoring image's requirements at release time.
ARG UV_VERSION=0.13.9
# The host's CA bundle, given (and mounted for the build alone) where TLS goes through an
# inspecting proxy; empty elsewhere. Never copied into the image.
ARG CA_BUNDLE=""

ENV PYTHONUNBUFFERED=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv \
    PATH=/app/.venv/bin:/opt/uv/bin:$PATH \
    DAGSTER_HOME=/opt/dagster/home

RUN if [ -n "$CA_BUNDLE" ]; then export PIP_CERT="$CA_BUNDLE"; fi \
    && python3 -m venv /opt/uv \
    && /opt/uv/bin/pip install --quiet --no-cache-dir --disable-pip-version-check "uv==${UV_VERSION}"

RUN groupadd --system --gid 10001 dagster \
    && useradd --system --uid 10001 --gid dagster --home-dir /opt/dagster --shell /usr/sbin/nologin dagster \
    && mkdir -p /opt/dagster/home && chown -R dagster:dagster /opt/dagster

WORKDIR /app

# Dependencies first, exactly as locked (--frozen: the lock is never re-resolved here).
COPY pyproject.toml uv.lock README.md /app/
RUN if [ -n "$CA_BUNDLE" ]; then export SSL_CERT_FILE="$CA_BUNDLE"; fi \
    && uv sync --frozen --no-dev --no-install-project --python python3

# The project itself (editable: release code reads deploy/ beside the package).
COPY mlops_assets/ /app/mlops_assets/
# Model projects (MLOPS_MODEL_PROJECT picks one; models/default.toml names the default).
COPY models/ /app/models/
COPY deploy/ /app/deploy/
COPY workspace.yaml /app/
RUN if [ -n "$CA_BUNDLE" ]; then export SSL_CERT_FILE="$CA_BUNDLE"; fi \
    && uv sync --frozen --no-dev --python python3

USER 10001:10001
EXPOSE 4000

HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["dagster", "api", "grpc-health-check", "--port", "4000"]

CMD ["dagster", "code-server", "start", "--host", "0.0.0.0", "--port", "4000", "--module-name", "mlops_assets.definitions"]
