"""The public API end to end: compile, step, train, state_dict, report, mapping pins."""
import numpy as np
import pytest
import torch
import torch.nn as nn

import wsebench as wb


def _setup(depth=3, hidden=64, dropout=0.0, activation="relu", batch=32, **kwargs):
    model = wb.models.mlp(16, hidden, 4, depth=depth, activation=activation, dropout=dropout)
    x, y = wb.data.spirals(batch * 8, 16, 4)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    session = wb.compile(model, nn.CrossEntropyLoss(), example=(x[:batch], y[:batch]),
                         optimizer=opt, backend="numpy", **kwargs)
    return session, model, x, y, batch


def test_public_names_exist():
    for name in ("wafer", "compile", "Mapping", "Sparsity", "StepResult", "History", "Report"):
        assert hasattr(wb, name), name
    t = wb.wafer("classroom")
    assert (t.rows, t.cols, t.sram_bytes, t.simd) == (32, 32, 48 * 1024, 4)
    assert t.clock_hz > 0


def test_report_core_utilization_is_a_fabric_map():
    session, _, x, y, b = _setup(depth=4)
    session.train(wb.data.batches(x, y, b), steps=3, progress=False)
    rep = session.report()
    t = session.plan.target
    assert rep.core_utilization.shape == (t.rows, t.cols)
    assert rep.core_utilization.min() >= 0.0 and rep.core_utilization.max() <= 1.0
    free = rep.kernel_grid == 0
    assert free.any(), "the classroom wafer should have free cores for this small MLP"
    assert np.all(rep.core_utilization[free] == 0.0)
    assert rep.core_utilization[~free].max() > 0.0
    names = [k["name"] for k in rep.kernels]
    assert names[:4] == ["fc1", "fc2", "fc3", "fc4"]
    for row in rep.kernels:
        for key in ("name", "rows", "cols", "replicas", "cycles", "utilization"):
            assert key in row
        assert 0.0 <= row["utilization"] <= 1.0
    assert "<table" in rep._repr_html_()


def test_step_result_fields_are_consistent():
    session, _, x, y, b = _setup()
    r = session.step(x[:b], y[:b])
    t = session.plan.target
    assert r.cycles > 0 and r.seconds == pytest.approx(r.cycles / t.clock_hz)
    assert r.samples_per_s == pytest.approx(b / r.seconds)
    assert 0.0 < r.utilization <= 1.0
    assert np.isfinite(r.loss)


def test_harvest_off_takes_more_cycles_for_a_relu_mlp():
    """Harvesting on and off on the same plan: both sized dense (the default would size the
    harvesting one for its calibrated densities, a different plan)."""
    torch.manual_seed(1)
    on, _, x, y, b = _setup(depth=4, hidden=128, densities="dense")
    torch.manual_seed(1)
    off, _, _, _, _ = _setup(depth=4, hidden=128, sparsity={"harvest": False})
    batches = list(wb.data.batches(x, y, b, epochs=1))[:3]
    for xb, yb in batches:
        r_on, r_off = on.step(xb, yb), off.step(xb, yb)
    assert r_off.cycles > r_on.cycles
    assert r_on.loss == pytest.approx(r_off.loss)      # harvesting never changes the numerics
    summary = on.report().summary
    assert summary["dense_step_cycles"] == pytest.approx(r_off.cycles)
    assert summary["harvest_speedup"] == pytest.approx(r_off.cycles / r_on.cycles)
    assert off.report().summary["harvest_speedup"] == pytest.approx(1.0)


def test_identity_mlp_has_nothing_to_harvest_in_hidden_layers():
    session, _, x, y, b = _setup(depth=3, activation="identity")
    session.step(x[:b], y[:b])
    rows = {k["name"]: k for k in session.report().kernels}
    assert rows["fc2"]["harvested_macs"] == 0      # dense inputs, dense gradients


def test_pinned_mapping_is_used_and_reported():
    session, *_ = _setup(depth=3, mapping={"fc*": wb.Mapping(4, 4)})
    for name in ("fc1", "fc2", "fc3"):
        m = session.plan.mapping[name]
        assert (m.rows, m.cols, m.replicas) == (4, 4, 1)
    assert set(session.plan.pinned) == {"fc1", "fc2", "fc3"}
    session2, _, x, y, b = _setup(depth=2, mapping={"fc1": wb.Mapping(3, 5)})
    session2.step(x[:b], y[:b])
    rows = {k["name"]: k for k in session2.report().kernels}
    assert (rows["fc1"]["rows"], rows["fc1"]["cols"], rows["fc1"]["pinned"]) == (3, 5, True)
    assert rows["fc2"]["pinned"] is False
    assert "fc1" in session2.plan.summary()


