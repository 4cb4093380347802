"""`wsebench sweep CONFIG`: the grid from --grid/--set, a store, and --scheduler ADDRESS (Dask)."""
from __future__ import annotations

import csv
import json
import os
import warnings

import pytest
import yaml

import wsebench as wb
from compiler import ConfigError
from wsebench import cli

from sweep_helpers import CountingExecutor, sweep_config


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "base.yaml"
    path.write_text(yaml.safe_dump(sweep_config()))
    return path


def test_the_grid_comes_from_a_file_and_set_options(tmp_path):
    grid_file = tmp_path / "grid.yaml"
    grid_file.write_text("model.hidden: [8, 16]\noptimizer.lr: [0.1, 0.01]\n")
    grid = cli.sweep_grid(str(grid_file), ["sparsity.harvest=true,false", "model.hidden=12",
                                           "wafer=classroom,{preset: classroom, rows: 16}"])
    assert grid == {"model.hidden": [12], "optimizer.lr": [0.1, 0.01],
                    "sparsity.harvest": [True, False],
                    "wafer": ["classroom", {"preset": "classroom", "rows": 16}]}
    assert cli.sweep_grid(None, []) == {}
    for bad, words in [(["model.hidden"], "expected KEY=V1,V2"), (["=1,2"], "expected KEY"),
                       (["model.hidden=[1,"], "not valid YAML")]:
        with pytest.raises(ConfigError, match=words):
            cli.sweep_grid(None, bad)
    with pytest.raises(ConfigError, match="does not exist"):
        cli.sweep_grid(str(tmp_path / "none.yaml"), [])
    (tmp_path / "grid.txt").write_text("{}")
    with pytest.raises(ConfigError, match="unknown extension"):
        cli.sweep_grid(str(tmp_path / "grid.txt"), [])


def test_a_bad_sweep_ends_with_one_line_and_status_2(config_file, tmp_path, capsys):
    store = tmp_path / "store"
    assert cli.main(["sweep", str(config_file), "--set", "model.hiden=8,16",
                     "--store", str(store)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "model.hiden" in err and "allowed" in err
    assert not store.exists() or not list(store.iterdir())        # nothing ran
    assert cli.main(["sweep", str(config_file), "--scheduler", "tcp://127.0.0.1:1",
                     "--workers", "2"]) == 2
    assert "--workers" in capsys.readouterr().err


@pytest.fixture(scope="module")
def scheduler():
    """A Dask scheduler on loopback TCP, its workers threads of this process (cheap to start)."""
    pytest.importorskip("distributed")
    from dask.distributed import LocalCluster
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, protocol="tcp://",
                          host="127.0.0.1", dashboard_address=None) as cluster:
            yield cluster


def test_sweep_on_a_dask_scheduler_address_then_locally_from_the_store(
        scheduler, config_file, tmp_path, capsys):
    store, table_csv = tmp_path / "store", tmp_path / "table.csv"
    args = ["sweep", str(config_file), "--set", "model.hidden=8,16", "--store", str(store),
            "--no-progress"]
    assert scheduler.scheduler_address.startswith("tcp://127.0.0.1:")
    assert cli.main(args + ["--scheduler", scheduler.scheduler_address, "--csv", str(table_csv)]) == 0
    out = capsys.readouterr().out
    assert "model.hidden" in out and "final_loss" in out
    assert "2 points in" in out and "2 ran, 0 were already stored" in out
    assert "run_point" in scheduler.scheduler.task_prefixes      # the points went through Dask
    rows = list(csv.DictReader(table_csv.open()))
    assert [int(r["model.hidden"]) for r in rows] == [8, 16]
    records = [json.loads(p.read_text()) for p in sorted(store.glob("*.json"))]
    assert len(records) == 2 and all(r["pid"] == os.getpid() for r in records)  # worker threads
    # the same command without --scheduler finds every point in the store: nothing runs
    assert cli.main(args) == 0
    assert "0 ran, 2 were already stored" in capsys.readouterr().out
    # and wb.sweep over the same config gives the same seeds, keys and losses
    ex = CountingExecutor()
    api = wb.sweep(yaml.safe_load(config_file.read_text()), {"model.hidden": [8, 16]},
                   executor=ex, progress=False)
    assert [r["key"] for r in api] == [row["key"] for row in rows]
    assert [r["losses"] for r in api] == [json.loads(row["losses"]) for row in rows]


def test_failed_points_exit_1_and_are_listed(scheduler, config_file, capsys):
    code = cli.main(["sweep", str(config_file), "--set", "wafer.rows=4,1", "--set", "wafer.cols=2",
                     "--scheduler", scheduler.scheduler_address, "--no-progress"])
    captured = capsys.readouterr()
    assert code == 1
    assert "1 ran, 0 were already stored, 1 failed" in captured.out
    assert "WaferFitError" in captured.err and "'wafer.rows': 1" in captured.err


def test_an_interrupted_sweep_exits_130(config_file, monkeypatch, capsys):
    from wsebench import sweeps
    from wsebench.store import Results

    def interrupted(*args, **kwargs):
        table = Results(store=kwargs["store"])
        table.interrupted = True
        return table
    monkeypatch.setattr(sweeps, "sweep", interrupted)
    assert cli.main(["sweep", str(config_file), "--store", "somewhere", "--no-progress"]) == 130
    assert "interrupted: run the same command again to finish" in capsys.readouterr().out
