"""Answers from a trained oss-lora model, for the evaluator: batched greedy generation with the same
chat template the model was trained with, or class scores for a sequence-classification model.

The prompt of an example is every turn before its final assistant turn (system turn and earlier
exchanges included), rendered with the generation prompt, exactly as in training. The answer is the
generated text up to the end-of-turn token, decoded without special tokens: a label for a model tuned
on classification data, the reply itself for a chat model (no template tokens, no echo of the prompt).
Prompts of different lengths are left-padded into one batch; a batch answers exactly what each
prompt answers alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneloop import storage
from tuneloop.examples import Example
from tuneloop.providers.oss_lora import checkpoint as ckpt
from tuneloop.providers.oss_lora.config import CHAT_NEW_TOKENS, LABEL_NEW_TOKENS
from tuneloop.providers.oss_lora.data import REPLIES, encode_prompt, end_of_turn_ids
from tuneloop.providers.oss_lora.trainer import quiet_peft


@dataclass
class Predictor:
    """A loaded model ready to answer (see :func:`load_predictor`)."""

    model: Any
    tokenizer: Any
    task: str
    labels: tuple[str, ...]
    device: Any
    max_new_tokens: int = LABEL_NEW_TOKENS
    batch_size: int = 16
    max_prompt_len: int | None = None

    def probabilities(self, examples: Sequence[Example]) -> list[dict[str, float]]:
        """``{label: probability}`` per example (sequence-classification models only).

        Raises:
            ValueError: a causal-lm model, which answers with text, not class scores.
        """
        if self.task == "causal-lm":
            raise ValueError("a causal-lm model answers with generated text and gives no class probabilities; "
                             "train with task=sequence-classification for probabilities")
        return class_probabilities(self.model, self.tokenizer, examples, self.labels, batch_size=self.batch_size,
                                   device=self.device)

    def predict(self, examples: Sequence[Example]) -> list[str]:
        """One raw answer per example, in order."""
        if self.task == "causal-lm":
            return generate(self.model, self.tokenizer, examples, max_new_tokens=self.max_new_tokens,
                            batch_size=self.batch_size, device=self.device, max_prompt_len=self.max_prompt_len)
        return classify(self.model, self.tokenizer, examples, self.labels, batch_size=self.batch_size,
                        device=self.device)


def load_predictor(model_dir: str | Path, *, device: str = "auto", use_merged: bool = True) -> Predictor:
    """Load a ``model/`` folder written by the trainer (merged weights if present, else base + adapter)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    manifest = ckpt.read_manifest(model_dir)
    task, labels, config = manifest["task"], tuple(manifest.get("labels") or ()), manifest.get("config", {})
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       ("cpu" if device == "auto" else device))
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    merged = Path(model_dir) / ckpt.MERGED_DIR
    auto = AutoModelForCausalLM if task == "causal-lm" else AutoModelForSequenceClassification
    kwargs: dict[str, Any] = {"dtype": dtype}
    if task != "causal-lm":
        kwargs.update(num_labels=len(labels), id2label=dict(enumerate(labels)),
                      label2id={lab: i for i, lab in enumerate(labels)})
    if use_merged and manifest.get("merged") and merged.is_dir():
        model = auto.from_pretrained(merged, **kwargs)
    else:
        base = manifest["base_model"]
        if storage.is_gcs(base):  # trained from a gs:// folder: mirror it here (cached)
            base = str(storage.download_dir(base))
        if not (Path(base) / "config.json").is_file():
            raise FileNotFoundError(
                f"{model_dir}: its base model {base!r} is not a local folder any more; put the base weights "
                "back there, or train with merge=true so the model folder carries full weights"
            )
        with quiet_peft():
            model = PeftModel.from_pretrained(auto.from_pretrained(base, **kwargs), str(model_dir))
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.to(dev).eval()
    max_new = int(config.get("max_new_tokens") or 0) or (
        CHAT_NEW_TOKENS if manifest.get("answers") == REPLIES else LABEL_NEW_TOKENS)
    return Predictor(model, tokenizer, task, labels, dev, max_new, int(config.get("predict_batch_size", 16)),
                     prompt_budget(model, config.get("max_seq_len"), max_new))


