"""SDPA at every backend: `F.scaled_dot_product_attention` (causal, boolean and additive masks,
dropout), `nn.MultiheadAttention` and `nn.TransformerEncoder` train 20 steps equal to torch.

At dropout 0 eager torch runs CPU flash attention, so these also check that the math
decomposition the capture traces is the same function, up to float32 rounding."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from compiler.kernels import kind_of

from .oracle import (ADAM_TOLERANCE, SGD_TOLERANCE, adamw, assert_same_parameters, assert_trained,
                     parameters_of, sgd, token_batches, train_both)

VOCAB, WIDTH, HEADS, BATCH, LENGTH = 16, 16, 2, 3, 6


def _causal_bool(length):
    return torch.ones(length, length, dtype=torch.bool).tril()


def _causal_additive(length):
    return torch.zeros(length, length).masked_fill(~_causal_bool(length), float("-inf"))


MASKS = {"is_causal": None, "bool": _causal_bool, "additive": _causal_additive}


class SdpaLM(nn.Module):
    """One attention layer by `F.scaled_dot_product_attention`, masked as `mask` says."""

    def __init__(self, mask: str, dropout: float):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, WIDTH)
        self.qkv = nn.Linear(WIDTH, 3 * WIDTH, bias=False)
        self.proj = nn.Linear(WIDTH, WIDTH)
        self.head = nn.Linear(WIDTH, VOCAB)
        self.mask, self.dropout = mask, dropout

    def forward(self, x):
        h = self.embed(x)
        batch, length, _ = h.shape
        q, k, v = (t.view(batch, length, HEADS, -1).transpose(1, 2)
                   for t in self.qkv(h).split(WIDTH, -1))
        make_mask = MASKS[self.mask]
        a = F.scaled_dot_product_attention(
            q, k, v, attn_mask=None if make_mask is None else make_mask(length),
            is_causal=make_mask is None, dropout_p=self.dropout if self.training else 0.0)
        return self.head(h + self.proj(a.transpose(1, 2).reshape(batch, length, WIDTH)))


class Encoder(nn.Module):
    """`nn.TransformerEncoder` as users build it, over embedded tokens."""

    def __init__(self, dropout: float, bias: bool = True, causal: bool = False):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, WIDTH)
        layer = nn.TransformerEncoderLayer(WIDTH, HEADS, 2 * WIDTH, dropout=dropout, bias=bias,
                                           batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(WIDTH, VOCAB)
        self.causal = causal

    def forward(self, x):
        mask = nn.Transformer.generate_square_subsequent_mask(x.shape[1]) if self.causal else None
        return self.head(self.encoder(self.embed(x), mask=mask, is_causal=self.causal))


def token_loss(logits, y):
    return F.cross_entropy(logits.reshape(-1, VOCAB), y.reshape(-1))


def _check(model, make_optimizer, tolerance):
    initial = parameters_of(model)
    session, eager = train_both(model, token_loss, make_optimizer,
                                token_batches(VOCAB, BATCH, LENGTH))
    assert_same_parameters(session, eager, tolerance)
    assert_trained(session, initial)
    return session


@pytest.mark.parametrize("mask, dropout", [(mask, 0.0) for mask in MASKS] + [("is_causal", 0.2)])
def test_sdpa_trains_equal_to_torch(mask, dropout):
    torch.manual_seed(0)
    session = _check(SdpaLM(mask, dropout), sgd, SGD_TOLERANCE)
    assert len(session.plan.graph.masks) == (1 if dropout else 0)   # the attention dropout
    [attention] = [k for k in session.plan.kernels if k.kind == "attention"]
    # every mask is causal: the kernel computes the lower triangle, (L + 1) / 2L of the pairs
    [timing] = [t for t in session._trainer.last_timing.kernels if t.name == attention.name]
    assert timing.executed_macs / (BATCH * kind_of(attention).dense_macs(attention)) == \
        pytest.approx((LENGTH + 1) / (2 * LENGTH))


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_transformer_encoder_trains_equal_to_torch(dropout):
    torch.manual_seed(0)
    session = _check(Encoder(dropout), sgd, SGD_TOLERANCE)
    assert [k.kind for k in session.plan.kernels].count("attention") == 2


def test_causal_transformer_encoder_with_adamw():
    """Causal mask and AdamW; no bias on the projections, because a key bias has a true
    gradient of zero, which Adam would turn from rounding noise into full steps."""
    torch.manual_seed(0)
    _check(Encoder(0.0, bias=False, causal=True), adamw, ADAM_TOLERANCE)
