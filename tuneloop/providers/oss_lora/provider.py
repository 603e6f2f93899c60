"""The ``oss-lora`` provider: LoRA SFT of an open model as a local job (CPU here, GPU on Vertex).

A job is a run folder ``<output_dir>/<key>/`` (see trainer.py for its layout) with a ``job.json``
record. ``submit`` writes the record and returns; ``wait`` trains, continuing from the latest
checkpoint when the task was restarted: in-process on one GPU (or the CPU), or data-parallel in one
process per GPU when the task has several (distributed.py; ``world_size``); ``resume(key)`` adopts the run folder of an earlier
attempt (finished: its model is reused; unfinished: ``wait`` continues it). On Vertex the same code runs
inside the custom-job container, so a preempted or retried task picks up where it stopped.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tuneloop import storage
from tuneloop.examples import Example, utc_now
from tuneloop.providers.base import (
    JobHandle,
    PreflightError,
    PreflightReport,
    Provider,
    ProviderError,
    TuneRequest,
    TuneResult,
)
from tuneloop.providers.oss_lora import checkpoint as ckpt
from tuneloop.providers.oss_lora.config import LoraConfig

JOB_RECORD = "job.json"


def local_base_model(base_model: str) -> str:
    """A local folder holding ``base_model``: itself, or a cached mirror of a ``gs://`` folder.

    Raises:
        PreflightError: another remote scheme (hub ids need a snapshot folder: the GPU image runs offline).
    """
    if storage.is_gcs(base_model):
        try:
            return str(storage.download_dir(base_model))
        except storage.StorageError as exc:
            raise PreflightError(f"base_model: {base_model!r}: {exc}") from exc
    if "://" in base_model:
        raise PreflightError(
            f"base_model: {base_model!r} is not a gs:// folder or a local path; put the weights (config.json, "
            "tokenizer, safetensors) under a gs:// prefix or a local folder and pass that"
        )
    return base_model


def labels_of(request: TuneRequest) -> tuple[str, ...]:
    """The label set: the request's, else the sorted distinct targets of the training examples."""
    if request.labels:
        return tuple(request.labels)
    return tuple(sorted({ex.target for ex in request.train if ex.target is not None}))


