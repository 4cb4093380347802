"""The model zoo: plain PyTorch modules whose parameter-owning modules name the wafer's kernels."""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from compiler.errors import ConfigError

from . import markers
from .model_zoo_cnn import ResNet, resnet  # noqa: F401  (re-exported: wb.models.resnet)
from .zoo_checks import positive as _positive

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "identity": nn.Identity}


class MLP(nn.Module):
    """`depth` Linear layers named fc1..fc{depth}; activation and dropout between them."""

    def __init__(self, in_features: int, hidden: int, out_features: int, depth: int,
                 activation: str, dropout: float):
        super().__init__()
        widths = [in_features] + [hidden] * (depth - 1) + [out_features]
        self.depth = depth
        for i in range(depth):
            self.add_module(f"fc{i + 1}", nn.Linear(widths[i], widths[i + 1]))
            if i < depth - 1:
                self.add_module(f"act{i + 1}", ACTIVATIONS[activation]())
                if dropout:
                    self.add_module(f"drop{i + 1}", nn.Dropout(dropout))

    def forward(self, x):
        for i in range(1, self.depth + 1):
            x = getattr(self, f"fc{i}")(x)
            if i < self.depth:
                x = getattr(self, f"act{i}")(x)
                if hasattr(self, f"drop{i}"):
                    x = getattr(self, f"drop{i}")(x)
        return x


def mlp(in_features: int = 16, hidden: int = 64, out_features: int = 4, depth: int = 3,
        activation: str = "relu", dropout: float = 0.0, seed: int | None = None) -> MLP:
    """A multi-layer perceptron; `depth` counts Linear layers (so depth=1 is logistic regression)."""
    for name, value in (("in_features", in_features), ("hidden", hidden),
                        ("out_features", out_features), ("depth", depth)):
        _positive(name, value)
    if activation not in ACTIVATIONS:
        raise ConfigError(f"unknown activation {activation!r}; allowed: {', '.join(ACTIVATIONS)}")
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"dropout must be in [0, 1), got {dropout!r}")
    if seed is not None:
        torch.manual_seed(seed)
    return MLP(in_features, hidden, out_features, depth, activation, dropout)


# ---- transformer encoder (Vaswani et al. 2017, pre-norm as in Xiong et al. 2020) ----

TRANSFORMER_ACTIVATIONS = ("gelu", "relu")
ATTENTION_KINDS = ("manual", "torch")
TASKS = ("classify", "tag")
# A finite stand-in for -inf on masked scores: exp(-1e9 - max) is exactly 0 in float32, so pad
# keys get exactly zero weight (as with -inf), yet a sample made only of padding gives a uniform
# softmax instead of NaN.
MASKED_SCORE = -1e9


