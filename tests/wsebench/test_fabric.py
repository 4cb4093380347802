"""`wb.fabric.check`: a compiled session's kernel on the cycle-level fabric model, streaming the
last step's own tensors, next to the analytic model, the estimate and the measurement."""
import numpy as np
import pytest
import torch
from torch import nn

import wsebench as wb
from compiler.kernels import kind_of
from simulator.fabric.operands import weight


@pytest.fixture(scope="module")
def session():
    torch.manual_seed(0)
    model = wb.models.mlp(16, 32, 4, depth=3, activation="relu")
    x, y = wb.data.spirals(64, 16, 4)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    s = wb.compile(model, nn.CrossEntropyLoss(), example=(x[:8], y[:8]), optimizer=opt,
                   backend="numpy")
    return s, x[:8], y[:8]


def test_check_needs_a_step_first(session):
    s, x, y = session
    fresh = wb.compile(s.model, nn.CrossEntropyLoss(), example=(x, y),
                       optimizer=torch.optim.SGD(s.model.parameters(), lr=0.05), backend="numpy")
    with pytest.raises(wb.ConfigError, match="session.step"):
        wb.fabric.check(fresh)


def test_check_streams_the_steps_relu_output_and_prints_where_the_models_disagree(session, capsys):
    s, x, y = session
    s.step(x, y)
    c = wb.fabric.check(s, kernel="fc2", samples=3)
    printed = capsys.readouterr().out
    for word in ("compute", "SRAM", "link", "queueing", "fill", "reduction", "static estimate",
                 "measured this step"):
        assert word in printed
    assert c.kernel == "fc2" and c.samples == 3 and c.error < 1e-4
    # fc2 streams fc1's ReLU output: the zeros the fabric's sender filtered are the step's own
    relu = s._trainer.executor._values[s.plan.kernel["fc2"].calls[0]["x"]][:3]
    sent = c.run.work[0, 2].sum() / s.plan.target.task_cycles          # x wavelets received
    assert 0.0 < float(np.mean(relu == 0)) and sent > 0
    assert c.analytic_total <= c.fabric["total"]
    timing = next(t for t in s._trainer.last_timing.kernels if t.name == "fc2")
    # each sample's forward within its fwd + bwd (the run's fill aside: a latency, once a run)
    assert float(np.sum(c.analytic["total"])) <= float(timing.sample_cycles[:3].sum())


def test_check_runs_the_backward_on_the_steps_gradients(session, capsys):
    s, x, y = session
    s.step(x, y)
    c = wb.fabric.check(s, kernel="fc2", samples=2, pass_="backward")
    assert "backward" in capsys.readouterr().out
    assert c.pass_ == "backward" and c.error < 1e-4
    assert c.analytic_total <= c.fabric["total"]
    with pytest.raises(NotImplementedError, match="no 'sideways' pass"):
        wb.fabric.check(s, kernel="fc2", pass_="sideways", show=False)


def test_check_names_bad_kernels(session):
    s, x, y = session
    s.step(x, y)
    with pytest.raises(wb.ConfigError, match="no kernel 'nope'.*fc1"):
        wb.fabric.check(s, kernel="nope")
    generated = next(k.name for k in s.plan.kernels if not k.params)     # the log-softmax
    c = wb.fabric.check(s, kernel=generated, samples=2, show=False)
    assert c.error == 0 and c.fabric["total"] >= c.analytic_total > 0
    with pytest.raises(ValueError, match="samples must be between 1"):
        wb.fabric.check(s, kernel="fc1", samples=100)


def test_the_weight_streamed_against_is_the_parameter_through_its_view(session):
    s, _, _ = session
    kernel = s.plan.kernel["fc2"]
    fqn, _ = kind_of(kernel).weight_view(s.plan.graph, kernel)
    w = weight(np, s.plan.graph, kernel, s._trainer.params)
    assert w.shape == kernel.nest.extents
    np.testing.assert_array_equal(w, np.asarray(s._trainer.params[fqn]).T)   # nn.Linear: x @ W.T


def test_without_a_kernel_the_whole_step_agrees_with_the_analytic_step_within_ten_percent(capsys):
    """A small classroom MLP (ReLU, dropout, SGD with momentum), every kernel forward and
    backward, the routes between them and the update, on its first samples (issue 15)."""
    torch.manual_seed(0)
    model = wb.models.mlp(16, 16, 4, depth=2, activation="relu", dropout=0.1)
    x, y = wb.data.spirals(8, 16, 4)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    s = wb.compile(model, nn.CrossEntropyLoss(), example=(x, y), optimizer=opt, backend="numpy")
    s.step(x, y)
    c = wb.fabric.check(s, samples=3)
    printed = capsys.readouterr().out
    for word in ("whole step", "compute", "SRAM", "link", "queueing", "fill", "static estimate",
                 "measured step"):
        assert word in printed
    assert set(c.step.order) == {k.name for k in s.plan.kernels} and c.step.converged
    assert abs(c.ratio - 1.0) <= 0.10, c.table()
    assert c.error < 1e-4                          # every kernel computed the right numbers
    # the step is no shorter than the bottleneck's work and than any kernel's last run
    assert c.step.cycles >= max(st.end for st in c.step.stages.values())
    assert c.step.cycles >= c.fabric["compute"] + c.fabric["task"]