class OssLoraProvider(Provider):
    """LoRA fine-tuning of open causal LMs (or encoders with a classification head) with peft.

    Args:
        output_dir: the folder runs live in (``<output_dir>/<key>/``); ``resume`` looks there.
            A request's own ``output_dir`` takes precedence for ``submit``.
        log: where progress lines go.
    """

    name = "oss-lora"
    format = "hf"
    extra = "lora"
    requires = ("torch", "transformers", "peft")
    image = "gpu"
    tasks = ("classification", "chat")
    serving = "llm"
    config_class = LoraConfig

    def __init__(self, output_dir: str | None = None, *, log: Callable[[str], None] = print):
        self.output_dir = output_dir
        self.log = log
        self._stops: dict[str, threading.Event] = {}
        self._predictors: dict[str, Any] = {}

    # -- helpers
    def _run_dir(self, key: str, output_dir: str | None = None) -> Path:
        root = output_dir or self.output_dir
        if not root:
            raise PreflightError(
                "output_dir: empty; give the TuneRequest an output_dir (or OssLoraProvider(output_dir=...)) "
                "for the run folder"
            )
        return Path(root) / key

    @staticmethod
    def _write_record(run_dir: Path, record: dict[str, Any]) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        tmp = run_dir / f".{JOB_RECORD}.tmp"
        tmp.write_text(json.dumps(record, indent=2, sort_keys=True))
        os.replace(tmp, run_dir / JOB_RECORD)

    @staticmethod
    def _read_record(run_dir: Path) -> dict[str, Any] | None:
        p = run_dir / JOB_RECORD
        return json.loads(p.read_text()) if p.is_file() else None

    # -- the interface
    def preflight(self, request: TuneRequest) -> PreflightReport:
        """Check config, base model folder, chat template and data before any training starts."""
        from transformers import AutoTokenizer

        from tuneloop.providers.oss_lora.data import TemplateError, encode_chat
        from tuneloop.providers.oss_lora.distributed import WorldSizeError, resolve_world_size

        config = self.config(request)
        try:
            resolve_world_size(config)
        except WorldSizeError as exc:
            raise PreflightError(str(exc)) from exc
        base = local_base_model(request.base_model)
        if not (Path(base) / "config.json").is_file():
            raise PreflightError(f"base_model: {base!r} has no config.json; pass a folder with the model files")
        if not request.train:
            raise PreflightError("train: no examples; nothing to tune on")
        tokenizer = AutoTokenizer.from_pretrained(base)
        notes: list[str] = []
        if config.task == "sequence-classification":
            labels = labels_of(request)
            if len(labels) < 2:
                raise PreflightError(f"labels: {list(labels)}; sequence classification needs >= 2 labels")
            bad = [ex.id for ex in request.train if ex.target not in labels]
            if bad:
                raise PreflightError(f"train: {len(bad)} examples have a label outside {list(labels)}, e.g. {bad[0]}")
            lengths = [len(tokenizer(ex.prompt_text)["input_ids"]) for ex in request.train]
        else:
            if not getattr(tokenizer, "chat_template", None):
                raise PreflightError(f"base_model: {base} has no chat template; add one to its tokenizer_config.json")
            try:
                enc = [encode_chat(tokenizer, ex, config.max_seq_len) for ex in request.train]
            except TemplateError as exc:
                raise PreflightError(f"oss-lora: {exc}") from exc
            lengths = [len(e) for e in enc]
            unsupervised = sum(1 for e in enc if e.supervised == 0)
            if unsupervised == len(enc):
                raise PreflightError(
                    "train: no example has an assistant turn with weight > 0 inside max_seq_len; nothing to learn"
                )
            if unsupervised:
                notes.append(f"{unsupervised} examples have no supervised token (weight 0 or truncated)")
            truncated = sum(1 for e in enc if e.truncated)
            if truncated:
                dropped = sum(1 for e in enc if e.dropped_turns)
                notes.append(
                    f"{truncated} examples are longer than max_seq_len={config.max_seq_len}: {dropped} keep their "
                    f"system turn and latest turns (oldest exchanges dropped), {truncated - dropped} are cut"
                )
        per_epoch = sum(lengths)
        if config.max_steps:
            rows_per_epoch = max(1, per_epoch / config.max_seq_len) if config.packing else len(lengths)
            epochs = config.max_steps * config.batch_size * config.grad_accum / rows_per_epoch
        else:
            epochs = config.epochs
        return PreflightReport(self.name, base, len(request.train), int(per_epoch * epochs), None, tuple(notes))

    def submit(self, request: TuneRequest, key: str) -> JobHandle:
        """Record the job in ``<output_dir>/<key>/job.json``; training runs in :meth:`wait`."""
        run_dir = self._run_dir(key, request.output_dir)
        self._write_record(run_dir, {"key": key, "state": "submitted", "run_dir": str(run_dir),
                                     "base_model": request.base_model, "dataset_hash": request.dataset_hash,
                                     "submitted_at": utc_now()})
        return JobHandle(self.name, key, f"local/{key}", "submitted", {"run_dir": str(run_dir)})

    def resume(self, key: str) -> JobHandle | None:
        """The run of ``key`` in ``output_dir``: succeeded, or unfinished (``wait`` continues it)."""
        if not self.output_dir:
            return None
        run_dir = self._run_dir(key)
        record = self._read_record(run_dir)
        if record is None or record.get("key") != key:
            return None
        state = record.get("state", "submitted")
        if state == "succeeded" and not (run_dir / ckpt.MODEL_DIR / ckpt.MANIFEST).is_file():
            state = "running"  # the model folder went missing: train again from the last checkpoint
        if state in ("failed", "cancelled"):
            state = "running"  # an earlier attempt stopped; continue from its checkpoint
        last = ckpt.latest_checkpoint(run_dir)
        detail = {"run_dir": str(run_dir), "checkpoint": str(last) if last else None}
        return JobHandle(self.name, key, f"local/{key}", state, detail)

    def wait(self, handle: JobHandle, request: TuneRequest, *, deadline_s: float) -> TuneResult:
        """Train (or continue training) to the end and return the model; a finished run is reused."""
        from tuneloop.providers.oss_lora.distributed import resolve_world_size, train_parallel
        from tuneloop.providers.oss_lora.trainer import TrainingStopped, train

        run_dir = Path(handle.detail.get("run_dir") or self._run_dir(handle.key, request.output_dir))
        record = self._read_record(run_dir) or {"key": handle.key, "run_dir": str(run_dir)}
        model_dir = run_dir / ckpt.MODEL_DIR
        if record.get("state") == "succeeded" and (model_dir / ckpt.MANIFEST).is_file():
            return self._result(handle, request, model_dir, resumed=True)
        config = self.config(request)
        stop = self._stops.setdefault(handle.key, threading.Event())
        stop.clear()
        timer = threading.Timer(deadline_s, stop.set)
        timer.daemon = True
        timer.start()
        world = resolve_world_size(config)
        self._write_record(run_dir, {**record, "state": "running", "started_at": utc_now(), "world_size": world})
        labels = labels_of(request) if config.task == "sequence-classification" else ()
        try:
            args = (config, request.train, request.validation)
            kw = {"base_model": local_base_model(request.base_model), "run_dir": run_dir, "labels": labels,
                  "data_hash": request.dataset_hash, "log": self.log, "stop": stop}
            result = train_parallel(*args, world_size=world, **kw) if world > 1 else train(*args, **kw)
            if storage.is_gcs(request.base_model):  # the model folder names the base by its URI, not the mirror
                manifest = ckpt.read_manifest(result.model_dir)
                ckpt.write_manifest(result.model_dir, {**manifest, "base_model": request.base_model})
        except TrainingStopped as exc:
            late = timer.finished.is_set()  # the deadline fired (a cancel sets the event, not the timer)
            why = f"the deadline of {deadline_s:.0f}s passed" if late else "it was cancelled"
            self._write_record(run_dir, {**record, "state": "failed" if late else "cancelled", "error": str(exc)})
            raise ProviderError(f"oss-lora job {handle.job_id} did not finish, {why}: {exc}") from exc
        except Exception as exc:
            self._write_record(run_dir, {**record, "state": "failed", "error": f"{type(exc).__name__}: {exc}"})
            raise
        finally:
            timer.cancel()
        self._write_record(run_dir, {**record, "state": "succeeded", "finished_at": utc_now(),
                                     "resumed_from": result.resumed_from, "world_size": world})
        return self._result(handle, request, Path(result.model_dir), resumed=result.resumed_from is not None)

    def _result(self, handle: JobHandle, request: TuneRequest, model_dir: Path, *, resumed: bool) -> TuneResult:
        manifest = ckpt.read_manifest(model_dir)
        metrics = {k: float(v) for k, v in manifest.get("metrics", {}).items()}
        detail = {"run_dir": str(model_dir.parent), "adapter": str(model_dir), "resumed": resumed,
                  "merged": str(model_dir / ckpt.MERGED_DIR) if manifest.get("merged") else None,
                  "task": manifest["task"], "labels": manifest.get("labels", [])}
        tokens = int(metrics.get("trained_tokens", 0)) or None
        return TuneResult(self.name, handle.job_id, str(model_dir), request.base_model, request.dataset_hash,
                          tokens, metrics, detail)

    def cancel(self, handle: JobHandle) -> None:
        """Ask an in-process run to stop after its current step (a checkpoint is written)."""
        self._stops.setdefault(handle.key, threading.Event()).set()
        run_dir = Path(handle.detail.get("run_dir", "")) if handle.detail.get("run_dir") else None
        if run_dir is not None:
            record = self._read_record(run_dir)
            if record and record.get("state") in ("submitted", "running"):
                self._write_record(run_dir, {**record, "state": "cancelled", "cancelled_at": utc_now()})

    def _predictor(self, model_ref: str):
        from tuneloop.providers.oss_lora.predict import load_predictor

        if model_ref not in self._predictors:
            self._predictors[model_ref] = load_predictor(model_ref)
        return self._predictors[model_ref]

    def predict(self, model_ref: str, examples: Sequence[Example]) -> list[str]:
        """Greedy answers of the model folder ``model_ref``, one per example: its label (classification),
        or its chat reply to the conversation up to the last assistant turn (just the reply text)."""
        return self._predictor(model_ref).predict(examples)

    def predict_proba(self, model_ref: str, examples: Sequence[Example]) -> list[dict[str, float]]:
        """Class probabilities ``{label: p}`` of a sequence-classification model folder, per example.

        Raises:
            ValueError: a causal-lm model (it answers with text; see :meth:`predict`).
        """
        return self._predictor(model_ref).probabilities(examples)

    def task_of(self, model_ref: str) -> str:
        """``causal-lm`` or ``sequence-classification``: what the model folder ``model_ref`` was trained as."""
        return str(ckpt.read_manifest(model_ref)["task"])
