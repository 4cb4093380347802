"""Input contracts at compile and at every step (wsebench.contracts)."""
import numpy as np
import pytest
import torch
import torch.nn as nn

import wsebench as wb
from wsebench.contracts import LabelRule, label_rule
from wsebench.errors import InputError


def _compile(model=None, x=None, y=None, loss=None, opt=None):
    model = model or wb.models.mlp(8, 16, 3, depth=2, dropout=0.0)
    x = torch.randn(4, 8) if x is None else x
    y = torch.tensor([0, 1, 2, 0]) if y is None else y
    opt = opt or torch.optim.SGD(model.parameters(), lr=0.1)
    return wb.compile(model, loss or nn.CrossEntropyLoss(), example=(x, y), optimizer=opt,
                      backend="numpy")


@pytest.fixture(scope="module")
def session():
    return _compile()


@pytest.mark.parametrize("labels, named", [([-1, -2, 0, 1], "label -1"), ([0, 1, 3, 0], "label 3")])
def test_labels_out_of_range_are_refused_like_torch(session, labels, named):
    y = torch.tensor(labels)
    with pytest.raises(IndexError, match="out of bounds"):      # the oracle refuses them too
        nn.CrossEntropyLoss()(torch.randn(4, 3), y)
    with pytest.raises(InputError, match=rf"step 1: {named} is out of range.*\[0, 3\)"):
        session.step(torch.randn(4, 8), y)
    with pytest.raises(InputError, match=named):
        _compile(y=y)


def test_the_ignore_index_is_a_valid_label_and_matches_torch():
    torch.manual_seed(0)
    model = wb.models.mlp(8, 16, 3, depth=2, dropout=0.0)
    loss = nn.CrossEntropyLoss(ignore_index=-7)
    x, y = torch.randn(4, 8), torch.tensor([0, -7, 2, -7])
    s = _compile(model, x, y, loss)
    assert s.step(x, y).loss == pytest.approx(loss(model(x), y).item(), rel=1e-6)
    assert label_rule(s.plan.graph) == LabelRule(3, -7)


def test_float_labels_are_refused_at_compile_and_at_step(session):
    with pytest.raises(InputError, match=r"y \(4,\) float32.*y.long\(\)"):
        _compile(y=torch.tensor([0., 1., 2., 0.]))
    with pytest.raises(InputError, match="batch y is float32.*int64"):
        session.step(torch.randn(4, 8), torch.tensor([0., 1., 2., 0.]))


def test_a_regression_loss_takes_float_targets_without_a_label_rule():
    model = nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 2))
    s = _compile(model, y=torch.randn(4, 2), loss=nn.MSELoss())
    assert label_rule(s.plan.graph) is None
    assert np.isfinite(s.step(torch.randn(4, 8), torch.randn(4, 2)).loss)


def test_mismatched_example_shapes_give_one_clear_error_without_torch_logs(capfd):
    with pytest.raises(InputError, match=r"x \(4, 8\).*y \(5,\).*batch_size \(4\).*\(5\)"):
        _compile(y=torch.tensor([0, 1, 2, 0, 1]))
    assert "fake_tensor" not in capfd.readouterr().err


@pytest.mark.parametrize("x, y", [(torch.randn(0, 8), torch.zeros(0, dtype=torch.long)),
                                  (torch.randn(4, 8), torch.tensor(1))])
def test_an_empty_example_batch_is_refused(x, y):
    with pytest.raises(InputError, match="at least one sample"):
        _compile(x=x, y=y)


@pytest.mark.parametrize("x, y, named", [
    (torch.randn(5, 8), torch.tensor([0, 1, 2, 0, 1]), r"batch x has shape \(5, 8\)"),
    (torch.randn(4, 8).double(), torch.tensor([0, 1, 2, 0]), "batch x is float64"),
    (torch.randn(4, 8), torch.tensor([0, 1, 2, 0], dtype=torch.int32), "batch y is int32"),
])
def test_a_step_batch_must_match_the_example(session, x, y, named):
    with pytest.raises(InputError, match=named):
        session.step(x, y)


def test_the_optimizer_must_cover_exactly_the_models_parameters():
    model = wb.models.mlp(8, 16, 3, depth=2, dropout=0.0)
    subset = torch.optim.SGD(list(model.parameters())[:2], lr=0.1)
    with pytest.raises(wb.ConfigError, match=r"leaves out fc2.weight, fc2.bias"):
        _compile(model, opt=subset)
    other = torch.optim.SGD(list(model.parameters()) + [nn.Parameter(torch.zeros(3))], lr=0.1)
    with pytest.raises(wb.ConfigError, match="1 tensor.*not the model's parameters"):
        _compile(model, opt=other)


def test_cross_entropy_over_one_class_is_refused():
    model = wb.models.mlp(8, 16, 1, depth=2, dropout=0.0)
    with pytest.raises(InputError, match="cross-entropy over 1 class"):
        _compile(model, y=torch.zeros(4, dtype=torch.long))


def test_token_labels_keep_their_ignore_index():
    from tests.configs import tiny_family_config
    parts = wb.config.build(tiny_family_config("transformer"))
    session = wb.config.compile_built(parts)
    rule = label_rule(session.plan.graph)
    assert rule.ignore_index == wb.tasks.IGNORE_INDEX and rule.classes == parts["shape"].classes
    x, y = next(iter(parts["batches"]))
    assert (y == wb.tasks.IGNORE_INDEX).any()            # padded positions pass the check
    assert np.isfinite(session.step(x, y).loss)
