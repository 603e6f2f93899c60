"""continuous-tuning: export-dataset then tune-and-promote, as one scheduled run."""

from kfp import dsl
from tuneloop.components.claim import claim_tuning
from tuneloop.components.config import check_config
from tuneloop.components.promote import record_skip
from tuneloop.pipelines.export_dataset import export_dataset
from tuneloop.pipelines.gpu import DEFAULT_ACCELERATOR, DEFAULT_CPU_LIMIT, DEFAULT_MEMORY_LIMIT
from tuneloop.pipelines.tune_and_promote import DEFAULT_MAX_DROP, DEFAULT_MIN_VALUES, tune_branches


@dsl.pipeline(name="continuous-tuning")
def continuous_tuning(
    warehouse_uri: str,
    dataset_root: str,
    registry_uri: str,
    table: str = "interactions",
    provider: str = "sklearn",
    model_name: str = "support-intent",
    base_model: str = "",
    hyperparameters: dict = {},
    budget_usd: float = 0.0,
    min_values: dict = DEFAULT_MIN_VALUES,
    max_drop: dict = DEFAULT_MAX_DROP,
    formats: str = "",
    min_new_examples: int = 100,
    min_examples: int = 10,
    max_rows: int = 0,
    settle_seconds: int = 0,
    system_prompt: str = "",
    reports_uri: str = "",
    task_env: dict = {},
    eval_options: dict = {},
    task: str = "classification",
    judge: str = "",
    judge_rubric: str = "",
    accelerator_type: str = DEFAULT_ACCELERATOR,
    accelerator_count: int = 1,
    cpu_limit: str = DEFAULT_CPU_LIMIT,
    memory_limit: str = DEFAULT_MEMORY_LIMIT,
    deploy_endpoint: str = "",
    deploy_options: dict = {},
    extract_query: str = "",
    query_params: dict = {},
    taxonomy: str = "",
    max_attempts: int = 1,
):
    """Keep a model improving: new warehouse rows -> dataset -> tune -> evaluate -> promote.

    Ends as a recorded skip (not a failure) when fewer than ``min_new_examples`` rows are new, or when
    the upload trigger already tunes the dataset this run published (one tuning run per dataset: both
    claim it under the same job id, derived from the dataset hash).

    Args:
        warehouse_uri: ``duckdb:///path.duckdb`` (embedded) or ``bigquery://project/dataset``.
        dataset_root: Root of published datasets and the watermark.
        registry_uri: Model registry root.
        table: Warehouse table of interaction rows.
        provider: Tuner (any registered provider; see tune-and-promote).
        model_name: Registry model name.
        base_model: Base model id or path.
        hyperparameters: Provider hyperparameters.
        budget_usd: Most a hosted tuning job may cost (0 = take ``hyperparameters.budget_usd``).
        min_values: Value thresholds ``{metric: minimum}``.
        max_drop: ``{metric: largest allowed drop}`` against the champion.
        formats: Extra formats to render, comma-separated.
        min_new_examples: Skip threshold on new examples.
        min_examples: Fewer surviving training rows than this fails the run.
        max_rows: Upper bound on rows read per run (0 = none).
        settle_seconds: Leave rows that landed in the last N seconds for the next run (BigQuery
            streaming inserts become visible with a delay: 60 where producers insert continuously).
        system_prompt: Optional system turn added when rendering.
        reports_uri: Where ``<run>/summary.json`` is written ("" = artifacts only).
        task_env: Environment of the tune and evaluate tasks: ``<NAME>_SECRET`` Secret Manager version
            names of credentials and settings such as ``AWS_REGION``; never a credential itself.
        eval_options: How evaluation asks a hosted model (concurrency, max_requests cap, retries).
        task: ``classification`` (labelled rows) or ``chat`` (conversations whose target is the last
            assistant turn), recorded in the dataset manifest and the registry; see tune-and-promote.
        judge: Chat: the pairwise judge ``PROVIDER:MODEL`` ("" = reference metrics alone).
        judge_rubric: Chat: what the judge compares ("" = the packaged game rubric).
        accelerator_type: GPU branch's accelerator on Vertex.
        accelerator_count: GPU branch's accelerator count.
        cpu_limit: GPU branch's vCPUs.
        memory_limit: GPU branch's memory.
        deploy_endpoint: ``vertex://PROJECT/REGION/ENDPOINT_NAME``: deploy a promoted champion whose provider
            declares a serving container (sklearn, oss-lora) there ("" = none).
        deploy_options: Serving settings of that deployment.
        extract_query: What the extract reads: "" = the interaction table ``table``; a packaged query
            (``ai_survived_games``, with ``table=game_results``) or a ``.sql`` file (local or gs://),
            checked by the first task (docs/extract-queries.md).
        query_params: A value for every ``@name`` the query uses (``@watermark``, ``@read_until`` and
            ``@max_rows`` are bound by tuneloop).
        taxonomy: Taxonomy file (YAML/JSON, local or gs://; "" = none): domains -> labels -> description.
            Labelled rows whose label it lacks are quarantined at export naming the closest valid label, the
            descriptions join the rendered system turn, and evaluation adds per-domain metrics.
        max_attempts: Attempts the run may make, 1..5 (default 1); see tune-and-promote.
    """
    checked = check_config(
        provider=provider,
        registry_uri=registry_uri,
        model_name=model_name,
        min_values=min_values,
        max_drop=max_drop,
        hyperparameters=hyperparameters,
        budget_usd=budget_usd,
        task_env=task_env,
        eval_options=eval_options,
        task=task,
        judge=judge,
        judge_rubric=judge_rubric,
        accelerator_type=accelerator_type,
        accelerator_count=accelerator_count,
        cpu_limit=cpu_limit,
        memory_limit=memory_limit,
        deploy_endpoint=deploy_endpoint,
        deploy_options=deploy_options,
        extract_query=extract_query,
        query_params=query_params,
        taxonomy=taxonomy,
        max_attempts=max_attempts,
    ).set_caching_options(False)  # reads the registry
    dataset = export_dataset(
        warehouse_uri=warehouse_uri,
        dataset_root=dataset_root,
        table=table,
        provider=checked.outputs["provider"],
        formats=formats,
        task=task,
        min_new_examples=min_new_examples,
        min_examples=min_examples,
        max_rows=max_rows,
        settle_seconds=settle_seconds,
        system_prompt=system_prompt,
        base_model=base_model,
        extract_query=extract_query,
        query_params=query_params,
        taxonomy=taxonomy,
    ).after(checked).set_caching_options(False)
    with dsl.If(dataset.outputs["status"] == "ready", name="enough-new-data"):
        claimed = claim_tuning(
            dataset_root=dataset_root,
            dataset_uri=dataset.outputs["dataset_uri"],
            run_name=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
            provider=checked.outputs["provider"],
            model_name=model_name,
            registry_uri=registry_uri,
            base_model=base_model,
        ).set_caching_options(False)  # writes the claim
        with dsl.If(claimed.outputs["status"] == "claimed", name="dataset-claimed"):
            tune_branches(
                provider=checked.outputs["provider"],
                image=checked.outputs["image"],
                hyperparameters=checked.outputs["hyperparameters"],
                dataset_uri=dataset.outputs["dataset_uri"],
                base_model=base_model,
                registry_uri=registry_uri,
                model_name=model_name,
                min_values=min_values,
                max_drop=max_drop,
                reports_uri=reports_uri,
                task_env=task_env,
                eval_options=eval_options,
                accelerator_type=accelerator_type,
                accelerator_count=accelerator_count,
                cpu_limit=cpu_limit,
                memory_limit=memory_limit,
                deploy_endpoint=deploy_endpoint,
                deploy_options=deploy_options,
                task=task,
                judge=judge,
                judge_rubric=judge_rubric,
                taxonomy=taxonomy,
                max_attempts=max_attempts,
            ).set_caching_options(False)
        with dsl.Else(name="tuned-elsewhere"):
            record_skip(
                reason=claimed.outputs["reason"],
                provider=checked.outputs["provider"],
                registry_uri=registry_uri,
                model_name=model_name,
                run_name=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
                reports_uri=reports_uri,
            ).set_caching_options(False)
    with dsl.Else(name="too-little-new-data"):
        record_skip(
            reason=dataset.outputs["reason"],
            provider=checked.outputs["provider"],
            registry_uri=registry_uri,
            model_name=model_name,
            run_name=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
            reports_uri=reports_uri,
        ).set_caching_options(False)
