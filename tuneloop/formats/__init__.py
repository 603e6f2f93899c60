"""Provider training formats: canonical examples -> validated provider JSONL, with a quarantine.

Formats (``FORMAT_NAMES``) and the provider each serves (``format_for_provider``):

============  ===========================================================  ====================
format        row                                                          tokens
============  ===========================================================  ====================
``openai``    ``{"messages": [{"role", "content", "weight"?}]}``             exact (o200k/cl100k)
``gemini``    ``{"systemInstruction"?: {"parts"}, "contents": [{"role", "parts"}]}``  estimate
``bedrock``   ``{"system"?: str, "messages": [{"role", "content"}]}``        estimate
``hf``        ``{"messages": [...], "text": <chat template>}``               estimate (or exact)
============  ===========================================================  ====================

Entry points: :func:`format_dataset` (pipeline step) and :func:`validate_file` (``tuneloop validate``).
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
