"""Finite checks: every step checks its input, loss, gradients and update; a NaN never trains on
silently (simulator.training.first_nonfinite, Session.step's on_nonfinite policy)."""
import warnings

import pytest
import torch
import torch.nn as nn

import wsebench as wb
from wsebench.errors import NonFiniteError, NonFiniteWarning


def _model():
    torch.manual_seed(0)
    return wb.models.mlp(8, 16, 3, depth=2, dropout=0.0)


def _session(lr=0.1, **kwargs):
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    example = (torch.randn(4, 8), torch.tensor([0, 1, 2, 0]))
    return model, wb.compile(model, nn.CrossEntropyLoss(), example=example, optimizer=opt,
                             backend="numpy", **kwargs)


def _nan_batch():
    x = torch.randn(4, 8)
    x[1, 3] = float("nan")
    return x, torch.tensor([0, 1, 2, 0])


def _same(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def test_a_nan_input_stops_the_step_naming_it_and_changes_nothing():
    _, s = _session()
    before = s.state_dict()
    with pytest.raises(NonFiniteError, match=r"step 1: the input x is not finite"):
        s.step(*_nan_batch())
    assert _same(before, s.state_dict())
    assert s._trainer.step_count == 0 and len(s.history) == 0


def test_after_a_refused_step_training_equals_torch_on_the_good_batches():
    """The refused step leaves no trace: the next good step gives torch's parameters."""
    model, s = _session()
    eager = _model()
    opt = torch.optim.SGD(eager.parameters(), lr=0.1)
    with pytest.raises(NonFiniteError):
        s.step(*_nan_batch())
    x, y = torch.randn(4, 8), torch.tensor([2, 1, 0, 1])
    result = s.step(x, y)
    opt.zero_grad()
    loss = nn.CrossEntropyLoss()(eager(x), y)
    loss.backward()
    opt.step()
    assert result.step == 1 and result.nonfinite is None
    assert result.loss == pytest.approx(loss.item(), rel=1e-6)
    for k, v in eager.state_dict().items():
        torch.testing.assert_close(s.state_dict()[k], v, rtol=0, atol=1e-6)


def test_an_overflowing_update_is_named_with_its_parameter():
    _, s = _session(lr=3e38)
    with pytest.raises(NonFiniteError, match=r"step 1: the update of parameter '\w+\.(weight|bias)'"):
        s.step(torch.randn(4, 8) * 100, torch.tensor([0, 1, 2, 0]))


def test_skip_drops_the_update_with_a_warning_and_training_goes_on():
    _, s = _session(on_nonfinite="skip")
    before = s.state_dict()
    with pytest.warns(NonFiniteWarning, match="update was skipped"):
        skipped = s.step(*_nan_batch())
    assert skipped.nonfinite == "input x" and _same(before, s.state_dict())
    good = s.step(torch.randn(4, 8), torch.tensor([0, 1, 2, 0]))
    assert good.nonfinite is None and good.step == 1 and s._trainer.step_count == 1
    assert not _same(before, s.state_dict())
    assert [r.nonfinite for r in s.history] == ["input x", None]


def test_warn_applies_the_step_and_says_so():
    _, s = _session(on_nonfinite="warn")
    with pytest.warns(NonFiniteWarning, match="update was applied"):
        result = s.step(*_nan_batch())
    assert result.nonfinite == "input x" and s._trainer.step_count == 1
    assert torch.isnan(s.state_dict()["fc1.weight"]).any()


def test_finite_steps_warn_about_nothing():
    _, s = _session()
    with warnings.catch_warnings():
        warnings.simplefilter("error", NonFiniteWarning)
        assert s.step(torch.randn(4, 8), torch.tensor([0, 1, 2, 0])).nonfinite is None


@pytest.mark.parametrize("policy", ["ignore", None, 1])
def test_an_unknown_policy_is_refused(policy):
    with pytest.raises(wb.ConfigError, match="on_nonfinite"):
        _session(on_nonfinite=policy)


@pytest.mark.parametrize("make", [
    lambda p: torch.optim.SGD(p, lr=float("inf")),
    lambda p: torch.optim.SGD(p, lr=float("nan")),
    lambda p: torch.optim.SGD(p, lr=0.1, momentum=float("inf")),
    lambda p: torch.optim.Adam(p, eps=float("inf")),
])
def test_non_finite_hyperparameters_are_refused_alike(make):
    model = _model()
    with pytest.raises(wb.ConfigError, match="must be a finite number"):
        wb.compile(model, nn.CrossEntropyLoss(), example=(torch.randn(4, 8), torch.tensor([0, 1, 2, 0])),
                   optimizer=make(model.parameters()), backend="numpy")


def test_a_config_run_with_a_nan_stops_with_the_step():
    from tests.configs import tiny_config
    config = tiny_config(steps=2, optimizer={"name": "sgd", "lr": 1e38})
    config["data"]["name"] = "blobs"
    config["data"]["spread"] = 1e30
    with pytest.raises(NonFiniteError, match="step 1"):
        wb.config.run(config, progress=False)


def _step_tensors(x, grad, update):
    from types import SimpleNamespace
    import numpy as np
    graph = SimpleNamespace(inputs=("x", "y"), loss="loss", grads=(("fc.weight", "g"),))
    env = {"x": np.asarray(x, np.float32), "y": np.zeros(2, np.int64),
           "loss": np.float32(0.5), "g": np.asarray(grad, np.float32)}
    return graph, env, {"fc.weight": (np.asarray(update, np.float32), {})}


def test_a_sum_that_overflows_is_not_mistaken_for_a_non_finite_tensor():
    import numpy as np
    from simulator.training import first_nonfinite
    big = [3e38, 3e38]                               # finite, but their float32 sum is inf
    assert first_nonfinite(np, *_step_tensors(big, [1.0, 2.0], big)) is None


def test_the_first_non_finite_gradient_is_named_before_its_update():
    import numpy as np
    from simulator.training import first_nonfinite
    named = first_nonfinite(np, *_step_tensors([1.0, 2.0], [np.inf, 0.0], [np.nan, 0.0]))
    assert named == "gradient of parameter 'fc.weight'"
