"""Induced sparsity trains like eager torch: ReLU insertion and drop-small (top-k with each
gradient mode, backward drop, threshold, schedules), 20 steps each, SGD within 1e-6 and Adam
within 1e-5. The eager model is `wsebench.sparsity.apply`'s copy, which runs the same custom op."""
import numpy as np
import pytest
import torch
import torch.nn as nn

import wsebench as wb
from wsebench import sparsity as sp

from .torch_oracle import eager_step

SGD = (lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=1e-3), 1e-6)
ADAM = (lambda p: torch.optim.Adam(p, lr=1e-3, weight_decay=1e-4), 1e-5)


def _batches(steps=20, batch=32, features=12, classes=5, seed=0):
    x, y = wb.data.blobs(steps * batch, features, classes, seed=seed)
    return [(x[i * batch:(i + 1) * batch], y[i * batch:(i + 1) * batch]) for i in range(steps)]


def _train_both(model, sparsity, optimizer, batches):
    """The wafer session and the eager reference, stepped side by side on the same batches,
    drop schedule and dropout masks; returns both and the step losses of each."""
    make_opt, _ = optimizer
    loss_fn = nn.CrossEntropyLoss()
    session = wb.compile(model, loss_fn, example=batches[0], optimizer=make_opt(model.parameters()),
                         backend="numpy", sparsity=sparsity)
    eager = sp.apply(model, sparsity).train()
    opt = make_opt(eager.parameters())
    losses = []
    for step, (x, y) in enumerate(batches):
        sp.set_step(eager, sparsity, step)
        loss, masks = eager_step(eager, loss_fn, opt, x, y)
        result = session.step(x, y, dropout_masks=masks)
        losses.append((result.loss, loss.item()))
    return session, eager, losses


def _assert_same(session, eager, model, atol):
    ours, theirs = session.state_dict(), eager.state_dict()
    assert ours.keys() == theirs.keys() == model.state_dict().keys()
    for key, value in theirs.items():
        diff = (ours[key] - value).abs().max().item()
        assert diff <= atol, f"{key}: max |sim - torch| = {diff:.3g} > {atol:g}"


CASES = {
    "relu_insertion": dict(relu=["act*"]),
    "topk_masked": dict(drop=[{"targets": ["act1", "act2"], "fraction": 0.5}]),
    "topk_straight_through": dict(drop=[{"targets": ["fc1"], "fraction": 0.4,
                                         "gradient": "straight-through"}]),
    "backward_drop": dict(drop=[{"targets": ["fc2"], "fraction": 0.5, "where": "backward"}]),
    "both": dict(relu=["act*"], drop=[{"targets": ["act*"], "fraction": 0.5, "where": "both"}]),
    "threshold": dict(drop=[{"targets": ["fc1"], "threshold": 0.3}]),
    "linear_schedule": dict(drop=[{"targets": ["act1"], "fraction": 0.8, "schedule": "linear",
                                   "initial": 0.1, "steps": 12, "start": 3}]),
    "cosine_schedule": dict(drop=[{"targets": ["fc2"], "fraction": 0.6, "schedule": "cosine",
                                   "steps": 15, "where": "both"}]),
}


ADAM_CASES = ("relu_insertion", "topk_masked", "both", "linear_schedule")


@pytest.mark.parametrize("case, optimizer", [(c, "sgd") for c in sorted(CASES)] +
                         [(c, "adam") for c in ADAM_CASES])
def test_induced_sparsity_matches_torch(case, optimizer):
    opt = SGD if optimizer == "sgd" else ADAM
    model = wb.models.mlp(12, 48, 5, depth=3, activation="gelu", seed=1)
    session, eager, losses = _train_both(model, CASES[case], opt, _batches())
    _assert_same(session, eager, model, opt[1])
    ours, theirs = np.array(losses).T
    np.testing.assert_allclose(ours, theirs, rtol=1e-5)


def test_drop_with_dropout_matches_torch():
    model = wb.models.mlp(12, 48, 5, depth=3, activation="relu", dropout=0.3, seed=2)
    sparsity = {"drop": [{"targets": ["drop*"], "fraction": 0.5, "where": "both"}]}
    session, eager, _ = _train_both(model, sparsity, SGD, _batches())
    assert len(session.plan.graph.masks) == 2
    _assert_same(session, eager, model, SGD[1])


