"""A nanoGPT-style LM with tied `wte`/`lm_head` weights trains 20 steps equal to torch: SDPA
causal attention and the tril-buffer variant, at dropout 0 and with torch's masks replayed."""
from __future__ import annotations

import warnings

import pytest
import torch

from .nanogpt import gpt, lm_loss
from .oracle import (ADAM_TOLERANCE, SGD_TOLERANCE, adamw, assert_same_parameters, assert_trained,
                     parameters_of, sgd, token_batches, train_both)

VOCAB, BATCH, LENGTH = 24, 3, 8
CASES = [  # attention, dropout, optimizer, tolerance
    ("sdpa", 0.0, sgd, SGD_TOLERANCE),
    ("tril", 0.0, sgd, SGD_TOLERANCE),
    ("sdpa", 0.1, adamw, ADAM_TOLERANCE),
    ("tril", 0.1, sgd, SGD_TOLERANCE),
]


@pytest.mark.parametrize("attention, dropout, make_optimizer, tolerance", CASES)
def test_tied_lm_trains_equal_to_torch(attention, dropout, make_optimizer, tolerance):
    # no bias with Adam: a key bias's true gradient is 0 and Adam turns rounding noise into steps
    model = gpt(attention=attention, dropout=dropout, bias=make_optimizer is sgd,
                block_size=LENGTH, vocab_size=VOCAB)
    initial = parameters_of(model)
    with warnings.catch_warnings():     # 'auto' goes straight to the path that takes tied weights
        warnings.simplefilter("error")
        session, eager = train_both(model, lm_loss, make_optimizer,
                                    token_batches(VOCAB, BATCH, LENGTH), capture_method="auto")
    assert_same_parameters(session, eager, tolerance)
    assert_trained(session, initial)
    trained = session.state_dict()
    assert torch.equal(trained["lm_head.weight"], trained["transformer.wte.weight"])
    # one value and one gradient for the tied weight
    graph = session.plan.graph
    assert [f for _, f in graph.params].count("transformer.wte.weight") == 1
    assert "lm_head.weight" not in dict(graph.grads)
    if dropout:   # embeddings, and per block attention, two residuals (+ probabilities for tril)
        assert len(graph.masks) == 1 + 2 * 3


def test_tied_lm_resumes_from_a_checkpoint_without_its_model(tmp_path):
    """The alias comes back trained from the saved state alone."""
    import wsebench as wb
    model = gpt(block_size=LENGTH, vocab_size=VOCAB)
    initial = model.state_dict()["lm_head.weight"].clone()
    session, _ = train_both(model, lm_loss, sgd, token_batches(VOCAB, BATCH, LENGTH, steps=2))
    restored = wb.load_session(session.save(tmp_path / "tied.wsb")).state_dict()
    assert torch.equal(restored["lm_head.weight"], session.state_dict()["transformer.wte.weight"])
    assert not torch.equal(restored["lm_head.weight"], initial)


def test_state_dict_refuses_to_return_an_untrained_parameter():
    model = gpt(block_size=LENGTH, vocab_size=VOCAB)
    session, _ = train_both(model, lm_loss, sgd, token_batches(VOCAB, BATCH, LENGTH, steps=1))
    del session._trainer.params["transformer.wpe.weight"]       # as if the wafer never held it
    with pytest.raises(RuntimeError, match="transformer.wpe.weight"):
        session.state_dict()
