"""The numerics contract for the transformer family: 20 steps on the wafer == 20 eager torch steps,
with torch's dropout masks replayed (attention probabilities, FFN, residuals, embeddings)."""
import copy
import math

import pytest
import torch
import torch.nn as nn

import wsebench as wb

from .torch_oracle import eager_step

STEPS, BATCH, LENGTH, VOCAB, D_MODEL = 20, 4, 6, 16, 16
SGD = (lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=1e-3), 1e-6)
ADAM_LR, ADAM_BETAS = 1e-3, (0.9, 0.999)
ADAM = (lambda p: torch.optim.Adam(p, lr=ADAM_LR, betas=ADAM_BETAS, weight_decay=1e-4), 1e-5)


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """These tensors are tiny: on a loaded machine torch's thread pool spins for far longer
    than the work takes (measured 30x on 2 shared cores), so eager torch runs on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _tokens(task, steps=STEPS, seed=0):
    """Right-padded token batches (pad id 0), every sample at least 2 real tokens long; labels
    for "classify": does token 3 occur; for "tag": token parity, -100 (ignored) at pads."""
    gen = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(steps):
        x = torch.randint(1, VOCAB, (BATCH, LENGTH), generator=gen)
        lengths = torch.randint(2, LENGTH + 1, (BATCH,), generator=gen)
        x[torch.arange(LENGTH)[None, :] >= lengths[:, None]] = 0
        if task == "classify":
            y = (x == 3).any(1).long()
        else:
            y = (x % 2).long()
            y[x == 0] = -100
        batches.append((x, y))
    return batches


def _model(attention, task="classify", activation="gelu"):
    return wb.models.transformer(vocab=VOCAB, d_model=D_MODEL, heads=2, layers=2, ffn=32,
                                 max_len=LENGTH, classes=2, activation=activation, dropout=0.1,
                                 attention=attention, task=task, seed=0)


def _train_both(model, loss_fn, make_opt, batches):
    """Eager torch (recording its dropout masks) and the wafer, step by step; the losses of
    every step must agree too. The aot capture is the faster one (the export path is checked
    by tests/wsebench/test_models.py)."""
    eager = copy.deepcopy(model).train()
    opt = make_opt(eager.parameters())
    session = wb.compile(model, loss_fn, example=batches[0], optimizer=make_opt(model.parameters()),
                         backend="numpy", capture_method="aot")
    for x, y in batches:
        loss, masks = eager_step(eager, loss_fn, opt, x, y)
        result = session.step(x, y, dropout_masks=masks)
        assert abs(result.loss - loss.item()) <= 1e-5 * max(1.0, abs(loss.item()))
    return session, eager


def _key_bias_slices(model) -> dict[str, slice]:
    """Parameter name -> the slice that holds the attention key bias."""
    out = {}
    for name, _ in model.named_parameters():
        if name.endswith("attn.k.bias"):
            out[name] = slice(None)
        elif name.endswith("attn.in_proj_bias"):           # q, k, v stacked: k is the middle third
            out[name] = slice(D_MODEL, 2 * D_MODEL)
    return out


def _assert_same_parameters(session, reference, atol, exempt=None):
    """Every parameter within `atol`, except the slices in `exempt` (name -> (slice, tolerance))."""
    ours, theirs = session.state_dict(), reference.state_dict()
    assert ours.keys() == theirs.keys()
    exempt = exempt or {}
    for key, value in theirs.items():
        assert ours[key].shape == value.shape, key
        diff = (ours[key] - value).abs()
        if key in exempt:
            where, tolerance = exempt[key]
            special = diff[where].max().item()
            assert special <= tolerance, f"{key}[{where}]: max |sim - torch| = {special:.3g}"
            diff = diff.clone()
            diff[where] = 0
        worst = diff.max().item()
        assert worst <= atol, f"{key}: max |sim - torch| = {worst:.3g} > {atol:g}"


@pytest.mark.parametrize("attention", ["manual", "torch"])
def test_transformer_classifier_sgd_matches_torch(attention):
    make_opt, atol = SGD
    model = _model(attention)
    session, reference = _train_both(model, nn.CrossEntropyLoss(), make_opt, _tokens("classify"))
    # embedding, two blocks x (attention probabilities, attention out, FFN, FFN out) dropout sites
    assert len(session.plan.graph.masks) == 1 + 2 * 4
    _assert_same_parameters(session, reference, atol)


def _key_bias_gradient_is_zero(model, batch):
    """The premise of the key-bias tolerance: softmax(q.(k_j + b)) = softmax(q.k_j + q.b) and
    q.b is the same for every key j, so the loss does not depend on the key bias at all."""
    model = copy.deepcopy(model)
    x, y = batch
    nn.CrossEntropyLoss()(model(x), y).backward()
    grads = dict(model.named_parameters())
    for name, where in _key_bias_slices(model).items():
        weight = grads[name.replace("bias", "weight")].grad
        assert grads[name].grad[where].abs().max() <= 1e-6 * weight.abs().max()


@pytest.mark.parametrize("attention", ["manual", "torch"])
def test_transformer_classifier_adam_matches_torch(attention):
    make_opt, atol = ADAM
    model = _model(attention)
    batches = _tokens("classify")
    _key_bias_gradient_is_zero(model, batches[0])
    session, reference = _train_both(model, nn.CrossEntropyLoss(), make_opt, batches)
    # The key bias's true gradient is zero, so each run's gradient there is float32 rounding
    # noise, and Adam normalizes it to a full-size step: the two runs' key biases follow
    # different noise. Each Adam step is at most lr (1 - b1) / sqrt(1 - b2) per coordinate
    # (Kingma & Ba 2015, sec. 2.1), so two runs part by at most twice the steps times that.
    b1, b2 = ADAM_BETAS
    drift = 2 * STEPS * ADAM_LR * max(1.0, (1 - b1) / math.sqrt(1 - b2))
    exempt = {name: (where, drift) for name, where in _key_bias_slices(model).items()}
    _assert_same_parameters(session, reference, atol, exempt)
    # ...and the key bias cannot change any output: the trained models agree on fresh data
    trained = copy.deepcopy(model)
    trained.load_state_dict(session.state_dict())
    trained.eval(), reference.eval()
    x, _ = _tokens("classify", steps=1, seed=1)[0]
    with torch.no_grad():
        assert torch.allclose(trained(x), reference(x), atol=10 * atol, rtol=0)


@pytest.mark.parametrize("attention", ["manual", "torch"])
def test_token_tagger_matches_torch(attention):
    make_opt, atol = SGD
    model = _model(attention, task="tag", activation="relu")     # the ReLU FFN variant
    batches = _tokens("tag", steps=10)
    assert any((y == -100).any() for _, y in batches)       # pad labels are really ignored
    session, reference = _train_both(model, wb.models.TokenCrossEntropy(), make_opt, batches)
    _assert_same_parameters(session, reference, atol)
