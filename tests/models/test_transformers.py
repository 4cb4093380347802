"""HuggingFace `transformers` models built from small configs (never downloaded) train 20 steps
equal to torch, at dropout 0 and at their default dropout with torch's masks replayed: BERT
for sequence classification, GPT-2 (its `lm_head` tied to `wte`) and Llama as decoders.
Skipped where `transformers` (a dev extra) is not installed."""
from __future__ import annotations

import pytest
import torch.nn.functional as F

from .oracle import (SGD_TOLERANCE, assert_same_parameters, assert_trained, parameters_of, sgd,
                     token_batches, train_both)

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

VOCAB, BATCH, LENGTH, CLASSES = 32, 2, 6, 3
SMALL = {"vocab_size": VOCAB, "bos_token_id": 0, "eos_token_id": 0, "pad_token_id": 0}
NO_DROPOUT = {
    "bert": {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0},
    "gpt2": {"resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0},
    "llama": {},            # Llama has no dropout but on attention, off by default
}


def _model(family: str, dropout: bool):
    import torch
    torch.manual_seed(0)
    extra = {} if dropout else NO_DROPOUT[family]
    if family == "bert":
        config = transformers.BertConfig(num_hidden_layers=1, num_attention_heads=2, hidden_size=16,
                                         intermediate_size=32, max_position_embeddings=LENGTH,
                                         num_labels=CLASSES, **SMALL, **extra)
        return transformers.BertForSequenceClassification(config)
    if family == "gpt2":
        config = transformers.GPT2Config(n_layer=1, n_head=2, n_embd=16, n_positions=LENGTH,
                                         **SMALL, **extra)
        return transformers.GPT2LMHeadModel(config)
    config = transformers.LlamaConfig(num_hidden_layers=1, num_attention_heads=2,
                                      num_key_value_heads=1, hidden_size=16, intermediate_size=32,
                                      max_position_embeddings=LENGTH,
                                      attention_dropout=0.1 if dropout else 0.0, **SMALL)
    return transformers.LlamaForCausalLM(config)


def lm_loss(out, y):
    return F.cross_entropy(out.logits.reshape(-1, VOCAB), y.reshape(-1))


def classify_loss(out, y):
    return F.cross_entropy(out.logits, y)


@pytest.mark.parametrize("dropout", [False, True])
@pytest.mark.parametrize("family", ["bert", "gpt2", "llama"])
def test_transformers_model_trains_equal_to_torch(family, dropout):
    model = _model(family, dropout).train()
    initial = parameters_of(model)
    batches = token_batches(VOCAB, BATCH, LENGTH)
    if family == "bert":
        batches = [(x, y[:, 0] % CLASSES) for x, y in batches]
    session, eager = train_both(model, classify_loss if family == "bert" else lm_loss, sgd, batches,
                                capture_method="auto")
    assert_same_parameters(session, eager, SGD_TOLERANCE)
    assert_trained(session, initial)
    assert bool(session.plan.graph.masks) == dropout       # torch's masks were replayed
