"""The numerics contract for the MLP family: 20 steps on the wafer == 20 eager torch steps."""
import pytest
import torch
import torch.nn as nn

import wsebench as wb

from .torch_oracle import train_eager

OPTIMIZERS = {
    "sgd": (lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=1e-3), 1e-6),
    "sgd_nesterov": (lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True,
                                               weight_decay=1e-3), 1e-6),
    "adam": (lambda p: torch.optim.Adam(p, lr=1e-3, weight_decay=1e-4), 2e-5),
    "adamw": (lambda p: torch.optim.AdamW(p, lr=1e-3, weight_decay=0.05), 2e-5),
}


def _batches(steps=20, batch=32, features=12, classes=5, seed=0):
    x, y = wb.data.blobs(steps * batch, features, classes, seed=seed)
    return [(x[i * batch:(i + 1) * batch], y[i * batch:(i + 1) * batch]) for i in range(steps)]


def _assert_same_parameters(session, reference, atol):
    ours = session.state_dict()
    theirs = reference.state_dict()
    assert ours.keys() == theirs.keys()
    for key, value in theirs.items():
        assert ours[key].shape == value.shape, key
        diff = (ours[key] - value).abs().max().item()
        assert diff <= atol, f"{key}: max |sim - torch| = {diff:.3g} > {atol:g}"


def _train_both(model, loss_fn, make_opt, batches, **compile_kwargs):
    reference, masks = train_eager(model, loss_fn, make_opt, batches)
    session = wb.compile(model, loss_fn, example=batches[0], optimizer=make_opt(model.parameters()),
                         backend="numpy", **compile_kwargs)
    for (x, y), step_masks in zip(batches, masks):
        session.step(x, y, dropout_masks=step_masks)
    return session, reference


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_relu_dropout_mlp_matches_torch(name):
    make_opt, atol = OPTIMIZERS[name]
    model = wb.models.mlp(12, 48, 5, depth=3, activation="relu", dropout=0.3)
    session, reference = _train_both(model, nn.CrossEntropyLoss(), make_opt, _batches())
    assert len(session.plan.graph.masks) == 2          # both dropout sites became mask inputs
    _assert_same_parameters(session, reference, atol)


@pytest.mark.parametrize("activation", ["gelu", "tanh", "identity"])
def test_activations_match_torch(activation):
    make_opt, atol = OPTIMIZERS["sgd"]
    model = wb.models.mlp(12, 32, 5, depth=3, activation=activation)
    session, reference = _train_both(model, nn.CrossEntropyLoss(), make_opt, _batches(steps=10))
    _assert_same_parameters(session, reference, atol)


def test_mse_regression_matches_torch():
    make_opt, atol = OPTIMIZERS["sgd"]
    model = wb.models.mlp(12, 32, 3, depth=2, activation="relu")
    x, _ = wb.data.blobs(320, 12, 3)
    targets = torch.randn(320, 3)
    batches = [(x[i:i + 32], targets[i:i + 32]) for i in range(0, 320, 32)]
    session, reference = _train_both(model, nn.MSELoss(), make_opt, batches)
    _assert_same_parameters(session, reference, atol)


def test_aot_capture_trains_identically():
    make_opt, atol = OPTIMIZERS["sgd"]
    model = wb.models.mlp(12, 32, 5, depth=3, activation="relu", dropout=0.2)
    session, reference = _train_both(model, nn.CrossEntropyLoss(), make_opt, _batches(steps=10),
                                     capture_method="aot")
    _assert_same_parameters(session, reference, atol)


def test_losses_match_torch_step_by_step():
    make_opt, _ = OPTIMIZERS["sgd"]
    model = wb.models.mlp(12, 32, 5, depth=3, dropout=0.3)
    batches = _batches(steps=5)
    session = wb.compile(model, nn.CrossEntropyLoss(), example=batches[0],
                         optimizer=make_opt(model.parameters()), backend="numpy")
    import copy
    from .torch_oracle import eager_step
    eager = copy.deepcopy(model)
    opt = make_opt(eager.parameters())
    for x, y in batches:
        loss, masks = eager_step(eager, nn.CrossEntropyLoss(), opt, x, y)
        result = session.step(x, y, dropout_masks=masks)
        assert abs(result.loss - loss.item()) <= 1e-5 * max(1.0, abs(loss.item()))


@pytest.mark.gpu
@pytest.mark.skipif(not __import__("simulator.backend", fromlist=["x"]).cuda_available(),
                    reason="needs CUDA and CuPy")
@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_relu_dropout_mlp_matches_torch_on_cupy(name):
    make_opt, atol = OPTIMIZERS[name]
    model = wb.models.mlp(12, 48, 5, depth=3, activation="relu", dropout=0.3)
    batches = _batches()
    reference, masks = train_eager(model, nn.CrossEntropyLoss(), make_opt, batches)
    session = wb.compile(model, nn.CrossEntropyLoss(), example=batches[0],
                         optimizer=make_opt(model.parameters()), backend="cupy")
    assert session.backend == "cupy"
    for (x, y), step_masks in zip(batches, masks):
        session.step(x, y, dropout_masks=step_masks)
    _assert_same_parameters(session, reference, atol)


@pytest.mark.parametrize("p", [0.42, 0.71])
def test_dropout_scale_rounds_like_eager(p):
    make_opt, atol = OPTIMIZERS["sgd"]
    model = wb.models.mlp(12, 32, 5, depth=3, activation="relu", dropout=p)
    session, reference = _train_both(model, nn.CrossEntropyLoss(), make_opt, _batches(steps=5))
    _assert_same_parameters(session, reference, atol)
