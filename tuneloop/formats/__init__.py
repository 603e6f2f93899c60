"""Provider training formats: canonical examples -> validated provider JSONL, with a quarantine.

Formats (``FORMAT_NAMES``), the provider each serves (``format_for_provider``), one row each:

* ``openai`` (openai): ``{"messages": [{"role", "content", "weight"?}]}``; exact token counts
  (o200k_base / cl100k_base, per the model in the catalog).
* ``gemini`` (gemini, Vertex SFT): ``{"systemInstruction"?: {"parts"}, "contents": [{"role", "parts"}]}``;
  estimated tokens.
* ``bedrock`` (claude, Bedrock customization): ``{"system"?: str, "messages": [{"role", "content"}]}``;
  estimated tokens.
* ``hf`` (oss-lora): ``{"messages": [...], "text": <chat template>}``; estimated tokens, or exact with
  the model's tokenizer as ``token_counter``.

Modules: :mod:`.base` (the Format interface, Limits), :mod:`.rules` (rules several formats share),
:mod:`.registry` (names, :func:`get_format`), :mod:`.providers` (provider <-> format tables),
:mod:`.render` (:func:`format_dataset`, the streaming :class:`DatasetWriter`), :mod:`.validate`
(:func:`validate_file`, ``tuneloop validate``), :mod:`.reports`, :mod:`.tokens`, :mod:`.jsonl`, and one
module per format. Limits, prices and end-of-life dates come from ``tuneloop/catalog.yaml``.
"""

from typing import Any

from tuneloop.formats.base import Format, Limits
from tuneloop.formats.registry import FORMAT_NAMES, get_format
from tuneloop.formats.render import QUARANTINE_FILE, REPORT_FILE, SPLIT_FILES, DatasetWriter, format_dataset
from tuneloop.formats.reports import (
    FormatReport,
    RowProblem,
    TooFewExamplesError,
    ValidationReport,
    reason_kind,
)
from tuneloop.formats.validate import validate_file

_PROVIDER_TABLES = ("FORMAT_PROVIDERS", "PROVIDER_FORMATS", "format_for_provider")


def __getattr__(name: str) -> Any:
    # The provider tables load on first use, so importing the formats never imports the provider layer.
    if name in _PROVIDER_TABLES:
        from tuneloop.formats import providers

        return getattr(providers, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "FORMAT_NAMES",
    "FORMAT_PROVIDERS",
    "PROVIDER_FORMATS",
    "QUARANTINE_FILE",
    "REPORT_FILE",
    "SPLIT_FILES",
    "DatasetWriter",
    "Format",
    "FormatReport",
    "Limits",
    "RowProblem",
    "TooFewExamplesError",
    "ValidationReport",
    "format_dataset",
    "format_for_provider",
    "get_format",
    "reason_kind",
    "validate_file",
]
