"""Universal Transformer with per-position Adaptive Computation Time (dynamic depth).

One shared encoder block (`wsebench.models.EncoderBlock`) is applied recurrently in depth
(Dehghani et al. 2018, "Universal Transformers", arXiv:1807.03819). Before every step the
coordinate embedding of the UT paper (eq. 4) is added: the sinusoid of the position plus the
sinusoid of the step t = 1..max_steps (Vaswani et al. 2017 for the sinusoid itself).

ACT (Graves 2016, "Adaptive Computation Time for Recurrent Neural Networks", arXiv:1603.08983,
eqs. 5-14), per position:
    p_n = sigmoid(Linear(h_n))                       the halting unit
    N   = min{n : p_1 + ... + p_n >= 1 - epsilon}, capped at max_steps
    R   = 1 - (p_1 + ... + p_{N-1})                  the remainder
    w_n = p_n for n < N, w_N = R, 0 after             (so the weights sum to 1)
    y   = sum_n w_n * block_n                        the output state
    ponder cost = tau * mean over real positions of (N + R)
N is a step count with no gradient; R carries the ponder cost's gradient to every p_n before
halting (eq. 14). Unlike some ports, nothing here is detached.

Dynamic depth is unrolled to `max_steps` with `running` masks (DESIGN.md, "Numerics contract":
torch.cond/while_loop cannot hold dropout in torch 2.13), so every capture API works and the
graph has a fixed shape. A halted position keeps its state (the wafer stops sending it; its keys
are still read by the others' attention), and a pad position never runs, never counts in N and
is never read as a key. Each step starts with the marker op `wsebench::running(h, mask)`
(wsebench/markers.py), which carries the step's mask into the captured graph for the timing,
and one more marker after the last step (mask: the real positions) ends the recurrence, so
the final norm and the head are charged for every real position (`compiler.steps`).

`act=False` gives the fixed-depth model: `max_steps` steps for every real position.

The model returns logits, as any classifier does; the ponder cost of the same forward is kept in
`model.last` (an `ACTRecord`), and `ut_loss(model)` adds it to the task loss, so
`wb.compile(model, ut_loss(model), ...)` captures the ponder term with its gradient.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch import Tensor

from compiler.errors import ConfigError

from . import markers
from .models import TASKS, EncoderBlock, TokenCrossEntropy, _check_block, _positive

# The halting unit's initial bias, as in the UT authors' code (tensor2tensor,
# `act_halting_bias_init = 1.0`): p starts near sigmoid(1) = 0.73, so positions begin by
# pondering about two steps rather than one or max_steps.
HALT_BIAS_INIT = 1.0
NAME = "universal_transformer"


def sinusoid(length: int, d_model: int, start: int = 0) -> Tensor:
    """Rows start..start+length-1 of the sinusoid table (Vaswani et al. 2017, sec. 3.5):
    [k, 2i] = sin(k / 10000^(2i/d)), [k, 2i+1] = cos(k / 10000^(2i/d)); float32."""
    k = torch.arange(start, start + length, dtype=torch.float64)[:, None]
    i = torch.arange(d_model, dtype=torch.float64)
    angle = k / torch.pow(10000.0, (i - i % 2) / d_model)
    table = torch.where(i % 2 == 0, torch.sin(angle), torch.cos(angle))
    return table.to(torch.float32)


@dataclass(frozen=True, eq=False)
class ACTRecord:
    """What one forward did, per position (tensors of that forward; [B, T] unless noted).

    `steps` is N (0 at pad), `remainder` is R (0 at pad), `running` holds each step's mask of
    positions that computed in it, `weights` each step's w_n (empty without ACT), `real` marks the
    non-pad positions, and `ponder_cost` is the scalar tau * mean(N + R) (None without ACT).
    Kept in a record rather than as tensor attributes of the module: it is an output of the
    forward, not module state."""
    logits: Tensor
    ponder_cost: Tensor | None
    steps: Tensor
    remainder: Tensor
    running: tuple[Tensor, ...]
    weights: tuple[Tensor, ...]
    real: Tensor

    @property
    def running_fraction(self) -> list[float]:
        """Per step, the fraction of real positions still running at its start."""
        total = max(int(self.real.sum()), 1)
        return [int(mask.sum()) / total for mask in self.running]

    @property
    def mean_steps(self) -> float:
        """Mean N (ponder steps) over the real positions."""
        return float(self.steps[self.real].mean()) if bool(self.real.any()) else 0.0

    @property
    def halting_total(self) -> Tensor:
        """sum_n w_n per position: 1 at every real position under ACT, 0 at pad."""
        if not self.weights:
            raise ValueError("halting weights exist only with act=True")
        return torch.stack(self.weights).sum(0)


class UniversalTransformer(nn.Module):
    """Token ids [B, T] -> logits [B, classes] ("classify") or [B, T, classes] ("tag").

    Modules (they name the wafer's kernels): `embed` (the pad row is zero and gets no gradient),
    `block` (the one shared EncoderBlock), `halt` (the halting unit, only with ACT), `norm` (the
    final LayerNorm) and `head`. Classification pools by the mean over real positions, as
    `wsebench.models.Transformer` does; padding is on the right."""

    def __init__(self, vocab, d_model, heads, ffn, max_steps, max_len, classes, task, act, tau,
                 epsilon, activation, dropout, attention, pad_id):
        super().__init__()
        self.task, self.pad_id, self.max_len, self.max_steps = task, pad_id, max_len, max_steps
        self.adaptive, self.tau, self.threshold = act, tau, 1.0 - epsilon
        self.embed = nn.Embedding(vocab, d_model, padding_idx=pad_id)
        self.drop = nn.Dropout(dropout)
        self.block = EncoderBlock(d_model, heads, ffn, activation, dropout, attention)
        if act:
            self.halt = nn.Linear(d_model, 1)
            nn.init.constant_(self.halt.bias, HALT_BIAS_INIT)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, classes)
        # Fixed tables, not learned: buffers (so every capture path sees them as graph inputs),
        # left out of the state_dict because they follow from the shape.
        self.register_buffer("pos_signal", sinusoid(max_len, d_model), persistent=False)
        self.register_buffer("step_signal", sinusoid(max_steps, d_model, start=1), persistent=False)
        self.last: ACTRecord | None = None

    def __getstate__(self):
        """Copies and pickles leave the last forward's record behind: it holds that forward's
        autograd graph, which deepcopy refuses, and it describes this instance's call only."""
        return {**self.__dict__, "last": None}

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 2 or x.shape[1] > self.max_len or x.dtype.is_floating_point:
            raise ValueError(f"expected integer token ids [batch, length <= {self.max_len}], got "
                             f"{x.dtype} {tuple(x.shape)}")
        pad = x == self.pad_id
        state = self.drop(self.embed(x))
        out, steps, remainder, masks, weights = self._recur(state, pad)
        # the recurrence ends: every real position computes again (identity, for the timing)
        h = self.norm(markers.running(out, ~pad))
        if self.task == "tag":
            logits = self.head(h)
        else:
            keep = (~pad).to(h.dtype).unsqueeze(-1)                          # [B, T, 1]
            logits = self.head((h * keep).sum(1) / keep.sum(1).clamp(min=1.0))
        ponder = self._ponder_cost(steps, remainder, ~pad) if self.adaptive else None
        self.last = ACTRecord(logits, ponder, steps, remainder, tuple(masks), tuple(weights), ~pad)
        return logits

    def _recur(self, state: Tensor, pad: Tensor):
        """The unrolled recurrence; returns (output state, N, R, per-step masks, per-step w)."""
        positions = self.pos_signal[:state.shape[1]]
        running = ~pad
        zeros = torch.zeros(pad.shape, dtype=state.dtype)
        cum, steps, remainder = zeros, zeros, zeros              # cum = sum of p before halting
        out = torch.zeros_like(state)
        masks, weights = [], []
        for n in range(self.max_steps):
            h = markers.running(state + positions + self.step_signal[n], running)
            masks.append(running)
            new = self.block(h, pad)
            steps = steps + running.to(state.dtype)
            # halted and pad positions keep their state
            state = torch.where(running.unsqueeze(-1), new, state)
            if not self.adaptive:
                continue
            p = torch.sigmoid(self.halt(h)).squeeze(-1)
            if n == self.max_steps - 1:                           # the cap: whoever runs halts
                halting = running
            else:
                halting = running & (cum + p >= self.threshold)
            going = running & ~halting
            left = 1.0 - cum                                      # R, for those halting now
            w = torch.where(going, p, torch.where(halting, left, 0.0))
            remainder = torch.where(halting, left, remainder)
            cum = torch.where(going, cum + p, cum)
            out = out + w.unsqueeze(-1) * new
            weights.append(w)
            running = going
        return (out if self.adaptive else state), steps, remainder, masks, weights

    def _ponder_cost(self, steps: Tensor, remainder: Tensor, real: Tensor) -> Tensor:
        """tau * mean(N + R) over the real positions (Graves 2016, eq. 12); pad adds nothing."""
        realf = real.to(steps.dtype)
        return self.tau * ((steps + remainder) * realf).sum() / realf.sum().clamp(min=1.0)


def universal_transformer(vocab: int = 16, d_model: int = 32, heads: int = 2, ffn: int = 64,
                          max_steps: int = 4, classes: int = 2, task: str = "classify",
                          act: bool = True, tau: float = 0.01, epsilon: float = 0.01,
                          dropout: float = 0.0, attention: str = "manual", pad_id: int = 0,
                          seed: int | None = None, max_len: int = 64,
                          activation: str = "gelu") -> UniversalTransformer:
    """A Universal Transformer over token ids (see the module doc); `act=False` is fixed depth."""
    for name, value in (("vocab", vocab), ("max_steps", max_steps), ("classes", classes),
                        ("max_len", max_len)):
        _positive(name, value, NAME)
    if task not in TASKS:
        raise ConfigError(f"unknown {NAME} task {task!r}; allowed: {', '.join(TASKS)}")
    if not isinstance(act, bool):
        raise ConfigError(f"{NAME} act must be True or False, got {act!r}")
    if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not (
            math.isfinite(tau) and tau >= 0):
        raise ConfigError(f"{NAME} tau (the ponder cost weight) must be a finite number >= 0, "
                          f"got {tau!r}")
    if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or not 0 < epsilon < 1:
        raise ConfigError(f"{NAME} epsilon must be in (0, 1) (halting threshold 1 - epsilon), "
                          f"got {epsilon!r}")
    _check_block(d_model, heads, ffn, activation, dropout, attention)
    if not isinstance(pad_id, int) or isinstance(pad_id, bool) or not 0 <= pad_id < vocab:
        raise ConfigError(f"pad_id must be a token id in [0, vocab={vocab}), got {pad_id!r}")
    if seed is not None:
        torch.manual_seed(seed)
    return UniversalTransformer(vocab, d_model, heads, ffn, max_steps, max_len, classes, task, act,
                                float(tau), float(epsilon), activation, dropout, attention, pad_id)


class PonderLoss:
    """`loss_fn(logits, y)` = the task loss + the ponder cost of the forward that made `logits`.

    Reads `model.last`, so it must be built from the very model that produces the logits (a
    deep copy of the model needs its own `ut_loss(copy)`); it checks this and says so. A plain
    callable, not an nn.Module, so that wrapping it never registers the model twice."""

    def __init__(self, model: UniversalTransformer, base=None, ignore_index: int = -100):
        if not isinstance(model, UniversalTransformer):
            raise ConfigError(f"ut_loss needs a UniversalTransformer, got {type(model).__name__}")
        self.model = model
        if base is None:
            base = (TokenCrossEntropy(ignore_index) if model.task == "tag"
                    else nn.CrossEntropyLoss())
        self.base = base

    def __call__(self, logits: Tensor, y: Tensor) -> Tensor:
        record = self.model.last
        if record is None or record.logits is not logits:
            raise ValueError("ut_loss: these logits did not come from the model this loss was "
                             "built for; build the loss from the model you call "
                             "(e.g. ut_loss(copy) for a deep copy)")
        loss = self.base(logits, y)
        return loss if record.ponder_cost is None else loss + record.ponder_cost


def ut_loss(model: UniversalTransformer, base=None, ignore_index: int = -100) -> PonderLoss:
    """The training loss of `model`: cross entropy (per token for task "tag", ignoring labels
    equal to `ignore_index`) or `base`, plus the ACT ponder cost."""
    return PonderLoss(model, base, ignore_index)
