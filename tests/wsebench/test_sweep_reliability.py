"""Sweeps that nothing leaks from: a SIGKILLed sweep leaves no process behind and its store
resumes to what an uninterrupted run gives; two sweeps on one store run each point once; an
alias bomb is refused before it is expanded; crashed writers' leftovers are cleaned up."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import wsebench as wb
from wsebench import store_claims as claims
from wsebench.store import Store
from wsebench.sweeps import MAX_POINTS

from sweep_helpers import GRID, CountingExecutor, child_env, sweep_config


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted sweep, run in this process."""
    store = tmp_path_factory.mktemp("reference")
    table = wb.sweep(sweep_config(), GRID, executor=CountingExecutor(), store=store, progress=False)
    assert table.errors == [] and len(table) == 4
    return store


def _same_entries(store, reference) -> None:
    """Every entry of `store` equals the reference's: config, losses, cycles and arrays."""
    ours, theirs = Store(store), Store(reference)
    assert ours.keys() == theirs.keys()
    for key in ours.keys():
        (a, arrays_a), (b, arrays_b) = ours.get(key, arrays=True), theirs.get(key, arrays=True)
        assert a["config"] == b["config"] and a["summary"] == b["summary"]
        assert [h["loss"] for h in a["history"]] == [h["loss"] for h in b["history"]]
        assert arrays_a.keys() == arrays_b.keys()
        for name in arrays_a:
            np.testing.assert_array_equal(arrays_a[name], arrays_b[name])


# ----------------------------------------------------------------------------- processes

def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, state) of every process of this host."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        table[int(entry)] = (int(fields[1]), fields[0])
    return table


def _descendants(root: int) -> set[int]:
    table, found, frontier = _processes(), set(), {root}
    while frontier:
        frontier = {pid for pid, (ppid, _) in table.items() if ppid in frontier} - found
        found |= frontier
    return found


def _alive(pids) -> set[int]:
    table = _processes()
    return {pid for pid in pids if pid in table and table[pid][1] != "Z"}


_SWEEP = ("import warnings; warnings.simplefilter('ignore')\n"
          "import wsebench as wb\n"
          "from sweep_helpers import GRID, sweep_config\n"
          "wb.sweep(sweep_config(), GRID, store={store!r}, workers=2, progress=False)\n")


