"""Zero-shot labelling: unlabelled rows -> a chat model's label and confidence -> examples or the review table."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Output
from tuneloop.components.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def label_examples(
    warehouse_uri: str,
    examples_table: str,
    labeler: str,
    source_table: str,
    input_file: str,
    review_table: str,
    taxonomy: str,
    labels: list,
    min_confidence: float,
    eval_options: dict,
    task_env: dict,
    decisions: Output[Artifact],
    summary: Output[Artifact],
) -> NamedTuple("LabelOutputs", labelled=int, review=int, unparseable=int):
    """Label unlabelled rows with a chat model; confident rows become examples, the rest go to review.

    Args:
        warehouse_uri: ``duckdb:///path.duckdb`` or ``bigquery://project/dataset``.
        examples_table: The interaction table labelled rows go to (``source=synthetic``, confidence in meta).
        labeler: ``PROVIDER:MODEL`` of any provider that declares chat (e.g. ``gemini:gemini-2.5-flash``).
        source_table: Table of unlabelled rows (``label`` NULL); "" = read ``input_file``.
        input_file: JSONL (``text`` or ``messages``) or CSV (``text``) file, local or gs://; "" = the table.
        review_table: Where rows below ``min_confidence`` and unparseable answers wait for a person.
        taxonomy: Taxonomy file (domains -> labels -> description); "" = use ``labels``.
        labels: Label names (or one ``{name: description}`` mapping) when there is no taxonomy.
        min_confidence: Rows at or above it are labelled; the rest go to review.
        eval_options: Request bounds as in evaluation (concurrency, max_requests, retry).
        task_env: ``<NAME>_SECRET`` Secret Manager names of the labeller's credentials and settings.
        decisions: One decision record per row (stage ``label``) and a summary record (JSONL).
        summary: Counts, confidence sources and requests (JSON).

    Returns:
        How many rows were labelled, sent to review, and answered unparseably.
    """
    import json
    from collections import namedtuple

    from tuneloop.labeling import label_examples as run
    from tuneloop.secrets import apply_task_env

    apply_task_env(task_env)
    one = labels[0] if len(labels) == 1 and isinstance(labels[0], dict) else labels
    r = run(warehouse_uri=warehouse_uri, examples_table=examples_table, labeler=labeler, source_table=source_table,
            input_file=input_file, review_table=review_table, taxonomy=taxonomy, labels=one,
            min_confidence=min_confidence, eval_options=eval_options, decisions_path=decisions.path)
    with open(summary.path, "w") as fh:
        json.dump(r, fh, indent=2, sort_keys=True, default=str)
    return namedtuple("LabelOutputs", "labelled review unparseable")(r["labelled"], r["review"], r["unparseable"])
