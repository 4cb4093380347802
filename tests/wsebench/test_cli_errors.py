"""The CLI's one error boundary: every wsebench error is one line and exit 2 (a traceback only
with --debug), and output paths are checked before any work starts."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from wsebench import cli

from run_configs import tiny_config

KGRAPH = Path("/work/shared/ispd2020/A.kgraph")
TINY_KGRAPH = """(*
test=tiny
width=20
height=20
wdeltat=1
wlength=1
wadapter=0
memlimit=24576
*)
input[ 0] n=[8 8 16] name='k0'
cblock[ 1] f=16 h=8 w=8 name='k1'
output[ 2] n=[8 8 16] name='k2'
input[ 0]:_    -> cblock[ 1]:x, shape:[8][8][16]
cblock[ 1]:y    -> output[ 2]:_, shape:[8][8][16]
"""


def _config_file(tmp_path, **overrides) -> str:
    path = tmp_path / "c.json"
    path.write_text(json.dumps(tiny_config(steps=2, **overrides)))
    return str(path)


def _one_line_error(capsys, *fragments) -> str:
    err = capsys.readouterr().err
    assert err.startswith("wsebench: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err
    return err


@pytest.fixture
def no_training(monkeypatch):
    """Fails the test if a run starts: the error had to come before any work."""
    def refuse(*args, **kwargs):
        raise AssertionError("the run started before its output path was checked")
    monkeypatch.setattr("wsebench.config.run", refuse)
    monkeypatch.setattr("wsebench.sweeps.sweep", refuse)


@pytest.mark.parametrize("overrides, fragment", [
    ({"optimizer": {"name": "sgd", "lr": float("inf")}}, "lr=inf"),
    ({"optimizer": {"name": "sgd", "lr": 0.1, "nesterov": True}}, "Nesterov"),
    ({"wafer": {"preset": ["classroom"]}}, "wafer.preset"),
    ({"seed": 2**70}, "seed"),
])
def test_config_errors_are_one_line_and_exit_2(tmp_path, capsys, overrides, fragment):
    path = _config_file(tmp_path, **overrides)
    assert cli.main(["run", path, "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    _one_line_error(capsys, fragment)
    assert not (tmp_path / "o").exists()


def test_debug_shows_the_traceback(tmp_path, capsys):
    path = _config_file(tmp_path, seed=-1)
    assert cli.main(["run", path, "--out", str(tmp_path / "o"), "--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.rstrip().splitlines()[-1].startswith("wsebench: error:")


def test_a_non_finite_step_is_one_line(tmp_path, capsys):
    c = tiny_config(steps=2, optimizer={"name": "sgd", "lr": 1e38})
    c["data"].update(name="blobs", spread=1e30)
    path = tmp_path / "nan.json"
    path.write_text(json.dumps(c))
    assert cli.main(["run", str(path), "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    _one_line_error(capsys, "step 1", "not finite")


def test_run_checks_out_before_training(tmp_path, capsys, no_training):
    (tmp_path / "file").write_text("")
    out = tmp_path / "file" / "report"
    assert cli.main(["run", _config_file(tmp_path), "--out", str(out)]) == 2
    _one_line_error(capsys, "--out", "is a file")


def test_demo_checks_out_before_training(tmp_path, capsys, no_training):
    (tmp_path / "out").write_text("")
    assert cli.main(["demo", "--out", str(tmp_path / "out"), "--steps", "1"]) == 2
    _one_line_error(capsys, "--out", "is a file, not a folder")


@pytest.mark.parametrize("flag", ["--csv", "--store"])
def test_sweep_checks_csv_and_store_before_running(tmp_path, capsys, no_training, flag):
    (tmp_path / "file").write_text("")
    target = tmp_path / "file" / "x"
    assert cli.main(["sweep", _config_file(tmp_path), "--set", "model.hidden=8,16", flag,
                     str(target), "--no-progress"]) == 2
    _one_line_error(capsys, flag)


def test_sweep_csv_that_is_a_folder_is_refused(tmp_path, capsys, no_training):
    assert cli.main(["sweep", _config_file(tmp_path), "--csv", str(tmp_path)]) == 2
    _one_line_error(capsys, "--csv", "is a folder")


def test_ispd_on_a_fifo_is_refused_without_reading_it(tmp_path, capsys):
    fifo = tmp_path / "g.kgraph"
    os.mkfifo(fifo)
    assert cli.main(["ispd", str(fifo)]) == 2                 # reading it would block forever
    _one_line_error(capsys, "not a regular file")


@pytest.mark.parametrize("limit", ["-1", "0", "nan", "inf"])
def test_ispd_time_limit_must_be_positive_and_finite(tmp_path, capsys, limit):
    path = tmp_path / "t.kgraph"
    path.write_text(TINY_KGRAPH)
    assert cli.main(["ispd", str(path), "--time-limit", limit, "--out",
                     str(tmp_path / "s.solution")]) == 2
    _one_line_error(capsys, "--time-limit")
    assert not (tmp_path / "s.solution").exists()


def test_ispd_self_loop_edge_is_refused(tmp_path, capsys):
    path = tmp_path / "loop.kgraph"
    path.write_text(TINY_KGRAPH + "cblock[ 1]:y    -> cblock[ 1]:x, shape:[8][8][16]\n")
    assert cli.main(["ispd", str(path), "--time-limit", "1"]) == 2
    _one_line_error(capsys, "loop.kgraph:15", "itself")


def test_ispd_binary_file_is_refused(tmp_path, capsys):
    path = tmp_path / "b.kgraph"
    path.write_bytes(b"\xff\xfe\x00\x81")
    assert cli.main(["ispd", str(path)]) == 2
    _one_line_error(capsys, "not UTF-8")


def test_a_binary_grid_file_is_refused(tmp_path, capsys, no_training):
    grid = tmp_path / "grid.yaml"
    grid.write_bytes(b"\xff\xfe\x00\x81")
    assert cli.main(["sweep", _config_file(tmp_path), "--grid", str(grid)]) == 2
    _one_line_error(capsys, "grid file", "not UTF-8")
