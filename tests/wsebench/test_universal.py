"""The Universal Transformer with ACT (torch only): halting semantics against an independent
implementation of Graves 2016, the ponder cost's gradient, fixed depth, padding, marker ops."""
import copy
import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from compiler import ConfigError
from compiler.frontend import capture
from compiler import op_names
from wsebench import markers
from wsebench.models import EncoderBlock
from wsebench.universal import PonderLoss, sinusoid, universal_transformer, ut_loss

STEPS, EPS = 5, 0.01


def _model(task="tag", **kwargs):
    options = dict(vocab=8, d_model=16, heads=2, ffn=32, max_steps=STEPS, classes=3, task=task,
                   max_len=10, epsilon=EPS, seed=0)
    return universal_transformer(**(options | kwargs)).eval()


def _ids(batch=6, length=10, seed=1):
    x = torch.randint(1, 8, (batch, length), generator=torch.Generator().manual_seed(seed))
    x[0, 5:] = 0
    x[3, 2:] = 0
    return x


def _run_recording_p(model, x):
    """Forward, plus the halting probabilities p_n [B, T] of every step (from a hook)."""
    ps = []
    hook = model.halt.register_forward_hook(lambda m, i, o: ps.append(torch.sigmoid(o).squeeze(-1)))
    try:
        logits = model(x)
    finally:
        hook.remove()
    return logits, torch.stack(ps).detach().numpy()


def _graves_reference(p, real, max_steps, eps):
    """Graves 2016 eqs. 7-10, one position at a time in float32: N, R and the weights w_n."""
    steps, weights = np.zeros(p.shape[1:]), np.zeros(p.shape, dtype=np.float32)
    remainder = np.zeros(p.shape[1:], dtype=np.float32)
    for b, t in zip(*np.nonzero(real)):
        cum = np.float32(0)
        for n in range(max_steps):
            if cum + p[n, b, t] >= np.float32(1 - eps) or n == max_steps - 1:
                steps[b, t], remainder[b, t] = n + 1, np.float32(1) - cum
                weights[n, b, t] = remainder[b, t]
                break
            weights[n, b, t] = p[n, b, t]
            cum = cum + p[n, b, t]
    return steps, remainder, weights


def test_halting_matches_graves_act_position_by_position():
    model, x = _model(), _ids()
    _, p = _run_recording_p(model, x)
    rec, real = model.last, (x != 0).numpy()
    steps, remainder, weights = _graves_reference(p, real, STEPS, EPS)
    np.testing.assert_array_equal(rec.steps.numpy(), steps)
    np.testing.assert_allclose(rec.remainder.detach().numpy(), remainder, atol=1e-6)
    np.testing.assert_allclose(torch.stack(rec.weights).detach().numpy(), weights, atol=1e-6)
    assert len(np.unique(steps[real])) >= 3                   # positions really halt at different steps
    # the weights of a real position sum to one (the remainder closes the sum); pad gets none
    total = rec.halting_total.detach().numpy()
    np.testing.assert_allclose(total[real], 1.0, atol=1e-6)
    assert (total[~real] == 0).all() and (rec.steps.numpy()[~real] == 0).all()
    # N counts the steps in which the position ran
    np.testing.assert_array_equal(torch.stack(rec.running).sum(0).numpy(), steps)
    assert rec.running_fraction[0] == 1.0
    assert rec.running_fraction == sorted(rec.running_fraction, reverse=True)
    assert rec.mean_steps == pytest.approx(steps[real].mean())


