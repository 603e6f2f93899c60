"""export-dataset: warehouse rows newer than the watermark -> a published dataset version."""

from collections import namedtuple
from typing import NamedTuple

from kfp import dsl
from tuneloop.components.dataset import prepare_dataset
from tuneloop.components.extract import extract_examples


@dsl.pipeline(name="export-dataset")
def export_dataset(
    warehouse_uri: str,
    dataset_root: str,
    table: str = "interactions",
    provider: str = "",
    formats: str = "",
    task: str = "classification",
    min_new_examples: int = 100,
    min_examples: int = 10,
    max_rows: int = 0,
    settle_seconds: int = 0,
    system_prompt: str = "",
    base_model: str = "",
    extract_query: str = "",
    query_params: dict = {},
    taxonomy: str = "",
) -> NamedTuple("ExportOutputs", status=str, dataset_uri=str, reason=str):
    """Extract new interactions and publish them, merged with the last dataset, as a new version.

    Args:
        warehouse_uri: ``duckdb:///path.duckdb`` (embedded) or ``bigquery://project/dataset``.
        dataset_root: Root of published datasets and the watermark (directory or gs:// prefix).
        table: Warehouse table of interaction rows.
        provider: Provider whose training format is rendered ("" = canonical only).
        formats: Extra formats to render, comma-separated (openai, gemini, bedrock, hf).
        task: ``classification`` or ``chat``, recorded in the manifest; examples that do not fit it are
            refused before anything is published.
        min_new_examples: Fewer new examples than this ends the run as a recorded skip.
        min_examples: Fewer surviving training rows than this fails the run.
        max_rows: Upper bound on rows read per run (0 = none).
        settle_seconds: Leave rows that landed in the last N seconds for the next run (BigQuery
            streaming inserts become visible with a delay: 60 where producers insert continuously).
        system_prompt: Optional system turn added when rendering.
        base_model: Model whose token limits and prices apply to rendering.
        extract_query: What the extract reads: "" = the interaction table ``table``; a packaged query
            (``ai_survived_games``: the game loop over ``table=game_results``) or a ``.sql`` file (local
            or gs://), one read-only BigQuery SELECT returning the canonical columns, refused before it
            runs otherwise (docs/extract-queries.md).
        query_params: A value for every ``@name`` the query uses (``@watermark``, ``@read_until`` and
            ``@max_rows`` are bound by tuneloop).
        taxonomy: Taxonomy file (YAML/JSON, local or gs://; "" = none): domains -> labels -> description.
            Labelled rows whose label it lacks are quarantined at export naming the closest valid label, the
            descriptions join the rendered system turn.

    Returns:
        ``status`` ("ready" or "skipped"), ``dataset_uri`` and the reason.
    """
    # Neither step is ever answered from cache: the extract reads whatever landed in the warehouse since
    # the watermark, and prepare reads the dataset root's state and publishes (docs/google-cloud.md#caching).
    extract = extract_examples(
        warehouse_uri=warehouse_uri,
        table=table,
        dataset_root=dataset_root,
        max_rows=max_rows,
        settle_seconds=settle_seconds,
        extract_query=extract_query,
        query_params=query_params,
        taxonomy=taxonomy,
    ).set_caching_options(False)
    dataset = prepare_dataset(
        examples=extract.outputs["examples"],
        quarantine=extract.outputs["quarantine"],
        dataset_root=dataset_root,
        watermark=extract.outputs["watermark"],
        provider=provider,
        formats=formats,
        task=task,
        min_new_examples=min_new_examples,
        min_examples=min_examples,
        system_prompt=system_prompt,
        base_model=base_model,
        taxonomy=taxonomy,
    ).set_caching_options(False)
    outputs = namedtuple("ExportOutputs", "status dataset_uri reason")
    return outputs(dataset.outputs["status"], dataset.outputs["dataset_uri"], dataset.outputs["reason"])
