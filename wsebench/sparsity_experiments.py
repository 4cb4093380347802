"""The seed's three sparsity experiments (Hot Chips 2020, Cerebras: "sparsity harvesting"), as
runnable configs at classroom sizes, each variant measured against its own dense baseline.

1. Transformer encoder: ReLU FFN + dropout 0.3 vs the same with GELU and no dropout (seed: 1.2x).
2. 34-layer fully connected net: as is (tanh), with ReLU inserted, and with ReLU plus 50%
   induced sparsity (seed: 1.7x and 2.4x).
3. Small BERT-style encoder (GELU) with 50% of the values dropped, forward and backward, at the
   inputs of most of its matmuls (seed: up to 1.5x with minimal accuracy loss).

Every variant trains on the simulated wafer from the same initial weights and batches as its
baseline. Speedup is the baseline's mean cycles per step over the variant's
(`wsebench.sparsity.compare`), samples/s is simulated, accuracy is measured on held-out data.
Nothing here is tuned to the seed's figures: they are printed next to ours, with what differs.
`bench/sparsity_table.py` prints the table; notebooks/02_sparsity.ipynb shows it.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import torch
import torch.nn as nn

from . import data as _data
from . import models as _models
from .session import compile as _compile
from .sparsity import compare


@dataclass(frozen=True)
class Variant:
    label: str
    model: dict                    # {"family": "mlp" | "transformer", **kwargs}
    sparsity: dict | None = None
    seed_speedup: str = ""         # the seed's figure for this variant, as published


@dataclass(frozen=True)
class Experiment:
    name: str
    data: dict                     # {"kind": "blobs" | "tokens", **generator kwargs}
    variants: tuple[Variant, ...]  # the first is the dense baseline
    batch: int
    steps: int
    lr: float
    note: str                      # how our setup differs from the seed's
    he_init: bool = False          # He et al. 2015 init, so a deep plain MLP trains at all
    optimizer: str = "adam"        # "adam" or "sgd"


def _tokens(samples: int, vocab: int, length: int, seed: int):
    """Token ids in [1, vocab) (0 is padding, unused here); label 1 when more than half of the
    tokens come from the lower half of the vocabulary: a task mean pooling can learn."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(1, vocab, (samples, length), generator=g)
    y = ((x < vocab // 2).sum(dim=1) * 2 > length).long()
    return x, y


HELD_OUT = 256


def _make_data(spec: dict, samples: int, seed: int):
    """(train x, train y, held-out x, held-out y): one draw, split, so both share the task."""
    spec = dict(spec)
    kind = spec.pop("kind")
    total = samples + HELD_OUT
    if kind == "tokens":
        x, y = _tokens(total, spec["vocab"], spec["length"], seed)
    else:
        x, y = _data.make(kind, samples=total, seed=seed, **spec)
    return x[:samples], y[:samples], x[samples:], y[samples:]


def experiments(fast: bool = False) -> list[Experiment]:
    """The three experiments; `fast` shrinks every model and run (for tests and notebooks)."""
    d, ffn, steps, batch = (16, 32, 4, 8) if fast else (32, 128, 30, 16)
    vocab, length = 16, 8 if fast else 16
    tokens = {"kind": "tokens", "vocab": vocab, "length": length}
    base_t = {"family": "transformer", "vocab": vocab, "d_model": d, "heads": 2, "ffn": ffn,
              "max_len": length, "classes": 2}
    depth, hidden, fc_batch = (6, 64, 128) if fast else (34, 64, 128)
    fc = {"family": "mlp", "in_features": 16, "hidden": hidden, "out_features": 4, "depth": depth,
          "activation": "tanh"}
    layers = 2 if fast else 4
    bert = {**base_t, "layers": layers, "activation": "gelu"}
    drop50 = {"fraction": 0.5, "where": "both"}
    return [
        Experiment("transformer_relu_dropout", tokens, (
            Variant("GELU, no dropout", {**base_t, "layers": 2, "activation": "gelu"}),
            Variant("ReLU FFN + dropout 0.3", {**base_t, "layers": 2, "activation": "relu",
                                               "dropout": 0.3}, None, "1.2x")),
            batch, steps, 3e-3,
            f"2 blocks of d_model {d} on a 32x32 wafer, synthetic token task; at this width the "
            "softmax, layer norms and embeddings take about as long per sample as the matmuls, "
            "and only matmuls harvest zeros (the seed's full-size Transformer had 90% zero ReLU "
            "outputs feeding far larger matmuls)"),
        Experiment("fc34", {"kind": "blobs", "features": 16, "classes": 4}, (
            Variant("as is (tanh)", fc),
            Variant("ReLU inserted", fc, {"relu": ["act*"]}, "1.7x"),
            Variant("ReLU + 50% induced", fc, {"relu": ["act*"], "drop": [
                {"targets": ["fc*"], **drop50}]}, "2.4x")),
            fc_batch, steps, 3e-3,
            f"{depth} Linear layers of width {hidden} (He init) on blobs; the 50% is dropped "
            "from each layer's output before its ReLU, so about 75% of the streamed values are "
            "zero", he_init=True),
        Experiment("bert_induced", tokens, (
            Variant("dense (GELU)", bert),
            Variant("50% induced, fwd+bwd", bert, {"drop": [
                {"targets": ["layers.*.ln1", "layers.*.ln2", "layers.*.ffn.act"], **drop50}]},
                "up to 1.5x")),
            batch, steps, 3e-3,
            f"{layers}-block encoder, d_model {d}, synthetic token task instead of BERT "
            "pre-training; drops at the inputs of q/k/v, fc1 and fc2"),
    ]


def _he_init(model: nn.Module) -> None:
    """Kaiming-normal weights and zero biases for every Linear (He et al. 2015): torch's default
    init shrinks the signal by about sqrt(3) per layer, which silences a 34-layer plain MLP."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)


def run_variant(exp: Experiment, variant: Variant, wafer="classroom", backend: str = "numpy",
                seed: int = 0, densities="auto") -> dict:
    """Compile and train one variant; the session, its held-out data and the wall seconds
    its compile and its mean step took. `densities` as `wb.compile` takes it ("auto": sized
    for the densities calibrated on the first batch when the variant makes zeros)."""
    kwargs = {k: v for k, v in variant.model.items() if k != "family"}
    model = getattr(_models, variant.model["family"])(seed=seed, **kwargs)
    if exp.he_init:
        _he_init(model)
    x, y, x_test, y_test = _make_data(exp.data, exp.batch * exp.steps, seed)
    opt = torch.optim.Adam(model.parameters(), lr=exp.lr) if exp.optimizer == "adam" else \
        torch.optim.SGD(model.parameters(), lr=exp.lr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        session = _compile(model, nn.CrossEntropyLoss(), example=(x[:exp.batch], y[:exp.batch]),
                           optimizer=opt, wafer=wafer, sparsity=variant.sparsity,
                           backend=backend, seed=seed, densities=densities)
        compiled = time.perf_counter()
        session.train(_data.batches(x, y, exp.batch, seed=seed), steps=exp.steps, progress=False)
    return {"session": session, "variant": variant, "held_out": (x_test, y_test),
            "compile_s": compiled - start,
            "step_s": (time.perf_counter() - compiled) / max(len(session.history), 1)}


def run_experiment(exp: Experiment, same_plan: bool = False, accuracy: bool = True,
                   describe=None, **kwargs) -> list[dict]:
    """One row per variant: speedup vs the experiment's dense baseline (each compiled for its
    own densities), samples/s, accuracy, and the harvest speedup on the variant's own plan.
    `same_plan`: also compile each sparse variant dense-sized, as its baseline is, and give
    its harvest speedup there (`same_plan_speedup`: harvesting on vs off on one plan; what
    `describe` says of that run under `same_plan`).
    `accuracy`: measure held-out accuracy. `describe(session) -> dict`: more fields per row;
    given it, rows keep no session, so only two are alive at a time (large models)."""
    base = run_variant(exp, exp.variants[0], **kwargs)
    x_test, y_test = base["held_out"] if accuracy else (None, None)
    rows = []
    for i, variant in enumerate(exp.variants):
        # first, so that no more than two sessions are alive at a time
        same = _same_plan(exp, variant, describe, **kwargs) if same_plan and i > 0 else None
        run = base if i == 0 else run_variant(exp, variant, **kwargs)
        session = run["session"]
        c = compare(session, base["session"], x_test, y_test)
        report = session.report()
        row = {"experiment": exp.name, "variant": variant.label,
               "speedup": c.speedup, "samples_per_s": c.samples_per_s,
               "accuracy": c.accuracy, "final_loss": c.final_loss,
               "harvest_speedup": report.summary["harvest_speedup"],
               "seed": variant.seed_speedup, "note": exp.note,
               "compile_s": run["compile_s"], "step_s": run["step_s"]}
        if same is not None:
            row["same_plan_speedup"], row["same_plan"] = same
        row.update(describe(session) if describe else {"session": session})
        rows.append(row)
        del run, session, report
    return rows


def _same_plan(exp: Experiment, variant: Variant, describe=None, **kwargs) -> tuple[float, dict]:
    """The variant compiled dense-sized (the plan its dense baseline gets): harvesting on vs
    off on that one plan, measured (dense cycles / cycles of the same step), and what
    `describe` says of that session."""
    session = run_variant(exp, variant, **{**kwargs, "densities": "dense"})["session"]
    return session.report().summary["harvest_speedup"], describe(session) if describe else {}


def run_all(fast: bool = False, **kwargs) -> list[dict]:
    return [row for exp in experiments(fast) for row in run_experiment(exp, **kwargs)]


def format_table(rows: list[dict]) -> str:
    """Plain-text table: ours next to the seed's, and each experiment's note."""
    same = any("same_plan_speedup" in r for r in rows)
    lines = [f"{'experiment':<26}{'variant':<26}{'speedup':>9}{'seed':>12}{'samples/s':>14}"
             f"{'accuracy':>10}{'harvest':>9}" + (f"{'same plan':>11}" if same else "")]
    notes = {}
    for r in rows:
        accuracy = "-" if r["accuracy"] is None else f"{100 * r['accuracy']:.1f}%"
        same_plan = r.get("same_plan_speedup")
        lines.append(f"{r['experiment']:<26}{r['variant']:<26}{r['speedup']:>8.2f}x"
                     f"{r['seed'] or '-':>12}{r['samples_per_s']:>14.3g}"
                     f"{accuracy:>10}{r['harvest_speedup']:>8.2f}x"
                     + ("" if not same else "-".rjust(11) if same_plan is None
                        else f"{same_plan:>10.2f}x"))
        notes[r["experiment"]] = r["note"]
    lines += ["", "speedup: against the experiment's dense variant, each compiled for its own "
                  "densities (calibrated on the first batch); harvest: zero-skipping on against "
                  "off on the variant's own plan"
              + ("; same plan: the same on the plan sized dense, as its baseline's" if same else "")]
    lines.append("")
    lines += [f"{name}: {note}" for name, note in notes.items()]
    return "\n".join(lines)


def table_frame(rows: list[dict]):
    """The rows without their sessions, as a pandas DataFrame if pandas is installed."""
    plain = [{k: v for k, v in r.items() if k != "session"} for r in rows]
    try:
        import pandas as pd
    except ImportError:
        return plain
    return pd.DataFrame(plain)
