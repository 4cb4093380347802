"""`wb.fabric.check` on a transformer's attention kernel: the kind names the q, k and v its first
call streams (`AttentionKind.fabric_streams`), the step keeps them, and the fabric program runs
on them; attention has a forward program only, and a backward check says so."""
import numpy as np
import pytest
import torch
from torch import nn

import wsebench as wb


@pytest.fixture(scope="module")
def session():
    model = wb.models.transformer(vocab=16, d_model=16, heads=2, layers=1, ffn=32, max_len=8,
                                  attention="torch", seed=5)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(1, 16, (8, 8), generator=g)
    y = (x < 8).sum(dim=1).gt(4).long()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    s = wb.compile(model, nn.CrossEntropyLoss(), example=(x, y), optimizer=opt, backend="numpy")
    s.step(x, y)
    return s


def _attention(session) -> str:
    return next(k.name for k in session.plan.kernels if k.kind == "attention")


def test_the_sdpa_kernel_runs_on_the_fabric_within_ten_percent(session):
    """Four samples on the plan's 8 x 8 cores; the outputs match NumPy's on the step's own q, k,
    v. (On one or two samples the fill differs by ~13 cycles, the row's merge chain: see the
    note.)"""
    c = wb.fabric.check(session, kernel=_attention(session), samples=4, show=False)
    assert c.fabric["total"] > 0 and c.analytic_total > 0
    assert abs(c.ratio - 1) <= 0.10
    assert c.error < 1e-5
    assert c.run.sent.sum() > 0                              # q, k, v moved over the links


def test_the_streamed_operands_are_the_steps_q_k_v(session):
    from simulator.fabric.operands import operands
    trainer = session._trainer
    k = session.plan.kernel[_attention(session)]
    got = operands(trainer.xp, session.plan.graph, k, trainer.executor.values, trainer.params, 2)
    assert set(got) == {"probs", "q", "k", "v"}
    assert got["q"].shape == got["k"].shape == got["v"].shape == (2, 2, 8, 8)
    assert got["probs"].shape == (2, 2, 8, 8)
    # P is the softmax of q k^T (q and k as the capture scaled them) plus the padding mask
    score = np.einsum("bhqd,bhkd->bhqk", got["q"], got["k"])
    p = np.exp(score - score.max(axis=-1, keepdims=True))
    real = got["probs"] > 0
    p = np.where(real, p, 0)
    np.testing.assert_allclose(p / p.sum(axis=-1, keepdims=True), got["probs"], atol=1e-5)


def test_a_backward_check_says_attention_is_forward_only(session):
    with pytest.raises(NotImplementedError, match="forward only, no 'backward' pass"):
        wb.fabric.check(session, kernel=_attention(session), pass_="backward", show=False)
