"""Checkpoints: the checksum covers the metadata, `model=` compares the forward graph, a loaded
session reports its last step, and `wsebench run --checkpoint/--resume` resumes exactly."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
import torch.nn as nn

import wsebench as wb
from wsebench import checkpoint as ck
from wsebench import cli
from wsebench import resume as rs

from run_configs import tiny_config


def _model(activation="relu", dropout=0.3):
    torch.manual_seed(0)
    return wb.models.mlp(in_features=8, hidden=16, out_features=3, depth=3, dropout=dropout,
                         activation=activation)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    model = _model()
    s = wb.compile(model, nn.CrossEntropyLoss(), example=(torch.randn(8, 8), torch.arange(8) % 3),
                   optimizer=torch.optim.SGD(model.parameters(), lr=0.1), backend="numpy")
    for _ in range(3):
        s.step(torch.randn(8, 8), torch.arange(8) % 3)
    path = s.save(tmp_path_factory.mktemp("ck") / "run.ckpt")
    return {"session": s, "path": path}


def _edit(path, out, sign=False, drop=(), **changes):
    """The checkpoint with its metadata edited; not re-signed (what a hand edit does) unless
    `sign`."""
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(arrays.pop("__meta__").tobytes())
    meta.update(changes)
    for key in drop:
        del meta[key]
    if sign:
        meta["meta_sha256"] = ck.meta_digest(meta)
    buf = io.BytesIO()
    np.savez(buf, **arrays, __meta__=np.frombuffer(json.dumps(meta).encode(), np.uint8))
    out.write_bytes(buf.getvalue())
    return out


@pytest.mark.parametrize("changes", [{"step_count": 99}, {"harvest": False},
                                     {"history": []}, {"params": []}])
def test_edited_metadata_is_refused_by_the_checksum(saved, tmp_path, changes):
    edited = _edit(saved["path"], tmp_path / "edited.ckpt", **changes)
    with pytest.raises(wb.CheckpointError, match=r"edited\.ckpt.*metadata does not match its checksum"):
        wb.load_session(edited)


def test_metadata_missing_a_key_is_a_checkpoint_error_not_a_key_error(saved, tmp_path):
    bare = _edit(saved["path"], tmp_path / "bare.ckpt", sign=True, drop=["params"])
    with pytest.raises(wb.CheckpointError, match="incomplete metadata, missing params"):
        wb.load_session(bare)


def test_a_checkpoint_from_before_the_metadata_checksum_loads_with_a_warning(saved, tmp_path):
    old = _edit(saved["path"], tmp_path / "old.ckpt", drop=["meta_sha256"])
    with pytest.warns(UserWarning, match="before its metadata had a checksum"):
        assert wb.load_session(old).step_count == 3


@pytest.mark.parametrize("other", [dict(activation="tanh"), dict(dropout=0.5)])
def test_a_model_with_the_same_shapes_but_another_forward_is_refused(saved, other):
    with pytest.raises(wb.CheckpointError, match="same parameter shapes, but another forward graph"):
        wb.load_session(saved["path"], model=_model(**other))


def test_the_same_model_loads_and_equals_the_saved_session(saved):
    loaded = wb.load_session(saved["path"], model=_model())
    for k, v in saved["session"].state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)
    assert loaded.step_count == saved["session"].step_count == 3


def test_a_loaded_session_reports_its_last_step(saved):
    loaded = wb.load_session(saved["path"])
    report, original = loaded.report(), saved["session"].report()
    assert report.summary == json.loads(json.dumps(original.summary))
    np.testing.assert_array_equal(report.core_utilization, original.core_utilization)
    assert [k["name"] for k in report.kernels] == [k["name"] for k in original.kernels]
    assert "no step has run" not in loaded.report()._repr_html_()


def test_the_docs_name_attributes_that_exist(saved):
    assert "s.step_count" in ck.__doc__ and "len(s.history)" in ck.__doc__
    assert saved["session"].step_count == len(saved["session"].history)


def test_a_resumed_config_run_equals_an_uninterrupted_one(tmp_path):
    config = tiny_config(steps=4)
    whole = wb.config.run(config, progress=False)
    first = rs.run({**config, "steps": 2}, tmp_path / "r.ckpt", progress=False)
    assert len(first["history"]) == 2
    rest = rs.run(config, tmp_path / "r.ckpt", resume=True, progress=False)
    assert rest["resumed_at"] == 2
    assert rest["history"].losses == whole["history"].losses
    for k, v in whole["session"].state_dict().items():
        assert torch.equal(rest["session"].state_dict()[k], v)


def test_resume_refuses_a_checkpoint_of_another_config(tmp_path):
    rs.run(tiny_config(steps=1), tmp_path / "r.ckpt", progress=False)
    other = tiny_config(steps=2, optimizer={"name": "sgd", "lr": 0.01})
    with pytest.raises(wb.ConfigError, match="another config"):
        rs.run(other, tmp_path / "r.ckpt", resume=True, progress=False)


def test_cli_run_resume(tmp_path, capsys):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(tiny_config(steps=3)))
    ckpt = tmp_path / "run.ckpt"
    args = ["run", str(path), "--out", str(tmp_path / "o"), "--no-progress", "--checkpoint", str(ckpt)]
    assert cli.main(args + ["--steps", "2"]) == 0
    assert cli.main(args + ["--resume"]) == 0
    out = capsys.readouterr().out
    assert "after step 3 (resumed at step 2)" in out
    assert wb.load_session(ckpt).step_count == 3


def test_cli_resume_needs_a_checkpoint(tmp_path, capsys):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(tiny_config(steps=1)))
    assert cli.main(["run", str(path), "--out", str(tmp_path / "o"), "--resume"]) == 2
    assert "--resume needs --checkpoint" in capsys.readouterr().err
