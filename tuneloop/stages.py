"""One function per pipeline step. Each component body calls exactly one of these.

Every function takes plain parameters and local paths (the component's artifact paths), does the
work through the engine modules, and returns a JSON-able dict that the component turns into outputs.
Nothing here imports kfp, so each step is testable and callable without a pipeline.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tuneloop import datasets, storage
from tuneloop import examples as ex
from tuneloop.config import ConfigError
from tuneloop.providers import HOSTED_PROVIDERS

SUMMARY = "summary.json"


def _hash_config(d: Mapping[str, Any]) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


# -- 0. parameters ---------------------------------------------------------------------------


def check_config(
    *,
    provider: str,
    branches: Sequence[str],
    registry_uri: str,
    model_name: str,
    thresholds: Mapping[str, Any],
    hyperparameters: Mapping[str, Any],
    task_env: Mapping[str, Any] | None = None,
    eval_options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Validate the run's parameters; raise ConfigError naming the parameter, the value and the fix."""
    from tuneloop.evaluation import Thresholds
    from tuneloop.providers import check_provider_name, get_provider

    try:
        provider = check_provider_name(provider)
    except ValueError:
        pass  # reported below against this pipeline's own branches
    if provider not in branches:
        raise ConfigError(
            f"provider={provider!r} is not one of this pipeline's providers {sorted(branches)}; "
            "pass one of them as the 'provider' parameter"
        )
    try:
        get_provider(provider)
    except (ValueError, ImportError) as exc:
        raise ConfigError(f"provider={provider!r} cannot run here: {exc}") from exc
    if not registry_uri:
        raise ConfigError("registry_uri is empty; pass a directory or gs:// prefix for the model registry")
    if not model_name or not all(c.isalnum() or c in "-_" for c in model_name):
        raise ConfigError(f"model_name={model_name!r} must be non-empty letters, digits, '-' or '_'")
    from tuneloop.registry import VERTEX_SCHEME, open_registry

    try:
        open_registry(registry_uri, model_name)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    if registry_uri.startswith(VERTEX_SCHEME) and provider in HOSTED_PROVIDERS:
        raise ConfigError(
            f"registry_uri={registry_uri!r}: a {provider} model lives at its provider, not in Vertex Model "
            "Registry; record it in the file registry (a directory or gs:// prefix)"
        )
    try:
        parsed = Thresholds.from_dict(dict(thresholds))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"thresholds={dict(thresholds)!r} is invalid: {exc}") from exc
    if not isinstance(hyperparameters, Mapping):
        raise ConfigError(f"hyperparameters must be an object, got {type(hyperparameters).__name__}")
    from tuneloop.secrets import check_task_env

    try:
        check_task_env(task_env or {})
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    eval_policy(eval_options)
    return {"provider": provider, "thresholds": parsed.to_dict(), "hyperparameters": dict(hyperparameters)}


# -- 1. extract ------------------------------------------------------------------------------


def extract(
    *,
    warehouse_uri: str,
    table: str,
    dataset_root: str,
    examples_path: str,
    quarantine_path: str,
    max_rows: int = 0,
) -> dict[str, Any]:
    """Read rows newer than the published watermark; write valid examples (Parquet) and the quarantine.

    Streams: the rows are read, validated and written a batch at a time (bounded memory).
    """
    from tuneloop.warehouse import extract_to_files

    state = datasets.RootState.read(dataset_root)
    result = extract_to_files(
        warehouse_uri, table, state.watermark, examples_path, quarantine_path, max_rows=max_rows or None
    )
    return {
        "rows_read": result.rows_read,
        "new_examples": result.examples,
        "quarantined": result.quarantined,
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
) -> dict[str, Any]:
    """Gate on new examples, merge with the last published dataset, render, publish.

    ``min_new_examples`` counts distinct ids the last published dataset does not hold (an example
    loaded twice, or already published, is not new). The merge runs on disk and everything after it
    streams, so memory does not grow with the dataset (see :func:`datasets.build_dataset_files`).

    Returns ``status`` "ready" (with ``dataset_uri``) or "skipped" (with the reason); too few rows
    surviving validation raises instead: that is a failure, not a skip.
    """
    from tuneloop.formats import format_for_provider
    from tuneloop.merge import Merge

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
        wanted = list(dict.fromkeys([*formats, *([format_for_provider(provider)] if provider else [])]))
        manifest = datasets.build_dataset_files(
            examples_path,
            work_dir,
            previous_uri=previous,
            previous_hash=state.latest,
            formats=[f for f in wanted if f],
            min_examples=min_examples,
            system_prompt=system_prompt or None,
            model=base_model or None,
            watermark=watermark or state.watermark,
            quarantine_path=quarantine_path,
            merge=merge,
        )
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


# -- 3. tune ---------------------------------------------------------------------------------