def test_output_is_the_act_weighted_mean_of_the_step_states():
    model, x = _model(), _ids()
    states = []
    hook = model.block.register_forward_hook(lambda m, i, o: states.append(o))
    h = []
    norm_hook = model.norm.register_forward_hook(lambda m, i, o: h.append(i[0]))
    model(x)
    hook.remove(), norm_hook.remove()
    expected = sum(w.unsqueeze(-1) * s for w, s in zip(model.last.weights, states))
    torch.testing.assert_close(h[0], expected, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("k", range(1, STEPS + 1))
def test_constant_halting_probability_halts_every_position_at_step_k(k):
    """p = 1/k at every step: the sum reaches 1 (>= 1 - eps) exactly at step k, so N = k and
    R = 1 - (k - 1)/k; a very large bias (p = 1) halts everything at step 1 with R = 1."""
    model, x = _model(), _ids()
    real = x != 0
    with torch.no_grad():
        model.halt.weight.zero_()
        model.halt.bias.fill_(math.log(1 / k / (1 - 1 / k)) if k > 1 else 50.0)
    model(x)
    rec = model.last
    assert (rec.steps[real] == k).all() and (rec.steps[~real] == 0).all()
    torch.testing.assert_close(rec.remainder[real], torch.full((int(real.sum()),), 1 - (k - 1) / k),
                               atol=1e-5, rtol=0)
    assert rec.running_fraction == [1.0] * k + [0.0] * (STEPS - k)
    assert rec.ponder_cost.item() == pytest.approx(0.01 * (k + 1 - (k - 1) / k), rel=1e-5)


def test_max_steps_caps_pondering_and_the_remainder_takes_the_rest():
    model, x = _model(), _ids()
    real = x != 0
    with torch.no_grad():
        model.halt.bias.fill_(-30.0)                          # p ~ 1e-13: never reaches 1 - eps
        model.halt.weight.zero_()
    model(x)
    assert (model.last.steps[real] == STEPS).all()
    torch.testing.assert_close(model.last.remainder[real], torch.ones(int(real.sum())))


def test_ponder_cost_has_the_gradient_of_graves_eq_14():
    """d(tau * mean(N + R)) / dp_n = -tau / count for n < N (through R), 0 otherwise; so the
    halting bias gets sum over those (n, position) of -tau / count * p_n (1 - p_n)."""
    tau = 0.05
    model, x = _model(tau=tau), _ids()
    _, p = _run_recording_p(model, x)
    rec, real = model.last, (x != 0).numpy()
    steps = rec.steps.numpy()
    rec.ponder_cost.backward()
    before = np.arange(STEPS)[:, None, None] < steps[None] - 1          # n < N (0-based n < N-1)
    expected = (-tau / real.sum() * p * (1 - p) * before).sum()
    assert model.halt.bias.grad.item() == pytest.approx(expected, rel=1e-4)
    assert model.halt.bias.grad.item() < 0 and model.halt.weight.grad.abs().sum() > 0
    expected_value = tau * (steps + rec.remainder.detach().numpy())[real].mean()
    assert rec.ponder_cost.item() == pytest.approx(expected_value, rel=1e-6)


def _fixed_depth_by_hand(model, x):
    pad = x == 0
    state = model.embed(x)
    positions = sinusoid(model.max_len, model.embed.embedding_dim)[:x.shape[1]]
    for n in range(model.max_steps):
        new = model.block(state + positions + sinusoid(model.max_steps, state.shape[-1], 1)[n], pad)
        state = torch.where(pad.unsqueeze(-1), state, new)
    return model.head(model.norm(state))


def test_act_false_is_the_fixed_depth_model():
    model, x = _model(act=False), _ids()
    assert not hasattr(model, "halt")
    torch.testing.assert_close(model(x), _fixed_depth_by_hand(model, x), rtol=0, atol=0)
    real = x != 0
    assert (model.last.steps[real] == STEPS).all() and model.last.ponder_cost is None
    assert model.last.running_fraction == [1.0] * STEPS


def test_act_that_never_halts_early_equals_fixed_depth():
    adaptive, fixed, x = _model(), _model(act=False), _ids()
    state = {k: v for k, v in adaptive.state_dict().items() if not k.startswith("halt.")}
    fixed.load_state_dict(state)
    with torch.no_grad():
        adaptive.halt.weight.zero_()
        adaptive.halt.bias.fill_(-30.0)          # w_n ~ 1e-13 for n < max_steps, w_max ~ 1
    torch.testing.assert_close(adaptive(x), fixed(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("task", ["tag", "classify"])
def test_padding_does_not_change_real_positions(task):
    model = _model(task)
    x = _ids(length=6)
    wide = torch.cat([x, torch.zeros(6, 4, dtype=x.dtype)], dim=1)
    narrow_logits, narrow = model(x), model.last
    wide_logits, wide_rec = model(wide), model.last
    real = x != 0
    if task == "tag":
        torch.testing.assert_close(wide_logits[:, :6][real], narrow_logits[real], atol=1e-6, rtol=1e-5)
    else:
        torch.testing.assert_close(wide_logits, narrow_logits, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(wide_rec.steps[:, :6], narrow.steps)
    torch.testing.assert_close(wide_rec.ponder_cost, narrow.ponder_cost)
    assert (wide_rec.steps[:, 6:] == 0).all()


def test_halted_positions_keep_their_state():
    model, x = _model(), _ids()
    inputs = []
    hook = model.block.register_forward_hook(lambda m, i, o: inputs.append(i[0]))
    model(x)
    hook.remove()
    rec = model.last
    step_signal = sinusoid(STEPS, 16, start=1)
    checked = 0
    for n in range(1, STEPS):
        stopped = ~rec.running[n - 1] & rec.real              # did not run in step n - 1
        # so its state did not change: the block's input moves only by the step signal
        drift = inputs[n] - inputs[n - 1] - (step_signal[n] - step_signal[n - 1])
        assert drift[stopped].abs().max() < 1e-5 if stopped.any() else True
        moved = rec.running[n - 1] & rec.real
        if moved.any():                                       # while running states do change
            assert drift[moved].abs().amax(-1).min() > 1e-3
        checked += int(stopped.sum())
    assert checked > 0


def test_ut_loss_adds_the_ponder_cost_and_refuses_foreign_logits():
    for task, y in (("classify", torch.tensor([0, 1, 2, 0, 1, 2])),
                    ("tag", torch.randint(0, 3, (6, 10)))):
        model, x = _model(task), _ids()
        loss_fn = ut_loss(model)
        logits = model(x)
        base = nn.CrossEntropyLoss()(logits.reshape(-1, 3), y.reshape(-1))
        torch.testing.assert_close(loss_fn(logits, y), base + model.last.ponder_cost)
        other = copy.deepcopy(model)
        with pytest.raises(ValueError, match="built for"):
            loss_fn(other(x), y)
    with pytest.raises(ConfigError, match="UniversalTransformer"):
        PonderLoss(nn.Linear(2, 2))


def test_dropout_trains_and_the_record_holds_each_forward():
    model = _model(dropout=0.2).train()
    x, y = _ids(), torch.randint(0, 3, (6, 10))
    loss = ut_loss(model)(model(x), y)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    assert model.halt.weight.grad.abs().sum() > 0


def test_uses_the_shared_encoder_block():
    model = _model(heads=4, attention="torch")
    assert isinstance(model.block, EncoderBlock)
    assert len([m for m in model.modules() if isinstance(m, EncoderBlock)]) == 1
    model(_ids())
    assert model.last.steps.max() <= STEPS


def test_markers_are_identity_with_identity_gradients():
    h = torch.randn(2, 3, 4, requires_grad=True)
    mask = torch.tensor([[True, False, True], [False, False, True]])
    out = markers.running(h, mask)
    torch.testing.assert_close(out, h, rtol=0, atol=0)
    g = torch.randn(2, 3, 4)
    out.backward(g)
    torch.testing.assert_close(h.grad, g, rtol=0, atol=0)
    with pytest.raises(ValueError, match="bool"):
        markers.running(h, mask.float())
    with pytest.raises(ValueError, match="shaped like"):
        markers.running(h, mask[:, :2])


@pytest.mark.parametrize("method", ["export", "aot"])
def test_capture_keeps_one_marker_per_step_with_its_mask(method):
    import warnings
    model = _model("classify", max_steps=2, d_model=8, ffn=8, dropout=0.1).train()
    x = _ids()
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    with warnings.catch_warnings():
        warnings.simplefilter("error")                        # no attribute-assignment warnings
        graph = capture(model, ut_loss(model), (x, y), method=method)
    forward = [op for op in graph.ops if op.op == op_names.RUNNING_OP]
    backward = [op for op in graph.ops if op.op == op_names.RUNNING_GRAD_OP]
    assert len(forward) == len(backward) == 2 + 1           # one per step, one ending the loop
    masks = [op.args[1].name for op in forward]
    assert len(set(masks[:2])) == 2                           # each step has its own mask
    assert [op.args[1].name for op in backward] == masks[::-1]   # backward runs the steps in reverse
    for name in masks:
        assert graph.type_of[name].dtype == "bool" and graph.type_of[name].shape == tuple(x.shape)
    grads = dict(graph.grads)
    assert "halt.weight" in grads and "halt.bias" in grads


@pytest.mark.parametrize("kwargs, message", [
    ({"max_steps": 0}, "max_steps"),
    ({"tau": -1.0}, "tau"),
    ({"tau": float("nan")}, "tau"),
    ({"epsilon": 0.0}, "epsilon"),
    ({"epsilon": 1.0}, "epsilon"),
    ({"act": "yes"}, "act"),
    ({"task": "seq2seq"}, "task"),
    ({"pad_id": 8}, "pad_id"),
    ({"heads": 3}, "divisible"),
    ({"attention": "flash"}, "attention"),
    ({"dropout": 1.0}, "dropout"),
])
def test_bad_arguments_raise_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        _model(**kwargs)


def test_forward_refuses_bad_token_ids():
    model = _model()
    with pytest.raises(ValueError, match="token ids"):
        model(torch.zeros(2, 11, dtype=torch.int64))          # longer than max_len
    with pytest.raises(ValueError, match="token ids"):
        model(torch.zeros(2, 4))


def _plan(max_steps):
    from compiler import compile_plan, wafer
    from compiler.frontend import optimizer_spec
    from compiler.passes import run_pipeline
    model = _model("classify", max_steps=max_steps, d_model=8, ffn=8)
    x, y = _ids(), torch.tensor([0, 1, 2, 0, 1, 2])
    graph = run_pipeline(capture(model, ut_loss(model), (x, y), method="aot"))
    return compile_plan(graph, wafer("classroom"),
                        optimizer_spec(torch.optim.SGD(model.parameters(), lr=0.1)))


def test_the_plan_places_the_shared_block_once():
    """One kernel and one rectangle per module of the block, whatever max_steps is; the data
    goes through each kernel once per step."""
    plans = {steps: _plan(steps) for steps in (2, 4)}
    names = {steps: [k.name for k in plan.kernels] for steps, plan in plans.items()}
    assert names[2] == names[4]
    modules = {fqn.rsplit(".", 1)[0] for fqn, _ in _model().named_parameters()}
    block = sorted(m for m in modules if m.startswith("block.") and not m.endswith(("ln1", "ln2")))
    for steps, plan in plans.items():
        assert len(set(names[steps])) == len(names[steps])
        assert sorted(r.name for r in plan.rects) == sorted(names[steps])   # one rectangle each
        for module in block + ["block.ln1", "block.ln2", "block.attn.sdpa", "halt"]:
            assert names[steps].count(module) == 1
        for module in block + ["block.attn.sdpa", "halt"]:      # matmul and attention kernels
            assert plan.kernel[module].steps == steps
        assert plan.kernel["head"].steps == 1
        assert not any(n.startswith(("attention", "block.attn.sdpa_")) for n in names[steps])
    from compiler.plan import Plan
    loaded = Plan.from_json(plans[4].to_json())            # the calls survive a round trip
    assert loaded.kernels == plans[4].kernels
