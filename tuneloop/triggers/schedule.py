"""The cron trigger: the export pipeline on a Vertex AI ``PipelineJobSchedule``.

The export is what runs on a clock: it reads what landed in the warehouse since the watermark and
publishes a dataset when there is enough (else it records a skip). Publishing the dataset is what
starts tuning (the upload trigger in :mod:`.gcs_upload`), so cron and upload converge on one run per
dataset.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tuneloop import cloud

EXPORT_PIPELINE = "export-dataset"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,127}$")


@dataclass(frozen=True)
class ExportSchedule:
    """When the export runs.

    Attributes:
        display_name: The schedule's name in Vertex (unique per project and region by tuneloop's rule).
        cron: Five cron fields, e.g. ``"0 3 * * *"`` (03:00 every day).
        time_zone: IANA time zone the cron is read in, e.g. ``"Europe/Berlin"``; daylight saving follows it.
    """

    display_name: str = "tuneloop-export"
    cron: str = "0 3 * * *"
    time_zone: str = "UTC"

    def __post_init__(self) -> None:
        if not isinstance(self.display_name, str) or not _NAME.match(self.display_name):
            raise ValueError(
                f"display_name={self.display_name!r}: letters, digits, spaces, '.', '_' or '-', at most 128"
            )
        cloud.cron_with_time_zone(self.cron, self.time_zone)  # raises naming the bad field

    @property
    def vertex_cron(self) -> str:
        """The cron as Vertex takes it: ``TZ=<zone> <fields>``."""
        return cloud.cron_with_time_zone(self.cron, self.time_zone)


def schedule_export(
    schedule: ExportSchedule,
    target: cloud.VertexTarget,
    template_path: str,
    params: Mapping[str, Any],
) -> cloud.ScheduleInfo:
    """Create the schedule for the compiled export pipeline (one run at a time, no catch-up).

    Args:
        schedule: When.
        target: Project, region, pipeline root, service account.
        template_path: The compiled ``export-dataset`` YAML (local, ``gs://`` or Artifact Registry).
        params: The export's parameters (``warehouse_uri``, ``dataset_root``, ``table``...).
    """
    return cloud.create_schedule(
        template_path,
        target,
        params,
        display_name=schedule.display_name,
        cron=schedule.cron,
        time_zone=schedule.time_zone,
        labels={"trigger": "schedule"},
    )
