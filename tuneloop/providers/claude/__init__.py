"""Claude, a family of two providers under the name ``claude`` (``hyperparameters.method`` picks one):
``claude-few-shot`` (the default; the Anthropic API has no fine-tuning) and ``claude-bedrock``
(Bedrock model customization). See :mod:`.common` for what they share."""

from tuneloop.providers.claude.bedrock import BedrockConfig, ClaudeBedrockProvider
from tuneloop.providers.claude.common import (
    FAMILY,
    FEWSHOT_FILE,
    FEWSHOT_SCHEMA,
    KEY_TAG,
    ClaudeFamily,
    read_fewshot,
)
from tuneloop.providers.claude.few_shot import (
    ClaudeFewShotProvider,
    FewShotConfig,
    default_instruction,
    select_exemplars,
)

__all__ = [
    "FAMILY", "FEWSHOT_FILE", "FEWSHOT_SCHEMA", "KEY_TAG", "BedrockConfig", "ClaudeBedrockProvider", "ClaudeFamily",
    "ClaudeFewShotProvider", "FewShotConfig", "default_instruction", "read_fewshot", "select_exemplars",
]