def test_state_dict_has_model_keys_and_shapes():
    session, model, x, y, b = _setup(dropout=0.2)
    session.step(x[:b], y[:b])
    sd, ref = session.state_dict(), model.state_dict()
    assert sd.keys() == ref.keys()
    assert all(sd[k].shape == ref[k].shape and sd[k].dtype == ref[k].dtype for k in ref)
    assert any(not torch.equal(sd[k], ref[k]) for k in ref), "training should change the weights"


def test_training_reduces_the_loss():
    session, _, x, y, b = _setup(depth=3, hidden=64)
    history = session.train(wb.data.batches(x, y, b), steps=60, progress=False)
    assert len(history) == 60 and len(history.losses) == 60
    assert np.mean(history.losses[-10:]) < np.mean(history.losses[:10])


def test_interrupted_training_keeps_finished_steps():
    session, _, x, y, b = _setup()

    def batches():
        yield x[:b], y[:b]
        yield x[b:2 * b], y[b:2 * b]
        raise KeyboardInterrupt

    history = session.train(batches(), progress=False)
    assert len(history) == 2
    assert len(session.history) == 2


@pytest.mark.parametrize("steps, expected", [(None, 3), (2, 2), (5, 3)])
def test_the_progress_bar_counts_the_steps_a_list_of_batches_gives(monkeypatch, steps, expected):
    import tqdm.auto
    totals = []

    class Bar(tqdm.auto.tqdm):
        def __init__(self, *args, **kwargs):
            totals.append(kwargs.get("total"))
            super().__init__(*args, **{**kwargs, "disable": True})

    monkeypatch.setattr(tqdm.auto, "tqdm", Bar)
    session, _, x, y, b = _setup()
    session.train([(x[i * b:(i + 1) * b], y[i * b:(i + 1) * b]) for i in range(3)], steps=steps)
    assert totals == [expected]


def test_plan_json_round_trip_through_public_api():
    session, *_ = _setup()
    again = wb.Plan.from_json(session.plan.to_json())
    assert again.summary() == session.plan.summary()


def test_report_before_any_step_is_a_clear_error():
    session, *_ = _setup()
    with pytest.raises(RuntimeError, match="no step has run"):
        session.report()


def test_batch_of_another_shape_is_refused():
    session, _, x, y, b = _setup()
    with pytest.raises(ValueError, match="recompile"):
        session.step(x[:b + 1], y[:b + 1])


def test_calibrated_densities_size_kernels_for_the_real_work():
    torch.manual_seed(3)
    model = wb.models.mlp(16, 256, 4, depth=4, dropout=0.5)
    x, y = wb.data.spirals(256, 16, 4)
    results = {}
    for densities in (None, "calibrate"):
        s = wb.compile(model, nn.CrossEntropyLoss(), example=(x[:64], y[:64]),
                       optimizer=torch.optim.SGD(model.parameters(), lr=0.1), backend="numpy",
                       densities=densities)
        results[densities] = (dict(s.plan.densities), s.step(x[:64], y[:64]).cycles)
    measured, _ = results["calibrate"]
    # ReLU then dropout(0.5) leaves about a quarter of fc2's inputs non-zero
    assert 0.1 < measured["fc2"][0] < 0.45
    assert measured["fc1"][0] == 1.0          # the raw input is dense
    assert results["calibrate"][1] < results[None][1]


def test_densities_must_be_calibrate_or_a_dict():
    model = wb.models.mlp(16, 32, 4, depth=2)
    x, y = wb.data.spirals(64, 16, 4)
    with pytest.raises(wb.ConfigError, match="densities"):
        wb.compile(model, nn.CrossEntropyLoss(), example=(x[:32], y[:32]),
                   optimizer=torch.optim.SGD(model.parameters(), lr=0.1), densities="guess")


def test_accuracy_of_a_tagger_counts_real_tokens_only():
    """Token targets: labels at the ignore index (the padding) are not counted, as in a run."""
    from wsebench import config as cfg
    from wsebench.tasks import IGNORE_INDEX
    task = wb.tasks.copy(samples=32, min_len=2, max_len=6, seed=0)
    x, y = next(wb.tasks.batches(task, 8, seed=0, pad_to="max"))
    assert (y == IGNORE_INDEX).any()
    model = wb.models.transformer(vocab=task.vocab, classes=task.classes, max_len=task.max_len,
                                  d_model=16, heads=2, layers=1, ffn=32, task="tag", seed=0)
    session = wb.compile(model, wb.models.TokenCrossEntropy(IGNORE_INDEX), example=(x, y),
                         optimizer=torch.optim.SGD(model.parameters(), lr=0.1), backend="numpy")
    session.step(x, y)
    expected = cfg.accuracy(model, session.state_dict(), x, y)
    with torch.no_grad():
        model.load_state_dict(session.state_dict())
        hits = (model.eval()(x).argmax(-1) == y)
    real = y != IGNORE_INDEX
    assert session.accuracy(x, y) == expected == pytest.approx(float(hits[real].float().mean()))
