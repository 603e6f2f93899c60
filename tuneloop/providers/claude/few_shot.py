"""``claude-few-shot``: a few-shot adapter on the Anthropic Messages API (which has no fine-tuning).

The "tuned" artifact is an instruction plus exemplars selected from the training split (stratified by
label, deterministic), written to the task's model directory as ``fewshot.json``; evaluation sends the
exemplars as prior turns and the eval prompt as the last one. No training job, no training bill.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tuneloop.config import check_number, setting
from tuneloop.examples import Example
from tuneloop.providers import hosted
from tuneloop.providers.base import (
    JobHandle,
    PreflightError,
    PreflightReport,
    ProviderError,
    TuneRequest,
    TuneResult,
)
from tuneloop.providers.claude.common import (
    FAMILY,
    FEWSHOT_FILE,
    FEWSHOT_SCHEMA,
    ClaudeFamily,
    read_fewshot,
    split_system,
)

ANTHROPIC_DEFAULT_MODEL = "claude-haiku-4-5"


@dataclass(frozen=True)
class FewShotConfig(hosted.HostedConfig):
    """Settings of the few-shot adapter (plus the shared hosted settings)."""

    exemplars_per_label: int = setting(4, help="exemplars taken per label from the training split (1..100)")
    max_exemplars: int = setting(40, help="most exemplars in the prompt (1..500)")
    instruction: str = setting("", help="the instruction (default: answer with exactly one of the labels)")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_number("exemplars_per_label", self.exemplars_per_label, 1, 100, integer=True)
        check_number("max_exemplars", self.max_exemplars, 1, 500, integer=True)
        if not isinstance(self.instruction, str):
            raise ValueError(f"instruction={self.instruction!r} must be a string")


def select_exemplars(train: Sequence[Example], *, per_label: int, limit: int) -> list[Example]:
    """Exemplars from the training split: ``per_label`` per target label, interleaved, at most ``limit``.

    Deterministic: within a label, examples are taken in id order (ids are content hashes, so this
    is a fixed pseudo-random order that does not change when unrelated rows are added).
    """
    by_label: dict[str, list[Example]] = {}
    for e in sorted(train, key=lambda e: e.id):
        if e.target is not None and hosted.prompt_messages(e):
            by_label.setdefault(e.target, []).append(e)
    picked: list[Example] = []
    for i in range(per_label):
        for label in sorted(by_label):
            if i < len(by_label[label]) and len(picked) < limit:
                picked.append(by_label[label][i])
    return picked


def default_instruction(labels: Sequence[str]) -> str:
    """The few-shot instruction when none is configured: name the labels, or follow the examples."""
    if labels:
        return (
            "Classify the user's message. Answer with exactly one of these labels and nothing else: "
            + ", ".join(labels)
            + "."
        )
    return "Answer the user's message in the same way as the examples."


class ClaudeFewShotProvider(ClaudeFamily):
    """Claude through a few-shot adapter on the Anthropic API (``claude`` with ``method: few-shot``)."""

    name = "claude-few-shot"
    method = "few-shot"
    family_default = True
    requires = ("anthropic",)
    credential = "ANTHROPIC_API_KEY"
    config_class = FewShotConfig
    platforms = ("anthropic",)

    def _model(self, request: TuneRequest, cfg: FewShotConfig):
        catalog = hosted.load_catalog_for(cfg)
        base = request.base_model
        if not base:
            names = [m.name for m in catalog.models if m.provider == FAMILY and m.kind == "few-shot"]
            base = ANTHROPIC_DEFAULT_MODEL if ANTHROPIC_DEFAULT_MODEL in names else (names[0] if names else "")
        return hosted.check_model(catalog, FAMILY, base, platform="anthropic", kind="few-shot")

    def preflight(self, request: TuneRequest) -> PreflightReport:
        """Model and exemplar checks; sends nothing."""
        cfg = self.config(request)
        info = self._model(request, cfg)
        picked = select_exemplars(request.train, per_label=cfg.exemplars_per_label, limit=cfg.max_exemplars)
        if not picked:
            raise PreflightError(
                "few-shot: the train split has no example with a target (label or final assistant turn); "
                "a few-shot adapter needs labelled exemplars"
            )
        chars = sum(len(m.content) for e in picked for m in e.messages)
        return PreflightReport(
            provider=self.name,
            base_model=info.name,
            examples=len(picked),
            training_tokens=0,
            estimated_cost_usd=0.0,
            notes=(
                f"few-shot adapter: {len(picked)} exemplars (~{chars // 4:,} prompt tokens per request, estimate); "
                "no training job, no training bill; evaluation is billed per request",
            ),
        )

    def submit(self, request: TuneRequest, key: str) -> JobHandle:
        """Write the adapter now (an adapter already there for this key is kept)."""
        cfg = self.config(request)
        model = self._model(request, cfg).name
        out = Path(request.output_dir or self.output_dir or "")
        if not str(out) or str(out) == ".":
            raise ProviderError("few-shot: no output directory for the adapter; set TuneRequest.output_dir")
        existing = read_fewshot(str(out))
        if existing is not None and existing.get("key") != key:
            raise ProviderError(
                f"{out} already holds a few-shot adapter for job {existing.get('key')}; refusing to overwrite it "
                f"with {key}: use an empty output_dir"
            )
        if existing is None:
            picked = select_exemplars(request.train, per_label=cfg.exemplars_per_label, limit=cfg.max_exemplars)
            systems = {split_system(hosted.prompt_messages(e))[0] for e in picked}
            shared_system = systems.pop() if len(systems) == 1 else ""
            labels = sorted(request.labels)
            instruction = cfg.instruction or default_instruction(labels)
            if shared_system:
                instruction = f"{shared_system}\n\n{instruction}"
            artifact = {
                "schema": FEWSHOT_SCHEMA,
                "provider": self.name,
                "method": self.method,
                "base_model": model,
                "key": key,
                "dataset_hash": request.dataset_hash,
                "instruction": instruction,
                "labels": labels,
                "exemplars": [
                    {"id": e.id, "label": e.target, "messages": split_system(hosted.prompt_messages(e))[1],
                     "answer": e.target}
                    for e in picked
                ],
            }
            out.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=out, prefix=f".{FEWSHOT_FILE}.", suffix=".tmp")
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(artifact, fh, indent=2, sort_keys=True, ensure_ascii=False)
            os.replace(tmp, out / FEWSHOT_FILE)
            self.log(f"[{self.name}] few-shot adapter: {len(picked)} exemplars for {model} -> {out / FEWSHOT_FILE}")
        return self._handle(key, str(out))

    def _handle(self, key: str, out: str) -> JobHandle:
        return JobHandle(provider=self.name, key=key, job_id=f"fewshot-{key}", state="succeeded",
                         detail={"method": self.method, "output_dir": out})

    def resume(self, key: str) -> JobHandle | None:
        """The adapter in ``output_dir`` built with ``key``, or None."""
        if self.output_dir:
            art = read_fewshot(self.output_dir)
            if art is not None and art.get("key") == key:
                return self._handle(key, self.output_dir)
        return None

    def wait(self, handle: JobHandle, request: TuneRequest, *, deadline_s: float) -> TuneResult:  # noqa: ARG002
        """The adapter was written by ``submit``: read it back."""
        out = handle.detail.get("output_dir") or request.output_dir
        art = read_fewshot(out)
        if art is None or art.get("key") != handle.key:
            raise ProviderError(f"few-shot job {handle.job_id}: no adapter for this key in {out}; delete the job record")
        return TuneResult(provider=self.name, job_id=handle.job_id, model_ref=str(out),
                          base_model=art["base_model"], dataset_hash=art["dataset_hash"], trained_tokens=0,
                          metrics={"exemplars": float(len(art["exemplars"]))},
                          detail={"method": self.method, "exemplar_ids": [x["id"] for x in art["exemplars"]]})

    def cancel(self, handle: JobHandle) -> None:
        """Nothing to cancel: the adapter is written synchronously."""
