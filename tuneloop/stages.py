"""One function per pipeline step. Each component body calls exactly one of these.

Every function takes plain parameters and local paths (the component's artifact paths), does the
work through the engine modules, and returns a JSON-able dict that the component turns into outputs.
Nothing here imports kfp, so each step is testable and callable without a pipeline.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tuneloop import datasets, storage
from tuneloop import examples as ex
from tuneloop.config import ConfigError
from tuneloop.providers import hosted_names

SUMMARY = "summary.json"
RESULT_CARD = "tuneloop-result.json"  # what the tune task leaves in its model artifact


# -- 0. parameters ---------------------------------------------------------------------------


def check_config(
    *,
    provider: str,
    registry_uri: str,
    model_name: str,
    thresholds: Mapping[str, Any],
    hyperparameters: Mapping[str, Any],
    task_env: Mapping[str, Any] | None = None,
    eval_options: Mapping[str, Any] | None = None,
    task: str = "classification",
    judge: Any = "",
    judge_rubric: str = "",
    budget_usd: float = 0.0,
    gpu: Mapping[str, Any] | None = None,
    deploy: Mapping[str, Any] | None = None,
    extract_query: str = "",
    query_params: Mapping[str, Any] | None = None,
    taxonomy: str = "",
    max_attempts: Any = 1,
) -> dict[str, Any]:
    """Validate and parse the run's parameters, before any work or spend.

    ``taxonomy`` ("" = none) is read and parsed here (:func:`tuneloop.taxonomy.load`), so a broken file fails
    the run before the extract, naming the field. ``max_attempts`` (1..5,
    :func:`tuneloop.attempts.check_max_attempts`) is how many attempts the run may make, each after a
    candidate that is not blessed (see :mod:`tuneloop.attempts`).

    ``extract_query`` / ``query_params`` are read and checked here too (one read-only SELECT over declared
    parameters returning the canonical columns: :mod:`tuneloop.warehouse.extract_query`), so a refused
    query fails the run before the extract.

    The provider name is canonicalised (``OpenAI`` -> ``openai``; ``claude`` + ``method`` -> its
    member); the hyperparameters are parsed with that provider's config class (unknown keys and bad
    values fail here, naming the valid keys); ``eval_options`` are parsed the same way. ``task``
    (``classification`` or ``chat``) must be one the provider declares (the refusal names the providers
    that can, plug-ins included); a chat run's ``thresholds`` name chat metrics, and its ``judge`` must
    be a provider that declares chat (see :mod:`tuneloop.chat_eval`).

    Returns:
        ``provider`` (canonical), ``image`` (``cpu`` or ``gpu``: the branch that runs it), ``hosted``,
        ``hyperparameters`` (the parsed config's changed fields as plain data: what the tune task
        receives and parses again to the same config),
        ``thresholds`` and ``eval_options`` (parsed), ``task``, ``judge`` (``PROVIDER:MODEL`` or "").

    Raises:
        ConfigError: naming the parameter, the value and the fix.
    """
    from tuneloop import chat_eval
    from tuneloop.attempts import check_max_attempts
    from tuneloop.config import changed_fields, to_mapping
    from tuneloop.evaluation import Thresholds
    from tuneloop.providers.registry import ProviderNotFound, install_hint, missing_requirements, resolve
    from tuneloop.registry import VERTEX_SCHEME, open_registry
    from tuneloop.secrets import MissingSecret, check_credentials, check_task_env

    max_attempts = check_max_attempts(max_attempts)
    if not isinstance(hyperparameters, Mapping):
        raise ConfigError(f"hyperparameters must be an object, got {type(hyperparameters).__name__}")
    try:
        cls, hp = resolve(provider, hyperparameters)
    except ProviderNotFound as exc:
        raise ConfigError(str(exc)) from exc
    task = chat_eval.check_task(task)
    chat_eval.check_provider_task(cls, task)
    missing = missing_requirements(cls)
    if missing:
        raise ConfigError(
            f"provider={cls.name!r} cannot run here: it needs {missing}, which is not installed; {install_hint(cls)}"
        )
    config = cls.parse_config(hp)
    if budget_usd:
        if isinstance(budget_usd, bool) or not isinstance(budget_usd, int | float) or budget_usd < 0:
            raise ConfigError(f"budget_usd={budget_usd!r} must be a number >= 0 (0 = no pipeline-level budget)")
        if not cls.hosted:
            raise ConfigError(
                f"budget_usd={budget_usd} applies to the hosted providers {hosted_names()}; "
                f"{cls.name!r} runs on your own machines: leave budget_usd at 0"
            )
        if getattr(config, "budget_usd", None) is None:
            config = cls.parse_config({**to_mapping(config), "budget_usd": float(budget_usd)})
    if not registry_uri:
        raise ConfigError("registry_uri is empty; pass a directory or gs:// prefix for the model registry")
    if not model_name or not all(c.isalnum() or c in "-_" for c in model_name):
        raise ConfigError(f"model_name={model_name!r} must be non-empty letters, digits, '-' or '_'")
    try:
        open_registry(registry_uri, model_name)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    if registry_uri.startswith(VERTEX_SCHEME) and cls.hosted:
        raise ConfigError(
            f"registry_uri={registry_uri!r}: a {cls.name} model lives at its provider, not in Vertex Model "
            "Registry; record it in the file registry (a directory or gs:// prefix)"
        )
    if task == "chat":
        parsed = chat_eval.chat_thresholds(thresholds)
    else:
        try:
            parsed = Thresholds.from_dict(dict(thresholds))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"thresholds={dict(thresholds)!r} is invalid: {exc}") from exc
    judge_spec = chat_eval.check_judge(judge, task)
    chat_eval.resolve_rubric(judge_rubric)
    try:
        check_task_env(task_env or {})
        if cls.hosted:
            check_credentials(cls.name, task_env or {})
        if judge_spec is not None and judge_spec.provider_class().hosted:
            check_credentials(judge_spec.provider, task_env or {})
    except (ValueError, MissingSecret) as exc:
        raise ConfigError(str(exc)) from exc
    if cls.image == "gpu" and gpu:
        from tuneloop.gpu import GpuSettingsError, check_gpu_settings

        try:
            check_gpu_settings(**gpu)
        except GpuSettingsError as exc:
            raise ConfigError(str(exc)) from exc
    if deploy and (deploy.get("endpoint") or deploy.get("options")):
        from tuneloop.deploy import check_deploy_settings, served_providers

        try:
            check_deploy_settings(deploy.get("endpoint") or "", deploy.get("options") or {})
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        if not cls.serving:
            raise ConfigError(
                f"deploy_endpoint={deploy['endpoint']!r}: {cls.name} models are served by their provider, not a "
                f"Vertex endpoint; the deploy step serves {served_providers()}: leave deploy_endpoint empty"
            )
    from tuneloop.warehouse.extract_query import check_extract_query

    check_extract_query(extract_query, query_params, task=task)  # QueryRefused is a ConfigError
    from tuneloop.taxonomy import check as check_taxonomy

    check_taxonomy(taxonomy)  # TaxonomyError is a ConfigError
    return {
        "provider": cls.name,
        "image": cls.image,
        "hosted": cls.hosted,
        "hyperparameters": changed_fields(config),
        "thresholds": parsed.to_dict(),
        "eval_options": changed_fields(eval_policy(eval_options)),
        "task": task,
        "judge": judge_spec.label if judge_spec else "",
        "max_attempts": max_attempts,
    }


# -- 1. extract ------------------------------------------------------------------------------


def extract(
    *,
    warehouse_uri: str,
    table: str,
    dataset_root: str,
    examples_path: str,
    quarantine_path: str,
    max_rows: int = 0,
    settle_seconds: float = 0.0,
    extract_query: str = "",
    query_params: Mapping[str, Any] | None = None,
    taxonomy: str = "",
) -> dict[str, Any]:
    """Read rows newer than the published watermark; write valid examples (Parquet) and the quarantine.

    With a ``taxonomy`` file, labelled rows whose label it does not hold move to the quarantine, each naming the
    closest valid label (:func:`tuneloop.taxonomy.quarantine_unknown`).

    Rows that landed in the last ``settle_seconds`` are left for the next run (streaming inserts).
    Streams: the rows are read, validated and written a batch at a time (bounded memory).
    ``extract_query`` ("" = the interaction table) names a packaged query or a ``.sql`` file, checked
    before it runs and run with ``query_params`` (:mod:`tuneloop.warehouse.extract_query`).
    """
    from tuneloop.warehouse import extract_to_files
    from tuneloop.warehouse.extract_query import query_extract_to_files, resolve

    state = datasets.RootState.read(dataset_root)
    query = resolve(extract_query, query_params)
    if query is None:
        result = extract_to_files(
            warehouse_uri, table, state.watermark, examples_path, quarantine_path, max_rows=max_rows or None,
            settle_seconds=settle_seconds,
        )
    else:
        result = query_extract_to_files(
            warehouse_uri, query, None, state.watermark, examples_path, quarantine_path, table=table,
            max_rows=max_rows or None, settle_seconds=settle_seconds,
        )
    from tuneloop.taxonomy import quarantine_unknown

    off_taxonomy = quarantine_unknown(examples_path, quarantine_path, taxonomy)  # the one taxonomy check at export
    return {
        "rows_read": result.rows_read,
        "new_examples": result.examples - off_taxonomy,
        "quarantined": result.quarantined + off_taxonomy,
        "watermark_from": result.watermark_from or "",
        "watermark_to": result.watermark_to or "",
    }


# -- 2. dataset ------------------------------------------------------------------------------


def prepare_dataset(
    *,
    examples_path: str,
    quarantine_path: str,
    dataset_root: str,
    work_dir: str,
    watermark: str,
    provider: str = "",
    formats: Sequence[str] = (),
    min_new_examples: int = datasets.DEFAULT_MIN_NEW_EXAMPLES,
    min_examples: int = 10,
    system_prompt: str = "",
    base_model: str = "",
    task: str = "classification",
    taxonomy: str = "",
) -> dict[str, Any]:
    """Gate on new examples, merge with the last published dataset, render, publish.

    With a ``taxonomy`` file, its labels and their descriptions are added to the rendered system turn
    (:func:`tuneloop.taxonomy.system_prompt`): what the tuners train on.

    ``min_new_examples`` counts distinct ids the last published dataset does not hold (an example
    loaded twice, or already published, is not new). The merge runs on disk and everything after it
    streams, so memory does not grow with the dataset (see :func:`datasets.build_dataset_files`).

    ``task`` is recorded in the manifest; examples that do not fit it (no labels for classification,
    labels for chat) are refused before anything is published (the watermark does not move).

    Returns ``status`` "ready" (with ``dataset_uri``) or "skipped" (with the reason); too few rows
    surviving validation raises instead: that is a failure, not a skip.
    """
    from tuneloop.chat_eval import check_task
    from tuneloop.merge import Merge
    from tuneloop.providers import formats_of
    from tuneloop.taxonomy import system_prompt as taxonomy_system_prompt

    task = check_task(task)
    with open(quarantine_path, "rb") as fh:
        quarantined = sum(1 for line in fh if line.strip())
    state = datasets.RootState.read(dataset_root)
    previous = datasets.dataset_uri(dataset_root, state.latest) if state.latest else None
    if previous is not None and storage.read(storage.join(previous, datasets.MANIFEST)) is None:
        raise storage.StorageError(
            f"{dataset_root}/state.json names dataset {state.latest} but {previous} has no "
            f"{datasets.MANIFEST}; restore it or remove 'latest' from state.json to start a new history"
        )
    with Merge(examples_path, datasets.canonical_files(previous) if previous else ()) as merge:
        n_new, new_ids = merge.new_rows(), merge.new_ids()
        if new_ids < min_new_examples:
            return {
                "status": "skipped",
                "reason": (
                    f"{new_ids} new examples since watermark {state.watermark or '(start)'} "
                    f"({n_new} read; the others were already in the dataset or repeated); "
                    f"min_new_examples={min_new_examples}: not enough new data to retrain"
                ),
                "dataset_uri": "",
                "new_examples": n_new,
                "new_ids": new_ids,
                "quarantined": quarantined,
            }
        wanted = list(dict.fromkeys([*formats, *(formats_of(provider) if provider else [])]))
        manifest = datasets.build_dataset_files(
            examples_path,
            work_dir,
            previous_uri=previous,
            previous_hash=state.latest,
            formats=[f for f in wanted if f],
            min_examples=min_examples,
            system_prompt=taxonomy_system_prompt(system_prompt, taxonomy) or None,
            model=base_model or None,
            watermark=watermark or state.watermark,
            quarantine_path=quarantine_path,
            merge=merge,
            task=task,
        )
    _check_examples_fit(manifest, task)
    uri = datasets.publish(work_dir, dataset_root, expected=state)
    return {
        "status": "ready",
        "reason": (
            f"{new_ids} new examples (min {min_new_examples}; {n_new} read); published {manifest['total']} examples"
        ),
        "dataset_uri": uri,
        "dataset_hash": manifest["dataset_hash"],
        "counts": manifest["counts"],
        "new_examples": n_new,
        "new_ids": new_ids,
        "quarantined": quarantined,
    }


def _check_examples_fit(manifest: Mapping[str, Any], task: str) -> None:
    """Refuse to publish a dataset whose examples cannot serve ``task`` (nothing is published)."""
    labels = manifest.get("labels") or []
    if task == "classification" and not labels:
        raise ValueError(
            f"task='classification' but none of the {manifest.get('total')} examples has a label (they are "
            "conversations whose target is the last assistant turn); pass task='chat', or extract labelled rows"
        )
    if task == "chat" and labels:
        raise ValueError(
            f"task='chat' but the examples carry labels ({len(labels)}, e.g. {labels[:3]}); pass "
            "task='classification', or extract conversations without labels"
        )


# -- 3. tune ---------------------------------------------------------------------------------


def tune(
    *,
    provider: str,
    dataset_uri: str,
    base_model: str,
    hyperparameters: Mapping[str, Any],
    model_dir: str,
    job_record_path: str,
    task_env: Mapping[str, Any] | None = None,
    task: str = "classification",
) -> dict[str, Any]:
    """Run (or resume) the provider's tuning job; the model artifact lands in ``model_dir``.

    ``hyperparameters`` are the first task's parsed config (a budget from the pipeline's
    ``budget_usd`` is already in it); they are parsed into the provider's config once more here, which
    turns KFP's floats back into ints. ``task_env`` is applied to this process's environment first
    (see :func:`tuneloop.secrets.apply_task_env`). A dataset built for another ``task`` is refused.
    """
    from tuneloop.chat_eval import check_dataset_task, check_provider_task, check_task
    from tuneloop.providers.base import TuneRequest
    from tuneloop.providers.registry import resolve
    from tuneloop.secrets import apply_task_env

    apply_task_env(task_env)
    cls, hp = resolve(provider, hyperparameters)
    task = check_task(task)
    check_provider_task(cls, task)
    config = cls.parse_config(hp)
    ds = datasets.load_dataset(dataset_uri)
    check_dataset_task(ds, task, step="tune")
    prov = cls(output_dir=model_dir)
    request = TuneRequest(
        train=ds.splits["train"],
        validation=ds.splits["validation"],
        dataset_hash=ds.hash,
        base_model=base_model,
        hyperparameters=hp,
        files={s: ds.format_file(fmt, s) for fmt in ds.manifest.get("formats", {}) for s in ex.SPLITS},
        labels=ds.labels,
        output_dir=model_dir,
        config=config,
    )
    result, retries = run_job_with_retries(prov, request, record_path=job_record_path)
    job = json.loads(Path(job_record_path).read_text()) if Path(job_record_path).is_file() else {}
    card = {
        **result.to_dict(),
        "retries": retries,
        "preflight": (job.get("detail") or {}).get("preflight"),  # None when an existing job was adopted
        "dataset_uri": dataset_uri,
        "train_example_ids": [e.id for e in ds.splits["train"]],
        "task": task,
    }
    Path(model_dir).mkdir(parents=True, exist_ok=True)
    (Path(model_dir) / RESULT_CARD).write_text(json.dumps(card, indent=2, sort_keys=True))
    return {"model_ref": result.model_ref, "job_id": result.job_id, "dataset_hash": ds.hash}


RETRY_KEY = "-retry"


def run_job_with_retries(prov, request, *, record_path: str, retries: int | None = None, log=print):
    """:func:`~tuneloop.providers.base.run_job`, resubmitting a job that ended failed on the provider's side.

    A :class:`~tuneloop.providers.base.ProviderError` from the job is retried (up to
    :data:`tuneloop.attempts.MAX_JOB_RETRIES` times) only when the provider, asked by the job's key
    (``resume``), has no live or succeeded job under it: a job that is still running (a deadline passed,
    the status could not be read) is never submitted a second time, and that error is raised. Each
    retry is a new job with a distinct key (``<key>-retry<n>``); a task that resumes reads the retry it
    was on from its job record, so it adopts that job instead of starting over. Preflight refusals and
    bad hyperparameters are not retried.

    Returns:
        The :class:`~tuneloop.providers.base.TuneResult` and the retries made (``retry``, ``failed_key``,
        ``failed_job_id``, ``error``, ``new_key``), which the result card keeps.
    """
    from tuneloop.attempts import MAX_JOB_RETRIES
    from tuneloop.providers.base import PreflightError, ProviderError, job_key, run_job

    limit = MAX_JOB_RETRIES if retries is None else retries
    base = job_key(request.dataset_hash, prov.name, request.base_model, prov.config(request))
    n = 0
    record = Path(record_path)
    if record.is_file() and record.stat().st_size:
        key = str(json.loads(record.read_text()).get("key") or "")
        if key.startswith(base + RETRY_KEY) and key[len(base + RETRY_KEY):].isdigit():
            n = int(key[len(base + RETRY_KEY):])  # this task was on retry n: resume it
    made: list[dict[str, Any]] = []
    while True:
        suffix = f"{RETRY_KEY}{n}" if n else ""
        try:
            return run_job(prov, request, record_path=record_path, key_suffix=suffix, log=log), made
        except PreflightError:
            raise
        except ProviderError as exc:
            key = base + suffix
            failed = json.loads(record.read_text()) if record.is_file() and record.stat().st_size else {}
            # Retried only when a job was submitted under this key (a refused submit would be refused
            # again) and the provider has no live or succeeded job under it (never a second live job).
            if n >= limit or failed.get("key") != key or prov.resume(key) is not None:
                raise
            n += 1
            made.append({"retry": n, "failed_key": key, "failed_job_id": failed.get("job_id"),
                         "error": str(exc)[:500], "new_key": f"{base}{RETRY_KEY}{n}"})
            log(f"[{prov.name}] job {failed.get('job_id')} failed ({exc}); retry {n}/{limit} as key {base}{RETRY_KEY}{n}")


# -- 4. evaluate -----------------------------------------------------------------------------


def eval_policy(eval_options: Mapping[str, Any] | None):
    """``eval_options`` (how evaluation asks a hosted model) parsed into a PredictPolicy.

    Raises:
        ConfigError: an unknown key (with the closest valid one) or a bad value, named.
    """
    from tuneloop.config import from_mapping
    from tuneloop.providers.hosted import PredictPolicy

    return from_mapping(PredictPolicy, eval_options, what="eval_options")


def _predict_labels(provider_name: str, model_ref: str, rows: Sequence[ex.Example], labels: Sequence[str],
                    policy):
    from tuneloop.evaluation import parse_label
    from tuneloop.providers.registry import provider_class
    from tuneloop.reports.evaluation import predict_facts

    cls = provider_class(provider_name)
    prov = cls(predict=policy) if cls.hosted else cls()
    answers = prov.predict(model_ref, rows)
    return [parse_label(a, labels) for a in answers], answers, predict_facts(prov)


def evaluate(
    *,
    provider: str,
    model_dir: str,
    dataset_uri: str,
    registry_uri: str,
    model_name: str,
    thresholds: Mapping[str, Any],
    blessing_path: str,
    task_env: Mapping[str, Any] | None = None,
    eval_options: Mapping[str, Any] | None = None,
    report_path: str = "",
    task: str = "classification",
    judge: Any = "",
    judge_rubric: str = "",
    taxonomy: str = "",
) -> dict[str, Any]:
    """Candidate and current champion answer the same eval split; metrics, paired test, blessing.

    With a ``taxonomy`` file, a classification's metrics also roll the labels up to their domains
    (``domain_accuracy.<domain>``, ``domain_f1.<domain>``, ``domain_macro_f1``, ``domains``:
    :func:`tuneloop.taxonomy.domain_metrics`), for the candidate and the champion alike, and both are asked
    with the taxonomy's labels and descriptions as the system turn (:func:`tuneloop.taxonomy.prompt_rows`).

    The blessing record also carries what the report shows (the dataset's extract and quarantine
    counts, cost and requests); with ``report_path`` the HTML report is written there
    (:func:`tuneloop.reports.render_evaluation`, a pure function of the record).

    ``task_env`` is applied to this process's environment first (the providers' credentials).
    ``eval_options`` tell a hosted model's evaluation how to ask it (``concurrency``, ``max_requests``
    per model, ``max_output_tokens``, ``retry``); the other providers answer locally and ignore them.

    ``task="chat"`` scores replies instead of labels (:func:`tuneloop.chat_eval.evaluate_chat`: chrF,
    ROUGE-L and the ``judge`` with ``judge_rubric``); a dataset built for another task is refused.
    """
    from tuneloop import chat_eval
    from tuneloop.evaluation import Thresholds, compute_metrics, decide, mcnemar
    from tuneloop.registry import model_ref_of, open_registry
    from tuneloop.secrets import apply_task_env
    from tuneloop.taxonomy import load as load_taxonomy
    from tuneloop.taxonomy import prompt_rows, with_domain_metrics

    apply_task_env(task_env)
    task = chat_eval.check_task(task)
    ds = datasets.load_dataset(dataset_uri, splits=("eval",))
    chat_eval.check_dataset_task(ds, task, step="evaluate")
    rows = ds.splits["eval"]
    if not rows:
        raise ValueError(
            f"dataset {dataset_uri} has an empty eval split; add data or change the split fractions"
        )
    if task == "chat":
        return _evaluate_chat(provider=provider, model_dir=model_dir, ds=ds, registry_uri=registry_uri,
                              model_name=model_name, thresholds=thresholds, blessing_path=blessing_path,
                              eval_options=eval_options, report_path=report_path, judge=judge,
                              judge_rubric=judge_rubric)
    truth = [e.target for e in rows]
    card = json.loads((Path(model_dir) / RESULT_CARD).read_text())
    labels = sorted(set(ds.labels) | {t for t in truth if t})
    policy = eval_policy(eval_options)
    tax = load_taxonomy(taxonomy)
    asked = prompt_rows(rows, tax)  # with a taxonomy: its labels and descriptions as the system turn
    cand_pred, cand_raw, cand_calls = _predict_labels(provider, card["model_ref"], asked, labels, policy)
    cand_metrics = with_domain_metrics(compute_metrics(truth, cand_pred, labels), truth, cand_pred, tax)

    registry = open_registry(registry_uri, model_name)
    champion = registry.champion()
    champ_metrics = paired = champ_calls = None
    if champion is not None:
        champ_pred, _, champ_calls = _predict_labels(
            champion.provider, model_ref_of(champion), asked, labels, policy
        )
        champ_metrics = with_domain_metrics(compute_metrics(truth, champ_pred, labels), truth, champ_pred, tax)
        paired = mcnemar(truth, candidate=cand_pred, champion=champ_pred)
    blessing = decide(
        cand_metrics,
        champ_metrics,
        Thresholds.from_dict(dict(thresholds)),
        champion_version=champion.version if champion else None,
        paired=paired,
    )
    record = {
        **blessing.to_dict(),
        "provider": provider,
        "dataset_uri": dataset_uri,
        "dataset_hash": ds.hash,
        "eval_rows": len(rows),
        "paired_test": paired,
        "unparseable_examples": [a for a, p in zip(cand_raw, cand_pred, strict=True) if p is None][:20],
        **report_facts(ds, card, provider, {"candidate": cand_calls, "champion": champ_calls}),
        "model_name": model_name,
        "task": "classification",
    }
    _write_blessing(record, blessing_path, report_path)
    return {**record, "scalar_metrics": scalar_metrics(cand_metrics, champ_metrics)}


def _write_blessing(record: Mapping[str, Any], blessing_path: str, report_path: str) -> None:
    Path(blessing_path).parent.mkdir(parents=True, exist_ok=True)
    Path(blessing_path).write_text(json.dumps(record, indent=2, sort_keys=True))
    if report_path:
        from tuneloop.reports import write_evaluation_report

        write_evaluation_report(record, report_path)


def _evaluate_chat(*, provider, model_dir, ds, registry_uri, model_name, thresholds, blessing_path, eval_options,
                   report_path, judge, judge_rubric) -> dict[str, Any]:
    """The chat branch of :func:`evaluate`: replies scored by chrF/ROUGE-L and the judge; same record shape."""
    from tuneloop.chat_eval import chat_policy, evaluate_chat
    from tuneloop.registry import open_registry

    card = json.loads((Path(model_dir) / RESULT_CARD).read_text())
    champion = open_registry(registry_uri, model_name).champion()
    result = evaluate_chat(
        ds.splits["eval"], provider=provider, model_ref=card["model_ref"], champion=champion,
        thresholds=thresholds, policy=chat_policy(eval_policy(eval_options), eval_options), judge=judge,
        rubric=judge_rubric,
    )
    calls = result.pop("predict")
    record = {
        **result,
        "provider": provider,
        "dataset_uri": ds.uri,
        "dataset_hash": ds.hash,
        **report_facts(ds, card, provider, {k: v for k, v in calls.items() if k != "judge"}),
        "model_name": model_name,
    }
    if calls.get("judge"):
        record["spend"]["predict"]["judge"] = dict(calls["judge"])
    _write_blessing(record, blessing_path, report_path)
    return {**record, "scalar_metrics": scalar_metrics(record["candidate_metrics"], record["champion_metrics"])}


def report_facts(ds, card: Mapping[str, Any], provider: str, calls: Mapping[str, Any]) -> dict[str, Any]:
    """What the blessing record carries for the report: the dataset's counts and the run's spend."""
    from tuneloop.providers.registry import provider_class
    from tuneloop.reports.evaluation import dataset_facts, spend_facts

    return {
        "dataset": dataset_facts(ds.uri, ds.manifest),
        "spend": spend_facts(card, hosted=provider_class(provider).hosted, predict=calls),
    }


def scalar_metrics(candidate: Mapping[str, Any], champion: Mapping[str, Any] | None) -> dict[str, float]:
    """The numbers a KFP ``Metrics`` artifact shows: the candidate's, and the champion's as ``champion_*``."""
    out: dict[str, float] = {}
    for prefix, values in (("", candidate), ("champion_", champion or {})):
        for k, v in values.items():
            if isinstance(v, int | float) and not isinstance(v, bool):
                out[prefix + k] = float(v)
    return out


# -- 5. promote ------------------------------------------------------------------------------


def write_summary(summary: Mapping[str, Any], summary_path: str, reports_uri: str, run_name: str) -> str:
    """Write summary.json to the task's artifact and, if set, to ``<reports_uri>/<run_name>/``."""
    data = json.dumps(summary, indent=2, sort_keys=True) + "\n"
    Path(summary_path).parent.mkdir(parents=True, exist_ok=True)
    Path(summary_path).write_text(data)
    if reports_uri:
        dest = storage.join(reports_uri, run_name or "run", SUMMARY)
        storage.write(dest, data.encode(), if_generation="*")
        return dest
    return summary_path


