"""batch_predictions as a Dagster Pipes script (an Azure ML command job): the same ``score_file``.

Extras: ``input_uri``, ``output_uri``, ``refused_uri`` (fsspec URLs), ``artifact_uri``, ``graph_uri`` (its compiled graph, or null), the
registry's ``manifest`` (the artifact is verified against its sha256 here too) and the model
project's ``serving_spec`` (how each column is read, the artifact's trusted types). Uploaded with
the few project modules it imports (numpy, pyarrow, fsspec, skops, dagster-pipes otherwise), so
it needs none of the Dagster code location. A file that cannot be scored is reported as
``error`` (the orchestrator fails the step with it), not as a crash with a stack trace.
"""

import sys
import tempfile
from pathlib import Path


def main() -> int:
    import fsspec
    from dagster_pipes import open_dagster_pipes

    from mlops_assets.core.pipes_transport import pipes_transport
    from mlops_assets.model.batch_scoring import BatchInputError, score_file
    from mlops_assets.model.loaded import loaded_model
    from mlops_assets.model.rows import ServingSpec
    from mlops_assets.project.package import mount, sources_of, write_package

    with open_dagster_pipes(**pipes_transport()) as pipes:
        extras = pipes.extras
        sources = sources_of(extras["manifest"])  # from the registry, through the orchestrator
        if sources is not None:
            mount(write_package(sources, Path(tempfile.mkdtemp(prefix="project-package-"))))
        graph = None
        if extras.get("graph_uri"):
            with fsspec.open(extras["graph_uri"], "rb") as handle:
                graph = handle.read()
        with fsspec.open(extras["artifact_uri"], "rb") as handle:
            spec = ServingSpec.from_dict(extras["serving_spec"]) if extras.get("serving_spec") else None
            model = loaded_model(extras["manifest"], handle.read(), extras["artifact_uri"], spec, graph)
        fs, input_path = fsspec.core.url_to_fs(extras["input_uri"])
        try:
            result = score_file(
                fs,
                input_path,
                fsspec.core.url_to_fs(extras["output_uri"])[1],
                fsspec.core.url_to_fs(extras["refused_uri"])[1],
                model,
                progress=lambda rows: pipes.log.info(f"{rows} rows read"),
            )
        except BatchInputError as exc:
            pipes.report_asset_materialization(metadata={"error": {"raw_value": str(exc), "type": "text"}})
            return 0
        types = {
            "rows": "int",
            "scored": "int",
            "refused": "int",
            "seconds": "float",
            "reasons": "json",
            "flagged": "int",
        }
        pipes.report_asset_materialization(
            metadata={
                name: {"raw_value": value, "type": types[name]} for name, value in result.figures().items()
            }
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
