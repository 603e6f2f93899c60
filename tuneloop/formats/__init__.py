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

Entry points: :func:`format_dataset` (the pipeline step) and :func:`validate_file` (``tuneloop validate``).
Limits, prices and end-of-life dates come from ``tuneloop/catalog.yaml`` (:mod:`tuneloop.catalog`).
"""

from tuneloop.formats.base import (
    FORMAT_NAMES,
    FORMAT_PROVIDERS,
    PROVIDER_FORMATS,
    QUARANTINE_FILE,
    REPORT_FILE,
    SPLIT_FILES,
    Format,
    FormatReport,
    Limits,
    RowProblem,
    TooFewExamplesError,
    ValidationReport,
    format_dataset,
    format_for_provider,
    get_format,
    reason_kind,
    validate_file,
)

__all__ = [
    "FORMAT_NAMES",
    "FORMAT_PROVIDERS",
    "PROVIDER_FORMATS",
    "QUARANTINE_FILE",
    "REPORT_FILE",
    "SPLIT_FILES",
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
