"""Simulator step time over eager torch's, per model, both timed in the same run.

    PYTHONPATH=. python bench/step_overhead.py [--steps 50] [--backend auto|numpy|cupy] [--threads N]
                                               [--models mlp transformer] [--record FILE]

For a single-thread comparison run `OPENBLAS_NUM_THREADS=1 ... --threads 1` (NumPy's BLAS reads
its thread count when it loads; torch's is set by --threads). `--clock cpu` times each step by
the process's CPU time instead of the wall clock: on a machine other work is loading, a
single-threaded comparison then counts each side's own work, not its waits.

The models: "mlp", 4 Linear layers (hidden 256) with ReLU, batch 64, SGD; "resmlp", 2
pre-LayerNorm residual blocks of a GELU MLP (d 256, hidden 1024), batch 64, SGD; "transformer",
2 encoder blocks of d_model 128 (4 heads, FFN 512) over 64 tokens, batch 8, SGD; "cnn", two
Conv2d-BatchNorm-ReLU stages (16 and 32 channels, max pooling between) with a pooled linear head,
16 x 16 images, batch 32, SGD. Each side gets a
warm-up, then the median of `--steps` steps (time.perf_counter). The simulator's step is then
split into its numerics (joint graph + optimizer update) and its timing measurement (counting
non-zeros per core, the cost model and the pipeline recurrence). Prints figures only; asserts
nothing about time. `--record FILE` also writes them, per model, as JSON (with the clock, the
threads and the backend), so a run's figures can be kept beside the code they measured.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings

import torch

import simulator.training as training
import wsebench as wb

BATCH, IN, HIDDEN, OUT, DEPTH = 64, 256, 256, 10, 4
TOKENS, D_MODEL, SEQ_BATCH, VOCAB = 64, 128, 8, 64


def setup(seed: int = 0):
    """The MLP: its model, loss and one batch."""
    torch.manual_seed(seed)
    model = wb.models.mlp(IN, HIDDEN, OUT, DEPTH, activation="relu", dropout=0.0)
    x = torch.randn(BATCH, IN)
    y = torch.randint(0, OUT, (BATCH,))
    return model, torch.nn.CrossEntropyLoss(), x, y


class ResidualMLP(torch.nn.Module):
    """x -> Linear -> 2 x (x + Linear(GELU(Linear(LayerNorm(x))))) -> LayerNorm -> Linear."""

    def __init__(self, width: int = HIDDEN, blocks: int = 2):
        super().__init__()
        self.embed = torch.nn.Linear(IN, width)
        self.blocks = torch.nn.ModuleList(torch.nn.Sequential(
            torch.nn.LayerNorm(width), torch.nn.Linear(width, 4 * width), torch.nn.GELU(),
            torch.nn.Linear(4 * width, width)) for _ in range(blocks))
        self.head = torch.nn.Sequential(torch.nn.LayerNorm(width), torch.nn.Linear(width, OUT))

    def forward(self, x):
        x = self.embed(x)
        for block in self.blocks:
            x = x + block(x)
        return self.head(x)


def setup_resmlp(seed: int = 0):
    """The LayerNorm/GELU residual MLP: its model, loss and one batch."""
    torch.manual_seed(seed)
    model = ResidualMLP()
    x = torch.randn(BATCH, IN)
    y = torch.randint(0, OUT, (BATCH,))
    return model, torch.nn.CrossEntropyLoss(), x, y


def setup_cnn(seed: int = 0):
    """The small CNN: its model, loss and one batch of 16 x 16 RGB images."""
    torch.manual_seed(seed)
    nn = torch.nn
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, OUT))
    x = torch.randn(32, 3, 16, 16)
    y = torch.randint(0, OUT, (32,))
    return model, nn.CrossEntropyLoss(), x, y


def setup_transformer(seed: int = 0):
    """The 2-layer transformer: its model, loss and one batch of token ids (no padding)."""
    torch.manual_seed(seed)
    model = wb.models.transformer(vocab=VOCAB, d_model=D_MODEL, heads=4, layers=2, ffn=4 * D_MODEL,
                                  max_len=TOKENS, classes=4, seed=seed)
    x = torch.randint(1, VOCAB, (SEQ_BATCH, TOKENS))
    y = torch.randint(0, 4, (SEQ_BATCH,))
    return model, torch.nn.CrossEntropyLoss(), x, y


MODELS = {"mlp": (setup, f"MLP {DEPTH} x Linear(hidden {HIDDEN}), ReLU, batch {BATCH}, SGD"),
          "resmlp": (setup_resmlp, f"residual MLP 2 x (LayerNorm, Linear {HIDDEN}->{4 * HIDDEN}, "
                                   f"GELU, Linear), batch {BATCH}, SGD"),
          "transformer": (setup_transformer, f"transformer 2 x d_model {D_MODEL}, seq {TOKENS}, "
                                             f"batch {SEQ_BATCH}, SGD"),
          "cnn": (setup_cnn, "CNN 2 x (Conv2d, BatchNorm2d, ReLU), 16 x 16 images, batch 32, SGD")}


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
clock = time.perf_counter


def time_rounds(steps_by_name: dict, steps: int, warmup: int, rounds: int = 5) -> dict:
    """Time the contenders in alternating blocks, so load on the machine hits both alike.
    Blocks rather than single steps: switching between torch's and NumPy's thread pools
    every step makes each wait for the other's spinning threads, which neither pays alone."""
    times = {name: [] for name in steps_by_name}
    per_round = max(1, -(-steps // rounds))
    for _ in range(rounds):
        for name, step in steps_by_name.items():
            for _ in range(warmup):
                step()
            for _ in range(per_round):
                start = clock()
                step()
                times[name].append(clock() - start)
    return times


def eager_step_fn(model, loss_fn, x, y):
    opt = torch.optim.SGD(model.parameters(), lr=0.01)

    def step():
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
    return step


class _Timed:
    """Wraps a function and adds up the seconds spent in it."""

    def __init__(self, inner):
        self.inner, self.seconds = inner, 0.0

    def __call__(self, *args, **kwargs):
        start = clock()
        try:
            return self.inner(*args, **kwargs)
        finally:
            self.seconds += clock() - start


def profile_split(session, x, y, steps: int) -> dict[str, float]:
    """Seconds per simulator step in: the joint graph (forward + backward), the timing
    measurement, and the rest (optimizer update, host glue)."""
    trainer = session._trainer
    measure, graph = _Timed(training.measure_step), _Timed(trainer.executor.run)
    training.measure_step, trainer.executor.run = measure, graph
    try:
        start = clock()
        for _ in range(steps):
            session.step(x, y)
        total = clock() - start
    finally:
        training.measure_step = measure.inner
        del trainer.executor.run            # back to the class's method
    return {"numerics: joint graph": graph.seconds / steps,
            "numerics: optimizer update + host glue": (total - graph.seconds - measure.seconds) / steps,
            "timing measurement": measure.seconds / steps}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50, help="timed steps per side (median)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps before each block")
    parser.add_argument("--backend", default="auto", choices=("auto", "numpy", "cupy"))
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--clock", default="wall", choices=list(CLOCKS),
                        help="time steps by the wall clock or by the process's CPU time")
    parser.add_argument("--record", default=None, metavar="FILE",
                        help="also write each model's figures to FILE as JSON")
    args = parser.parse_args(argv)
    global clock
    clock = CLOCKS[args.clock]
    if args.threads:
        torch.set_num_threads(args.threads)
    figures = {name: compare(name, args) for name in args.models}
    if args.record:
        with open(args.record, "w") as out:
            json.dump({"clock": args.clock, "torch_threads": torch.get_num_threads(),
                       "steps": args.steps, "models": figures}, out, indent=2)


