# The code location image: mlops_assets and every locked dependency, serving the definitions to
# the Dagster webserver and daemon over gRPC (deploy/helm/values.yaml runs it as the user-code
# deployment; the K8s run launcher starts each run in a pod of this same image).
# Build from the repository root: docker build -f deploy/docker/dagster.Dockerfile -t <acr>/mlops-assets-dagster:<tag> .
FROM python:3.11.11-slim-bookworm

# The same uv the Makefile pins, from its official image; it also exports the scoring image's
# requirements at release time.
COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /usr/local/bin/uv

ENV PYTHONUNBUFFERED=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv \
    PATH=/app/.venv/bin:$PATH \
    DAGSTER_HOME=/opt/dagster/home

RUN groupadd --system --gid 10001 dagster \
    && useradd --system --uid 10001 --gid dagster --home-dir /opt/dagster --shell /usr/sbin/nologin dagster \
    && mkdir -p /opt/dagster/home && chown -R dagster:dagster /opt/dagster

WORKDIR /app

# Dependencies first, exactly as locked (--frozen: the lock is never re-resolved here).
COPY pyproject.toml uv.lock README.md /app/
RUN uv sync --frozen --no-dev --no-install-project

# The project itself (editable: release code reads deploy/ beside the package).
COPY mlops_assets/ /app/mlops_assets/
# Model projects (MLOPS_MODEL_PROJECT picks one; models/default.toml names the default).
COPY models/ /app/models/
COPY deploy/ /app/deploy/
COPY workspace.yaml /app/
RUN uv sync --frozen --no-dev

USER 10001:10001
EXPOSE 4000

HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["dagster", "api", "grpc-health-check", "--port", "4000"]

CMD ["dagster", "code-server", "start", "--host", "0.0.0.0", "--port", "4000", "--module-name", "mlops_assets.definitions"]
