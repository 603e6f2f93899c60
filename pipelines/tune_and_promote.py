"""tune-and-promote: a published dataset -> the first task picks the branch -> tune -> evaluate -> promote.

The branch is chosen by where the provider's tasks run, not by provider: one CPU branch (the base
image: sklearn locally, the hosted tuners remotely, any plug-in provider that declares ``cpu``) and one
GPU branch (the CUDA trainer image with an accelerator: oss-lora). The provider is a parameter of the
tune and evaluate tasks, so adding a provider changes no pipeline.
"""

from kfp import dsl
from tuneloop.components.attempts import plan_attempt
from tuneloop.components.config import check_config
from tuneloop.components.deploy import deploy_champion
from tuneloop.components.evaluate import evaluate_model
from tuneloop.components.promote import promote_model
from tuneloop.components.tune import tune_model
from tuneloop.pipelines.gpu import DEFAULT_ACCELERATOR, DEFAULT_CPU_LIMIT, DEFAULT_MEMORY_LIMIT, on_gpu

# The images a provider declares (tuneloop.providers.registry.IMAGES; a test pins them): one branch each.
CPU, GPU = "cpu", "gpu"
# Blessing rules (support-intent system): macro F1 at least 0.6, and at most 0.05 below the champion.
DEFAULT_MIN_VALUES = {"macro_f1": 0.6}
DEFAULT_MAX_DROP = {"macro_f1": 0.05}


# The most attempts a run may make (tuneloop.attempts.MAX_ATTEMPTS; a test pins them). KFP has no loops,
# so each branch unrolls this many attempts at compile time, each behind the previous plan's dsl.If, in
# one sub-pipeline (nested conditions, not nested sub-pipelines: KFP 2.17 names the components of
# nested sub-pipelines in a hash-seed-dependent order, so the YAML would not be deterministic).
MAX_ATTEMPTS = 5


def _chain(k: int, a: dict, hyperparameters, history, decisions) -> None:
    """Attempt ``k``: tune, evaluate, plan; then promotion behind ``dsl.If(not go)``, else attempt k+1.

    Evaluate and promote are never cached: both read the registry's current champion (a cached blessing
    would judge against a stale one, a cached promote would move nothing). The tune task may be: its
    result follows from its inputs (a content-addressed dataset, the base model, the hyperparameters),
    and so does the plan's (the blessing, the result card, the history). Promotion runs once per run: only
    the attempt whose plan stops (blessed, out of attempts or budget, no rule) reaches its promotion.
    """
    tune = tune_model(
        provider=a["provider"],
        dataset_uri=a["dataset_uri"],
        base_model=a["base_model"],
        hyperparameters=hyperparameters,
        task_env=a["task_env"],
        task=a["task"],
    )
    evaluate = evaluate_model(
        provider=a["provider"],
        model=tune.outputs["model"],
        dataset_uri=a["dataset_uri"],
        registry_uri=a["registry_uri"],
        model_name=a["model_name"],
        min_values=a["min_values"],
        max_drop=a["max_drop"],
        task_env=a["task_env"],
        eval_options=a["eval_options"],
        task=a["task"],
        judge=a["judge"],
        judge_rubric=a["judge_rubric"],
        taxonomy=a["taxonomy"],
    ).set_caching_options(False)
    if a["gpu"] is not None:  # the candidate (and a LoRA champion) answer by generation: also on the GPU image
        on_gpu(tune, *a["gpu"])
        on_gpu(evaluate, *a["gpu"])
    plan = plan_attempt(
        provider=a["provider"],
        attempt=k,
        max_attempts=a["max_attempts"],
        hyperparameters=hyperparameters,
        blessing=evaluate.outputs["blessing"],
        model=tune.outputs["model"],
        history=history,
        decisions_so_far=decisions,
    )

    def finish():
        promote = promote_model(
            blessing=evaluate.outputs["blessing"],
            model=tune.outputs["model"],
            registry_uri=a["registry_uri"],
            model_name=a["model_name"],
            run_name=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
            reports_uri=a["reports_uri"],
            attempts=plan.outputs["attempts"],
            decisions=plan.outputs["decisions"],
        ).set_caching_options(False)
        # The optional endpoint deployment of the new champion (providers that declare a serving container).
        with dsl.If(a["deploy_endpoint"] != "", name="deploy"):
            deploy_champion(
                registry_uri=a["registry_uri"],
                model_name=a["model_name"],
                deploy_endpoint=a["deploy_endpoint"],
                deploy_options=a["deploy_options"],
            ).after(promote).set_caching_options(False)  # reads the registry, moves endpoint traffic

    if k == MAX_ATTEMPTS:  # the last attempt the chain has: its plan always stops
        finish()
        return
    # Promotion first (dsl.If, not go), the next attempt in its dsl.Else: this attempt's promotion is created
    # before the later attempts, so the tasks are numbered in attempt order (promote-model is attempt 1's).
    # An If/Else pair, not two sibling Ifs: kfp.local resolves the plan's output only inside the pair's group.
    with dsl.If(plan.outputs["go"] != True, name=f"promote-attempt-{k}"):  # noqa: E712 - a KFP condition
        finish()
    with dsl.Else(name=f"attempt-{k + 1}"):
        _chain(k + 1, a, plan.outputs["hyperparameters"], plan.outputs["attempts"], plan.outputs["decisions"])


