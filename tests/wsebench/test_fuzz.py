"""A fuzzer over config dicts and CLI arguments: the only outcomes are success (with finite
results) or a wsebench error (`wsebench.errors.user_errors`): never another exception and never
a non-finite number reported as a result. Sizes are drawn small, so a run that is accepted
trains in a fraction of a second; the example counts keep the file near 20 s."""
from __future__ import annotations

import copy
import math
import os
import warnings

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

from wsebench import cli  # noqa: E402
from wsebench import config as cfg  # noqa: E402
from wsebench.errors import user_errors  # noqa: E402
from wsebench.sweeps import InlineExecutor  # noqa: E402

from run_configs import tiny_config  # noqa: E402

USER_ERRORS = user_errors()

# any JSON/YAML value a user could type, from plausible to absurd
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                    st.integers(-3, 40), st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from(["", "auto", "relu", "sgd", "adam", "classroom", "wse1",
                                     "numpy", "cupy", "spirals", "parity", "x" * 40]))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=6)

# the keys users set, and a few they might misspell
PATHS = [("model", "hidden"), ("model", "depth"), ("model", "in_features"),
         ("model", "out_features"), ("model", "activation"), ("model", "dropout"),
         ("model", "family"), ("model", "hiden"), ("data", "name"), ("data", "samples"),
         ("data", "batch_size"), ("data", "classes"), ("data", "features"), ("data", "seed"),
         ("data", "noise"), ("optimizer", "name"), ("optimizer", "lr"), ("optimizer", "momentum"),
         ("optimizer", "betas"), ("optimizer", "weight_decay"), ("optimizer", "nesterov"),
         ("optimizer", "eps"), ("wafer",), ("wafer", "preset"), ("wafer", "rows"),
         ("wafer", "sram_bytes"), ("sparsity",), ("sparsity", "harvest"), ("sparsity", "relu"),
         ("sparsity", "drop"), ("sparsity", "weights"), ("mapping",), ("backend",), ("steps",),
         ("seed",), ("on_nonfinite",), ("model",), ("data",), ("optimizer",), ("extra",)]
# values small enough that an accepted config trains in well under a second
SMALL = {("model", "hidden"): st.integers(1, 24), ("model", "depth"): st.integers(1, 3),
         ("data", "samples"): st.integers(1, 128), ("data", "batch_size"): st.integers(1, 32),
         ("steps",): st.integers(1, 2)}


def _set(config: dict, path: tuple, value) -> None:
    node = config
    for key in path[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {"preset": node[key]} if key == "wafer" and isinstance(node.get(key), str) else {}
        node = node[key]
    node[path[-1]] = value


@st.composite
def configs(draw) -> dict:
    config = tiny_config(steps=1, hidden=8, depth=2, samples=64, batch_size=16)
    for path in draw(st.lists(st.sampled_from(PATHS), min_size=1, max_size=3)):
        small = SMALL.get(path)
        value = draw(small if small is not None and draw(st.booleans()) else VALUES)
        _set(config, path, copy.deepcopy(value))
    return config


def _finite_result(result: dict) -> None:
    assert math.isfinite(result["final_loss"]) and 0.0 <= result["accuracy"] <= 1.0
    summary = result["report"].summary
    for key in ("step_cycles", "dense_step_cycles", "samples_per_s", "compute_utilization_pct"):
        assert math.isfinite(summary[key]), (key, summary[key])


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck),
          derandomize=True)
@given(configs())
def test_a_config_is_accepted_or_refused_by_a_wsebench_error(config):
    try:
        cfg.validate(config)
    except USER_ERRORS:
        pass


# accepted configs that train: small sizes, and the numbers that once went wrong silently
RUNNABLE = {("optimizer", "lr"): st.one_of(st.floats(0, 1e39), st.just(float("inf"))),
            ("model", "dropout"): st.floats(0, 1), ("model", "activation"): st.sampled_from(
                ["relu", "gelu", "tanh", "none"]),
            ("data", "spread"): st.floats(0, 1e38), ("data", "name"): st.just("blobs"),
            ("sparsity", "harvest"): st.booleans(), ("on_nonfinite",): st.sampled_from(
                ["raise", "warn", "skip"]), **SMALL}


