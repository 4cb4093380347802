"""HuggingFace-style causal LMs capture and train 20 steps equal to torch: output objects,
`cumsum` position ids, a causal mask built in the forward, KV-cache tensor constants
(`hf_style.py`, no `transformers` needed); a forward that branches on tensor values is refused
at compile with a message naming the module and the fix."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import wsebench as wb
from compiler.frontend import CaptureError
from compiler.op_names import CONSTANT_OP

from .hf_style import hf_style_lm
from .oracle import SGD_TOLERANCE, assert_same_parameters, assert_trained, parameters_of, sgd, \
    token_batches, train_both

VOCAB, BATCH, LENGTH = 24, 3, 8


def right_padded(batches, seed=0):
    """Real tokens first, then pads (PAD = 0), as HF's tokenizers pad for training. Left padding
    would leave the first queries no key at all; there torch's CPU flash attention and the math
    path give different gradients (the report's note), so these batches never do that."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for x, y in batches:
        lengths = torch.randint(2, LENGTH + 1, (len(x),), generator=gen)
        x = x.clamp(min=1).masked_fill(torch.arange(LENGTH)[None, :] >= lengths[:, None], 0)
        out.append((x, y))
    return out


def read_logits(out, y):
    return F.cross_entropy(out.logits.reshape(-1, VOCAB), y.reshape(-1))


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_hf_style_lm_trains_equal_to_torch(dropout):
    model = hf_style_lm(dropout=dropout, vocab=VOCAB, max_positions=LENGTH, layers=1)
    initial = parameters_of(model)
    batches = right_padded(token_batches(VOCAB, BATCH, LENGTH))
    assert any((x == 0).any() for x, _ in batches)        # pads: the cumsum positions matter
    session, eager = train_both(model, read_logits, sgd, batches, capture_method="auto")
    assert_same_parameters(session, eager, SGD_TOLERANCE)
    assert_trained(session, initial)
    ops = {op.op for op in session.plan.graph.ops}
    assert {"aten.cumsum.default", CONSTANT_OP} <= ops


def test_a_loss_module_is_given_the_outputs_logits():
    """`nn.Module` losses take tensors: they get `.logits` of the output object."""
    model = hf_style_lm(vocab=VOCAB, max_positions=LENGTH, layers=1)
    loss = wb.models.TokenCrossEntropy()
    session, eager = train_both(model, loss, sgd, right_padded(token_batches(VOCAB, BATCH, LENGTH, steps=3)),
                                eager_loss=lambda out, y: loss(out.logits, y))
    assert_same_parameters(session, eager, SGD_TOLERANCE)


class BranchesOnData(nn.Module):
    def __init__(self):
        super().__init__()
        self.lm = hf_style_lm(vocab=VOCAB, max_positions=LENGTH, layers=1)

    def forward(self, x):
        if (x == 0).all():            # HF-style shortcut: skip the mask when nothing is padded
            x = x + 1
        return self.lm(x)


@pytest.mark.parametrize("method", ["auto", "aot"])   # auto meets export's form of it
def test_data_dependent_python_is_refused_at_compile_naming_module_and_fix(method):
    model = BranchesOnData()
    with pytest.raises(CaptureError) as caught:
        wb.compile(model, read_logits, example=token_batches(VOCAB, BATCH, LENGTH, steps=1)[0],
                   optimizer=torch.optim.SGD(model.parameters(), lr=0.1), backend="numpy",
                   capture_method=method)
    message = str(caught.value)
    assert "BranchesOnData" in message and "test_hf_style.py" in message
    assert "torch.where" in message


def test_a_float_cumsum_trains_equal_to_torch():
    """cumsum's gradient is flip, cumsum, flip: all three run on the wafer."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), RunningSum(), nn.Linear(8, 3))
    gen = torch.Generator().manual_seed(0)
    batches = [(torch.randn(4, 8, generator=gen), torch.randint(0, 3, (4,), generator=gen))
               for _ in range(20)]
    session, eager = train_both(model, nn.CrossEntropyLoss(), sgd, batches)
    assert_same_parameters(session, eager, SGD_TOLERANCE)
    assert "aten.flip.default" in {op.op for op in session.plan.graph.ops}


class RunningSum(nn.Module):
    def forward(self, x):
        return torch.cumsum(x, dim=-1)