def tune(
    *,
    provider: str,
    dataset_uri: str,
    base_model: str,
    hyperparameters: Mapping[str, Any],
    model_dir: str,
    job_record_path: str,
    budget_usd: float = 0.0,
    task_env: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Run (or resume) the provider's tuning job; the model artifact lands in ``model_dir``.

    ``budget_usd`` (> 0) caps a hosted provider's training cost; it fills ``hyperparameters.budget_usd``
    when that is not set, and is refused for a provider that spends nothing remotely. ``task_env`` is
    applied to this process's environment first (see :func:`tuneloop.secrets.apply_task_env`).
    """
    from tuneloop.providers import get_provider
    from tuneloop.providers.base import TuneRequest, run_job
    from tuneloop.secrets import apply_task_env

    apply_task_env(task_env)
    hyperparameters = dict(hyperparameters)
    if budget_usd and budget_usd < 0:
        raise ConfigError(f"budget_usd={budget_usd} must be >= 0 (0 = no pipeline-level budget)")
    if budget_usd and "budget_usd" not in hyperparameters:
        if provider not in HOSTED_PROVIDERS:
            raise ConfigError(
                f"budget_usd={budget_usd} applies to the hosted providers {list(HOSTED_PROVIDERS)}; "
                f"{provider!r} runs on your own machines: leave budget_usd at 0"
            )
        hyperparameters["budget_usd"] = float(budget_usd)
    ds = datasets.load_dataset(dataset_uri)
    prov = get_provider(provider, output_dir=model_dir)
    request = TuneRequest(
        train=ds.splits["train"],
        validation=ds.splits["validation"],
        dataset_hash=ds.hash,
        base_model=base_model,
        hyperparameters=dict(hyperparameters),
        files={s: ds.format_file(fmt, s) for fmt in ds.manifest.get("formats", {}) for s in ex.SPLITS},
        labels=ds.labels,
        output_dir=model_dir,
    )
    result = run_job(prov, request, record_path=job_record_path)
    card = {
        **result.to_dict(),
        "dataset_uri": dataset_uri,
        "train_example_ids": [e.id for e in ds.splits["train"]],
    }
    Path(model_dir).mkdir(parents=True, exist_ok=True)
    (Path(model_dir) / "tuneloop-result.json").write_text(json.dumps(card, indent=2, sort_keys=True))
    return {"model_ref": result.model_ref, "job_id": result.job_id, "dataset_hash": ds.hash}


# -- 4. evaluate -----------------------------------------------------------------------------


def eval_policy(eval_options: Mapping[str, Any] | None) -> dict[str, Any]:
    """``eval_options`` (how evaluation asks a hosted model) checked, with KFP's float numbers as ints.

    Raises:
        ConfigError: an unknown key or a bad value, named.
    """
    from tuneloop.providers.hosted import PredictPolicy

    def plain(v: Any) -> Any:
        if isinstance(v, Mapping):
            return {k: plain(x) for k, x in v.items()}
        return int(v) if isinstance(v, float) and v.is_integer() else v

    opts = plain(dict(eval_options or {}))
    try:
        PredictPolicy.from_options(opts)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"eval_options={dict(eval_options or {})!r}: {exc}") from exc
    return opts


def _predict_labels(
    provider_name: str,
    model_ref: str,
    rows: Sequence[ex.Example],
    labels: Sequence[str],
    eval_options: Mapping[str, Any] | None = None,
):
    from tuneloop.evaluation import parse_label
    from tuneloop.providers import get_provider

    options = {"predict": eval_policy(eval_options)} if eval_options and provider_name in HOSTED_PROVIDERS else {}
    answers = get_provider(provider_name, **options).predict(model_ref, rows)
    return [parse_label(a, labels) for a in answers], answers


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
) -> dict[str, Any]:
    """Candidate and current champion answer the same eval split; metrics, paired test, blessing.

    ``task_env`` is applied to this process's environment first (the providers' credentials).
    ``eval_options`` tell a hosted model's evaluation how to ask it (``concurrency``, ``max_requests``
    per model, ``max_output_tokens``, ``retry``); the other providers answer locally and ignore them.
    """
    from tuneloop.evaluation import Thresholds, compute_metrics, decide, mcnemar
    from tuneloop.registry import model_ref_of, open_registry
    from tuneloop.secrets import apply_task_env

    apply_task_env(task_env)
    ds = datasets.load_dataset(dataset_uri, splits=("eval",))
    rows = ds.splits["eval"]
    if not rows:
        raise ValueError(
            f"dataset {dataset_uri} has an empty eval split; add data or change the split fractions"
        )
    truth = [e.target for e in rows]
    card = json.loads((Path(model_dir) / "tuneloop-result.json").read_text())
    labels = sorted(set(ds.labels) | {t for t in truth if t})
    cand_pred, cand_raw = _predict_labels(provider, card["model_ref"], rows, labels, eval_options)
    cand_metrics = compute_metrics(truth, cand_pred, labels)

    registry = open_registry(registry_uri, model_name)
    champion = registry.champion()
    champ_metrics = paired = None
    if champion is not None:
        champ_pred, _ = _predict_labels(champion.provider, model_ref_of(champion), rows, labels, eval_options)
        champ_metrics = compute_metrics(truth, champ_pred, labels)
        paired = mcnemar(truth, cand_pred, champ_pred)
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
    }
    Path(blessing_path).parent.mkdir(parents=True, exist_ok=True)
    Path(blessing_path).write_text(json.dumps(record, indent=2, sort_keys=True))
    return {**record, "scalar_metrics": scalar_metrics(cand_metrics, champ_metrics)}


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
) -> dict[str, Any]:
    """Register the candidate and move ``champion`` by compare-and-set when blessed; always summarise."""
    from tuneloop.registry import ChampionMoved, open_registry

    blessing = json.loads(Path(blessing_path).read_text())
    card = json.loads((Path(model_dir) / "tuneloop-result.json").read_text())
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
    }
    conflict: Exception | None = None
    if blessing["blessed"]:
        record = registry.register(
            provider=blessing["provider"],
            model_ref=card["model_ref"],
            model_dir=card["model_ref"] if local_model else None,
            metrics=blessing["candidate_metrics"],
            data_hash=blessing["dataset_hash"],
            example_ids=card.get("train_example_ids", []),
            config={"base_model": card.get("base_model"), "job_id": card.get("job_id")},
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
    summary["summary_uri"] = write_summary(summary, summary_path, reports_uri, run_name)
    if conflict is not None:
        raise conflict
    return summary


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


def copy_tree(src: str, dst: str) -> None:
    shutil.copytree(src, dst, dirs_exist_ok=True)
