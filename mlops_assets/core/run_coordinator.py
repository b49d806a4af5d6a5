"""The run queue, giving runs launched from the UI's asset graph the stage tag job runs carry.

This Dagster has no asset-level run tags: a run materialising assets picked in the graph is a run
of the implicit asset job, without ``mlops/stage``, so the queue's stage limits would not hold it
back. Tagged here, before it is queued, it waits its turn like a sensor's or a schedule's run.
"""

import dagster as dg

from mlops_assets.core.instance import STAGE_TAG
from mlops_assets.core.keys import stage_of_selection


class StageTaggingRunCoordinator(dg.QueuedRunCoordinator):
    def submit_run(self, context: dg.SubmitRunContext) -> dg.DagsterRun:
        run = context.dagster_run
        if STAGE_TAG not in run.tags and run.asset_selection:
            stage = stage_of_selection(run.asset_selection)
            if stage is not None:
                self._instance.add_run_tags(run.run_id, {STAGE_TAG: stage})
                tagged = self._instance.get_run_by_id(run.run_id)
                assert tagged is not None
                context = dg.SubmitRunContext(tagged, context.workspace)
        return super().submit_run(context)
