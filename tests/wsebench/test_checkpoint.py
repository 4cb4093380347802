"""Checkpoints: save, load and resume give the same weights as an uninterrupted run; damaged,
foreign and other-version checkpoints are refused with the file named."""
from __future__ import annotations

import io
import itertools
import json
import warnings

import numpy as np
import pytest
import torch

import wsebench as wb
from wsebench import checkpoint as ck


def _setup(optimizer: str = "adam", activation: str = "relu", hidden: int = 16, seed: int = 0):
    """A small MLP with dropout (so the dropout RNG matters) and 20 fixed batches."""
    torch.manual_seed(0)
    model = wb.models.mlp(in_features=8, hidden=hidden, out_features=3, depth=3,
                          activation=activation, dropout=0.3)
    x, y = wb.data.spirals(samples=128, features=8, classes=3, seed=0)
    opt = (torch.optim.Adam(model.parameters(), lr=0.01) if optimizer == "adam" else
           torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        session = wb.compile(model, torch.nn.CrossEntropyLoss(), example=(x[:16], y[:16]),
                             optimizer=opt, backend="numpy", seed=seed)
    return model, session, list(itertools.islice(wb.data.batches(x, y, 16, seed=0), 20))


@pytest.fixture(scope="module", params=["adam", "sgd"])
def resumed(request, tmp_path_factory):
    """20 steps straight, and 10 steps + save + load (without the model) + 10 steps."""
    _, straight, batches = _setup(request.param)
    straight.train(batches, progress=False)
    model, first, _ = _setup(request.param)
    first.train(batches[:10], progress=False)
    path = tmp_path_factory.mktemp("ckpt") / "run.ckpt"
    assert first.save(path) == path
    second = wb.load_session(path)
    second.train(batches[10:], progress=False)
    return {"straight": straight, "first": first, "second": second, "path": path, "model": model,
            "batches": batches}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A checkpoint after 10 Adam steps, with the session and model that wrote it."""
    model, first, batches = _setup("adam")
    first.train(batches[:10], progress=False)
    path = tmp_path_factory.mktemp("saved") / "run.ckpt"
    first.save(path)
    return {"first": first, "path": path, "model": model, "batches": batches}


def test_resumed_training_equals_uninterrupted_training(resumed):
    a, b = resumed["straight"].state_dict(), resumed["second"].state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].shape == b[k].shape and a[k].dtype == b[k].dtype
        assert torch.allclose(a[k], b[k], rtol=0, atol=1e-7), k
    assert resumed["second"]._trainer.step_count == 20
    assert [r.loss for r in resumed["second"].history] == resumed["straight"].history.losses
    assert resumed["second"].report().summary["step_cycles"] > 0


def test_the_dropout_rng_and_the_optimizer_state_are_what_resume_exactly(resumed):
    """Controls: resuming with a fresh RNG, or with fresh optimizer state, gives other weights."""
    target = resumed["straight"].state_dict()

    def distance(session):
        session.train(resumed["batches"][10:], progress=False)
        got = session.state_dict()
        return max(float((got[k] - target[k]).abs().max()) for k in target)

    fresh_rng = wb.load_session(resumed["path"])
    fresh_rng._trainer.rng = np.random.default_rng(12345)
    assert distance(fresh_rng) > 1e-4
    fresh_opt = wb.load_session(resumed["path"])
    fresh_opt._trainer.opt_state = {k: {s: (None if v is None else v * 0) for s, v in d.items()}
                                    for k, d in fresh_opt._trainer.opt_state.items()}
    assert distance(fresh_opt) > 1e-4


def test_a_checkpoint_restores_plan_settings_and_state(saved):
    first, loaded = saved["first"], wb.load_session(saved["path"], model=saved["model"])
    assert loaded.plan.to_json() == first.plan.to_json()
    assert loaded.sparsity == first.sparsity and loaded.backend == first.backend == "numpy"
    assert loaded._trainer.step_count == 10 and len(loaded.history) == 10
    assert loaded._trainer.rng.bit_generator.state == first._trainer.rng.bit_generator.state
    a, b = first.state_dict(), loaded.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    for fqn, state in first._trainer.opt_state.items():
        for slot, value in state.items():
            assert np.array_equal(value, loaded._trainer.opt_state[fqn][slot])
    off = _setup("adam")[1]
    off_path = saved["path"].with_name("dense.ckpt")
    _with_harvest_off(off).save(off_path)
    assert wb.load_session(off_path)._trainer.harvest is False
    assert wb.load_session(off_path).sparsity == wb.Sparsity(harvest=False)


def _with_harvest_off(session):
    session.sparsity = wb.Sparsity(harvest=False)
    session._trainer.harvest = False
    return session


def test_a_checkpoint_of_another_model_is_refused(saved):
    path = saved["path"]
    wider = wb.models.mlp(in_features=8, hidden=24, out_features=3, depth=3, dropout=0.3)
    with pytest.raises(wb.CheckpointError, match=r"run\.ckpt.*different model.*fc1\.weight"):
        wb.load_session(path, model=wider)
    deeper = wb.models.mlp(in_features=8, hidden=16, out_features=3, depth=4, dropout=0.3)
    with pytest.raises(wb.CheckpointError, match=r"different model.*unexpected 'fc4\.weight'"):
        wb.load_session(path, model=deeper)
    # same parameter names and shapes, another graph (tanh instead of relu): refused too
    _, tanh_session, _ = _setup("adam", activation="tanh")
    with pytest.raises(wb.CheckpointError, match=r"run\.ckpt.*captured training graph differs"):
        wb.load_session(path, model=tanh_session)
    _, same_session, _ = _setup("adam")
    assert wb.load_session(path, model=same_session)._trainer.step_count == 10


def _rewrite(path, out, meta_changes=None, drop=()):
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(arrays.pop("__meta__").tobytes())
    meta.update(meta_changes or {})
    meta["meta_sha256"] = ck.meta_digest(meta)     # a consistent file, as another writer made it
    for name in drop:
        arrays.pop(name)
    buf = io.BytesIO()
    np.savez(buf, **arrays, __meta__=np.frombuffer(json.dumps(meta).encode(), np.uint8))
    out.write_bytes(buf.getvalue())
    return out


def test_an_incompatible_version_is_refused(saved, tmp_path):
    newer = _rewrite(saved["path"], tmp_path / "newer.ckpt", {"version": 2})
    with pytest.raises(wb.CheckpointError, match=r"newer\.ckpt.*format version 2.*reads version 1"):
        wb.load_session(newer)
    other = _rewrite(saved["path"], tmp_path / "other.ckpt", {"format": "something-else"})
    with pytest.raises(wb.CheckpointError, match=r"other\.ckpt.*not a wsebench checkpoint"):
        wb.load_session(other)
    plan = json.loads(_meta(saved["path"])["plan"])
    plan["format"] = 99
    old_plan = _rewrite(saved["path"], tmp_path / "plan.ckpt", {"plan": json.dumps(plan)})
    with pytest.raises(wb.CheckpointError, match=r"plan\.ckpt.*plan cannot be read"):
        wb.load_session(old_plan)


def _meta(path):
    with np.load(path) as z:
        return json.loads(z["__meta__"].tobytes())


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _scramble(path):
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 32] = bytes(b ^ 0xFF for b in data[mid:mid + 32])
    path.write_bytes(bytes(data))


DAMAGE = {
    "truncated": (_truncate, "truncated or corrupted"),
    "corrupted": (_scramble, "truncated or corrupted"),
    "empty": (lambda p: p.write_bytes(b""), "truncated or corrupted"),
    "text": (lambda p: p.write_text("not a checkpoint"), "truncated or corrupted"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_checkpoint_names_the_file(saved, tmp_path, damage):
    hurt, words = DAMAGE[damage]
    path = tmp_path / f"{damage}.ckpt"
    path.write_bytes(saved["path"].read_bytes())
    hurt(path)
    with pytest.raises(wb.CheckpointError) as info:
        wb.load_session(path)
    assert str(path) in str(info.value) and words in str(info.value)


def test_arrays_that_do_not_match_are_refused(saved, tmp_path):
    meta = _meta(saved["path"])
    tampered = _rewrite(saved["path"], tmp_path / "sum.ckpt", {"arrays_sha256": "0" * 64})
    with pytest.raises(wb.CheckpointError, match=r"sum\.ckpt.*checksum"):
        wb.load_session(tampered)
    gone = _rewrite(saved["path"], tmp_path / "gone.ckpt", drop=["param/fc1.weight"])
    with pytest.raises(wb.CheckpointError, match=r"gone\.ckpt"):
        wb.load_session(gone)
    assert meta["params"] and meta["step_count"] == 10
    with pytest.raises(wb.CheckpointError, match=r"missing\.ckpt.*no such file"):
        wb.load_session(tmp_path / "missing.ckpt")
    assert ck.VERSION == 1


def test_weight_masks_survive_a_checkpoint(tmp_path):
    """gmp prunes further at every update: a resumed run must continue from the saved masks and
    end with the same weights and masks as the uninterrupted run."""
    spec = {"weights": {"algorithm": "gmp", "param_filter": "fc2.weight",
                        "sparsity": {"type": "linear", "init": 0.2, "final": 0.8, "begin": 0,
                                     "end": 8},
                        "update": {"freq": 2, "start": 0, "stop": 10}}}

    def fresh():
        torch.manual_seed(0)
        model = wb.models.mlp(in_features=8, hidden=16, out_features=3, depth=3)
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        x, y = wb.data.spirals(samples=128, features=8, classes=3, seed=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            s = wb.compile(model, torch.nn.CrossEntropyLoss(), example=(x[:16], y[:16]),
                           optimizer=opt, backend="numpy", sparsity=spec)
        return s, list(itertools.islice(wb.data.batches(x, y, 16, seed=0), 12))

    straight, batches = fresh()
    straight.train(batches, progress=False)
    first, _ = fresh()
    first.train(batches[:5], progress=False)
    first.save(tmp_path / "w.ckpt")
    second = wb.load_session(tmp_path / "w.ckpt")
    assert second.sparsity == first.sparsity
    second.train(batches[5:], progress=False)
    a, b = straight.state_dict(), second.state_dict()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=0)
    mask_a = straight._trainer.weight_masks["fc2.weight"]
    mask_b = second._trainer.weight_masks["fc2.weight"]
    assert np.array_equal(np.asarray(mask_a), np.asarray(mask_b))
    assert 0.15 < float(np.mean(mask_a)) < 0.85     # pruned further than the start, not all
