"""The `wsebench` command: demo and run write a report; bad configs exit 2 with one line."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from wsebench import cli

from run_configs import tiny_config, tiny_family_config

ROOT = Path(__file__).resolve().parents[2]


def test_demo_writes_report_and_heatmap(tmp_path, capsys):
    assert cli.main(["demo", "--out", str(tmp_path), "--steps", "3", "--no-progress"]) == 0
    page = (tmp_path / "report.html").read_text()
    assert (tmp_path / "heatmap.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "loss.png").is_file()
    assert "harvest on" in page and "harvest off" in page
    assert "Harvest off / harvest on, measured cycles per step" in page
    assert "Compile report: classroom" in page                # the plan summary text
    out = capsys.readouterr().out
    assert str(tmp_path / "report.html") in out
    assert "samples/s" in out and "harvest off / on measured cycles per step" in out


def test_demo_runs_share_numerics_and_differ_only_in_timing():
    """Harvest on and off train the same model on the same data and masks: equal losses. The
    harvesting run is sized for the densities calibrated on the example batch (the default
    when the model makes zeros), the dense baseline for dense work; the on run is faster."""
    from compiler.compile_report import density_source
    on, off = cli.demo_runs(steps=2, progress=False).values()
    assert on["report"].summary["harvest"] and not off["report"].summary["harvest"]
    assert on["history"].losses == off["history"].losses
    on_plan, off_plan = on["session"].plan, off["session"].plan
    assert density_source(on_plan, "fc2") == "calibrated" and on_plan.density_of("fc2")[0] < 0.8
    assert all(density_source(off_plan, k.name) == "assumed" and off_plan.density_of(k.name) ==
               (1.0, 1.0) for k in off_plan.kernels)
    assert on["report"].summary["step_cycles"] < off["report"].summary["step_cycles"]


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_run_config_file(tmp_path, capsys, suffix):
    c = tiny_config(steps=3)
    path = tmp_path / f"exp{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps(c))
    else:
        yaml = pytest.importorskip("yaml")
        path.write_text(yaml.safe_dump(c))
    out_dir = tmp_path / "out"
    assert cli.main(["run", str(path), "--out", str(out_dir), "--no-progress"]) == 0
    page = (out_dir / "report.html").read_text()
    assert "Dense cycles/step (harvesting off)" in page and "Steps trained" in page
    assert (out_dir / "heatmap.png").is_file()
    assert "exp:" in capsys.readouterr().out


@pytest.mark.parametrize("family", ["transformer", "universal_transformer"])
def test_run_config_file_of_each_token_family(tmp_path, capsys, family):
    yaml = pytest.importorskip("yaml")
    path = tmp_path / f"{family}.yaml"
    path.write_text(yaml.safe_dump(tiny_family_config(family, steps=2)))
    assert cli.main(["run", str(path), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    assert "Steps trained" in (tmp_path / "out" / "report.html").read_text()
    out = capsys.readouterr().out
    assert f"{family}:" in out and "accuracy" in out


def test_an_invalid_combination_exits_2_with_the_reason(tmp_path, capsys):
    c = tiny_family_config("transformer")
    c["model"]["act"] = True
    path = tmp_path / "act.json"
    path.write_text(json.dumps(c))
    assert cli.main(["run", str(path), "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "model.act" in err and "universal_transformer" in err and "Traceback" not in err


def test_bad_config_exits_2_naming_the_value(tmp_path, capsys):
    c = tiny_config()
    c["optimizer"] = {"name": "rmsprop", "lr": 0.1}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(c))
    assert cli.main(["run", str(path), "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "rmsprop" in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_bad_config_from_the_shell_exits_2_without_traceback(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  family: mlp\n  hidden: -3\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "wsebench.cli", "run", str(path)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "model.hidden" in proc.stderr and "-3" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_lab_without_jupyterlab_says_how_to_install(monkeypatch, capsys):
    monkeypatch.setattr(cli.importlib.util, "find_spec",
                        lambda name: None if name == "jupyterlab" else object())
    assert cli.main(["lab"]) == 2
    assert "pip install -e .[lab]" in capsys.readouterr().err


def test_lab_opens_the_students_copy_and_keeps_their_answers(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(cli.importlib.util, "find_spec", lambda name: object())
    monkeypatch.setattr(cli.subprocess, "call", lambda cmd: calls.append(cmd) or 0)
    folder = tmp_path / "class"
    assert cli.main(["lab", "--dir", str(folder)]) == 0
    copy = folder / "05_lab.ipynb"
    assert calls[0][1:3] == ["-m", "jupyterlab"] and calls[0][3] == str(copy)
    assert copy.read_bytes() == (cli.notebooks_dir() / "05_lab.ipynb").read_bytes()
    assert b"answer_key" not in copy.read_bytes()            # the student's copy: no answers
    copy.write_text("my answers")
    assert cli.main(["lab", "--dir", str(folder)]) == 0
    assert copy.read_text() == "my answers"