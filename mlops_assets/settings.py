"""Typed settings from the environment: the only module that reads ``os.environ``.

Import-light on purpose (pydantic only): the scoring service and the CLI import it before anything
heavy, and it switches off the telemetry of the libraries that phone home *before* they are
imported anywhere else.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from mlops_assets.project.locate import default_project_dir, project_name

# Set before MLflow, Azure Monitor or OpenTelemetry are imported; setdefault lets an operator opt in.
_NO_PHONE_HOME = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
    # The Azure resource detector probes the instance metadata address 169.254.169.254.
    "OTEL_EXPERIMENTAL_RESOURCE_DETECTORS": "otel",
}
for _name, _value in _NO_PHONE_HOME.items():
    os.environ.setdefault(_name, _value)

# What every child process may inherit from the operator's environment: enough to run, nothing
# that can be a credential (cloud keys, tokens, connection strings and webhook URLs stay here).
# Proxies are left out too: their URLs may carry a password, and children talk to 127.0.0.1.
CHILD_BASE_ENV = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LANGUAGE",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    *_NO_PHONE_HOME,
)


# The scoring service stops in steps, each bounded: the drain (MLOPS_SCORING_DRAIN_SECONDS),
# uvicorn's graceful shutdown of the requests in flight, the request log's last flush. Whoever
# stops it waits for their sum and a margin (Settings.service_stop_seconds): a handover never
# kills a writer mid-flush.
SERVICE_GRACEFUL_SECONDS = 30.0
SERVICE_LOG_CLOSE_SECONDS = 30.0
SERVICE_STOP_MARGIN_SECONDS = 10.0


# What the scoring service reads (serving.app.config_from_settings): all a deployment's process is
# given of the operator's environment beside CHILD_BASE_ENV. Keep the two in step.
SERVICE_ENVIRONMENT = (
    "MLOPS_HOME",
    "MLOPS_MODEL_PROJECT",
    "MLOPS_STORAGE_URL",
    "MLOPS_SCORING_KEYS",
    "MLOPS_SCORING_KEYS_FILE",
    "MLOPS_SCORING_LOG_URL",
    "MLOPS_SCORING_MAX_BODY_BYTES",
    "MLOPS_SCORING_MAX_ROWS",
    "MLOPS_SCORING_MAX_INFLIGHT",
    "MLOPS_SCORING_MAX_HEADER_BYTES",
    "MLOPS_SCORING_MAX_HEADERS",
    "MLOPS_SCORING_LOG_MAX_BACKLOG",
    "MLOPS_SCORING_LOG_FLUSH_SECONDS",
    "MLOPS_SCORING_SPILL_DIR",
    "MLOPS_MODEL_POLL_SECONDS",
    "MLOPS_SCORING_DRAIN_SECONDS",
    "MLOPS_SCORING_THREADS",  # onnxruntime's per worker (model/compiled.py)
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
    "MLOPS_SECRETS_DIR",
    # The request log on an az:// root: a connection string (Azurite), else the account with
    # DefaultAzureCredential (a managed identity on ACI, workload identity on AKS).
    "MLOPS_AZURE_STORAGE_CONNECTION_STRING",
    "MLOPS_AZURE_STORAGE_ACCOUNT",
    "AZURE_CLIENT_ID",
    "AZURE_TENANT_ID",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_AUTHORITY_HOST",
)


def child_environment(*names: str, **values: str) -> dict[str, str]:
    """An allow-listed environment for a child process: CHILD_BASE_ENV and ``names`` as this
    process has them, then ``values``. Never ``os.environ`` whole."""
    return {name: os.environ[name] for name in (*CHILD_BASE_ENV, *names) if name in os.environ} | values


def make_secret_file(path: Path, text: str) -> bool:
    """Write ``text`` as ``path``, readable by its owner only, unless ``path`` exists (made by
    another process meanwhile included): whether this call made it. A secret made on first use
    (scoring keys, the event-log key, the UI token)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    return True


class HomeOfAnotherProject(ValueError):
    """MLOPS_HOME holds another model project's registry, partitions and deployments."""


HOME_RECORD = "project.json"  # in a home: the model project it belongs to


