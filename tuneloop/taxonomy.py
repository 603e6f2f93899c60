"""Label sets as data: a taxonomy file of domains, the labels under each, and a description per label.

The file (YAML or JSON, a local path or ``gs://``, read through :mod:`tuneloop.storage`)::

    name: support-intents          # optional
    domains:
      billing:
        description: Money matters  # optional
        labels:
          refund: The customer wants money back for an order.
          invoice: The customer asks for an invoice or a receipt.
      account:
        labels:
          password_reset: {description: The customer cannot log in and wants a new password.}

It is parsed once into a frozen :class:`Taxonomy` (:func:`load`); a broken file is refused with the field,
the bad value and the fix (a label under two domains, an empty description, an unknown key, a wrong type).

What uses it:

* export: :func:`quarantine_unknown` moves labelled rows whose label is not in the taxonomy from the extract's
  examples to its quarantine, each with a reason naming the closest valid label (nothing is dropped);
  :func:`system_prompt` adds the label descriptions to the system turn the tuners' training files carry.
* evaluation: :func:`domain_metrics` rolls labels up to their domain (``domain_accuracy.<domain>``,
  ``domain_f1.<domain>`` next to the other candidate metrics, and a ``domains`` mapping).
* labelling: :mod:`tuneloop.labeling` shows the labeller each label with its description.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from tuneloop.config import ConfigError, close_match

TOP_KEYS = ("name", "domains")
DOMAIN_KEYS = ("description", "labels")
LABEL_KEYS = ("description",)
MAX_DESCRIPTION_CHARS = 500  # each description goes into prompts: keep them a sentence or two
MAX_PROMPT_CHARS = 6000  # the label list a prompt carries (descriptions are cut to fit)


class TaxonomyError(ConfigError):
    """A taxonomy file that cannot be used; the message names the file, the field and the fix."""


@dataclass(frozen=True)
class Label:
    """One label: its name, the domain it belongs to and what it means."""

    name: str
    domain: str
    description: str


@dataclass(frozen=True)
class Taxonomy:
    """A parsed taxonomy: labels in file order, each under exactly one domain."""

    name: str
    labels: tuple[Label, ...]
    domains: tuple[str, ...]
    domain_descriptions: Mapping[str, str]
    uri: str = ""

    @property
    def by_name(self) -> Mapping[str, Label]:
        return MappingProxyType({lb.name: lb for lb in self.labels})

    @property
    def names(self) -> list[str]:
        """The label names, in file order."""
        return [lb.name for lb in self.labels]

    def domain_of(self, label: str | None) -> str | None:
        """The domain of ``label`` (None for a label not in the taxonomy)."""
        lb = self.by_name.get(label) if label is not None else None
        return lb.domain if lb else None

    def closest(self, label: str) -> str:
        """The valid label nearest to ``label`` (difflib ratio, case-insensitive); always one of the labels."""
        lowered = {n.lower(): n for n in self.names}
        hit = difflib.get_close_matches(str(label).lower(), list(lowered), n=1, cutoff=0.0)
        return lowered[hit[0]] if hit else self.names[0]

    def prompt_text(self, max_chars: int = MAX_PROMPT_CHARS) -> str:
        """The labels with their descriptions, grouped by domain, for a prompt (cut to ``max_chars``)."""
        lines: list[str] = []
        for d in self.domains:
            lines.append(f"{d}:")
            lines += [f"- {lb.name}: {lb.description}" for lb in self.labels if lb.domain == d]
        text = "\n".join(lines)
        if len(text) > max_chars:  # names always fit before descriptions are kept
            text = text[: max_chars - 5].rstrip() + " ..."
        return text

    def to_dict(self) -> dict[str, Any]:
        """The taxonomy as the file's shape (what :func:`parse` reads back)."""
        return {
            "name": self.name,
            "domains": {
                d: {
                    **({"description": self.domain_descriptions[d]} if self.domain_descriptions.get(d) else {}),
                    "labels": {lb.name: lb.description for lb in self.labels if lb.domain == d},
                }
                for d in self.domains
            },
        }