@st.composite
def runnable_configs(draw) -> dict:
    config = tiny_config(steps=1, hidden=8, depth=2, samples=64, batch_size=16)
    config["data"]["name"] = "blobs"
    for path in draw(st.lists(st.sampled_from(sorted(RUNNABLE)), min_size=1, max_size=4)):
        _set(config, path, draw(RUNNABLE[path]))
    return config


@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck),
          derandomize=True)
@given(runnable_configs())
def test_a_run_gives_finite_results_or_a_wsebench_error(config):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = cfg.run(config, progress=False)
    except USER_ERRORS:
        return
    if config.get("on_nonfinite") in ("warn", "skip"):
        return                      # asked to go on: a NaN loss is then reported, and warned of
    _finite_result(result)


ARG = st.one_of(st.text(max_size=8), st.sampled_from(
    ["-1", "0", "1", "2", "nan", "inf", "1e9", "--", "-", "model.hidden=8,16", "seed=1",
     "model.hidden=", "=3", "x=[", "sparsity.harvest=true,false"]))


@st.composite
def argvs(draw, paths: dict) -> list[str]:
    command = draw(st.sampled_from(["run", "sweep", "ispd"]))   # demo trains a full config
    argv = [command, draw(st.sampled_from(sorted(paths[command])))]
    flags = {"run": ["--out", "--steps", "--checkpoint", "--resume", "--no-progress"],
             "sweep": ["--set", "--store", "--csv", "--steps", "--repeats", "--workers",
                       "--same-seed", "--no-progress", "--grid"],
             "ispd": ["--out", "--time-limit"]}[command]
    for flag in draw(st.lists(st.sampled_from(flags), max_size=3)):
        argv.append(flag)
        if flag in ("--resume", "--no-progress", "--same-seed"):
            continue
        if flag in ("--out", "--store", "--csv", "--checkpoint", "--grid"):
            argv.append(draw(st.sampled_from(sorted(paths["outputs"]))))
        else:
            argv.append(draw(ARG))
    return argv


@pytest.fixture(scope="module")
def fuzz_paths(tmp_path_factory) -> dict:
    import json
    root = tmp_path_factory.mktemp("fuzz")
    good = root / "good.json"
    good.write_text(json.dumps(tiny_config(steps=1, hidden=8, depth=2, samples=32, batch_size=16)))
    (root / "bad.yaml").write_text("steps: [\n")
    (root / "binary.json").write_bytes(b"\xff\x00\x81")
    (root / "afile").write_text("")
    fifo = root / "fifo.kgraph"
    os.mkfifo(fifo)
    (root / "loop.kgraph").write_text("(*\nwidth=8\n*)\n")
    configs_ = [str(good), str(root / "bad.yaml"), str(root / "binary.json"), str(root / "nope.yaml"),
                str(root)]
    return {"run": configs_, "sweep": configs_,
            "ispd": [str(fifo), str(root / "loop.kgraph"), str(root / "nope.kgraph"), str(good)],
            "outputs": [str(root / "o"), str(root / "afile"), str(root / "afile" / "x"), str(root),
                        str(root / "c.csv"), str(root / "run.ckpt")]}


def test_cli_arguments_end_in_a_status_never_an_exception(fuzz_paths, monkeypatch):
    # the CLI's handling is under test, not the pool: points run in this process
    monkeypatch.setattr("wsebench.sweeps.process_pool", lambda workers: InlineExecutor())

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck),
              derandomize=True)
    @given(argvs(fuzz_paths))
    def check(argv):
        if argv[0] == "ispd" and "--time-limit" not in argv:
            argv += ["--time-limit", "0.2"]          # a valid kgraph solves within the limit
        try:
            status = cli.main(argv + ["--no-progress"] if argv[0] in ("run", "sweep") else argv)
        except SystemExit as err:                   # argparse: usage error, status 2
            assert err.code == 2, argv
            return
        assert status in (0, 1, 2), (argv, status)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check()
