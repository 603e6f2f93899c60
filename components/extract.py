"""Warehouse extract: rows newer than the published watermark -> canonical examples."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Dataset, Output
from tuneloop.components.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def extract_examples(
    warehouse_uri: str,
    table: str,
    dataset_root: str,
    max_rows: int,
    settle_seconds: int,
    examples: Output[Dataset],
    quarantine: Output[Dataset],
    extract_query: str = "",
    query_params: dict = {},  # noqa: B006 - KFP reads the default; {} = no query parameters
    taxonomy: str = "",
) -> NamedTuple("ExtractOutputs", new_examples=int, quarantined=int, watermark=str):
    """Extract new interactions from the warehouse (BigQuery SQL template, DuckDB by default).

    Args:
        warehouse_uri: ``duckdb:///path.duckdb`` (embedded) or ``bigquery://project/dataset``.
        table: Table of interaction rows (validated identifier).
        dataset_root: Where published datasets and the watermark live.
        max_rows: Upper bound on rows read in one run (0 = no bound).
        settle_seconds: Rows that landed in the last N seconds wait for the next run (0 = read up to now).
        examples: Valid new canonical examples (Parquet).
        quarantine: Rejected rows, each with the reason (JSONL).
        extract_query: "" (the interaction table), a packaged query name (``ai_survived_games``) or a
            ``.sql`` file (local or gs://): one read-only BigQuery SELECT, checked before it runs.
        query_params: A value for every ``@name`` the query uses (besides the reserved ``@watermark``,
            ``@read_until``, ``@max_rows``, which tuneloop binds).
        taxonomy: Taxonomy file ("" = none): labelled rows whose label it lacks are quarantined, each
            naming the closest valid label.

    Returns:
        Counts of new and quarantined rows, and the watermark after these rows.
    """
    from collections import namedtuple

    from tuneloop.stages import extract

    r = extract(
        warehouse_uri=warehouse_uri,
        table=table,
        dataset_root=dataset_root,
        examples_path=examples.path,
        quarantine_path=quarantine.path,
        max_rows=max_rows,
        settle_seconds=settle_seconds,
        extract_query=extract_query,
        query_params=query_params,
        taxonomy=taxonomy,
    )
    examples.metadata.update(rows=r["new_examples"], watermark_from=r["watermark_from"])
    quarantine.metadata["rows"] = r["quarantined"]
    return namedtuple("ExtractOutputs", "new_examples quarantined watermark")(
        r["new_examples"], r["quarantined"], r["watermark_to"]
    )