def _unknown(keys: Any, allowed: Sequence[str], where: str, uri: str) -> None:
    bad = sorted(set(keys) - set(allowed), key=str)
    if bad:
        near = close_match(str(bad[0]), allowed)
        hint = f" (did you mean {near!r}?)" if near else ""
        raise TaxonomyError(f"taxonomy {uri}: {where}: unknown key {bad[0]!r}{hint}; the keys are {list(allowed)}")


def _text(value: Any, where: str, uri: str, *, required: bool) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise TaxonomyError(
            f"taxonomy {uri}: {where} must be text, got {type(value).__name__} {value!r}; write a sentence that "
            "says what the label means"
        )
    text = " ".join(value.split())
    if required and not text:
        raise TaxonomyError(
            f"taxonomy {uri}: {where} is empty; write a sentence that says what the label means (the labeller "
            "and the tuners read it)"
        )
    if len(text) > MAX_DESCRIPTION_CHARS:
        raise TaxonomyError(
            f"taxonomy {uri}: {where} is {len(text)} characters; keep it under {MAX_DESCRIPTION_CHARS} (it goes "
            "into every labelling prompt)"
        )
    return text


def _name(value: Any, where: str, uri: str) -> str:
    if not isinstance(value, str) or not value.strip() or value != value.strip() or "\n" in value:
        raise TaxonomyError(
            f"taxonomy {uri}: {where} name {value!r} must be a non-empty string without surrounding spaces or "
            "line breaks (a YAML key like 'refund:' is one)"
        )
    return value


def parse(data: Any, uri: str = "(inline)") -> Taxonomy:
    """The :class:`Taxonomy` of already-decoded file data.

    Raises:
        TaxonomyError: naming the field (``domains.billing.labels.refund.description``), the value and the fix.
    """
    if not isinstance(data, Mapping):
        raise TaxonomyError(
            f"taxonomy {uri}: the file must hold a mapping with 'domains', got {type(data).__name__}; see "
            "docs/labeling.md#taxonomy"
        )
    _unknown(data, TOP_KEYS, "top level", uri)
    name = _text(data.get("name"), "name", uri, required=False)
    domains = data.get("domains")
    if not isinstance(domains, Mapping) or not domains:
        raise TaxonomyError(
            f"taxonomy {uri}: domains must be a non-empty mapping of domain -> {{labels: {{label: description}}}}, "
            f"got {domains!r}"
        )
    labels: list[Label] = []
    seen: dict[str, str] = {}
    descriptions: dict[str, str] = {}
    for dname, dom in domains.items():
        dname = _name(dname, "domains: a domain", uri)
        where = f"domains.{dname}"
        if not isinstance(dom, Mapping):
            raise TaxonomyError(
                f"taxonomy {uri}: {where} must be a mapping with 'labels', got {type(dom).__name__} {dom!r}"
            )
        _unknown(dom, DOMAIN_KEYS, where, uri)
        descriptions[dname] = _text(dom.get("description"), f"{where}.description", uri, required=False)
        raw = dom.get("labels")
        if not isinstance(raw, Mapping) or not raw:
            raise TaxonomyError(
                f"taxonomy {uri}: {where}.labels must be a non-empty mapping of label -> description, got {raw!r}"
            )
        for lname, value in raw.items():
            lname = _name(lname, f"{where}.labels: a label", uri)
            lwhere = f"{where}.labels.{lname}"
            if isinstance(value, Mapping):
                _unknown(value, LABEL_KEYS, lwhere, uri)
                value, lwhere = value.get("description"), f"{lwhere}.description"
            desc = _text(value, lwhere, uri, required=True)
            if lname in seen:
                raise TaxonomyError(
                    f"taxonomy {uri}: label {lname!r} is under domains.{seen[lname]} and {where}; a label belongs "
                    "to one domain: rename one of them or remove it"
                )
            seen[lname] = dname
            labels.append(Label(lname, dname, desc))
    return Taxonomy(
        name=name, labels=tuple(labels), domains=tuple(descriptions), domain_descriptions=MappingProxyType(descriptions),
        uri=uri,
    )


