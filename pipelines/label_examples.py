"""label-examples: unlabelled warehouse rows (or a file) -> zero-shot labels -> examples or the review table."""

from collections import namedtuple
from typing import NamedTuple

from kfp import dsl
from tuneloop.components.label import label_examples as label_step

DEFAULT_LABELER = "gemini:gemini-2.5-flash"  # Gemini on Vertex; a test pins it to tuneloop.labeling


@dsl.pipeline(name="label-examples")
def label_examples(
    warehouse_uri: str,
    examples_table: str = "interactions",
    source_table: str = "",
    input_file: str = "",
    labeler: str = DEFAULT_LABELER,
    review_table: str = "label_review",
    taxonomy: str = "",
    labels: list = [],
    min_confidence: float = 0.8,
    eval_options: dict = {},
    task_env: dict = {},
) -> NamedTuple("LabelPipelineOutputs", labelled=int, review=int, unparseable=int):
    """Label unlabelled rows zero-shot; confident ones join the examples, the rest wait for review.

    Args:
        warehouse_uri: ``duckdb:///path.duckdb`` (embedded) or ``bigquery://project/dataset``.
        examples_table: Interaction table that labelled rows go to, as ``source=synthetic`` with their
            confidence (``meta.confidence``, ``meta.confidence_source``: logprob or self_reported).
        source_table: Table of unlabelled rows (``label`` NULL); "" = read ``input_file``.
        input_file: JSONL (``text`` or ``messages`` per line) or CSV (``text`` column), local or gs://.
        labeler: ``PROVIDER:MODEL``, any provider that declares chat (default Gemini on Vertex).
        review_table: Rows below ``min_confidence`` and unparseable answers, with the reason; a person
            fills ``corrected_label`` and the next run loads them as ``source=corrected``, weight 2.
        taxonomy: Taxonomy file (YAML/JSON, local or gs://): domains -> labels -> description.
        labels: Without a taxonomy: the label names, or one ``{name: description}`` mapping.
        min_confidence: Rows at or above this confidence are labelled (0-1).
        eval_options: Request bounds as in evaluation: ``concurrency``, ``max_requests`` (more rows than
            this are refused before anything is sent), ``retry``.
        task_env: ``<NAME>_SECRET`` Secret Manager version names of the labeller's credentials.

    Returns:
        Rows labelled, sent to review, and answered unparseably.
    """
    step = label_step(
        warehouse_uri=warehouse_uri,
        examples_table=examples_table,
        labeler=labeler,
        source_table=source_table,
        input_file=input_file,
        review_table=review_table,
        taxonomy=taxonomy,
        labels=labels,
        min_confidence=min_confidence,
        eval_options=eval_options,
        task_env=task_env,
    ).set_caching_options(False)  # reads and writes the warehouse
    outputs = namedtuple("LabelPipelineOutputs", "labelled review unparseable")
    return outputs(step.outputs["labelled"], step.outputs["review"], step.outputs["unparseable"])
