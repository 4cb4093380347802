"""wsebench.dynamic: the notebooks' experiments show a progress bar per training run when asked."""
from __future__ import annotations

from wsebench import dynamic


def test_the_padding_experiment_shows_its_training_progress_when_asked(monkeypatch):
    import tqdm.auto
    shown = []

    class Bar(tqdm.auto.tqdm):
        def __init__(self, *args, **kwargs):
            shown.append((not kwargs.get("disable"), kwargs.get("total")))
            super().__init__(*args, **{**kwargs, "disable": True})

    monkeypatch.setattr(tqdm.auto, "tqdm", Bar)
    setup = dynamic.PaddingSetup(max_len=8, samples=32, test_samples=8, batch=8, d_model=8,
                                 heads=1, layers=1, ffn=8, steps=2)
    result = dynamic.padding_experiment(setup, progress=True)
    assert shown == [(True, 2)] and len(result["history"]) == 2