def _until(condition, proc, what: str, limit: float = 180.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert proc.poll() is None, f"the sweep ended before {what}"
        assert time.monotonic() < deadline, f"no {what} within {limit:.0f} s"
        time.sleep(0.01)


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs /proc to list processes")
@pytest.mark.parametrize("moment", ["worker start-up", "after the first entry"])
def test_a_sigkilled_sweep_leaves_no_process_and_resumes_exactly(tmp_path, reference, moment):
    store = tmp_path / "store"
    proc = subprocess.Popen([sys.executable, "-c", _SWEEP.format(store=str(store))],
                            env=child_env(), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    children: set[int] = set()
    try:
        if moment == "worker start-up":          # a worker exists, still importing torch
            _until(lambda: len(_descendants(proc.pid)) >= 2, proc, "worker process")
        else:
            _until(lambda: list(store.glob("*.json")), proc, "stored entry")
        children = _descendants(proc.pid)
        assert children, "the sweep had started no process"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 60         # each worker sees its parent gone and exits
        while _alive(children) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(children), f"processes {sorted(_alive(children))} outlived the sweep"
    finally:
        for pid in _alive(children):
            os.kill(pid, signal.SIGKILL)
    resumed = wb.sweep(sweep_config(), GRID, executor=CountingExecutor(), store=store, progress=False)
    assert resumed.errors == [] and len(resumed) == 4
    assert sorted(resumed.ran + resumed.skipped) == sorted(Store(reference).keys())
    _same_entries(store, reference)
    assert not list(store.glob(".*.claim")) and not list(store.glob(".*.tmp"))


_SHARED = ("import json, os, time, warnings; warnings.simplefilter('ignore')\n"
           "import wsebench as wb\n"
           "from wsebench.sweeps import InlineExecutor\n"
           "from sweep_helpers import GRID, sweep_config\n"
           "while not os.path.exists({go!r}): time.sleep(0.01)\n"
           "t = wb.sweep(sweep_config(), GRID, executor=InlineExecutor(), store={store!r}, progress=False)\n"
           "print(json.dumps({{'ran': t.ran, 'skipped': t.skipped, 'rows': len(t),"
           " 'errors': len(t.errors)}}))\n")


def test_two_sweeps_on_one_store_run_each_point_once(tmp_path, reference):
    store, go = tmp_path / "shared", tmp_path / "go"
    code = _SHARED.format(store=str(store), go=str(go))
    procs = [subprocess.Popen([sys.executable, "-c", code], env=child_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    go.write_text("")                              # both start together, once imported
    outs = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err.decode()[-2000:]
        outs.append(json.loads(out.decode().strip().splitlines()[-1]))
    ran = [key for out in outs for key in out["ran"]]
    assert sorted(ran) == sorted(Store(reference).keys())      # every point ran exactly once
    assert all(out["rows"] == 4 and out["errors"] == 0 for out in outs)
    assert wb.load_results(store).errors == []                 # every entry self-consistent
    _same_entries(store, reference)


def test_a_point_claimed_by_a_live_sweep_is_waited_for_then_taken_over(tmp_path):
    store = tmp_path / "s"
    Store(store)
    key = wb.sweeps.plan_points(sweep_config(), {"model.hidden": [8]})[0].key
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        claims.claim_path(store, key).write_text(json.dumps(
            {"pid": holder.pid, "host": __import__("socket").gethostname()}))
        result = {}
        sweeper = threading.Thread(target=lambda: result.update(table=wb.sweep(
            sweep_config(), {"model.hidden": [8]}, executor=CountingExecutor(), store=store,
            progress=False)))
        sweeper.start()
        sweeper.join(timeout=2)
        assert sweeper.is_alive() and not Store(store).has(key)     # waiting, not running it
    finally:
        holder.kill()
        holder.wait()
    sweeper.join(timeout=120)
    assert not sweeper.is_alive() and result["table"].ran == [key]  # the holder died: taken over


def test_leftovers_of_crashed_writers_are_removed_and_live_ones_kept(tmp_path):
    store = tmp_path / "s"
    Store(store)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (store / f".abc.json.{dead.pid}.x1y2.tmp").write_text("{")
    (store / f".abc.json.{os.getpid()}.x1y2.tmp").write_text("{")       # a live writer's
    claims.claim_path(store, "0123456789abcdef").write_text(json.dumps(
        {"pid": dead.pid, "host": __import__("socket").gethostname()}))
    (store / "0123456789abcdef.npz").write_bytes(b"PK")                  # arrays without JSON
    removed = claims.clean_stale(store)
    assert sorted(removed) == sorted([f".abc.json.{dead.pid}.x1y2.tmp", ".0123456789abcdef.claim",
                                      "0123456789abcdef.npz"])
    assert (store / f".abc.json.{os.getpid()}.x1y2.tmp").exists()


def _alias_bomb(levels: int = 9) -> str:
    lines = ["a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, levels)]
    return "\n".join(lines) + f"\nmodel: {{hidden: 8, extra: *a{levels - 1}}}\n"


@pytest.mark.parametrize("command", ["sweep", "run"])
def test_an_alias_bomb_is_refused_before_it_is_expanded(tmp_path, capsys, command):
    path = tmp_path / "bomb.yaml"
    path.write_text(_alias_bomb())                 # 10**9 values once expanded
    from wsebench import cli
    args = [command, str(path), "--no-progress"] + (["--set", "seed=1,2"] if command == "sweep"
                                                    else ["--out", str(tmp_path / "o")])
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert "alias" in err and err.count("\n") == 1


def test_a_grid_with_too_many_points_is_refused():
    side = int(MAX_POINTS ** 0.5) + 1
    grid = {"model.hidden": list(range(1, side + 1)), "seed": list(range(side))}
    with pytest.raises(wb.ConfigError, match="points, more than"):
        wb.sweeps.expand_grid(grid)
