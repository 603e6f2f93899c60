"""tune-and-promote: a published dataset -> the provider's branch: tune -> evaluate -> promote."""

from kfp import dsl
from tuneloop.components.config import check_config
from tuneloop.components.deploy import deploy_champion
from tuneloop.components.evaluate import evaluate_model
from tuneloop.components.promote import promote_model
from tuneloop.components.tune import tune_model
from tuneloop.pipelines.gpu import DEFAULT_ACCELERATOR, DEFAULT_CPU_LIMIT, DEFAULT_MEMORY_LIMIT, on_gpu

# Providers whose branch runs on the CPU base image (sklearn locally, hosted tuners remotely).
CPU_BRANCHES = ["sklearn", "openai", "gemini", "claude"]
# Providers whose tuning task runs on the CUDA trainer image with an accelerator.
GPU_BRANCHES = ["oss-lora"]
# The providers this pipeline has a branch for (dsl.If blocks; dsl.OneOf does not run locally).
BRANCHES = CPU_BRANCHES + GPU_BRANCHES
# Providers whose champion can be deployed to a Vertex endpoint (tuneloop.deploy.SERVED_PROVIDERS; a test pins it).
SERVED_BRANCHES = ["sklearn", "oss-lora"]
# Blessing rules (support-intent system): macro F1 at least 0.6, and at most 0.05 below the champion.
DEFAULT_MIN_VALUES = {"macro_f1": 0.6}
DEFAULT_MAX_DROP = {"macro_f1": 0.05}
def _deploy_after(task, name, registry_uri, model_name, deploy_endpoint, deploy_options):
    """The optional endpoint deployment right after a branch's promotion (when ``deploy_endpoint`` is set)."""
    if name in SERVED_BRANCHES:
        with dsl.If(deploy_endpoint != "", name=f"deploy-{name}"):
            deploy_champion(
                registry_uri=registry_uri,
                model_name=model_name,
                deploy_endpoint=deploy_endpoint,
                deploy_options=deploy_options,
            ).after(task)


def _judge(tune, provider, dataset_uri, registry_uri, model_name, min_values, max_drop, reports_uri, task_env,
           eval_options):
    """Wire evaluate -> promote behind a tune task (shared by both sub-pipelines); returns evaluate."""
    evaluate = evaluate_model(
        provider=provider,
        model=tune.outputs["model"],
        dataset_uri=dataset_uri,
        registry_uri=registry_uri,
        model_name=model_name,
        min_values=min_values,
        max_drop=max_drop,
        task_env=task_env,
        eval_options=eval_options,
    )
    promote_model(
        blessing=evaluate.outputs["blessing"],
        model=tune.outputs["model"],
        registry_uri=registry_uri,
        model_name=model_name,
        run_name=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
        reports_uri=reports_uri,
    )
    return evaluate


@dsl.pipeline(name="tune-evaluate-promote")
def tune_evaluate_promote(
    provider: str,
    dataset_uri: str,
    base_model: str,
    hyperparameters: dict,
    budget_usd: float,
    registry_uri: str,
    model_name: str,
    min_values: dict,
    max_drop: dict,
    reports_uri: str,
    task_env: dict,
    eval_options: dict,
):
    """One provider's branch: tune a candidate, judge it against the champion, promote if blessed.

    Args:
        provider: Tuner name.
        dataset_uri: Published dataset directory.
        base_model: Base model id or path.
        hyperparameters: Provider hyperparameters.
        budget_usd: Most a hosted tuning job may cost (0 = take ``hyperparameters.budget_usd``).
        registry_uri: Registry root.
        model_name: Registry model name.
        min_values: Value thresholds ``{metric: minimum}``.
        max_drop: ``{metric: largest allowed drop}`` against the champion.
        reports_uri: Where run summaries are written ("" = artifacts only).
        task_env: Environment of the tune and evaluate tasks (credential locations, regions).
        eval_options: How evaluation asks a hosted model (concurrency, request cap, retries).
    """
    tune = tune_model(
        provider=provider,
        dataset_uri=dataset_uri,
        base_model=base_model,
        hyperparameters=hyperparameters,
        budget_usd=budget_usd,
        task_env=task_env,
    )
    _judge(
        tune, provider, dataset_uri, registry_uri, model_name, min_values, max_drop, reports_uri, task_env,
        eval_options,
    )