def _branch_args(**kwargs) -> dict:
    return kwargs


@dsl.pipeline(name="tune-evaluate-promote")
def tune_evaluate_promote(
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
    deploy_endpoint: str,
    deploy_options: dict,
    task: str,
    judge: str,
    judge_rubric: str,
    taxonomy: str,
    max_attempts: int,
    decisions: str,
):
    """The CPU branch: tune a candidate, judge it against the champion, try again or promote.

    Up to ``max_attempts`` attempts (unrolled: attempt k+1 runs behind attempt k's plan, ``dsl.If``); the
    attempt whose plan stops goes to promotion, which registers it only when blessed and writes the run's
    one summary with every attempt and decision.

    Args:
        provider: Canonical provider name (from the first task).
        dataset_uri: Published dataset directory.
        base_model: Base model id or path.
        hyperparameters: The provider's config as parsed by the first task (attempt 1's).
        registry_uri: Registry root.
        model_name: Registry model name.
        min_values: Value thresholds ``{metric: minimum}``.
        max_drop: ``{metric: largest allowed drop}`` against the champion.
        reports_uri: Where run summaries are written ("" = artifacts only).
        task_env: Environment of the tune and evaluate tasks (credential locations, regions).
        eval_options: How evaluation asks a hosted model (concurrency, request cap, retries).
        deploy_endpoint: Where to deploy the new champion ("" = nowhere).
        deploy_options: Serving settings of that deployment.
        task: ``classification`` or ``chat``.
        judge: Chat: the pairwise judge ``PROVIDER:MODEL`` ("" = reference metrics alone).
        judge_rubric: Chat: what the judge compares ("" = the packaged game rubric).
        taxonomy: Taxonomy file ("" = none): evaluation adds per-domain metrics.
        max_attempts: The run's attempt limit (1..5, checked by the first task).
        decisions: Decision records made upstream (label, select-model), as a JSON list: the run's log
            starts with them.
    """
    a = _branch_args(
        provider=provider, dataset_uri=dataset_uri, base_model=base_model, registry_uri=registry_uri,
        model_name=model_name, min_values=min_values, max_drop=max_drop, reports_uri=reports_uri,
        task_env=task_env, eval_options=eval_options, deploy_endpoint=deploy_endpoint,
        deploy_options=deploy_options, task=task, judge=judge, judge_rubric=judge_rubric, taxonomy=taxonomy,
        max_attempts=max_attempts, gpu=None,
    )
    _chain(1, a, hyperparameters, "[]", decisions)


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
    deploy_endpoint: str,
    deploy_options: dict,
    task: str,
    judge: str,
    judge_rubric: str,
    taxonomy: str,
    max_attempts: int,
    decisions: str,
    accelerator_type: str,
    accelerator_count: int,
    cpu_limit: str,
    memory_limit: str,
):
    """The GPU branch: tune and evaluate on the CUDA trainer image with an accelerator, try again or promote.

    On Vertex AI Pipelines the tuning and evaluation tasks run on a machine with ``accelerator_count`` x
    ``accelerator_type`` sized by ``cpu_limit``/``memory_limit``; under ``kfp.local`` the same
    components run on this machine's CPU. Attempts as in the CPU branch.

    Args:
        provider: Canonical provider name (from the first task), e.g. oss-lora.
        dataset_uri: Published dataset directory.
        base_model: Base model folder (config, tokenizer, safetensors): a ``gs://`` prefix (mirrored into
            the task) or a local path such as a ``/gcs/BUCKET/...`` mount.
        hyperparameters: The provider's config as parsed by the first task (attempt 1's).
        registry_uri: Registry root.
        model_name: Registry model name.
        min_values: Value thresholds ``{metric: minimum}``.
        max_drop: ``{metric: largest allowed drop}`` against the champion.
        reports_uri: Where run summaries are written ("" = artifacts only).
        task_env: Environment of the tune and evaluate tasks (credential locations, regions).
        eval_options: How evaluation asks a hosted model (concurrency, request cap, retries).
        deploy_endpoint: Where to deploy the new champion ("" = nowhere).
        deploy_options: Serving settings of that deployment.
        task: ``classification`` or ``chat``.
        judge: Chat: the pairwise judge ``PROVIDER:MODEL`` ("" = reference metrics alone).
        judge_rubric: Chat: what the judge compares ("" = the packaged game rubric).
        taxonomy: Taxonomy file ("" = none): evaluation adds per-domain metrics.
        max_attempts: The run's attempt limit (1..5, checked by the first task).
        decisions: Decision records made upstream (label, select-model), as a JSON list: the run's log
            starts with them.
        accelerator_type: Vertex accelerator, e.g. NVIDIA_L4, NVIDIA_TESLA_A100.
        accelerator_count: Accelerators on the tuning task.
        cpu_limit: vCPUs of the tuning task (Vertex picks the machine type from these limits).
        memory_limit: Memory of the tuning task, e.g. 32G.
    """
    a = _branch_args(
        provider=provider, dataset_uri=dataset_uri, base_model=base_model, registry_uri=registry_uri,
        model_name=model_name, min_values=min_values, max_drop=max_drop, reports_uri=reports_uri,
        task_env=task_env, eval_options=eval_options, deploy_endpoint=deploy_endpoint,
        deploy_options=deploy_options, task=task, judge=judge, judge_rubric=judge_rubric, taxonomy=taxonomy,
        max_attempts=max_attempts, gpu=(accelerator_type, accelerator_count, cpu_limit, memory_limit),
    )
    _chain(1, a, hyperparameters, "[]", decisions)