def compare(name: str, args) -> dict:
    """Eager torch and the simulator on the same model and batch, timed in alternating blocks;
    prints the figures and returns them."""
    make, title = MODELS[name]
    model, loss_fn, x, y = make()
    sim_model, _, _, _ = make()
    opt = torch.optim.SGD(sim_model.parameters(), lr=0.01)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        session = wb.compile(sim_model, loss_fn, example=(x, y), optimizer=opt,
                             backend=args.backend, wafer="classroom")
    for w in caught:
        print(f"note: {w.message}")
    times = time_rounds({"eager": eager_step_fn(model, loss_fn, x, y),
                         "sim": lambda: session.step(x, y)}, args.steps, args.warmup)
    eager, sim = statistics.median(times["eager"]), statistics.median(times["sim"])
    split = profile_split(session, x, y, args.steps)
    print(f"{title}; backend {session.backend}; torch threads {torch.get_num_threads()}; "
          f"{args.clock} clock")
    n = len(times["eager"])
    print(f"torch eager step:   {1e3 * eager:8.3f} ms (median of {n})")
    print(f"simulator step:     {1e3 * sim:8.3f} ms (median of {n})")
    print(f"ratio simulator / eager: {sim / eager:.2f}x")
    total = sum(split.values())
    print(f"where the simulator's time goes (mean of {args.steps} more steps, {1e3 * total:.3f} ms):")
    for part, seconds in split.items():
        print(f"  {part:<40}{1e3 * seconds:8.3f} ms  {100 * seconds / total:5.1f}%")
    print()
    return {"title": title, "backend": session.backend, "eager_ms": 1e3 * eager,
            "simulator_ms": 1e3 * sim, "ratio": sim / eager,
            "split_ms": {part: 1e3 * seconds for part, seconds in split.items()},
            "measurement_share": split["timing measurement"] / total}


if __name__ == "__main__":
    main()