@dsl.pipeline(name="gpu-tune-evaluate-promote")
def gpu_tune_evaluate_promote(
    provider: str,
    dataset_uri: str,
    base_model: str,
    hyperparameters: dict,
    registry_uri: str,
    model_name: str,
    min_values: dict,
    max_drop: dict,
    reports_uri: str,
    task_env: dict,
    eval_options: dict,
    accelerator_type: str,
    accelerator_count: int,
    cpu_limit: str,
    memory_limit: str,
):
    """The open-model branch: tune and evaluate on the CUDA trainer image with an accelerator, then promote.

    On Vertex AI Pipelines the tuning and evaluation tasks run on a machine with ``accelerator_count`` x
    ``accelerator_type`` sized by ``cpu_limit``/``memory_limit``; under ``kfp.local`` the same
    components run on this machine's CPU.

    Args:
        provider: Tuner name (oss-lora).
        dataset_uri: Published dataset directory.
        base_model: Base model folder (config, tokenizer, safetensors): a ``gs://`` prefix (mirrored into
            the task) or a local path such as a ``/gcs/BUCKET/...`` mount.
        hyperparameters: LoRA trainer settings.
        registry_uri: Registry root.
        model_name: Registry model name.
        min_values: Value thresholds ``{metric: minimum}``.
        max_drop: ``{metric: largest allowed drop}`` against the champion.
        reports_uri: Where run summaries are written ("" = artifacts only).
        task_env: Environment of the tune and evaluate tasks (credential locations, regions).
        eval_options: How evaluation asks a hosted model (concurrency, request cap, retries).
        accelerator_type: Vertex accelerator, e.g. NVIDIA_L4, NVIDIA_TESLA_A100.
        accelerator_count: Accelerators on the tuning task.
        cpu_limit: vCPUs of the tuning task (Vertex picks the machine type from these limits).
        memory_limit: Memory of the tuning task, e.g. 32G.
    """
    gpu = (accelerator_type, accelerator_count, cpu_limit, memory_limit)
    tune = tune_model(
        provider=provider,
        dataset_uri=dataset_uri,
        base_model=base_model,
        hyperparameters=hyperparameters,
        budget_usd=0.0,
        task_env=task_env,
    )
    on_gpu(tune, *gpu)
    # The candidate (and a LoRA champion) answer the eval prompts by generation: also on the GPU image.
    evaluate = _judge(
        tune, provider, dataset_uri, registry_uri, model_name, min_values, max_drop, reports_uri, task_env,
        eval_options,
    )
    on_gpu(evaluate, *gpu)


@dsl.pipeline(name="tune-and-promote")
def tune_and_promote(
    dataset_uri: str,
    registry_uri: str,
    provider: str = "sklearn",
    model_name: str = "support-intent",
    base_model: str = "",
    hyperparameters: dict = {},
    budget_usd: float = 0.0,
    min_values: dict = DEFAULT_MIN_VALUES,
    max_drop: dict = DEFAULT_MAX_DROP,
    reports_uri: str = "",
    task_env: dict = {},
    eval_options: dict = {},
    accelerator_type: str = DEFAULT_ACCELERATOR,
    accelerator_count: int = 1,
    cpu_limit: str = DEFAULT_CPU_LIMIT,
    memory_limit: str = DEFAULT_MEMORY_LIMIT,
    deploy_endpoint: str = "",
    deploy_options: dict = {},
):
    """Tune a candidate on a published dataset with the chosen provider, evaluate, promote.

    Args:
        dataset_uri: Published dataset directory (from export-dataset or an upload trigger).
        registry_uri: Model registry root (directory or gs:// prefix).
        provider: Tuner: sklearn, oss-lora, openai, gemini or claude; anything else fails the first task.
        model_name: Registry model name.
        base_model: Base model id or path (unused by sklearn).
        hyperparameters: Provider hyperparameters (see the README's provider sections).
        budget_usd: Most a hosted tuning job may cost; preflight refuses a larger estimate before
            uploading anything (0 = take ``hyperparameters.budget_usd``).
        min_values: Value thresholds ``{metric: minimum}`` (first run: the only rules).
        max_drop: ``{metric: largest allowed drop}`` against the champion on the same eval rows.
        reports_uri: Where ``<run>/summary.json`` is written ("" = artifacts only).
        task_env: Environment of the tune and evaluate tasks, which Vertex does not give them:
            ``<NAME>_SECRET`` Secret Manager version names of credentials (e.g.
            ``OPENAI_API_KEY_SECRET``) and settings such as ``AWS_REGION``; never a credential itself.
        eval_options: How evaluation asks a hosted model: ``concurrency`` (default 4), ``max_requests``
            (the run's request cap per model, default 5000), ``max_output_tokens``, ``retry``.
        accelerator_type: oss-lora tuning task's accelerator on Vertex (default one NVIDIA_L4).
        accelerator_count: oss-lora tuning task's accelerator count.
        cpu_limit: oss-lora tuning task's vCPUs.
        memory_limit: oss-lora tuning task's memory.
        deploy_endpoint: ``vertex://PROJECT/REGION/ENDPOINT_NAME``: after promotion, deploy a sklearn or
            oss-lora champion there (smoke request first, then all traffic, previous one undeployed);
            "" (default) = no deployment.
        deploy_options: Serving settings of that deployment (machine_type, replicas, images, keep_previous).
    """
    checked = check_config(
        provider=provider,
        branches=BRANCHES,
        registry_uri=registry_uri,
        model_name=model_name,
        min_values=min_values,
        max_drop=max_drop,
        hyperparameters=hyperparameters,
        task_env=task_env,
        eval_options=eval_options,
    )
    branch = {
        "dataset_uri": dataset_uri,
        "base_model": base_model,
        "hyperparameters": hyperparameters,
        "registry_uri": registry_uri,
        "model_name": model_name,
        "min_values": min_values,
        "max_drop": max_drop,
        "reports_uri": reports_uri,
        "task_env": task_env,
        "eval_options": eval_options,
    }
    for name in CPU_BRANCHES:
        with dsl.If(checked.output == name, name=f"provider-{name}"):
            done = tune_evaluate_promote(provider=name, budget_usd=budget_usd, **branch)
            _deploy_after(done, name, registry_uri, model_name, deploy_endpoint, deploy_options)
    for name in GPU_BRANCHES:
        with dsl.If(checked.output == name, name=f"provider-{name}"):
            done = gpu_tune_evaluate_promote(
                provider=name,
                accelerator_type=accelerator_type,
                accelerator_count=accelerator_count,
                cpu_limit=cpu_limit,
                memory_limit=memory_limit,
                **branch,
            )
            _deploy_after(done, name, registry_uri, model_name, deploy_endpoint, deploy_options)