def claim_home(settings: Settings) -> None:
    """Record the model project a home belongs to on its first use, and refuse any other project
    in it after: one home's registry, partitions and deployments are one project's (two would mix
    silently: another project's version shown as this one's, training on its columns)."""
    import json

    home, name = settings.home_dir, settings.project_name
    record = home / HOME_RECORD
    home.mkdir(parents=True, exist_ok=True)
    mine = json.dumps({"project": name, "folder": str(settings.project_dir)})
    try:
        fd = os.open(record, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as handle:
            handle.write(mine)
        return
    try:
        owner = json.loads(record.read_text())
    except (OSError, ValueError):
        return  # a record being written right now by another process of the same start
    if owner.get("project") != name:
        raise HomeOfAnotherProject(
            f"{home} belongs to model project {owner.get('project')} ({owner.get('folder')}), and "
            f"MLOPS_MODEL_PROJECT names {name} ({settings.project_dir}): one home holds one project's "
            "registry, runs and deployments. Give this project its own home: unset MLOPS_HOME (each "
            "project then lives in .mlops/<its name>) or set MLOPS_HOME to another folder."
        )


def host_ca_bundle() -> str | None:
    """The CA bundle this machine's own pip trusts, if it names one (an inspecting proxy's root)."""
    for name in ("PIP_CERT", "SSL_CERT_FILE"):
        path = os.environ.get(name)
        if path and Path(path).is_file():
            return path
    return None


class Settings(BaseSettings):
    """Every knob of the system, read from ``MLOPS_*`` environment variables.

    Defaults give the ``local`` profile: everything under ``MLOPS_HOME`` and no server to start.
    """

    model_config = SettingsConfigDict(env_prefix="MLOPS_", extra="ignore")

    profile: Literal["local", "azure"] = "local"
    model_project: Path | None = Field(
        default=None, description="The model project folder; default the one models/default.toml names."
    )
    home: Path | None = Field(
        default=None,
        description="Where every run writes (git-ignored); default .mlops/<project name>, so two "
        "projects never share landing/, partitions or ports.",
    )
    storage_url: str | None = Field(
        default=None, description="fsspec URL of the storage root; default MLOPS_HOME/storage."
    )
    azure_storage_connection_string: SecretStr | None = Field(
        default=None, description="For an az:// storage root (Azurite in tests); never logged."
    )
    mlflow_tracking_uri: str | None = Field(
        default=None, description="MLflow store; default a SQLite file under MLOPS_HOME/mlflow."
    )
    model_name: str | None = Field(
        default=None, description="Registered model name; default the project's name."
    )

    # The scoring service.
    scoring_keys: SecretStr | None = Field(
        default=None, description="Comma-separated bearer keys; several at once allow rotation."
    )
    scoring_keys_file: Path | None = Field(
        default=None, description="A file with one key a line; default MLOPS_HOME/secrets/scoring-keys."
    )
    ui_allowed_hosts: str = Field(
        default="",
        description="Host headers `mlops-assets ui` answers to besides 127.0.0.1 and localhost on its "
        "port (comma-separated host:port), e.g. a name behind a proxy.",
    )
    event_log_key: SecretStr | None = Field(
        default=None,
        description="The key that chains the production event log (HMAC-SHA256); on Azure a Key Vault "
        "secret mounted into MLOPS_SECRETS_DIR; default the file MLOPS_HOME/secrets/event-log-key, "
        "made at the first event.",
    )
    scoring_max_body_bytes: int = Field(default=1_048_576, gt=0)
    scoring_max_rows: int = Field(default=10_000, gt=0)
    scoring_max_inflight: int = Field(default=256, gt=0, description="Per worker; beyond it: 503.")
    scoring_max_header_bytes: int = Field(
        default=32_768, gt=0, description="Request line and headers together; beyond: 431, connection closed."
    )
    scoring_max_headers: int = Field(default=100, gt=0, description="Headers a request; beyond: 431.")
    scoring_log_url: str | None = Field(
        default=None, description="fsspec root for scoring-logs/; default the storage root."
    )
    scoring_log_flush_seconds: float = Field(default=1.0, gt=0)
    scoring_spill_dir: Path | None = Field(
        default=None,
        description="Where the request log keeps what storage refuses; default MLOPS_HOME/spill/scoring-logs "
        "(a local deployment is given a folder of its own).",
    )
    scoring_log_max_backlog: int = Field(
        default=200_000, gt=0, description="Unwritten records per worker before scoring sheds (503)."
    )
    applicationinsights_connection_string: SecretStr | None = Field(
        default=None,
        validation_alias="APPLICATIONINSIGHTS_CONNECTION_STRING",  # Azure's own name for it
        description="Scoring service telemetry to Application Insights; unset: none, nothing imported.",
    )
    keep_releases: int = Field(
        default=3,
        ge=0,
        description="After each release, the build contexts and process-runtime venvs of versions no "
        "alias names and no deployment serves are removed, but for the newest N registered versions.",
    )
    service_log_max_bytes: int = Field(
        default=20_000_000,
        ge=0,
        description="A local deployment's log (MLOPS_HOME/deployments/<name>.log) is copied to <name>.log.1 "
        "and truncated past this size (0: never).",
    )
    service_probe_seconds: float = Field(
        default=5.0,
        gt=0,
        description="A local deployment's supervisor asks /health/live this often, waiting this long "
        "for each answer; MLOPS_SERVICE_PROBE_MISSES in a row without one kill and restart the service.",
    )
    service_probe_misses: int = Field(default=3, ge=1)
    scoring_drain_seconds: float = Field(
        default=5.0,
        ge=0,
        description="On SIGTERM, longest time to stop accepting and close keep-alive clients first (0: none).",
    )
    serving_spec: Path | None = Field(
        default=None,
        description="serving-spec.json of the model project; unset: the one a release packages beside "
        "model/rows.py, else every feature is a number, as the manifest lists them.",
    )
    serve_model_dir: Path | None = Field(
        default=None, description="Set by `mlops-assets serve` for its workers: the model folder."
    )
    production_port: int = Field(default=8100, description="Local production deployment's stable port.")
    qa_port: int = Field(default=8101, description="Local QA deployment's port.")
    deployment_id: str | None = Field(
        default=None, description="Set by a deployment target; /health/ready echoes it back."
    )
    model_poll_seconds: float = Field(default=1.0, gt=0, description="How often a new model is looked for.")

    alert_webhook_url: SecretStr | None = Field(
        default=None, description='Where run failures and drift are posted ({"text": ...}); unset: nowhere.'
    )
    # What the alert rules (deploy/prometheus/alerts.yml) and production_health_sensor alert beyond.
    alert_p99_seconds: float = Field(default=0.25, gt=0, description="p99 of /score over 5 minutes.")
    alert_error_ratio: float = Field(default=0.01, ge=0, lt=1, description="Share of /score answered 5xx.")
    alert_log_backlog_records: int = Field(
        default=100_000, gt=0, description="Request log records unwritten."
    )
    alert_ingest_days: float = Field(default=7.0, gt=0, description="Days without new data validated.")
    alert_retrain_days: float = Field(default=8.0, gt=0, description="Days without a model trained.")
    alert_failed_ticks: int = Field(default=3, gt=0, description="A sensor's failed ticks in a row.")
    sensor_interval_seconds: int = Field(
        default=30, ge=5, description="How often landing_sensor and retrain_after_ingest_sensor look."
    )
    landing_settle_seconds: float = Field(
        default=10.0,
        ge=0,
        description="landing_sensor takes a file only once it has not changed for this long "
        "(a copy still in progress under its final name waits).",
    )
    retrain_cron: str = Field(default="0 3 * * 1", description="retraining_schedule (UTC): Mondays 03:00.")

    package_index: str = Field(
        default="https://pypi.org/simple",
        description="Where `mlops-assets lock` finds a project's packages: an index URL, or a folder of wheels.",
    )

    # Local images: built with the first engine that answers; none: the build context is the deliverable.
    image_engines: str = Field(
        default="podman,docker",
        description="Container engines tried in order to build the scoring image (empty: build none).",
    )
    image_azure_serving: bool | None = Field(
        default=None,
        description="Put the serving-azure group (adlfs, azure-identity, azure-monitor-opentelemetry) in "
        "the scoring image; unset: when the release target is azure, the request log goes to az:// "
        "or Application Insights is configured.",
    )
    local_runtime: Literal["auto", "container", "process"] = Field(
        default="auto",
        description="How the local target runs QA and production: auto (a container when an engine "
        "holds the release's image, else a process), container or process.",
    )
    python_base_image: str = Field(
        default="",
        description="Base of the local images (PYTHON_BASE); empty: the Debian-built base when the engine "
        "has it (make container-base), else python:3.11 slim.",
    )

    # Where releases go: local processes, or ACR Tasks + ACI (QA) + AKS (production).
    release_target: Literal["local", "azure"] = Field(
        default="local", description="`azure`: build with ACR Tasks, QA on ACI, production on AKS."
    )
    azure_subscription_id: str | None = None
    azure_resource_group: str | None = None
    azure_location: str | None = None
    acr_name: str | None = Field(default=None, description="Container registry name (no .azurecr.io).")
    acr_pull_identity_id: str = Field(
        default="", description="Resource id of the user-assigned identity ACI pulls images with."
    )
    aci_identity_client_id: str = Field(
        default="",
        description="Client id of that identity: the QA service's request log writes to storage as it "
        "(give it Storage Blob Data Contributor).",
    )
    aks_workload_client_id: str = Field(
        default="",
        description="Client id of the scoring pods' workload identity (Storage Blob Data Contributor): "
        "their request log writes to storage as it.",
    )
    aci_dns_label: str | None = Field(default=None, description="DNS label of the QA container group.")
    aks_namespace: str = "mlops"
    kube_context: str | None = Field(default=None, description="kubeconfig context of the AKS cluster.")
    production_url: str | None = Field(
        default=None, description="Public production URL when an ingress or DNS name fronts AKS."
    )
    key_vault_url: str = Field(default="", description="Key Vault with the `scoring-keys` secret.")
    aml_workspace: str | None = Field(default=None, description="Azure ML workspace name.")
    aml_compute_name: str = Field(default="cpu-cluster", description="AML compute cluster for training.")
    aml_vm_size: str = Field(default="Standard_DS3_v2", description="VM size of the cluster's nodes.")
    aml_max_nodes: int = Field(default=4, ge=1, description="Upper node bound (the lower one is 0).")
    aml_idle_seconds: int = Field(default=300, ge=60, description="Idle time before a node is released.")
    aml_identity_id: str = Field(
        default="",
        description="Resource id of the user-assigned identity `provision` gives the cluster; empty: system.",
    )
    aml_identity_client_id: str = Field(
        default="",
        description="Client id of the cluster's user-assigned identity (reads/writes storage); empty: system.",
    )
    aml_environment_image: str = Field(
        default="mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04",
        description="Base image of the training environment (deploy/environments/train.yml on top).",
    )
    aml_experiment: str = Field(default="mlops-assets-training", description="AML experiment of the jobs.")
    aml_training_timeout_seconds: float = Field(
        default=3600, gt=0, description="Longest an AML training job may take before it is cancelled."
    )
    aml_pipes_container: str = Field(
        default="dagster-pipes", description="Blob container for Pipes context and messages."
    )
    azure_storage_account: str | None = Field(
        default=None,
        description="Storage account for az:// roots when no connection string is set "
        "(DefaultAzureCredential: a managed identity or `az login`).",
    )
    storage_key_vault_secret: str = Field(
        default="",
        description="Key Vault secret holding the storage connection string (with MLOPS_KEY_VAULT_URL).",
    )

    def require(self, *names: str, purpose: str = "") -> None:
        """Fail naming every missing setting, as the environment variables a user sets."""
        missing = [f"MLOPS_{n.upper()}" for n in names if not getattr(self, n)]
        purpose = purpose or f"MLOPS_RELEASE_TARGET={self.release_target}"
        if missing:
            raise ValueError(f"{purpose} needs {', '.join(missing)}")

    @property
    def project_dir(self) -> Path:
        return (self.model_project or default_project_dir()).expanduser().resolve()

    @property
    def project_name(self) -> str:
        return project_name(self.project_dir)

    @property
    def registered_model_name(self) -> str:
        return self.model_name or self.project_name

    @property
    def image_engine_names(self) -> list[str]:
        return [name.strip() for name in self.image_engines.split(",") if name.strip()]

    @property
    def home_dir(self) -> Path:
        return (self.home or Path(".mlops") / self.project_name).expanduser().resolve()

    @property
    def environments_dir(self) -> Path:
        """Where the environments of projects with [environment] requirements are made."""
        return self.home_dir / "environments"

    @property
    def dagster_home(self) -> Path:
        return self.home_dir / "dagster"

    @property
    def service_stop_seconds(self) -> float:
        """How long a deployer waits for a stopped service before it kills it: every step of the
        service's own shutdown, and a margin."""
        return (
            self.scoring_drain_seconds
            + SERVICE_GRACEFUL_SECONDS
            + SERVICE_LOG_CLOSE_SECONDS
            + SERVICE_STOP_MARGIN_SECONDS
        )

    @property
    def storage_root(self) -> str:
        return self.storage_url or (self.home_dir / "storage").as_uri()

    @property
    def tracking_uri(self) -> str:
        return self.mlflow_tracking_uri or f"sqlite:///{self.home_dir / 'mlflow' / 'mlflow.db'}"

    @property
    def registry_artifact_root(self) -> str:
        return (self.home_dir / "mlflow" / "artifacts").as_uri()

    @property
    def lock_dir(self) -> Path:
        return self.home_dir / "locks"

    @property
    def spill_dir(self) -> Path:
        return self.home_dir / "spill"

    @property
    def scoring_spill(self) -> Path:
        return self.scoring_spill_dir or self.spill_dir / "scoring-logs"

    @property
    def event_log_key_file(self) -> Path:
        return self.home_dir / "secrets" / "event-log-key"

    @property
    def keys_file(self) -> Path:
        return self.scoring_keys_file or self.home_dir / "secrets" / "scoring-keys"

    @property
    def scoring_log_root(self) -> str:
        return self.scoring_log_url or self.storage_root

    @property
    def scoring_log_on_azure(self) -> bool:
        return self.scoring_log_root.startswith(("az://", "abfs://", "abfss://"))

    @property
    def image_serves_azure(self) -> bool:
        if self.image_azure_serving is not None:
            return self.image_azure_serving
        return (
            self.release_target == "azure"
            or self.scoring_log_on_azure
            or self.applicationinsights_connection_string is not None
        )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    # A container's secrets arrive as files named like their variables (never in its environment).
    secrets = os.environ.get("MLOPS_SECRETS_DIR")
    return Settings(_secrets_dir=secrets) if secrets else Settings()