class SelfAttention(nn.Module):
    """Hand-written multi-head self-attention: Linear q, k, v; softmax(Q K^T / sqrt(d_head)) V;
    Linear o. `pad_mask` (bool [B, T], True at pad) removes pad keys from every softmax."""

    def __init__(self, d_model: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.d_head = heads, d_model // heads
        self.q, self.k = nn.Linear(d_model, d_model), nn.Linear(d_model, d_model)
        self.v, self.o = nn.Linear(d_model, d_model), nn.Linear(d_model, d_model)
        self.drop = nn.Dropout(dropout)

    def _split(self, t):
        b, n, _ = t.shape
        return t.view(b, n, self.heads, self.d_head).transpose(1, 2)      # [B, H, T, d_head]

    def forward(self, h, pad_mask):
        b, n, d = h.shape
        q, k, v = self._split(self.q(h)), self._split(self.k(h)), self._split(self.v(h))
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(self.d_head)
        scores = scores.masked_fill(pad_mask[:, None, None, :], MASKED_SCORE)
        weights = self.drop(torch.softmax(scores, dim=-1))
        out = (weights @ v).transpose(1, 2).reshape(b, n, d)
        return self.o(out)


class TorchAttention(nn.MultiheadAttention):
    """The same attention through nn.MultiheadAttention (batch_first), called as
    `attn(h, pad_mask)`. Its parameters are `in_proj_weight`/`in_proj_bias` (q, k, v stacked)
    and `out_proj`, so its kernels are this module (`...attn`) and `...attn.out_proj`."""

    def __init__(self, d_model: int, heads: int, dropout: float):
        super().__init__(d_model, heads, dropout=dropout, batch_first=True)

    def forward(self, h, pad_mask):
        # A float mask (0 or MASKED_SCORE) rather than a bool one: MHA turns a bool mask into
        # -inf, which gives NaN for a sample that is all padding.
        mask = torch.zeros(pad_mask.shape, dtype=h.dtype).masked_fill(pad_mask, MASKED_SCORE)
        out, _ = super().forward(h, h, h, key_padding_mask=mask, need_weights=False)
        return out


class FeedForward(nn.Module):
    """fc1 -> activation -> dropout -> fc2."""

    def __init__(self, d_model: int, ffn: int, activation: str, dropout: float):
        super().__init__()
        self.fc1, self.act = nn.Linear(d_model, ffn), ACTIVATIONS[activation]()
        self.drop, self.fc2 = nn.Dropout(dropout), nn.Linear(ffn, d_model)

    def forward(self, h):
        return self.fc2(self.drop(self.act(self.fc1(h))))


class EncoderBlock(nn.Module):
    """One pre-norm encoder block: h + drop(attn(ln1(h))), then h + drop(ffn(ln2(h))).

    `forward(h, pad_mask)`: h float [B, T, d_model], pad_mask bool [B, T] (True at pad). Every
    op is per token except attention, which never reads pad keys, so the outputs at real
    positions do not depend on the padding. Reused by the Universal Transformer (one block,
    recurrent in depth)."""

    def __init__(self, d_model: int, heads: int, ffn: int, activation: str = "gelu",
                 dropout: float = 0.0, attention: str = "manual"):
        super().__init__()
        _check_block(d_model, heads, ffn, activation, dropout, attention)
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = (SelfAttention if attention == "manual" else TorchAttention)(d_model, heads, dropout)
        self.drop1 = nn.Dropout(dropout)
        self.ln2 = nn.LayerNorm(d_model)
        self.ffn = FeedForward(d_model, ffn, activation, dropout)
        self.drop2 = nn.Dropout(dropout)

    def forward(self, h, pad_mask):
        h = h + self.drop1(self.attn(self.ln1(h), pad_mask))
        return h + self.drop2(self.ffn(self.ln2(h)))


class Transformer(nn.Module):
    """Token ids [B, T] -> logits: [B, classes] (task "classify") or [B, T, classes] ("tag").

    Token embedding `embed` (the pad row is zero and gets no gradient) plus a learned position
    embedding `pos`, `layers` encoder blocks, a final LayerNorm `norm`, and a Linear `head`.
    Classification pools by the mean over the real tokens (pad positions are excluded from the
    sum and the count): it needs no extra token and uses every position's output, unlike a CLS
    token. Padding is assumed on the right (positions count from the first token).
    After the embedding, the marker `wsebench::running(h, ~pad_mask)` (identity) tells the
    wafer which tokens are real: pad tokens are never sent and cost nothing (DESIGN.md,
    "Dynamic execution").
    """

    def __init__(self, vocab, d_model, heads, layers, ffn, max_len, classes, activation, dropout,
                 attention, task, pad_id):
        super().__init__()
        self.task, self.pad_id, self.max_len = task, pad_id, max_len
        self.embed = nn.Embedding(vocab, d_model, padding_idx=pad_id)
        self.pos = nn.Embedding(max_len, d_model)
        self.drop = nn.Dropout(dropout)
        self.layers = nn.ModuleList(EncoderBlock(d_model, heads, ffn, activation, dropout, attention)
                                    for _ in range(layers))
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, classes)

    def forward(self, x):
        if x.dim() != 2 or x.shape[1] > self.max_len:
            raise ValueError(f"expected token ids [batch, length <= {self.max_len}], got "
                             f"{tuple(x.shape)}")
        pad_mask = x == self.pad_id
        positions = torch.arange(x.shape[1], device=x.device)
        h = self.drop(self.embed(x) + self.pos(positions))
        # identity: tells the wafer's timing that only the real tokens are ever sent
        h = markers.running(h, ~pad_mask)
        for block in self.layers:
            h = block(h, pad_mask)
        h = self.norm(h)
        if self.task == "tag":
            return self.head(h)
        keep = (~pad_mask).to(h.dtype).unsqueeze(-1)                       # [B, T, 1]
        pooled = (h * keep).sum(1) / keep.sum(1).clamp(min=1.0)
        return self.head(pooled)


def _check_block(d_model, heads, ffn, activation, dropout, attention) -> None:
    for name, value in (("d_model", d_model), ("heads", heads), ("ffn", ffn)):
        _positive(name, value, "transformer")
    if d_model % heads:
        raise ConfigError(f"transformer d_model ({d_model}) must be divisible by heads ({heads}); "
                          f"choose heads among the divisors of d_model")
    if activation not in TRANSFORMER_ACTIVATIONS:
        raise ConfigError(f"unknown transformer activation {activation!r}; allowed: "
                          f"{', '.join(TRANSFORMER_ACTIVATIONS)}")
    if attention not in ATTENTION_KINDS:
        raise ConfigError(f"unknown attention {attention!r}; allowed: {', '.join(ATTENTION_KINDS)}")
    if not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ConfigError(f"dropout must be in [0, 1), got {dropout!r}")


def transformer(vocab: int = 32, d_model: int = 32, heads: int = 2, layers: int = 2, ffn: int = 64,
                max_len: int = 32, classes: int = 2, activation: str = "gelu", dropout: float = 0.0,
                attention: str = "manual", task: str = "classify", pad_id: int = 0,
                seed: int | None = None) -> Transformer:
    """A transformer encoder over token ids (pad_id marks padding); see `Transformer`."""
    for name, value in (("vocab", vocab), ("layers", layers), ("max_len", max_len),
                        ("classes", classes)):
        _positive(name, value, "transformer")
    _check_block(d_model, heads, ffn, activation, dropout, attention)
    if task not in TASKS:
        raise ConfigError(f"unknown transformer task {task!r}; allowed: {', '.join(TASKS)}")
    if not isinstance(pad_id, int) or isinstance(pad_id, bool) or not 0 <= pad_id < vocab:
        raise ConfigError(f"pad_id must be a token id in [0, vocab={vocab}), got {pad_id!r}")
    if seed is not None:
        torch.manual_seed(seed)
    return Transformer(vocab, d_model, heads, layers, ffn, max_len, classes, activation, dropout,
                       attention, task, pad_id)


class TokenCrossEntropy(nn.Module):
    """Cross entropy per token for sequence outputs: logits [B, T, C] against labels [B, T];
    labels equal to `ignore_index` (pad positions) count neither in the sum nor in the mean."""

    def __init__(self, ignore_index: int = -100):
        super().__init__()
        self.ignore_index = ignore_index

    def forward(self, logits, labels):
        return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                           ignore_index=self.ignore_index)
