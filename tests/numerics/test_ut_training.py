"""The numerics contract for dynamic depth: a Universal Transformer with ACT (ponder cost,
dropout, padded variable-length batches) trained 20 steps on the wafer == 20 eager torch steps."""
import copy
import itertools

import torch

import wsebench as wb
from compiler import op_names
from wsebench import tasks
from wsebench.universal import universal_transformer, ut_loss

from .torch_oracle import eager_step

OPTIMIZERS = {
    "sgd": (lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=1e-3), 1e-6),
    "adam": (lambda p: torch.optim.Adam(p, lr=1e-3, weight_decay=1e-4), 1e-5),
}
MAX_LEN, STEPS = 8, 3


def _batches(task, steps=20, batch=8):
    # padded to one length: the compiled plan has fixed shapes (the pad costs nothing there)
    return list(itertools.islice(tasks.batches(task, batch, seed=0, pad_to="max"), steps))


def _model(task, **kwargs):
    options = dict(vocab=task.vocab, d_model=8, heads=2, ffn=16, max_steps=STEPS,
                   classes=task.classes, task=task.kind, dropout=0.1, max_len=MAX_LEN, seed=0)
    return universal_transformer(**(options | kwargs))


def _train_both(model, make_opt, batches, **compile_kwargs):
    """Eager torch (recording its dropout masks and each step's running fractions) and the
    wafer, step by step; the losses must agree at every step."""
    eager = copy.deepcopy(model).train()
    eager_loss, opt = ut_loss(eager), make_opt(eager.parameters())
    session = wb.compile(model, ut_loss(model), example=batches[0],
                         optimizer=make_opt(model.parameters()), backend="numpy", **compile_kwargs)
    fractions = []
    for x, y in batches:
        loss, masks = eager_step(eager, eager_loss, opt, x, y)
        fractions.append(eager.last.running_fraction)
        result = session.step(x, y, dropout_masks=masks)
        assert abs(result.loss - loss.item()) <= 1e-5 * max(1.0, abs(loss.item()))
    return session, eager, fractions


def _assert_same_parameters(session, reference, atol):
    ours, theirs = session.state_dict(), reference.state_dict()
    assert ours.keys() == theirs.keys()
    for key, value in theirs.items():
        diff = (ours[key] - value).abs().max().item()
        assert diff <= atol, f"{key}: max |sim - torch| = {diff:.3g} > {atol:g}"


def _assert_halting_varied(fractions):
    """Some step ran only part of the real positions: ACT really made depth dynamic."""
    assert any(0.0 < f < 1.0 for step in fractions for f in step), fractions


def test_ut_act_classifier_matches_torch_sgd():
    """Parity, classify, through torch.export + _export_forward_backward (the default capture)."""
    make_opt, atol = OPTIMIZERS["sgd"]
    task = tasks.parity(samples=200, min_len=1, max_len=MAX_LEN, seed=0)
    session, reference, fractions = _train_both(_model(task), make_opt, _batches(task))
    graph = session.plan.graph
    # one marker per step, and one after the last step (every real position computes again)
    assert sum(op.op == op_names.RUNNING_OP for op in graph.ops) == STEPS + 1
    assert sum(op.op == op_names.RUNNING_GRAD_OP for op in graph.ops) == STEPS + 1
    assert len(graph.masks) == 1 + 4 * STEPS         # embedding + 4 dropout sites per step
    _assert_halting_varied(fractions)
    _assert_same_parameters(session, reference, atol)


def test_ut_act_tagger_with_pad_labels_matches_torch_adam():
    """Reverse, one label per token (pad labels ignored), through the faster aot capture."""
    make_opt, atol = OPTIMIZERS["adam"]
    task = tasks.reverse(samples=200, min_len=1, max_len=MAX_LEN, symbols=5, seed=0)
    session, reference, fractions = _train_both(_model(task), make_opt, _batches(task),
                                                capture_method="aot")
    _assert_halting_varied(fractions)
    _assert_same_parameters(session, reference, atol)


def test_fixed_depth_ut_matches_torch():
    make_opt, atol = OPTIMIZERS["sgd"]
    task = tasks.parity(samples=200, min_len=1, max_len=MAX_LEN, seed=1)
    session, reference, fractions = _train_both(_model(task, act=False, max_steps=2), make_opt,
                                                _batches(task, steps=10), capture_method="aot")
    assert fractions[0] == [1.0, 1.0]
    _assert_same_parameters(session, reference, atol)


def test_marker_kernels_are_the_identity_in_both_forms():
    """simulator/ops/dynamic.py: the general kernel and the specialized call return h itself."""
    import numpy as np
    from simulator.ops import OPS, Meta, specialize
    h = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    mask = np.array([[True, False, True], [False, False, False]])
    for name in (op_names.RUNNING_OP, op_names.RUNNING_GRAD_OP):
        assert OPS[name](np, h, mask) is h
        call = specialize(np, name, (Meta(h.shape, h.dtype), Meta(mask.shape, mask.dtype)), {})
        assert call(h, mask) is h
