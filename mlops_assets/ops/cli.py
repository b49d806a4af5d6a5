"""The ``mlops-assets`` command. Import-light: each command imports what it needs when it runs."""

import argparse
import sys

from mlops_assets import quiet_api_stage_warnings
from mlops_assets.settings import get_settings


def _storage():
    settings = get_settings()
    if settings.storage_key_vault_secret:  # fetched through the resource, as runs do
        from mlops_assets.resources import storage_resource

        return storage_resource(settings).get()
    # Without Dagster: the commands that start no run answer within 2 s.
    from mlops_assets.storage.fsstore import Storage, credential_options

    secret = settings.azure_storage_connection_string
    options = credential_options(
        secret.get_secret_value() if secret else None, settings.azure_storage_account
    )
    return Storage(settings.storage_root, **options)


def _project():
    """The configured model project, checked without running it; a broken one ends the command
    naming file and key."""
    from mlops_assets.project.loader import load_project
    from mlops_assets.project.spec import ProjectError

    try:
        return load_project(get_settings().project_dir)
    except ProjectError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _python(project) -> str:
    """The interpreter of the project's code: its own environment's, made on first use, if it
    declares requirements; a failure to make it ends the command saying why."""
    from mlops_assets.runner.environments import ProjectEnvironmentError, project_python

    settings = get_settings()
    try:
        return project_python(project, settings.environments_dir, settings.package_index)
    except ProjectEnvironmentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _built(project) -> dict[str, str]:
    """build_model(params), seed.py's data and the model fitted on it and saved and loaded back,
    run in the project runner (scikit-learn's import)."""
    from mlops_assets.model.artifact import ArtifactError
    from mlops_assets.project.spec import ProjectError
    from mlops_assets.runner.client import ProjectRunError, runner_for

    runner = runner_for(project.folder, _python(project))
    try:
        runner.check(project.folder)
        typed = None
        if project.seed_file is not None:  # typed as training types it: through ingest's parser
            from mlops_assets.ingest.parsing import parse_batch, typed_frame

            raw = runner.seed_frame(project.folder).to_csv(index=False).encode()
            typed = typed_frame(parse_batch("seed.csv", raw), project.spec)
        return runner.build(project.folder, dict(project.spec.params), typed)
    except (ArtifactError, ProjectError, ProjectRunError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _tested(project) -> int:
    """pytest on the project's folder, run by the interpreter of the project's code: its own
    environment's (which holds pytest) if it locks packages, so a test imports what model.py
    imports; pytest's exit status."""
    import os
    import subprocess

    if not [p for p in project.folder.rglob("test_*.py") if "__pycache__" not in p.parts]:
        print(f"error: {project.folder}: no test_*.py to run (mlops-assets init writes one)", file=sys.stderr)
        return 2
    # Its own settings only: a project inside this repository must not get the platform suite's.
    own = ["-c", os.devnull, "--rootdir", str(project.folder)]
    command = [_python(project), "-m", "pytest", "-q", "-p", "no:cacheprovider", *own, str(project.folder)]
    return subprocess.run(command, cwd=project.folder).returncode


def cmd_project(args: argparse.Namespace) -> int:
    settings = get_settings()
    if args.field == "home":  # for the Makefile: where this project's runs write
        print(settings.home_dir)
        return 0
    project = _project()
    if args.test:
        return _tested(project)
    built = _built(project) if args.build else None
    spec = project.spec
    print(f"{spec.name} (spec version {spec.version}): {spec.task}, {spec.description}".rstrip(", "))
    print(f"  folder: {project.folder}")
    print(f"  target: {spec.target.name} ({spec.target.kind})")
    print(
        f"  features ({len(spec.features)}): "
        + ", ".join(f"{n} ({c.kind})" for n, c in spec.features.items())
    )
    print(
        f"  promotion: {spec.evaluation.primary_metric} improves by more than "
        f"{spec.evaluation.min_improvement:.2%} on a {spec.evaluation.holdout_percent}% holdout"
    )
    print(f"  params: {spec.params}; digests: spec {project.spec_digest}, code {project.code_digest}")
    if spec.environment.requirements:
        from mlops_assets.project.environment import LOCK_FILE, read_lock

        lock = read_lock(project.folder / LOCK_FILE)  # checked at load: present and current
        print(
            f"  environment: {', '.join(spec.environment.requirements)}; locked {lock.digest}: {lock.pinned}"
        )
    print(f"  home: {settings.home_dir}")
    if built is not None:
        print(f"  build_model(params): {built['estimator']}")
        print(f"  fitted: {built['fitted']}")
    return 0


def cmd_seed(_: argparse.Namespace) -> int:
    from mlops_assets.ingest.seed import seed

    settings = get_settings()
    if settings.profile != "local":
        print("note: seeding writes the sample data into the configured storage, as you asked")
    project = _project()
    report = seed(_storage(), project, _python(project))
    print(f"seeded {get_settings().storage_root}: wrote {', '.join(report.written) or 'nothing'}")
    if report.unchanged:
        print(f"already there, unchanged: {', '.join(report.unchanged)}")
    return 0


def cmd_demo(_: argparse.Namespace) -> int:
    from mlops_assets.ops.demo import run_demo

    return run_demo(get_settings())


def cmd_instance(_: argparse.Namespace) -> int:
    from mlops_assets.core.instance import write_instance_config

    print(write_instance_config(get_settings().dagster_home))
    return 0


def cmd_land(args: argparse.Namespace) -> int:
    from pathlib import Path

    source = Path(args.file)
    if not source.is_file():
        print(f"{source}: no such file", file=sys.stderr)
        return 2
    from mlops_assets.core.partition_names import unusable_name

    name = args.name or source.name
    problem = unusable_name(name)
    if problem:
        print(f"landing/{name}: refused, {problem}", file=sys.stderr)
        return 2
    uri = _storage().write_bytes(f"landing/{name}", source.read_bytes())
    print(f"landed {source} as {uri}")
    return 0


def cmd_versions(args: argparse.Namespace) -> int:
    from mlops_assets.registry.index import VersionIndex

    settings = get_settings()
    index = VersionIndex(_storage(), settings.registered_model_name)
    if args.refresh:  # the registry itself (seconds): for versions registered before the index existed
        from mlops_assets.resources import resources_for

        count = index.rebuild(resources_for(settings)["registry"].open_registry())
        print(f"indexed {count} version(s) from the registry")
    versions, current_holdout = index.read()
    if not versions:
        print("no registered versions yet")
    for version in versions:
        print(version.line(index.model_name, current_holdout))
    if versions and settings.release_target == "local":
        _say_what_serves(versions)
    return 0


def _say_what_serves(versions) -> None:
    """The production alias names the champion; whether anything serves it is asked, not assumed."""
    champion = next((v for v in versions if "production" in v.aliases), None)
    running = _local_target().get("production")
    if running is not None:
        print(f"production here: version {running.version} at {running.url}: {running.health()}")
    elif champion is not None:
        print(
            f"production here: nothing serves version {champion.version} (the alias names it; "
            "`mlops-assets promote` releases it again)"
        )


def cmd_serve(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mlops_assets.hosting.listener import ListenerError
    from mlops_assets.serving.keys import ensure_key_file
    from mlops_assets.serving.server import serve

    settings = get_settings()
    model_dir = Path(args.model_dir)
    if not model_dir.is_dir():
        print(f"{model_dir}: no such folder (it should hold the artifact and manifest.json)", file=sys.stderr)
        return 2
    if not settings.scoring_keys and ensure_key_file(settings.keys_file):
        print(f"created a scoring key in {settings.keys_file} (mode 0600); clients send it as a Bearer token")
    try:
        serve(
            model_dir,
            args.host,
            args.port,
            args.workers,
            settings.scoring_max_inflight,
            listen_fd=args.listen_fd,
        )
    except ListenerError as exc:
        print(f"mlops-assets serve: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_provision(_: argparse.Namespace) -> int:
    from mlops_assets.ops.provision import ClusterSpec, ProvisionError, provision_cluster

    settings = get_settings()
    try:
        settings.require(
            "azure_subscription_id", "azure_resource_group", "aml_workspace", purpose="mlops-assets provision"
        )
    except ValueError as exc:
        print(f"mlops-assets provision: {exc}", file=sys.stderr)
        return 2
    from mlops_assets.azure.ml_client import aml_client

    client = aml_client(settings.azure_subscription_id, settings.azure_resource_group, settings.aml_workspace)
    spec = ClusterSpec(
        settings.aml_compute_name,
        settings.aml_vm_size,
        settings.aml_max_nodes,
        settings.aml_idle_seconds,
        identity_id=settings.aml_identity_id,
    )
    try:
        action = provision_cluster(client, spec)
    except ProvisionError as exc:
        print(f"mlops-assets provision: {exc}", file=sys.stderr)
        return 1
    print(
        f"compute {spec.name} {action}: {spec.size}, 0..{spec.max_instances} nodes, "
        f"released after {spec.idle_seconds} s idle (no cost while nothing trains)"
    )
    return 0


def _local_target():
    from mlops_assets.hosting.processes import LocalTarget

    return LocalTarget(get_settings().home_dir)


def cmd_deployments(_: argparse.Namespace) -> int:
    target = _local_target()
    deployments, strays = target.list(), target.strays()
    if not deployments and not strays:
        print("no local deployments running")
    for d in deployments:
        print(
            f"{d.name}: version {d.version} at {d.url}: {d.describe()}; supervisor pid {d.pid}; {d.health()}"
        )
    for stray in strays:
        print(f"{stray.describe()}: starting, or left by an interrupted release; `down` stops it")
    return 0


def cmd_down(_: argparse.Namespace) -> int:
    target = _local_target()
    serving = {d.name: d.version for d in target.list()}
    names = sorted(set(serving) | {s.name for s in target.strays()})
    stopped = [name for name in names if target.stop(name)]
    print(f"stopped {', '.join(stopped)}" if stopped else "nothing was running")
    if "production" in stopped and serving.get("production"):
        _record_down(serving["production"])
    return 0


def _record_down(version: str) -> None:
    """Production stopped by hand is a production event: `history` shows when and by whom."""
    from mlops_assets.release.events import ProductionEvent, event_log_key, operator, record

    user, host = operator()
    event = ProductionEvent("down", None, version, "stopped by mlops-assets down", user, user, host, "")
    print(record(_storage(), event, event_log_key(get_settings())).line())


def cmd_ui(args: argparse.Namespace) -> int:
    """The Dagster UI behind the project's lock, and the daemon (ops/ui.py): what `make dev` runs."""
    import os
    from pathlib import Path

    from mlops_assets.core.instance import write_instance_config
    from mlops_assets.ops.ui import allowed_hosts, project_workspace, serve, start_daemon, ui_token

    settings = get_settings()
    write_instance_config(settings.dagster_home)
    os.environ["DAGSTER_HOME"] = str(settings.dagster_home)
    token, made = ui_token(settings)
    where = settings.home_dir / "secrets" / "ui-token"
    if made:  # shown this once; never written to a log
        print(f"the UI token (kept in {where}; the login page asks for it): {token}", flush=True)
    else:
        print(f"the UI token is in {where}", flush=True)
    workspace = Path(args.workspace).resolve() if args.workspace else project_workspace(settings)
    daemon = None if args.no_daemon else start_daemon(workspace)
    print(
        f"the Dagster UI of {settings.home_dir} at http://{args.host}:{args.port} (log in with the token)",
        flush=True,
    )
    try:
        serve(workspace, args.host, args.port, token, allowed_hosts(args.port, settings.ui_allowed_hosts))
    finally:
        if daemon is not None:
            daemon.terminate()
            daemon.wait(timeout=60)
    return 0


def cmd_keep(args: argparse.Namespace) -> int:
    """Run the keeper until SIGTERM or SIGINT (hosting/keeper.py)."""
    import logging
    import signal
    import threading

    from mlops_assets.core.stage_lock import command_line, hold_stage
    from mlops_assets.hosting.keeper import keep

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = get_settings()
    stopping = threading.Event()
    for sent in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sent, lambda *_: stopping.set())
    print(f"keeping production of {settings.home_dir} (a look every {args.every:g} s)", flush=True)
    keep(
        _local_target(),
        lambda: hold_stage(settings.lock_dir, "release", command_line()),
        stopping,
        args.every,
    )
    return 0


def cmd_clean(_: argparse.Namespace) -> int:
    """What ``make clean`` runs for each home before it removes the files: its deployments stopped,
    the scoring images it holds let go of (those another home holds stay, for that home)."""
    from mlops_assets.hosting.engines import find_engine
    from mlops_assets.hosting.image_holds import let_go

    cmd_down(_)
    settings = get_settings()
    engine = find_engine(tuple(settings.image_engine_names))
    if engine is None:
        print("images: no container engine answered, none to remove")
        return 0
    print(f"images of {settings.home_dir}: {let_go(engine, settings.home_dir, keep=set()).summary()}")
    return 0


def _in_process():
    """The local instance and definitions, as the demo uses them (runs are recorded there)."""
    import os

    import dagster as dg

    from mlops_assets.core.instance import write_instance_config
    from mlops_assets.definitions import build_definitions

    settings = get_settings()
    write_instance_config(settings.dagster_home)
    os.environ["DAGSTER_HOME"] = str(settings.dagster_home)
    return build_definitions(settings), dg.DagsterInstance.get(), settings


def _say(outcome) -> int:
    if outcome.success:
        print(
            f"version {outcome.version} serves at {outcome.production['url']} ({outcome.production['mode']})"
        )
        return 0
    print(f"release of version {outcome.version} failed:", file=sys.stderr)
    for error in outcome.errors:
        print(f"  {error}", file=sys.stderr)
    return 1


def cmd_promote(args: argparse.Namespace) -> int:
    from mlops_assets.ops.runner import release
    from mlops_assets.release.events import BY_TAG

    defs, instance, settings = _in_process()
    with instance:
        if args.version not in {v.version for v in defs.resources["registry"].get_registry().list_versions()}:
            print(f"version {args.version} is not registered", file=sys.stderr)
            return 2
        tags = {"mlops/trigger": "manual-promote", "mlops/reason": args.reason}
        tags |= {BY_TAG: args.by} if args.by else {}
        return _say(release(defs, instance, settings.lock_dir, args.version, tags))


def cmd_rollback(args: argparse.Namespace) -> int:
    from mlops_assets.ops.runner import rollback

    defs, instance, settings = _in_process()
    with instance:
        try:
            outcome = rollback(defs, instance, settings.lock_dir, args.reason, by=args.by)
        except ValueError as exc:
            print(str(exc), file=sys.stderr)
            return 2
        return _say(outcome)


def cmd_history(args: argparse.Namespace) -> int:
    from mlops_assets.release.events import event_log_key, read_log

    log = read_log(_storage(), event_log_key(get_settings()))
    if not log.events and not log.problems:
        print("no production changes recorded yet")
    for event in log.events:
        print(event.line() + ("" if event.seq or not log.chained else "  (before the chain: unverified)"))
    for problem in log.problems:
        print(f"not verified: {problem}", file=sys.stderr)
    if args.verify:
        if log.problems:
            print(f"the chain does not verify ({len(log.problems)} problem(s) above)", file=sys.stderr)
            return 1
        print(f"the chain verifies: {log.chained} event(s), each MAC and link checked")
    return 0


def cmd_lock(_: argparse.Namespace) -> int:
    """The model project's [environment] requirements locked beside project.toml (ops/lock.py)."""
    from mlops_assets.ops.lock import lock_project
    from mlops_assets.project.environment import LOCK_FILE, LockError
    from mlops_assets.project.spec import ProjectError, read_spec

    settings = get_settings()
    folder = settings.project_dir
    try:
        requirements = read_spec(folder).environment.requirements
        lock = lock_project(folder, requirements, settings.package_index)
    except (LockError, ProjectError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"locked {folder / LOCK_FILE} ({lock.digest}): {lock.pinned}")
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mlops_assets.ops.scaffold import LIBRARIES, library_values, scaffold

    folder = Path(args.folder)
    try:
        written = scaffold(folder, args.task, args.name, args.library)
    except (FileExistsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"a {args.task} model project on {args.library} in {folder}: " + ", ".join(p.name for p in written))
    if LIBRARIES[args.library]["requirement"]:  # a library of its own: locked before it loads
        from mlops_assets.ops.lock import lock_project
        from mlops_assets.project.environment import LockError
        from mlops_assets.project.spec import read_spec

        index = get_settings().package_index
        try:
            lock = lock_project(folder, read_spec(folder).environment.requirements, index)
        except LockError as exc:
            print(
                f"error: {exc}; then run: MLOPS_MODEL_PROJECT={folder} .venv/bin/mlops-assets lock",
                file=sys.stderr,
            )
            return 1
        print(f"  its lock:  {folder}/requirements.lock from {index}: {lock.pinned}")
    print(f"  its test:  {library_values(args.library, args.task, folder)['test_command']}")
    print(f"  the loop:  MLOPS_MODEL_PROJECT={folder} make demo")
    return 0


def cmd_alert_rules(_: argparse.Namespace) -> int:
    from mlops_assets.core.alert_rules import AlertThresholds, prometheus_rules_yaml

    sys.stdout.write(prometheus_rules_yaml(AlertThresholds.from_settings(get_settings())))
    return 0


def cmd_pipeline_metrics(args: argparse.Namespace) -> int:
    """Until SIGTERM or SIGINT. DAGSTER_HOME names the instance when set (a team's, on AKS);
    otherwise the local profile's."""
    import os
    import signal
    import threading

    import dagster as dg

    from mlops_assets.core.instance import write_instance_config
    from mlops_assets.core.pipeline_health import serve_pipeline_metrics

    if "DAGSTER_HOME" not in os.environ:
        settings = get_settings()
        write_instance_config(settings.dagster_home)
        os.environ["DAGSTER_HOME"] = str(settings.dagster_home)
    host, _, port = args.listen.rpartition(":")
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    with dg.DagsterInstance.get() as instance:
        server = serve_pipeline_metrics(instance, host or "127.0.0.1", int(port))
        print(f"pipeline metrics at http://{host or '127.0.0.1'}:{port}/metrics", flush=True)
        stop.wait()
        server.shutdown()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlops-assets", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    project = commands.add_parser(
        "project", help="check the model project (MLOPS_MODEL_PROJECT) and describe it"
    )
    project.add_argument(
        "field", nargs="?", choices=["home"], help="print only this (home: MLOPS_HOME in effect)"
    )
    project.add_argument(
        "--build",
        action="store_true",
        help="also run model.py's build_model(params) and seed.py's seed_frame(), fit the model on the "
        "seed data and save and load it as every stage does (imports scikit-learn)",
    )
    project.add_argument(
        "--test",
        action="store_true",
        help="run the project's own tests (its test_*.py, with pytest) in the project's environment: "
        "the platform's, or the one its lock makes",
    )
    project.set_defaults(func=cmd_project)
    commands.add_parser(
        "lock",
        help="lock the model project's [environment] requirements (with the platform's pins) into requirements.lock",
    ).set_defaults(func=cmd_lock)
    commands.add_parser("seed", help="write the model project's seed files into storage").set_defaults(
        func=cmd_seed
    )
    commands.add_parser("demo", help="seed, ingest, retrain, land the held-back file, again").set_defaults(
        func=cmd_demo
    )
    commands.add_parser("instance", help="write MLOPS_HOME/dagster/dagster.yaml").set_defaults(
        func=cmd_instance
    )
    land = commands.add_parser("land", help="copy a local file into landing/ in storage")
    land.add_argument("file")
    land.add_argument("--name", help="file name under landing/ (default: the file's own)")
    land.set_defaults(func=cmd_land)
    versions = commands.add_parser(
        "versions",
        help="registered versions: primary metric on the holdout each was judged on and on the current "
        "one, aliases, release state (from the index the pipeline keeps)",
    )
    versions.add_argument(
        "--refresh", action="store_true", help="write the index again from the registry itself first"
    )
    versions.set_defaults(func=cmd_versions)
    provision = commands.add_parser(
        "provision", help="create or update the AML compute cluster (min 0 nodes) from the settings"
    )
    provision.set_defaults(func=cmd_provision)
    serve = commands.add_parser("serve", help="run the scoring service on a model folder")
    serve.add_argument("--model-dir", required=True, help="folder with the artifact and manifest.json")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument(
        "--listen-fd",
        type=int,
        metavar="FD",
        help="accept on this inherited listening socket instead of binding --host/--port "
        "(how mlops-assets-supervise starts the service)",
    )
    serve.set_defaults(func=cmd_serve)
    commands.add_parser("deployments", help="list local deployments").set_defaults(func=cmd_deployments)
    commands.add_parser("down", help="stop every local deployment").set_defaults(func=cmd_down)
    ui = commands.add_parser(
        "ui", help="the Dagster UI behind a login, a Host allow-list and an Origin check, with the daemon"
    )
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=int, default=3000)
    ui.add_argument(
        "--workspace",
        help="a Dagster workspace file; default: one whose code location is named after the model project",
    )
    ui.add_argument("--no-daemon", action="store_true", help="the webserver alone")
    ui.set_defaults(func=cmd_ui)
    keeper = commands.add_parser(
        "keep",
        help="bring production back whenever its supervisor dies, without Dagster (run it under systemd)",
    )
    keeper.add_argument("--every", type=float, default=5.0, help="seconds between looks")
    keeper.set_defaults(func=cmd_keep)
    commands.add_parser(
        "clean",
        help="stop every local deployment and remove the scoring images this home holds (make clean)",
    ).set_defaults(func=cmd_clean)
    promote = commands.add_parser("promote", help="release a registered version: image, QA, production")
    promote.add_argument("version", type=int)
    promote.add_argument("--reason", default="manual promotion")
    back = commands.add_parser(
        "rollback", help="production back to the version that served before the last production change"
    )
    back.add_argument("--reason", required=True, help="recorded on the run, the asset and the event log")
    for command in (promote, back):
        command.add_argument(
            "--by", default="", help="your name, for the event log (beside the OS user and host it records)"
        )
    promote.set_defaults(func=cmd_promote)
    back.set_defaults(func=cmd_rollback)
    history = commands.add_parser(
        "history",
        help="the production event log: release, promote, rollback, automatic rollback, QA teardown",
    )
    history.add_argument(
        "--verify", action="store_true", help="exit 1 unless every entry reads and the MAC chain holds"
    )
    history.set_defaults(func=cmd_history)
    init = commands.add_parser(
        "init", help="scaffold a new model project (spec, model, sample data, its test) that runs as it is"
    )
    init.add_argument("folder", help="a new or empty folder, e.g. models/my_model")
    init.add_argument("--task", required=True, choices=["regression", "binary", "multiclass"])
    init.add_argument("--name", help="the project's name (default: the folder's, letters, digits and _)")
    init.add_argument(
        "--library",
        default="sklearn",
        choices=["sklearn", "forest", "hgb", "lightgbm", "xgboost"],
        help="the model's library (default sklearn: a linear model; forest: scikit-learn's random forest; "
        "hgb: its histogram gradient boosting); "
        "lightgbm and xgboost are locked into the project's own environment from MLOPS_PACKAGE_INDEX",
    )
    init.set_defaults(func=cmd_init)
    commands.add_parser(
        "alert-rules",
        help="print the Prometheus alert rules (deploy/prometheus/alerts.yml) for the MLOPS_ALERT_* thresholds",
    ).set_defaults(func=cmd_alert_rules)
    pipeline = commands.add_parser(
        "pipeline-metrics",
        help="serve the pipeline's freshness and failing sensor ticks to Prometheus (/metrics)",
    )
    pipeline.add_argument("--listen", default="127.0.0.1:9464", metavar="HOST:PORT")
    pipeline.set_defaults(func=cmd_pipeline_metrics)
    return parser


# The commands that read or write a home's registry, runs or deployments: a home is one project's.
# (down and clean stop and remove whatever a home holds, whoever's it is.)
HOME_COMMANDS = frozenset(
    {"seed", "demo", "instance", "land", "versions", "deployments", "ui", "keep", "promote", "rollback"}
    | {"history", "pipeline-metrics"}
)


def main(argv: list[str] | None = None) -> int:
    from mlops_assets.settings import HomeOfAnotherProject, claim_home

    quiet_api_stage_warnings()
    args = build_parser().parse_args(argv)
    if args.command in HOME_COMMANDS:
        try:
            claim_home(get_settings())
        except HomeOfAnotherProject as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
