"""A HuggingFace-style causal LM, written without `transformers`, with the patterns of its
forward that a capture trips on (GPT-2's and Llama's modeling code, transformers 4.4x-5.x):

- an output object (`CausalLMOutput`, like `ModelOutput`) whose `.logits` the loss reads;
- position ids from the attention mask by `cumsum` (`attention_mask.cumsum(-1) - 1`, pads 1);
- the causal mask built in the forward (`torch.full(min).triu(1)`), pad keys masked by
  `masked_fill`, and given to SDPA as an additive float mask;
- a KV cache started from empty tensors made from Python data (`torch.tensor([])`, which the
  capture sees as a tensor constant) and grown by `cat`, returned when `use_cache`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

PAD = 0


@dataclass
class CausalLMOutput:
    logits: torch.Tensor
    past_key_values: tuple | None = None


class Attention(nn.Module):
    def __init__(self, width: int, heads: int, dropout: float):
        super().__init__()
        self.q_proj, self.k_proj, self.v_proj, self.o_proj = (
            nn.Linear(width, width, bias=False) for _ in range(4))
        self.heads, self.dropout = heads, dropout

    def _heads(self, t):
        batch, length, width = t.shape
        return t.view(batch, length, self.heads, width // self.heads).transpose(1, 2)

    def forward(self, h, mask):
        q, k, v = self._heads(self.q_proj(h)), self._heads(self.k_proj(h)), self._heads(self.v_proj(h))
        keys = torch.cat([torch.tensor([], dtype=k.dtype), k], dim=-2)      # the cache's layer
        values = torch.cat([torch.tensor([], dtype=v.dtype), v], dim=-2)
        out = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask,
                                             dropout_p=self.dropout if self.training else 0.0)
        batch, _, length, _ = out.shape
        return self.o_proj(out.transpose(1, 2).reshape(batch, length, -1)), (keys, values)


class DecoderLayer(nn.Module):
    def __init__(self, width: int, heads: int, dropout: float):
        super().__init__()
        self.input_layernorm = nn.LayerNorm(width)
        self.self_attn = Attention(width, heads, dropout)
        self.post_attention_layernorm = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(approximate="tanh"),
                                 nn.Linear(2 * width, width), nn.Dropout(dropout))

    def forward(self, h, mask):
        attended, cache = self.self_attn(self.input_layernorm(h), mask)
        h = h + attended
        return h + self.mlp(self.post_attention_layernorm(h)), cache


class HFStyleCausalLM(nn.Module):
    def __init__(self, vocab=24, width=16, heads=2, layers=2, max_positions=8, dropout=0.0,
                 use_cache=True):
        super().__init__()
        self.embed_tokens = nn.Embedding(vocab, width)
        self.embed_positions = nn.Embedding(max_positions, width)
        self.layers = nn.ModuleList(DecoderLayer(width, heads, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(width)
        self.lm_head = nn.Linear(width, vocab, bias=False)
        self.use_cache = use_cache

    def causal_mask(self, attention_mask, dtype):
        length = attention_mask.shape[-1]
        lowest = torch.finfo(dtype).min
        mask = torch.full((length, length), lowest, dtype=dtype).triu(1)[None, None]
        pad_keys = attention_mask[:, None, None, :] == 0
        return mask.masked_fill(pad_keys, lowest)

    def forward(self, input_ids):
        attention_mask = (input_ids != PAD).long()
        position_ids = (attention_mask.cumsum(-1) - 1).masked_fill(attention_mask == 0, 1)
        h = self.embed_tokens(input_ids) + self.embed_positions(position_ids)
        mask = self.causal_mask(attention_mask, h.dtype)
        caches = []
        for layer in self.layers:
            h, cache = layer(h, mask)
            caches.append(cache)
        logits = self.lm_head(self.norm(h))
        return CausalLMOutput(logits, tuple(caches) if self.use_cache else None)


def hf_style_lm(seed: int = 0, **config) -> HFStyleCausalLM:
    torch.manual_seed(seed)
    return HFStyleCausalLM(**config)