def promote(
    *,
    blessing_path: str,
    model_dir: str,
    registry_uri: str,
    model_name: str,
    run_name: str,
    reports_uri: str,
    summary_path: str,
    attempts: Sequence[Mapping[str, Any]] = (),
    decisions: Sequence[Mapping[str, Any]] = (),
    decisions_path: str = "",
) -> dict[str, Any]:
    """Register the candidate and move ``champion`` by compare-and-set when blessed; always summarise.

    ``attempts`` and ``decisions`` (from :func:`plan_attempt`: every attempt of the run, and the decision
    log) go into the summary (``attempts``, ``decisions``) and the report; the decisions are also written
    as ``decisions.jsonl`` to ``decisions_path`` and next to the summary under ``reports_uri``.
    """
    from tuneloop import decisions as dlog
    from tuneloop.registry import ChampionMoved, open_registry

    blessing = json.loads(Path(blessing_path).read_text())
    card = json.loads((Path(model_dir) / RESULT_CARD).read_text())
    records = [dlog.Decision.from_dict(d) for d in decisions]  # refuses a malformed record before any move
    attempts = [dict(a) for a in attempts]
    # The published report is the evaluate task's page, byte for byte, unless the run has more to tell: more
    # than one attempt, a retried job or decisions made upstream (label, select-model) add their sections.
    if len(attempts) > 1 or any(r.stage != "attempt" for r in records):
        blessing = {**blessing, "attempts": attempts, "decisions": [r.to_dict() for r in records]}
    report = render_report(blessing) if reports_uri else None  # before the registry moves: it cannot fail after
    registry = open_registry(registry_uri, model_name)
    # A model that lives in files is copied into the version (the task's folder goes with its run): only
    # the folder predict reads (oss-lora's final model, not its checkpoints). Remote models stay remote.
    local_model = Path(card["model_ref"]).is_dir()
    summary: dict[str, Any] = {
        "run": run_name,
        "provider": blessing["provider"],
        "dataset_uri": blessing["dataset_uri"],
        "candidate_metrics": blessing["candidate_metrics"],
        "champion_metrics": blessing.get("champion_metrics"),
        "champion_evaluated": blessing.get("champion_version"),
        "decision": {"blessed": blessing["blessed"], "reason": blessing["reason"]},
        "promoted_version": None,
        "task": blessing.get("task", "classification"),
        "attempts": attempts,
        "decisions": [r.to_dict() for r in records],
    }
    if blessing.get("judge"):
        summary["judge"] = {k: v for k, v in blessing["judge"].items() if k != "rubric"}
    conflict: Exception | None = None
    if blessing["blessed"]:
        record = registry.register(
            provider=blessing["provider"],
            model_ref=card["model_ref"],
            model_dir=card["model_ref"] if local_model else None,
            metrics=blessing["candidate_metrics"],
            data_hash=blessing["dataset_hash"],
            example_ids=card.get("train_example_ids", []),
            config={"base_model": card.get("base_model"), "job_id": card.get("job_id"),
                    "task": blessing.get("task", "classification")},
            blessing=blessing,
            lineage={"dataset_uri": blessing["dataset_uri"], "run": run_name},
        )
        summary["registered_version"] = record.version
        try:
            registry.set_champion(
                record.version, expected=blessing.get("champion_version"), reason=blessing["reason"]
            )
            summary["promoted_version"] = record.version
        except ChampionMoved as exc:
            conflict = exc
            summary["decision"] = {"blessed": True, "reason": f"not promoted: {exc}"}
    champion = registry.champion()
    summary["champion_after"] = champion.version if champion else None
    if report is not None:
        from tuneloop.reports import publish

        summary["report_uri"] = publish(report, reports_uri, run_name)
    if decisions_path:
        Path(decisions_path).parent.mkdir(parents=True, exist_ok=True)
        Path(decisions_path).write_text("")
        dlog.append(decisions_path, records)
    if reports_uri and records:
        data = "".join(json.dumps(r.to_dict(), sort_keys=True, ensure_ascii=False, default=str) + "\n" for r in records)
        summary["decisions_uri"] = storage.join(reports_uri, run_name or "run", dlog.DECISIONS)
        storage.write(summary["decisions_uri"], data.encode(), if_generation="*")
    summary["summary_uri"] = write_summary(summary, summary_path, reports_uri, run_name)
    if conflict is not None:
        raise conflict
    return summary


