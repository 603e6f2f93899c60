"""Variable-length attention for packed rows, on plain SDPA (CPU and GPU, no flash-attn package).

A packed row holds many short examples. Attention through a block-diagonal ``(L, L)`` mask computes all
``L^2`` scores and throws most away (a 512-token row of 35-token examples wastes ~15x), and on GPU an
arbitrary mask rules out the flash kernel. Here each layer gathers every example's queries, keys and
values into a small dense batch (examples bucketed by length), runs causal SDPA on it
(``is_causal=True``: the fast kernel on both devices), and scatters the outputs back to packed order.
Each example attends exactly to its own earlier tokens: the same isolation the mask gives, with work
proportional to ``sum(n_i^2)`` instead of ``L^2``.

It is a transformers attention function (registered as ``tuneloop_varlen``); the trainer passes the
gather/scatter indices as the ``packed_segments`` keyword of the model call, which transformers hands
down to every attention layer. No mask is built in that mode.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

NAME = "tuneloop_varlen"
MIN_BUCKET = 8
# On CPU, SDPA's flash kernel is slow in bf16 for short sequences; an explicit softmax(QK^T)V with an fp32
# softmax is several times faster there (measured: 40-token buckets, 4 heads of 32).
CPU_EXPLICIT_MAX = 256


@dataclass
class PackedSegments:
    """Where each example of a packed batch sits. ``gathers[b]``: (examples, bucket length) flat
    token indices (positions past an example's end point at its first token and are never attended);
    ``inverse``: for each flat token of the batch, its row in the concatenated bucket outputs."""

    gathers: list[Any]
    inverse: Any

    def to(self, device) -> PackedSegments:
        return PackedSegments([g.to(device) for g in self.gathers], self.inverse.to(device))


def _bucket(n: int, width: int) -> int:
    """Padded length of an example's bucket: ``n`` rounded up to 1/4 of its power of two (>= 8), so at
    most ~25% of a bucket is padding."""
    step = max(MIN_BUCKET, (1 << (max(n, 1).bit_length() - 1)) // 4)
    return min(-(-n // step) * step, width)


def _explicit_causal(q, k, v, scale, window):
    """softmax(QK^T * scale) V under a causal (optionally banded) mask, the softmax in fp32."""
    import torch

    size = q.shape[-2]
    i = torch.arange(size, device=q.device)
    allowed = i[:, None] >= i[None, :]
    if window:
        allowed &= i[:, None] - i[None, :] < window
    scores = (q @ k.transpose(-1, -2)).float() * scale
    probs = scores.masked_fill(~allowed, float("-inf")).softmax(-1).to(q.dtype)
    return probs @ v


def build_segments(spans: Sequence[tuple[int, int, int]], batch: int, width: int) -> PackedSegments:
    """From ``(row, start, length)`` of every example in a (batch, width) packed batch."""
    import torch

    buckets: dict[int, list[tuple[int, int, int]]] = {}
    for r, s, n in spans:
        buckets.setdefault(_bucket(n, width), []).append((r, s, n))
    inverse = torch.zeros(batch * width, dtype=torch.long)
    gathers, offset = [], 0
    for size in sorted(buckets):
        items = buckets[size]
        g = torch.empty((len(items), size), dtype=torch.long)
        for e, (r, s, n) in enumerate(items):
            base = r * width + s
            idx = torch.arange(size)
            g[e] = base + torch.where(idx < n, idx, torch.zeros_like(idx))
            inverse[base : base + n] = offset + e * size + torch.arange(n)
        gathers.append(g)
        offset += len(items) * size
    return PackedSegments(gathers, inverse)


def varlen_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0,
                     packed_segments: PackedSegments | None = None, sliding_window=None, softcap=None, **kwargs):
    """A transformers attention function: per-example causal SDPA over packed rows (see module doc).

    ``query``: (B, H, L, D); ``key``/``value``: (B, Hkv, L, D). Returns ((B, L, H, D), None).
    """
    import torch
    import torch.nn.functional as F

    if packed_segments is None:
        raise RuntimeError(
            f"attention '{NAME}' was called without packed_segments; it serves the oss-lora trainer only "
            "(load the model with attn_implementation='sdpa' for other uses)"
        )
    if softcap:
        raise NotImplementedError(f"attention '{NAME}' has no logit soft-capping; the trainer uses the mask path")
    b, h, length, d = query.shape
    hkv = key.shape[1]
    q = query.transpose(1, 2).reshape(b * length, h, d)
    k = key.transpose(1, 2).reshape(b * length, hkv, d)
    v = value.transpose(1, 2).reshape(b * length, hkv, d)
    outs = []
    for g in packed_segments.gathers:
        n, size = g.shape
        qb = q[g].transpose(1, 2)  # (n, h, size, d)
        kb = k[g].transpose(1, 2)
        vb = v[g].transpose(1, 2)
        if hkv != h:
            kb = kb.repeat_interleave(h // hkv, dim=1)
            vb = vb.repeat_interleave(h // hkv, dim=1)
        p = dropout if module.training else 0.0
        if q.device.type == "cpu" and q.dtype != torch.float32 and size <= CPU_EXPLICIT_MAX and not p:
            ob = _explicit_causal(qb, kb, vb, scaling if scaling is not None else d**-0.5, sliding_window)
        elif sliding_window and size > sliding_window:
            i = torch.arange(size, device=q.device)
            band = (i[:, None] >= i[None, :]) & (i[:, None] - i[None, :] < sliding_window)
            ob = F.scaled_dot_product_attention(qb, kb, vb, attn_mask=band, dropout_p=p, scale=scaling)
        else:
            ob = F.scaled_dot_product_attention(qb, kb, vb, is_causal=True, dropout_p=p, scale=scaling)
        outs.append(ob.transpose(1, 2).reshape(n * size, h, d))
    out = torch.cat(outs)[packed_segments.inverse]
    return out.view(b, length, h, d), None


def register() -> str:
    """Register :func:`varlen_attention` with transformers (idempotent); returns its name."""
    from transformers import AttentionInterface

    AttentionInterface.register(NAME, varlen_attention)
    return NAME


def supports_varlen(config) -> bool:
    """Whether a model's attention can run as per-example causal SDPA (no attention logit soft-capping)."""
    return not getattr(config, "attn_logit_softcapping", None)
