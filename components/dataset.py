"""Dataset build + publish: gate on new data, merge, split by id hash, render, publish."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Dataset, Input, Output
from tuneloop.components.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def prepare_dataset(
    examples: Input[Dataset],
    quarantine: Input[Dataset],
    dataset_root: str,
    watermark: str,
    provider: str,
    formats: str,
    min_new_examples: int,
    min_examples: int,
    system_prompt: str,
    base_model: str,
    dataset: Output[Dataset],
    task: str = "classification",
    taxonomy: str = "",
) -> NamedTuple("DatasetOutputs", status=str, dataset_uri=str, reason=str):
    """Publish a new dataset version, or report a skip when there is not enough new data.

    Args:
        examples: New canonical examples from the extract step.
        quarantine: Rows the extract step rejected (kept with the dataset).
        dataset_root: Root of published datasets (directory or gs:// prefix).
        watermark: Watermark to record once this dataset is published.
        provider: Provider whose training format is rendered (besides ``formats``).
        formats: Extra formats to render, comma-separated: openai, gemini, bedrock, hf.
        min_new_examples: Fewer new examples than this ends the run as a recorded skip.
        min_examples: Fewer surviving training rows than this fails the run.
        system_prompt: Optional system turn added when rendering.
        base_model: Model whose token limits and prices apply.
        task: ``classification`` or ``chat``, recorded in the manifest; examples that do not fit it
            are refused before anything is published.
        taxonomy: Taxonomy file ("" = none): its labels and descriptions join the rendered system turn.
        dataset: The built dataset directory (also published under dataset_root).

    Returns:
        ``status`` ("ready" or "skipped"), the published ``dataset_uri`` and the reason.
    """
    from collections import namedtuple

    from tuneloop.stages import prepare_dataset as run

    r = run(
        examples_path=examples.path,
        quarantine_path=quarantine.path,
        dataset_root=dataset_root,
        work_dir=dataset.path,
        watermark=watermark,
        provider=provider,
        formats=[f.strip() for f in formats.split(",") if f.strip()],
        min_new_examples=min_new_examples,
        min_examples=min_examples,
        system_prompt=system_prompt,
        base_model=base_model,
        task=task,
        taxonomy=taxonomy,
    )
    dataset.metadata.update({k: r[k] for k in ("status", "dataset_uri", "new_examples") if k in r})
    return namedtuple("DatasetOutputs", "status dataset_uri reason")(
        r["status"], r["dataset_uri"], r["reason"]
    )