def load(uri: str) -> Taxonomy | None:
    """Read and parse the taxonomy at ``uri`` (YAML or JSON, local or gs://); ``""`` = no taxonomy (None).

    Raises:
        TaxonomyError: no such file, not YAML/JSON, or a broken structure (see :func:`parse`).
    """
    from tuneloop import storage

    if uri is None or (isinstance(uri, str) and not uri.strip()):
        return None
    if not isinstance(uri, str):
        raise TaxonomyError(f"taxonomy={uri!r} must be a path or gs:// URI of a YAML/JSON file, or '' for none")
    uri = uri.strip()
    try:
        blob = storage.read(uri)
    except Exception as exc:  # a storage error names the object; say which parameter it was
        raise TaxonomyError(f"taxonomy={uri!r} cannot be read: {exc}") from exc
    if blob is None:
        raise TaxonomyError(f"taxonomy={uri!r}: no such file; pass the path or gs:// URI of the taxonomy file")
    try:
        text = blob.data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TaxonomyError(f"taxonomy={uri!r} is not UTF-8 text: {exc}") from exc
    try:
        if uri.lower().endswith(".json"):
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # json.JSONDecodeError, yaml.YAMLError
        raise TaxonomyError(f"taxonomy={uri!r} is not valid YAML/JSON: {exc}") from exc
    return parse(data, uri)


def check(uri: str) -> dict[str, Any]:
    """What ``check_config`` reports about ``taxonomy``: {} for none, else its name and counts (raises if broken)."""
    tax = load(uri)
    if tax is None:
        return {}
    return {"name": tax.name, "domains": len(tax.domains), "labels": len(tax.labels)}


# -- export ------------------------------------------------------------------------------------------


def unknown_label_reason(tax: Taxonomy, label: str) -> str:
    """The quarantine reason of a row whose label is not in ``tax``: names the closest valid label."""
    return (
        f"label: {label!r} is not in the taxonomy {tax.uri or tax.name!r}; the closest valid label is "
        f"{tax.closest(label)!r} (fix the row's label, or add {label!r} to a domain of the taxonomy)"
    )


def quarantine_unknown(examples_path: str, quarantine_path: str, taxonomy: str) -> int:
    """Move the extract's labelled rows whose label is not in the taxonomy to its quarantine; returns how many.

    Rows without a label (chat conversations) are kept as they are. Each moved row is appended to the
    quarantine JSONL as ``{"row": <the canonical record>, "reason": ...}``, so nothing is lost; the examples
    Parquet is rewritten with the others. ``taxonomy`` "" does nothing.
    """
    tax = load(taxonomy)
    if tax is None:
        return 0
    import os

    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from tuneloop import examples as ex

    moved = 0
    tmp = examples_path + ".tmp"
    names = pa.array(tax.names, type=pa.string())
    # a batch at a time (the extract's file may hold millions of rows): kept rows to a new file, moved rows
    # to the quarantine; the new file replaces the old one only when something moved
    with pq.ParquetFile(examples_path) as src, ex.ExamplesParquetWriter(tmp) as out, \
            open(quarantine_path, "a", encoding="utf-8") as fh:
        for batch in src.iter_batches(batch_size=ex.PARQUET_BATCH_ROWS):
            labels = batch.column("label")
            keep = pc.or_(pc.is_null(labels), pc.fill_null(pc.is_in(labels, value_set=names), False))
            bad = batch.filter(pc.invert(keep))
            out.write_arrow(batch.filter(keep))
            for e in ex.examples_from_batch(bad):
                entry = {"row": e.to_dict(), "reason": unknown_label_reason(tax, e.label or "")}
                fh.write(json.dumps(entry, ensure_ascii=False, sort_keys=True) + "\n")
                moved += 1
    if moved:
        os.replace(tmp, examples_path)
    else:
        os.remove(tmp)
    return moved