@dsl.pipeline(name="tune-branches")
def tune_branches(
    provider: str,
    image: str,
    hyperparameters: dict,
    dataset_uri: str,
    base_model: str,
    registry_uri: str,
    model_name: str,
    min_values: dict,
    max_drop: dict,
    reports_uri: str,
    task_env: dict,
    eval_options: dict,
    deploy_endpoint: str,
    deploy_options: dict,
    task: str,
    judge: str,
    judge_rubric: str,
    taxonomy: str,
    accelerator_type: str,
    accelerator_count: int,
    cpu_limit: str,
    memory_limit: str,
    max_attempts: int = 1,
    decisions: str = "[]",
):
    """Run the branch the first task chose: the CPU branch or the GPU branch.

    Args:
        provider: Canonical provider name (from the first task).
        image: Where the provider's tasks run, as it declares (``cpu`` or ``gpu``; from the first task).
        hyperparameters: The provider's config as parsed by the first task.
        dataset_uri: Published dataset directory.
        base_model: Base model id or path.
        registry_uri: Registry root.
        model_name: Registry model name.
        min_values: Value thresholds ``{metric: minimum}``.
        max_drop: ``{metric: largest allowed drop}`` against the champion.
        reports_uri: Where run summaries are written ("" = artifacts only).
        task_env: Environment of the tune and evaluate tasks (credential locations, regions).
        eval_options: How evaluation asks a hosted model (concurrency, request cap, retries).
        deploy_endpoint: Where to deploy the new champion ("" = nowhere).
        deploy_options: Serving settings of that deployment.
        task: ``classification`` or ``chat``.
        judge: Chat: the pairwise judge ``PROVIDER:MODEL`` ("" = reference metrics alone).
        judge_rubric: Chat: what the judge compares ("" = the packaged game rubric).
        taxonomy: Taxonomy file ("" = none): evaluation adds per-domain metrics.
        accelerator_type: GPU branch's accelerator on Vertex.
        accelerator_count: GPU branch's accelerator count.
        cpu_limit: GPU branch's vCPUs.
        memory_limit: GPU branch's memory.
        max_attempts: Attempts the run may make (1..5; checked by the first task).
        decisions: Decision records made before tuning (e.g. label-examples', select-model's), as a JSON
            list of ``tuneloop.decisions`` records: the summary's decision log starts with them.
    """
    branch = {
        "provider": provider,
        "hyperparameters": hyperparameters,
        "dataset_uri": dataset_uri,
        "base_model": base_model,
        "registry_uri": registry_uri,
        "model_name": model_name,
        "min_values": min_values,
        "max_drop": max_drop,
        "reports_uri": reports_uri,
        "task_env": task_env,
        "eval_options": eval_options,
        "deploy_endpoint": deploy_endpoint,
        "deploy_options": deploy_options,
        "task": task,
        "judge": judge,
        "judge_rubric": judge_rubric,
        "taxonomy": taxonomy,
        "max_attempts": max_attempts,
        "decisions": decisions,
    }
    # Not cached as a whole: evaluate and promote inside read the registry (see _chain).
    with dsl.If(image == CPU, name="cpu-branch"):
        tune_evaluate_promote(**branch).set_caching_options(False)
    with dsl.If(image == GPU, name="gpu-branch"):
        gpu_tune_evaluate_promote(
            accelerator_type=accelerator_type,
            accelerator_count=accelerator_count,
            cpu_limit=cpu_limit,
            memory_limit=memory_limit,
            **branch,
        ).set_caching_options(False)


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
    task: str = "classification",
    judge: str = "",
    judge_rubric: str = "",
    taxonomy: str = "",
    max_attempts: int = 1,
):
    """Tune a candidate on a published dataset with the chosen provider, evaluate, promote.

    Args:
        dataset_uri: Published dataset directory (from export-dataset or an upload trigger).
        registry_uri: Model registry root (directory or gs:// prefix).
        provider: Tuner: sklearn, oss-lora, openai, gemini, claude (few-shot or bedrock by
            ``hyperparameters.method``), or a provider a package registers; anything else fails the
            first task.
        model_name: Registry model name.
        base_model: Base model id or path (unused by sklearn).
        hyperparameters: Provider hyperparameters (docs/providers.md lists each provider's keys); an
            unknown key or a bad value fails the first task.
        budget_usd: Most a hosted tuning job may cost; preflight refuses a larger estimate before
            uploading anything (0 = take ``hyperparameters.budget_usd``).
        min_values: Value thresholds ``{metric: minimum}`` (first run: the only rules). Chat: ``chrf``,
            ``rouge_l`` (0-1); the classification default stands for the chat default ``{}``.
        max_drop: ``{metric: largest allowed drop}`` against the champion on the same eval rows. Chat:
            ``win_rate`` (the judge's lower bound must be >= 0.5 - drop), ``chrf``, ``rouge_l``; the
            classification default stands for the chat default ``{"win_rate": 0.05}``.
        reports_uri: Where ``<run>/summary.json`` is written ("" = artifacts only).
        task_env: Environment of the tune and evaluate tasks, which Vertex does not give them:
            ``<NAME>_SECRET`` Secret Manager version names of credentials (e.g.
            ``OPENAI_API_KEY_SECRET``) and settings such as ``AWS_REGION``; never a credential itself.
        eval_options: How evaluation asks a hosted model: ``concurrency`` (default 4), ``max_requests``
            (the run's request cap per model, default 5000), ``max_output_tokens``, ``retry``.
        accelerator_type: GPU branch's accelerator on Vertex (default one NVIDIA_L4).
        accelerator_count: GPU branch's accelerator count.
        cpu_limit: GPU branch's vCPUs.
        memory_limit: GPU branch's memory.
        deploy_endpoint: ``vertex://PROJECT/REGION/ENDPOINT_NAME``: after promotion, deploy the champion
            there when its provider declares a serving container (sklearn, oss-lora): smoke request first,
            then all traffic, the previous deployment undeployed; "" (default) = no deployment.
        deploy_options: Serving settings of that deployment (machine_type, replicas, images, keep_previous).
        task: ``classification`` (labels) or ``chat`` (conversations whose target is the last assistant
            turn: judged by chrF, ROUGE-L and the judge); the dataset must have been built for it.
        judge: Chat: the pairwise judge as ``PROVIDER:MODEL`` (e.g. ``openai:gpt-4.1-mini``) or a JSON
            mapping ``{"provider", "model"}``; any provider that declares chat, asked under
            ``eval_options``; "" (default) = reference metrics alone.
        judge_rubric: Chat: what the judge compares: a packaged name (``game``, ``assistant``) or your
            text; "" = ``game`` ("which reply reads more like a human player in this game").
        taxonomy: Taxonomy file (YAML/JSON, local or gs://; "" = none): domains -> labels -> description,
            checked by the first task; evaluation adds per-domain metrics (``domain_f1.<domain>``, ...).
        max_attempts: Attempts the run may make, 1..5 (default 1: tune once). When a candidate is not
            blessed, the next attempt adjusts the hyperparameters by the rule of docs/attempts.md (more
            epochs while validation loss still falls, a lower learning rate when it diverged) and tries
            again; ``budget_usd`` covers all attempts together; only a blessed attempt is promoted, and
            the summary lists every attempt and decision.
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
    ).set_caching_options(False)  # reads the registry
    tune_branches(
        provider=checked.outputs["provider"],
        image=checked.outputs["image"],
        hyperparameters=checked.outputs["hyperparameters"],
        dataset_uri=dataset_uri,
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