def plan_attempt(
    *,
    provider: str,
    attempt: int,
    max_attempts: Any,
    hyperparameters: Mapping[str, Any],
    blessing_path: str,
    model_dir: str,
    history: Sequence[Mapping[str, Any]] = (),
    decisions: Sequence[Mapping[str, Any]] = (),
    decisions_path: str = "",
) -> dict[str, Any]:
    """After an attempt's evaluation: stop or go, and the next hyperparameters (:func:`tuneloop.attempts.plan_next`).

    Reads the attempt's blessing and tune result card; with ``decisions_path`` the decision log so far is
    written there as JSON Lines (:mod:`tuneloop.decisions`).
    """
    from tuneloop import decisions as dlog
    from tuneloop.attempts import plan_next
    from tuneloop.providers.registry import resolve

    cls, hp = resolve(provider, hyperparameters)
    blessing = json.loads(Path(blessing_path).read_text())
    card = json.loads((Path(model_dir) / RESULT_CARD).read_text())
    out = plan_next(provider_cls=cls, attempt=int(attempt), max_attempts=max_attempts, hyperparameters=hp,
                    blessing=blessing, card=card, history=history, decisions=decisions)
    if decisions_path:
        Path(decisions_path).parent.mkdir(parents=True, exist_ok=True)
        Path(decisions_path).write_text("")
        dlog.append(decisions_path, [dlog.Decision.from_dict(d) for d in out["decisions"]])
    return out


def render_report(blessing: Mapping[str, Any]) -> str:
    """The evaluation report for ``<reports_uri>/<run>/report.html``: the evaluate task's HTML artifact,
    byte for byte, rendered again from the same blessing record (:func:`tuneloop.reports.render_evaluation`
    is pure)."""
    from tuneloop.reports import render_evaluation

    return render_evaluation(blessing)


def record_skip(
    *,
    reason: str,
    provider: str,
    registry_uri: str,
    model_name: str,
    run_name: str,
    reports_uri: str,
    summary_path: str,
    stats: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A run that ends without training (not enough new data) is recorded, not failed."""
    from tuneloop.registry import open_registry

    champion = open_registry(registry_uri, model_name).champion() if registry_uri else None
    summary = {
        "run": run_name,
        "provider": provider,
        "skipped": True,
        "candidate_metrics": None,
        "champion_metrics": None,
        "decision": {"blessed": False, "reason": f"skipped: {reason}"},
        "promoted_version": None,
        "champion_after": champion.version if champion else None,
        "stats": dict(stats or {}),
    }
    summary["summary_uri"] = write_summary(summary, summary_path, reports_uri, run_name)
    return summary
