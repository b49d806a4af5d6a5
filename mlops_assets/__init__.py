"""mlops-assets: the Azure ML MLOps reference architecture as a Dagster asset graph."""

import warnings


def quiet_api_stage_warnings() -> None:
    """Hide dagster's beta/preview notices for features used on purpose (DESIGN.md).

    Partitioned checks, Pipes writer counts, source-code links and data versions on outputs are
    labelled beta or preview in dagster 1.13; repeated on every run, they bury real warnings.
    """
    warnings.filterwarnings("ignore", message=r".* is currently in (beta|preview)")