def class_probabilities(model, tokenizer, examples: Sequence[Example], labels: Sequence[str], *,
                        batch_size: int = 16, device=None) -> list[dict[str, float]]:
    """Softmax over a sequence-classification head: ``{label: probability}`` for each example's prompt text."""
    import torch

    device = device or next(model.parameters()).device
    out: list[dict[str, float]] = []
    for s in range(0, len(examples), batch_size):
        texts = [ex.prompt_text for ex in examples[s : s + batch_size]]
        enc = tokenizer(texts, padding=True, truncation=True, return_tensors="pt").to(device)
        with torch.no_grad():
            probs = torch.softmax(model(**enc).logits.float(), dim=-1).cpu().tolist()
        out.extend({lab: float(p) for lab, p in zip(labels, row, strict=True)} for row in probs)
    return out


def prompt_budget(model, max_seq_len: int | None, max_new_tokens: int) -> int | None:
    """Longest prompt to give the model (None: no limit known): the rows it was tuned on (``max_seq_len``,
    where a long training conversation was windowed the same way), and room for the reply within its
    position limit. Longer conversations keep their system turn and latest turns (data.encode_prompt).
    The cap also bounds the evaluator's memory: a base with a 32k context is not fed 32k-token prompts."""
    limits = [int(max_seq_len)] if max_seq_len else []
    positions = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if isinstance(positions, int) and positions > max_new_tokens:
        limits.append(positions - max_new_tokens)
    return min(limits) if limits else None


def stop_ids(model, tokenizer) -> list[int]:
    """Token ids that end an answer: eos, the generation config's eos ids and the template's end of turn."""
    ids = {tokenizer.eos_token_id, *end_of_turn_ids(tokenizer)}
    gen = getattr(model, "generation_config", None)
    eos = getattr(gen, "eos_token_id", None) if gen is not None else None
    if isinstance(eos, int):
        ids.add(eos)
    elif eos:
        ids.update(eos)
    return sorted(i for i in ids if i is not None)


def _reply(tokenizer, generated: Sequence[int], stop: set[int]) -> str:
    """The text of generated ids up to the first stop token, without special tokens."""
    for k, t in enumerate(generated):
        if t in stop:
            generated = generated[:k]
            break
    return tokenizer.decode(list(generated), skip_special_tokens=True).strip()


def generate(model, tokenizer, examples: Sequence[Example], *, max_new_tokens: int = LABEL_NEW_TOKENS,
             batch_size: int = 16, device=None, max_prompt_len: int | None = None) -> list[str]:
    """Greedy answers for each example's prompt, batched (left-padded, similar lengths together).

    Left padding keeps every prompt's last token at the batch's last column, so generation continues each
    prompt where it ends; the attention mask hides the padding and positions count from each prompt's
    first real token, so an answer is the same in any batch. The prompt longer than ``max_prompt_len``
    keeps its system turns and latest turns (data.encode_prompt).
    """
    import torch

    if not examples:
        return []
    device = device or next(model.parameters()).device
    prompts = [encode_prompt(tokenizer, ex, max_prompt_len) for ex in examples]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    stop = stop_ids(model, tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (stop[0] if stop else 0)
    answers: list[str] = [""] * len(prompts)
    for s in range(0, len(order), batch_size):
        idx = order[s : s + batch_size]
        width = max(len(prompts[i]) for i in idx)
        ids = torch.full((len(idx), width), pad, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for r, i in enumerate(idx):
            p = prompts[i]
            ids[r, width - len(p) :] = torch.tensor(p)
            mask[r, width - len(p) :] = 1
        with torch.no_grad():
            out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), do_sample=False,
                                 max_new_tokens=max_new_tokens, eos_token_id=stop, pad_token_id=pad)
        for r, i in enumerate(idx):
            answers[i] = _reply(tokenizer, out[r, width:].tolist(), set(stop))
    return answers


def classify(model, tokenizer, examples: Sequence[Example], labels: Sequence[str], *, batch_size: int = 16,
             device=None) -> list[str]:
    """The highest-scoring label for each example's prompt text."""
    import torch

    device = device or next(model.parameters()).device
    out: list[str] = []
    for s in range(0, len(examples), batch_size):
        texts = [ex.prompt_text for ex in examples[s : s + batch_size]]
        enc = tokenizer(texts, padding=True, truncation=True, return_tensors="pt").to(device)
        with torch.no_grad():
            logits = model(**enc).logits
        out.extend(labels[int(i)] for i in logits.argmax(-1))
    return out