def instruction(tax: Taxonomy) -> str:
    """The label list with descriptions that a classification prompt's system turn carries."""
    return "Answer with exactly one of these labels:\n" + tax.prompt_text()


def system_prompt(base: str, taxonomy: str) -> str:
    """The system turn for rendering: ``base`` plus the labels and their descriptions when a taxonomy is given."""
    tax = load(taxonomy)
    if tax is None:
        return base
    text = instruction(tax)
    return f"{base.strip()}\n\n{text}" if base and base.strip() else text


def prompt_rows(rows: Sequence[Any], tax: Taxonomy | None) -> list[Any]:
    """Eval rows as a classifier is asked them: a row without a system turn gets :func:`instruction`'s text as one.

    What the rendered training files carry when export had the same taxonomy and no ``system_prompt``, so a
    hosted model is asked the way it was tuned; rows are returned in order (their answers line up with them).
    """
    if tax is None:
        return list(rows)
    from tuneloop import examples as ex

    text = instruction(tax)
    out = []
    for e in rows:
        if e.messages and e.messages[0].role == "system":
            out.append(e)
            continue
        msgs = [{"role": "system", "content": text}, *(m.to_dict() for m in e.messages)]
        out.append(ex.make_example(msgs, label=e.label, source=e.source, weight=e.weight, created_at=e.created_at,
                                   meta=e.meta))
    return out


# -- evaluation --------------------------------------------------------------------------------------


def domain_metrics(y_true: Sequence[str], y_pred: Sequence[str | None], tax: Taxonomy) -> dict[str, Any]:
    """Labels rolled up to their domain: per domain, accuracy of the domain and its macro F1 over domains.

    A prediction counts for the domain of the label it names (an unparseable answer, or a label outside the
    taxonomy, is a miss). Returns flat scalars ``domain_accuracy.<d>`` (the share of rows whose true label is
    in domain ``d`` that were predicted in ``d``), ``domain_f1.<d>`` (F1 of ``d`` as a class), ``domain_macro_f1``,
    and ``domains``: ``{d: {accuracy, f1, support}}``. Rows whose true label is not in the taxonomy are
    left out (counted in ``domain_unmapped``).
    """
    from sklearn.metrics import precision_recall_fscore_support

    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true has {len(y_true)} rows but y_pred has {len(y_pred)}; score the same rows")
    sentinel = "\x00none"
    pairs = [(tax.domain_of(t), tax.domain_of(p) or sentinel) for t, p in zip(y_true, y_pred, strict=True)]
    unmapped = sum(t is None for t, _ in pairs)
    pairs = [(t, p) for t, p in pairs if t is not None]
    out: dict[str, Any] = {"domain_unmapped": unmapped}
    if not pairs:
        return {**out, "domains": {}}
    domains = list(tax.domains)
    true, pred = [t for t, _ in pairs], [p for _, p in pairs]
    _, _, f1, support = precision_recall_fscore_support(true, pred, labels=domains, zero_division=0)
    per: dict[str, Any] = {}
    present = []
    for d, f, s in zip(domains, f1, support, strict=True):
        if not s:
            continue
        acc = sum(t == d and p == d for t, p in pairs) / int(s)
        per[d] = {"accuracy": acc, "f1": float(f), "support": int(s)}
        out[f"domain_accuracy.{d}"] = acc
        out[f"domain_f1.{d}"] = float(f)
        present.append(float(f))
    out["domain_macro_f1"] = sum(present) / len(present)
    out["domains"] = per
    return out


def with_domain_metrics(metrics: Mapping[str, Any], y_true: Sequence[str], y_pred: Sequence[str | None],
                        tax: Taxonomy | None) -> dict[str, Any]:
    """``metrics`` plus :func:`domain_metrics` when there is a taxonomy (the evaluator calls this once per model)."""
    return dict(metrics) if tax is None else {**metrics, **domain_metrics(y_true, y_pred, tax)}