def test_drop_op_in_forward_and_backward_of_the_graph():
    model = wb.models.mlp(12, 32, 5, depth=3, activation="relu", seed=0)
    sparsity = {"drop": [{"targets": ["act1"], "fraction": 0.5, "where": "both"}]}
    session = wb.compile(model, nn.CrossEntropyLoss(), example=_batches(1)[0],
                         optimizer=torch.optim.SGD(model.parameters(), lr=0.1), backend="numpy",
                         sparsity=sparsity)
    drops = [op for op in session.plan.graph.ops if op.op == "wsebench.drop_small.default"]
    assert [op.args[3] for op in drops] == ["both", "grad"]
    assert [fqn for _, fqn in session.plan.graph.buffers] == ["act1.wsebench_drop0"]
    assert drops[0].args[1] == drops[1].args[1]      # one schedule buffer feeds both


@pytest.mark.parametrize("fraction", [0.3, 0.5, 0.9])
def test_topk_density_hits_its_target(fraction):
    """Induced sparsity hits its target: actual density within 1% of target for top-k, on a
    tensor with no ties (a Linear's output), measured on the drop op's outputs."""
    model = wb.models.mlp(12, 100, 5, depth=3, activation="relu", seed=3)
    sparsity = {"drop": [{"targets": ["fc1", "fc2"], "fraction": fraction, "where": "both"}]}
    batches = _batches(steps=3)
    session = wb.compile(model, nn.CrossEntropyLoss(), example=batches[0],
                         optimizer=torch.optim.SGD(model.parameters(), lr=0.05), backend="numpy",
                         sparsity=sparsity)
    for x, y in batches:
        session.step(x, y)
    rows = [t for t in session.report().tensors if t["kind"] == "drop"]
    assert {t["module"] for t in rows} == {"fc1", "fc2"}
    for t in rows:
        assert t["target_density"] == pytest.approx(1 - fraction)
        assert abs(t["density"] - t["target_density"]) <= 0.01, t
    # eager torch's op, counted by brute force per sample, keeps the same share
    eager = sp.apply(model, sparsity)
    with torch.no_grad():
        out = eager.fc1(x)            # the hook has dropped it already
    per_sample = (out != 0).sum(dim=1).float() / out.shape[1]
    assert torch.all((per_sample - (1 - fraction)).abs() <= 0.01)


def test_transformer_with_induced_sparsity_matches_torch():
    """Per-sample top-k over [B, T, d] activations, forward and backward, inside attention
    and FFN inputs of a small encoder (the bench's BERT-style experiment)."""
    model = wb.models.transformer(vocab=16, d_model=16, heads=2, layers=1, ffn=32, max_len=8,
                                  classes=2, seed=5)
    sparsity = {"drop": [{"targets": ["layers.*.ln1", "layers.*.ffn.act"], "fraction": 0.5,
                          "where": "both"}]}
    g = torch.Generator().manual_seed(0)
    x = torch.randint(1, 16, (10 * 8, 8), generator=g)
    y = (x < 8).sum(dim=1).gt(4).long()
    batches = [(x[i:i + 8], y[i:i + 8]) for i in range(0, len(x), 8)]
    session, eager, losses = _train_both(model, sparsity, SGD, batches)
    _assert_same(session, eager, model, SGD[1])
    drops = [op for op in session.plan.graph.ops if op.op == "wsebench.drop_small.default"]
    assert len(drops) == 4                               # 2 targets x (forward, gradient)


@pytest.mark.gpu
@pytest.mark.skipif(not __import__("simulator.backend", fromlist=["x"]).cuda_available(),
                    reason="needs CUDA and CuPy")
def test_induced_sparsity_matches_torch_on_cupy():
    make_opt, atol = SGD
    model = wb.models.mlp(12, 48, 5, depth=3, activation="gelu", seed=1)
    sparsity = CASES["both"] | {"drop": CASES["both"]["drop"] + CASES["threshold"]["drop"]}
    batches = _batches()
    session = wb.compile(model, nn.CrossEntropyLoss(), example=batches[0], backend="cupy",
                         optimizer=make_opt(model.parameters()), sparsity=sparsity)
    assert session.backend == "cupy"
    eager = sp.apply(model, sparsity).train()
    opt = make_opt(eager.parameters())
    for step, (x, y) in enumerate(batches):
        sp.set_step(eager, sparsity, step)
        loss = nn.CrossEntropyLoss()(eager(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        session.step(x, y)
    _assert_same(session, eager, model, atol)
