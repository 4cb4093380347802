"""wsebench.models: the transformer zoo entry (names, validation, padding invariance, capture)."""
import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import wsebench as wb
from compiler.frontend import capture
from wsebench.models import EncoderBlock, TokenCrossEntropy


def _tokens(batch=3, length=6, vocab=16, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(1, vocab, (batch, length), generator=gen)
    x[0, 4:] = 0
    x[1, 2:] = 0
    return x


@pytest.mark.parametrize("attention", ["manual", "torch"])
def test_parameter_owning_modules_have_clear_names(attention):
    model = wb.models.transformer(layers=2, attention=attention)
    names = {n.rsplit(".", 1)[0] for n, _ in model.named_parameters()}
    expected = {"embed", "pos", "norm", "head"}
    for i in range(2):
        expected |= {f"layers.{i}.ln1", f"layers.{i}.ln2", f"layers.{i}.ffn.fc1", f"layers.{i}.ffn.fc2"}
        expected |= ({f"layers.{i}.attn.{p}" for p in "qkvo"} if attention == "manual"
                     else {f"layers.{i}.attn", f"layers.{i}.attn.out_proj"})
    assert names == expected


@pytest.mark.parametrize("task, shape", [("classify", (3, 5)), ("tag", (3, 6, 5))])
def test_output_shapes(task, shape):
    model = wb.models.transformer(vocab=16, d_model=8, heads=2, classes=5, task=task)
    assert model(_tokens()).shape == shape


@pytest.mark.parametrize("attention", ["manual", "torch"])
@pytest.mark.parametrize("task", ["classify", "tag"])
def test_results_do_not_depend_on_padding(attention, task):
    """Appending pad tokens changes nothing at the real positions, forward or backward."""
    model = wb.models.transformer(vocab=16, d_model=8, heads=2, max_len=12, attention=attention,
                                  task=task, seed=0)
    x = _tokens()
    longer = torch.cat([x, torch.zeros(3, 5, dtype=torch.long)], dim=1)
    short_out, long_out = model(x), model(longer)
    if task == "tag":
        real = x != 0
        long_out, short_out = long_out[:, :6][real], short_out[real]
    assert torch.allclose(short_out, long_out, atol=1e-6, rtol=0)
    grads = []
    for tokens in (x, longer):
        model.zero_grad()
        out = model(tokens)
        (out[:, :6][x != 0] if task == "tag" else out).square().sum().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for name in grads[0]:
        if name == "pos.weight":      # the extra positions' rows get nothing either
            assert not grads[1][name][6:].any()
            grads[0][name], grads[1][name] = grads[0][name][:6], grads[1][name][:6]
        # summation order over the longer batch differs: equal up to float32 rounding
        assert torch.allclose(grads[0][name], grads[1][name], atol=1e-6, rtol=1e-5), name


def test_pad_embedding_gets_no_gradient_and_all_pad_sample_is_finite():
    model = wb.models.transformer(vocab=16, d_model=8, heads=2, pad_id=0)
    x = _tokens()
    x[2] = 0                                   # a sample made only of padding
    out = model(x)
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert not model.embed.weight.grad[0].any()


def test_classifier_pools_only_real_tokens():
    """Mean pooling: the head sees the mean of the final-norm outputs over the real tokens."""
    model = wb.models.transformer(vocab=16, d_model=8, heads=2, classes=3, seed=1)
    x = _tokens()
    seen = {}
    model.head.register_forward_pre_hook(lambda m, args: seen.setdefault("pooled", args[0]))
    model.norm.register_forward_hook(lambda m, args, out: seen.setdefault("h", out))
    model(x)
    real = (x != 0).float().unsqueeze(-1)
    expected = (seen["h"] * real).sum(1) / real.sum(1)
    assert torch.allclose(seen["pooled"], expected, atol=1e-6)


@pytest.mark.parametrize("kwargs, match", [
    (dict(d_model=30, heads=4), "divisible by heads"),
    (dict(heads=0), "heads must be a positive integer"),
    (dict(layers=0), "layers must be a positive integer"),
    (dict(activation="tanh"), "unknown transformer activation"),
    (dict(attention="flash"), "unknown attention"),
    (dict(task="generate"), "unknown transformer task"),
    (dict(pad_id=32), "pad_id"),
    (dict(dropout=1.0), "dropout"),
])
def test_bad_arguments_raise_config_errors(kwargs, match):
    with pytest.raises(wb.ConfigError, match=match):
        wb.models.transformer(**kwargs)


def test_too_long_input_is_refused():
    model = wb.models.transformer(max_len=4)
    with pytest.raises(ValueError, match="length <= 4"):
        model(torch.ones(2, 5, dtype=torch.long))


@pytest.mark.parametrize("attention", ["manual", "torch"])
def test_encoder_block_is_reusable(attention):
    """The Universal Transformer reuses one block: EncoderBlock(d_model, heads, ffn, activation,
    dropout, attention), forward(h, pad_mask) -> h, and pad keys never reach real positions."""
    block = EncoderBlock(8, 2, 16, "relu", 0.0, attention)
    h = torch.randn(2, 5, 8)
    pad = torch.tensor([[False] * 5, [False, False, False, True, True]])
    out = block(h, pad)
    assert out.shape == h.shape
    noisy = h.clone()
    noisy[1, 3:] = torch.randn(2, 8)           # change what sits at the pad positions
    assert torch.allclose(block(noisy, pad)[1, :3], out[1, :3], atol=1e-6)
    with pytest.raises(wb.ConfigError, match="divisible"):
        EncoderBlock(9, 2, 16)


def test_token_cross_entropy_ignores_pad_labels():
    logits = torch.randn(2, 4, 3)
    labels = torch.tensor([[0, 1, 2, -100], [2, -100, -100, -100]])
    keep = labels != -100
    assert torch.allclose(TokenCrossEntropy()(logits, labels), F.cross_entropy(logits[keep], labels[keep]))


@pytest.mark.parametrize("attention", ["manual", "torch"])
def test_torch_export_captures_the_training_step(attention):
    """The default capture path (torch.export) takes the transformer, without falling back."""
    model = wb.models.transformer(vocab=16, d_model=8, heads=2, layers=1, ffn=16, max_len=6,
                                  dropout=0.1, attention=attention, seed=0)
    example = (_tokens(), torch.tensor([0, 1, 1]))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)     # a fallback to aot would warn
        graph = capture(model, nn.CrossEntropyLoss(), example, method="auto")
    assert {fqn for fqn, _ in graph.grads} == {n for n, _ in model.named_parameters()}


