"""wb.sweep: grids, per-point seeds, the process pool, a Dask LocalCluster, re-runs and a kill."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings

import pytest

import wsebench as wb
from compiler import ConfigError
from wsebench.store import Store, config_key
from wsebench.sweeps import derive_seed, expand_grid, plan_points, set_key

from sweep_helpers import GRID, CountingExecutor, child_env, local_cluster, sweep_config


# ----------------------------------------------------------------------------- pure parts

def test_grid_is_the_cartesian_product_in_order():
    points = expand_grid({"a.x": [1, 2], "b": ["p", "q", "r"]})
    assert points == [{"a.x": 1, "b": "p"}, {"a.x": 1, "b": "q"}, {"a.x": 1, "b": "r"},
                      {"a.x": 2, "b": "p"}, {"a.x": 2, "b": "q"}, {"a.x": 2, "b": "r"}]
    assert expand_grid(None) == [{}] and expand_grid({}) == [{}]
    for bad, words in [({"model.hidden": 16}, "non-empty list"), ({"model.hidden": []}, "non-empty"),
                       ({"model.hidden": [8, 8]}, "repeats a value"), (["model.hidden"], "mapping")]:
        with pytest.raises(ConfigError, match=words):
            expand_grid(bad)


def test_dotted_keys_reach_into_sections_presets_and_mapping_globs():
    c = sweep_config()
    set_key(c, "model.hidden", 32)
    set_key(c, "wafer.sram_bytes", 24576)             # "classroom" becomes {"preset": ...}
    set_key(c, "mapping.layers.3", {"rows": 2, "cols": 2})   # the rest of the key is the glob
    set_key(c, "steps", 7)
    assert c["model"]["hidden"] == 32 and c["steps"] == 7
    assert c["wafer"] == {"preset": "classroom", "sram_bytes": 24576}
    assert c["mapping"] == {"layers.3": {"rows": 2, "cols": 2}}
    with pytest.raises(ConfigError, match="'modle' is not a config key"):
        set_key(c, "modle.hidden", 1)
    with pytest.raises(ConfigError, match="not a mapping"):
        set_key(c, "steps.x", 1)


def test_each_point_gets_its_own_deterministic_seed_and_key():
    points = plan_points(sweep_config(), GRID)
    again = plan_points(sweep_config(), GRID)
    assert [p.seed for p in points] == [p.seed for p in again]       # deterministic
    assert len({p.seed for p in points}) == len(points) == 4         # distinct per point
    assert all(p.config["seed"] == p.seed for p in points)
    assert all(p.key == config_key(p.config) for p in points)
    assert points[0].seed == derive_seed(0, {"model.hidden": 8, "sparsity.harvest": True})
    # another base seed moves every point's seed, and so every key
    other = plan_points(sweep_config(seed=1), GRID)
    assert not {p.seed for p in other} & {p.seed for p in points}
    assert not {p.key for p in other} & {p.key for p in points}
    # seeds="base": common random numbers; an explicit "seed" axis is used as given
    assert {p.seed for p in plan_points(sweep_config(seed=5), GRID, seeds="base")} == {5}
    assert [p.seed for p in plan_points(sweep_config(), {"seed": [3, 9]})] == [3, 9]
    # repeats: one seed per repeat, and the repeat is a column of the point
    reps = plan_points(sweep_config(), {"model.hidden": [8]}, repeats=3)
    assert len({p.seed for p in reps}) == 3 and [p.values["repeat"] for p in reps] == [0, 1, 2]
    assert reps[0].seed == derive_seed(0, {"model.hidden": 8})     # repeat 0 = the lone run
    with pytest.raises(ConfigError, match="repeats"):
        plan_points(sweep_config(), {"seed": [1, 2]}, repeats=2)


def test_a_bad_point_is_refused_before_anything_runs(tmp_path):
    ex = CountingExecutor()
    with pytest.raises(ConfigError, match=r'grid point \{"model.dropout": 1.5\}.*dropout'):
        wb.sweep(sweep_config(), {"model.dropout": [0.1, 1.5]}, executor=ex, store=tmp_path,
                 progress=False)
    assert ex.configs == [] and list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- real sweeps

@pytest.fixture(scope="module")
def pool_sweep(tmp_path_factory):
    """The grid on the default executor: a local pool of 2 worker processes."""
    store = tmp_path_factory.mktemp("pool-store")
    start = time.perf_counter()
    table = wb.sweep(sweep_config(), GRID, store=store, workers=2, progress=False)
    return table, store, time.perf_counter() - start


def test_process_pool_sweep_returns_a_table_and_stores_every_point(pool_sweep):
    table, store, _ = pool_sweep
    assert table.errors == [] and len(table) == 4 and len(table.ran) == 4 and table.skipped == []
    assert [(r["model.hidden"], r["sparsity.harvest"]) for r in table] == \
        [(8, True), (8, False), (16, True), (16, False)]
    assert sorted(p.stem for p in store.glob("*.json")) == sorted(table.ran)
    assert sorted(p.stem for p in store.glob("*.npz")) == sorted(table.ran)
    record, arrays = Store(store).get(table[0]["key"], arrays=True)
    assert record["config"]["model"]["hidden"] == 8 and record["config"]["seed"] == table[0]["seed"]
    assert record["seed"] == table[0]["seed"] != 0
    assert set(record["versions"]) >= {"wsebench", "torch", "numpy"}
    assert len(record["history"]) == 5 and record["summary"]["step_cycles"] > 0
    assert record["pid"] != os.getpid()                    # it ran in a worker process
    assert arrays["core_utilization"].shape == (32, 32)
    assert 0 < arrays["core_utilization"].max() <= 1
    assert arrays["losses"].tolist() == table[0]["losses"]
    assert arrays["cycles"].tolist() == table[0]["cycles"]
    assert table[0]["losses"][-1] == table[0]["final_loss"]
    # harvest off is the dense baseline of the same points: more (or equal) measured cycles
    for on, off in ((table[0], table[1]), (table[2], table[3])):
        assert on["sparsity.harvest"] and not off["sparsity.harvest"]
        assert on["step_cycles"] <= off["step_cycles"]


def test_dask_local_cluster_gives_the_same_results_as_the_process_pool(pool_sweep, tmp_path):
    pytest.importorskip("distributed")
    from dask.distributed import Client
    table, _, _ = pool_sweep
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with local_cluster(2) as cluster, Client(cluster) as client:
            on_dask = wb.sweep(sweep_config(), GRID, executor=client.get_executor(),
                               store=tmp_path, progress=False)
            worker_pids = set(client.run(os.getpid).values())
    assert on_dask.errors == [] and len(on_dask) == 4
    assert [r["key"] for r in on_dask] == [r["key"] for r in table]
    assert [r["seed"] for r in on_dask] == [r["seed"] for r in table]
    assert [r["losses"] for r in on_dask] == [r["losses"] for r in table]      # exactly
    assert [r["cycles"] for r in on_dask] == [r["cycles"] for r in table]
    assert [r["accuracy"] for r in on_dask] == [r["accuracy"] for r in table]
    pids = {json.loads((tmp_path / f"{k}.json").read_text())["pid"] for k in on_dask.ran}
    assert pids <= worker_pids                              # it ran on the Dask workers


def test_a_rerun_runs_only_the_points_not_in_the_store(pool_sweep):
    table, store, _ = pool_sweep
    ex = CountingExecutor()
    again = wb.sweep(sweep_config(), GRID, executor=ex, store=store, progress=False)
    assert ex.configs == [] and again.ran == [] and sorted(again.skipped) == sorted(table.ran)
    assert [r["losses"] for r in again] == [r["losses"] for r in table]
    # one more value on an axis: only its two points run
    bigger = {**GRID, "model.hidden": [8, 16, 12]}
    grown = wb.sweep(sweep_config(), bigger, executor=ex, store=store, progress=False)
    assert [c["model"]["hidden"] for c in ex.configs] == [12, 12]
    assert len(grown) == 6 and len(grown.ran) == 2 and len(grown.skipped) == 4
    for key in grown.ran:
        (store / f"{key}.json").unlink()                    # leave the module's store as it was
        (store / f"{key}.npz").unlink()


def test_killed_sweep_keeps_finished_points_and_a_rerun_completes_only_the_rest(pool_sweep, tmp_path):
    """A sweep in a subprocess is terminated (SIGTERM: no handler, so no cleanup) once a point
    is stored; the stored entries are complete, and the re-run runs exactly the missing points."""
    store = tmp_path / "store"
    code = ("import warnings; warnings.simplefilter('ignore')\n"
            "import wsebench as wb\n"
            "from sweep_helpers import GRID, sweep_config\n"
            f"wb.sweep(sweep_config(), GRID, store={str(store)!r}, workers=1, progress=False)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], env=child_env(), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not list(store.glob("*.json")):
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "no point was stored in 120 s"
            time.sleep(0.02)
        proc.terminate()
        proc.wait(timeout=30)
        # the pool's worker notices that the sweep died and exits: the group empties
        deadline = time.monotonic() + 20
        while _group_alive(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _group_alive(proc.pid), "a worker process outlived the killed sweep"
    finally:
        if _group_alive(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.stderr.close()

    stored = wb.load_results(store)
    assert stored.errors == [] and 1 <= len(stored) < 4
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in store.glob("*.json")}
    ex = CountingExecutor()
    rerun = wb.sweep(sweep_config(), GRID, executor=ex, store=store, progress=False)
    missing = {r["key"] for r in pool_sweep[0]} - {r["key"] for r in stored}
    assert set(rerun.ran) == missing and len(ex.configs) == len(missing)
    assert sorted(rerun.skipped) == sorted(r["key"] for r in stored)
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in store.glob("*.json")
            if p.name in before} == before                  # the finished entries were not redone
    final = wb.load_results(store)
    assert final.errors == [] and len(final) == 4
    # in-process re-runs and worker processes agree to the bit
    by_key = {r["key"]: r for r in pool_sweep[0]}
    assert all(r["losses"] == by_key[r["key"]]["losses"] for r in final)


def _group_alive(pgid: int) -> bool:
    """Whether a process of group `pgid` still runs (zombies left for init do not count)."""
    if not os.path.isdir("/proc"):
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        return True
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def test_failed_points_are_listed_and_the_rest_finish(tmp_path):
    """A point that does not fit the wafer fails on its own; the sweep records it and goes on."""
    ex = CountingExecutor()
    table = wb.sweep(sweep_config(), {"wafer.rows": [4, 1], "wafer.cols": [2]}, executor=ex,
                     store=tmp_path, progress=False)
    assert len(ex.configs) == 2 and len(table) == 1 and table[0]["wafer.rows"] == 4
    [failed] = table.errors
    assert failed["point"] == {"wafer.rows": 1, "wafer.cols": 2}
    assert failed["error"].startswith("WaferFitError") and "1 x 2" in failed["error"]
    assert [p.stem for p in tmp_path.glob("*.json")] == [table[0]["key"]]   # failures: not stored
    with pytest.raises(wb.SweepError, match="failed"):
        wb.sweep(sweep_config(), {"wafer.rows": [1], "wafer.cols": [2]}, executor=ex,
                 store=tmp_path, progress=False, errors="raise")


class _InterruptOnSecond(CountingExecutor):
    """Ctrl-C arrives while the second point is submitted."""

    def submit(self, fn, /, *args, **kwargs):
        if len(self.configs) == 1:
            raise KeyboardInterrupt
        return super().submit(fn, *args, **kwargs)


def test_ctrl_c_returns_the_finished_points_and_keeps_them_stored(tmp_path, capsys):
    table = wb.sweep(sweep_config(), GRID, executor=_InterruptOnSecond(), store=tmp_path,
                     progress=False)
    assert table.interrupted and len(table) == 1 and table.ran == [table[0]["key"]]
    assert "sweep interrupted: 1 of 4 points finished" in capsys.readouterr().err
    assert [r["key"] for r in wb.load_results(tmp_path)] == table.ran
