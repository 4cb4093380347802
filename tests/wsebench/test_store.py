"""The results store: atomic writes, load_results, damaged entries named and skipped, the table."""
from __future__ import annotations

import csv
import io
import json
import shutil

import matplotlib.pyplot as plt
import numpy as np
import pytest

import wsebench as wb
from wsebench import store as st

from sweep_helpers import CountingExecutor, sweep_config

GRID = {"model.hidden": [8, 12, 16]}


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A store of three finished experiments, run in this process."""
    path = tmp_path_factory.mktemp("template")
    table = wb.sweep(sweep_config(), GRID, executor=CountingExecutor(), store=path, progress=False)
    assert table.errors == [] and len(table) == 3
    return path, table


@pytest.fixture
def store(template, tmp_path):
    """A private copy of the template store, free to damage."""
    path = tmp_path / "store"
    shutil.copytree(template[0], path)
    return path


def test_load_results_reads_back_what_the_sweep_returned(template):
    path, table = template
    loaded = wb.load_results(path)
    assert loaded.errors == [] and len(loaded) == 3
    by_key = {r["key"]: r for r in loaded}
    for row in table:
        assert by_key[row["key"]] == row            # same columns, same values (JSON round trip)
    arrays = loaded.arrays(0)
    assert set(arrays) >= {"core_utilization", "sram_per_core", "kernel_grid", "losses", "cycles"}
    assert arrays["losses"].tolist() == loaded[0]["losses"]
    assert table.arrays(table[0]["key"])["core_utilization"].shape == (32, 32)


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _scramble(path):
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 16] = bytes(16)                  # zero 16 bytes in the middle
    path.write_bytes(bytes(data))


def _edit(path, **changes):
    record = json.loads(path.read_text())
    record.update(changes)
    path.write_text(json.dumps(record))


DAMAGE = {
    "truncated json": ("json", _truncate, "truncated or corrupted JSON"),
    "empty json": ("json", lambda p: p.write_bytes(b""), "empty file"),
    "binary garbage json": ("json", lambda p: p.write_bytes(bytes(range(256)) * 4), "not UTF-8"),
    "newer format": ("json", lambda p: _edit(p, format=99), "format 99 is not supported"),
    "edited config": ("json", lambda p: _edit(p, config={"steps": 1}), "does not hash to its key"),
    "history not a list": ("json", lambda p: _edit(p, history=3), "malformed result"),
    "truncated npz": ("npz", _truncate, "checksum mismatch"),
    "corrupted npz": ("npz", _scramble, "checksum mismatch"),
    "missing npz": ("npz", lambda p: p.unlink(), "missing"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_entry_is_named_and_the_rest_load(store, damage):
    suffix, hurt, words = DAMAGE[damage]
    victim = sorted(store.glob("*.json"))[1].stem
    hurt(store / f"{victim}.{suffix}")
    loaded = wb.load_results(store)                 # never raises for one bad entry
    assert len(loaded) == 2 and victim not in {r["key"] for r in loaded}
    [error] = loaded.errors
    assert error["file"] == f"{victim}.{suffix}"
    assert error["error"].startswith(f"{victim}.{suffix}: ") and words in error["error"]


def test_every_damaged_entry_is_listed(store):
    names = sorted(store.glob("*.json"))
    _truncate(names[0])
    _scramble(store / f"{names[2].stem}.npz")
    loaded = wb.load_results(store)
    assert len(loaded) == 1 and loaded[0]["key"] == names[1].stem
    assert sorted(e["file"] for e in loaded.errors) == sorted([names[0].name, f"{names[2].stem}.npz"])


def test_leftovers_of_an_interrupted_write_are_ignored(store):
    (store / ".abc.json.x1y2.tmp").write_text('{"kind": "wsebench-re')     # temp file of a kill
    (store / "0123456789abcdef.npz").write_bytes(b"PK")                  # arrays without JSON
    loaded = wb.load_results(store)
    assert len(loaded) == 3 and loaded.errors == []


def test_a_rerun_redoes_only_the_damaged_entry(store, capsys):
    victim = sorted(store.glob("*.json"))[0]
    _truncate(victim)
    ex = CountingExecutor()
    table = wb.sweep(sweep_config(), GRID, executor=ex, store=store, progress=True)
    assert len(ex.configs) == 1 and table.ran == [victim.stem] and len(table.skipped) == 2
    assert f"re-running the damaged entry {victim.name}" in capsys.readouterr().err
    assert wb.load_results(store).errors == []


def test_atomic_write_leaves_the_old_file_or_the_new_one(tmp_path, monkeypatch):
    target = tmp_path / "a.json"
    st.atomic_write(target, b"old")
    st.atomic_write(target, b"new")
    assert target.read_bytes() == b"new" and [p.name for p in tmp_path.iterdir()] == ["a.json"]

    def crash(src, dst):
        raise OSError("disk full")
    monkeypatch.setattr(st.os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        st.atomic_write(target, b"half")
    assert target.read_bytes() == b"new" and [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_load_results_of_a_missing_folder_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        wb.load_results(tmp_path / "nowhere")


def test_the_table_writes_csv_and_plots(template, tmp_path):
    _, table = template
    text = table.to_csv()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [int(r["model.hidden"]) for r in rows] == [8, 12, 16]
    assert [float(r["final_loss"]) for r in rows] == [r["final_loss"] for r in table]
    assert json.loads(rows[0]["losses"]) == table[0]["losses"]
    assert table.to_csv(tmp_path / "t.csv").read_text() == text
    assert "model.hidden" in table.to_text() and "losses" not in table.to_text()
    ax = table.plot("model.hidden", "step_cycles")
    xs, ys = ax.lines[0].get_data()
    assert list(xs) == [8, 12, 16] and list(ys) == [r["step_cycles"] for r in table]
    assert len(table.plot("step", "losses").lines) == 3
    ax = table.plot("model.hidden", "final_loss", by="backend")
    assert len(ax.lines) == 1 and ax.get_legend() is not None
    with pytest.raises(KeyError, match="no column 'nope'"):
        table.plot("model.hidden", "nope")
    plt.close("all")


def test_numpy_values_and_dataclasses_are_stored_as_plain_json():
    assert st.config_key({"a": np.int64(3)}) == st.config_key({"a": 3})
    assert st.canonical({"m": wb.Mapping(2, 3)}) == {"m": {"rows": 2, "cols": 3, "replicas": 1}}
    assert st.config_key({"a": 1, "b": 2}) == st.config_key({"b": 2, "a": 1})
    assert st.config_key({"seed": 1}) != st.config_key({"seed": 2})