def test_transformer_trains_end_to_end_on_the_classroom_wafer():
    """wb.compile -> plan.summary() -> train -> report(), with attention as its own kernels whose
    measured time counts only the real tokens."""
    from compiler.plan import Plan
    model = wb.models.transformer(vocab=16, d_model=8, heads=2, layers=2, ffn=16, max_len=6,
                                  dropout=0.1, seed=0)
    gen = torch.Generator().manual_seed(0)

    def batch():
        x = torch.randint(1, 16, (4, 6), generator=gen)
        x[torch.arange(6)[None] >= torch.tensor([[2], [6], [3], [4]])] = 0
        return x, (x == 3).any(1).long()

    # attention pinned to 3 x 6 cores: each core row holds two queries, so a sample whose second
    # query is a pad leaves its busiest core less to do (on 6 x 6, one pair a core, the busiest
    # core holds a real pair in every sample and pads could not show)
    session = wb.compile(model, nn.CrossEntropyLoss(), example=batch(),
                         optimizer=torch.optim.Adam(model.parameters(), lr=1e-3), wafer="classroom",
                         mapping={"*.attn.sdpa": wb.Mapping(3, 6)})
    text = session.plan.summary()
    for layer in (0, 1):
        assert f"layers.{layer}.attn.sdpa" in text
        assert session.plan.mapping[f"layers.{layer}.attn.sdpa"] == wb.Mapping(3, 6)
    assert Plan.from_json(session.plan.to_json()).summary() == text
    history = session.train([batch() for _ in range(3)], progress=False)
    assert len(history) == 3 and all(np.isfinite(history.losses))
    report = session.report()
    rows = [k for k in report.kernels if k["kind"] == "attention"]
    assert len(rows) == 2
    # 15 of the 24 positions are real: the padded run (pads charged) costs more, in attention
    # and in every kernel over the tokens; attention harvests no zeros, so dense = as run
    timings = {t.name: t for t in session._trainer.last_timing.kernels}
    for row in rows:
        t = timings[row["name"]]
        padded = t.macs[t.variants.index("padded")]
        assert t.sample_cycles.sum() < t.variant_cycles("padded").sum() and row["macs"] < padded
        assert row["cycles"] == row["dense_cycles"]
    for name in ("layers.0.attn.q", "layers.1.ffn.fc1", "layers.0.ln1"):
        assert timings[name].sample_cycles.sum() < timings[name].variant_cycles("padded").sum()
    assert history[-1].cycles < history[-1].padded_cycles
    assert history[-1].padding_fraction == pytest.approx(9 / 24)
