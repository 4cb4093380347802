"""The attention kernel kind: hand-optimized scaled dot-product attention, forward and backward.

Scaled dot-product attention (Vaswani et al. 2017) for one sample, per head h:
  s[h,i,j] = sum_d q[h,i,d] k[h,j,d] / sqrt(dh);  p = softmax_j(s + mask);  o[h,i,d] = sum_j p[h,i,j] v[h,j,d]
Mapping: the kernel's rows x cols cores unroll the query positions i over rows and the key
positions j over cols (every head on every core). Core (r, c) holds K and V of its key block J_c
for the sample in flight and computes the H x |I_r| x |J_c| block of scores, as the matmul
kernel holds a weight tile (Hot Chips 2020 dataflow):
- forward: Q[I_r] is multicast along row r, K[J_c] and V[J_c] down column c. The core does the
  Q K^T and P V MACs (2 |I_r| |J_c| D, D = H dh) and the softmax's element work per score; the
  row max and row sum (2 H |I_r|) and the partial outputs O[I_r] (|I_r| D) chain along the row.
- backward: dO[I_r] is multicast along the row; with P, Q, K, V stashed the core does dP = dO V^T,
  dV += P^T dO, dQ = dS K and dK = dS^T Q (4 |I_r| |J_c| D MACs) and the softmax backward per
  score; the row sums of dP * P (H |I_r|) and dQ partials chain along the row, dK and dV
  partials down the column. Where that stash would not fit in SRAM with the batch in flight,
  each core keeps only its share of the Q, K and V blocks and the backward multicasts them
  again, as the forward did (`stash_values`, `spreads_stash`).
So a sample costs 2 L^2 dh MACs per head forward and twice that backward, plus ~L^2 element
operations per head for the softmax. The kernel holds no weights, so it has no update.

Counts: per call and sample, the keys (the real tokens) and the queries that compute.
- Variable sequence length: the host sends only a sample's L_b real tokens, spread over the rows
  and the columns in contiguous blocks of ceil(L_b / rows) queries and ceil(L_b / cols) keys, so
  pad tokens cost nothing. The real tokens are measured from the softmax output P (the `probs`
  stream, read before attention dropout): a pad key is masked out of every row (-1e9 or -inf),
  so its probability is exactly 0 for every query and head, while a real key's is zero only if
  its score is ~87 below the row's maximum in float32 for every query of every head. A model
  without a padding mask has every position real. The static estimate assumes L_b = L.
- Dynamic depth: a block shared by S recurrent steps is one kernel called S times per sample. At
  each call only the A_b positions still running send queries; every real key is still read,
  since the running positions attend to the halted ones too. A call with no running position
  sends nothing (DESIGN.md, "Dynamic execution").
- Masked pairs: a core computes only the (query, key) pairs of its blocks that the mask lets
  through, and skips the rest (it holds the mask, so it knows them before computing a score).
  A causal mask lets through the lower triangle, about half the pairs; the measurement reads
  the pairs off P as it reads the keys (a pair the mask removes has probability exactly 0 for
  every head). With contiguous blocks, the cores above the diagonal idle and the diagonal's
  compute half, so a causal kernel's MACs halve while its busiest core does a whole block.
  Measured where positions are not marked (no dynamic depth); the padded variant and the static
  estimate charge every pair.
Attention does not harvest zeros: its operands are dense projections, and the zeros of a
dropped-out P are made on the core itself.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .. import cost
from ..passes import is_activation_matmul
from .base import Access, Counts, Kernel, KindDefaults, LoopNest

# Element operations per score, read off the formulas above: forward scale by 1/sqrt(dh), add
# the mask, compare for the row max, subtract it, exp, add to the row sum, multiply by 1/sum;
# backward multiply dP by P, add to the row sum, subtract it, multiply by P, mask, scale.
FORWARD_SCORE_FLOPS = 7
BACKWARD_SCORE_FLOPS = 6
# Element operations of merging an arriving partial into a core's own (online softmax, Milakov
# & Gimelshein 2018): per (m, l) pair a max, two subtractions, two exps and an FMA; per output
# value both sides rescaled and added.
MERGE_FLOPS = {"stats": 6, "out": 2}


class AttentionCounts(NamedTuple):
    """(distinct samples, calls) real keys read and queries computed, and (distinct samples,
    calls, rows, cols) the pairs each core computes (None: every pair of its blocks)."""
    keys: np.ndarray
    queries: np.ndarray
    pairs: np.ndarray | None = None


def attention_kernel(name: str, samples: int, heads: int, length: int, head_dim: int,
                     ops: tuple[str, ...] = (), probs: str | tuple[str, ...] = "probs",
                     operands: tuple[tuple[str, str], ...] = ()) -> Kernel:
    """An attention kernel of `heads` x `head_dim` over sequences of `length` (padded) tokens;
    `probs` names the softmax output the simulator reads the real tokens from, one per call
    (a tuple when recurrent steps share the block); `operands` the ("q", value), ("k", value),
    ("v", value) its first call streams (`FABRIC_ROLES`), kept with the step's tensors so that
    the fabric program can stream them."""
    probs = (probs,) if isinstance(probs, str) else tuple(probs)
    steps = (("s", len(probs)),) if len(probs) > 1 else ()
    nest = LoopNest(dims=(("b", samples),) + steps + (("h", heads), ("i", length), ("j", length),
                                                     ("d", head_dim)),
                    accesses=(Access("softmax_j(q.k)", ("b", "h", "i", "j"), "stream_in"),
                              Access("v", ("b", "h", "j", "d"), "stream_in"),
                              Access("out", ("b", "h", "i", "d"), "stream_out")),
                    row_dim="i", col_dim="j", reduce_dims=("j",))
    streams = (("probs", probs[0]),) + tuple(operands) + tuple(("probs", p) for p in probs[1:])
    return Kernel(name, "attention", ops, (), nest, streams, samples, 0)


def build(graph, name: str, ops: list, context) -> Kernel | None:
    """Each softmax of an attention region (one per step when recurrent steps share the block)
    gives a call; the first gives the sequence length L (its last two dims) and the heads (the
    rest, per sample); the Q K^T matmul that feeds it gives the head dim."""
    if name not in context.attention:
        return None
    softmaxes = [o for o in ops if o.op == "aten._softmax.default"]
    shape = graph.type_of[softmaxes[0].name].shape
    length = shape[-1]
    heads = max(1, math.prod(shape[:-2]) // max(context.samples, 1))
    at = ops.index(softmaxes[0])
    scores = [o for o in ops[:at] if is_activation_matmul(o, context.roots)
              and graph.type_of[o.name].shape[-2:] == (shape[-2], length)]
    head_dim = graph.type_of[scores[-1].args[0].name].shape[-1]
    outputs = [o for o in ops[at:] if is_activation_matmul(o, context.roots)
               and graph.type_of[o.name].shape[-2:] == (shape[-2], head_dim)]
    operands = ()
    if outputs:                  # Q K^T reads q and k^T; P V reads v (the first call's)
        operands = (("q", scores[-1].args[0].name), ("k", scores[-1].args[1].name),
                    ("v", outputs[0].args[1].name))
    return attention_kernel(name, context.samples, heads, length, head_dim,
                            tuple(o.name for o in ops), tuple(o.name for o in softmaxes), operands)


# The operands the first call streams on the fabric (`simulator.fabric.attention`), and how each
# is laid out as captured, per sample: q and v as (heads, L, dh), k as the Q K^T matmul reads it,
# transposed (heads, dh, L), the softmax P as (heads, L, L).
FABRIC_ROLES = {"q": "hld", "k": "hdl", "v": "hld", "probs": "hll"}


def fabric_operand(kernel: Kernel, role: str, value: np.ndarray) -> np.ndarray:
    """(samples, heads, L, dh) of `role` q, k or v ((samples, heads, L, L) of the softmax P), off
    the captured `value` of the kernel's first call (`FABRIC_ROLES`). q and k are the Q K^T
    matmul's operands as captured, so a capture that scales them both by dh^-1/4 (torch's math
    attention) streams them scaled: the values, not the time, differ from the unscaled ones."""
    if role not in FABRIC_ROLES:
        raise KeyError(f"the attention kind streams {sorted(FABRIC_ROLES)} on the fabric, not {role!r}")
    heads, length, head_dim = shape_of(kernel)
    sizes = {"h": heads, "l": length, "d": head_dim}
    layout = FABRIC_ROLES[role]
    out = np.asarray(value).reshape((kernel.samples,) + tuple(sizes[a] for a in layout))
    return out.swapaxes(-1, -2) if layout == "hdl" else out


def shape_of(kernel: Kernel) -> tuple[int, int, int]:
    """(heads, padded length L, head dim) from the kernel's loop nest."""
    n = kernel.nest
    return n.extent("h"), n.extent("i"), n.extent("d")


def block_sizes(lengths, parts: int) -> np.ndarray:
    """(..., parts) tokens per block when each of `lengths` real tokens is cut into `parts`
    contiguous blocks of ceil(L_b / parts) (the last ones may be short or empty)."""
    lengths = np.asarray(lengths, dtype=np.int64)[..., None]
    step = -(-lengths // parts)
    return np.clip(lengths - np.arange(parts) * step, 0, step)


def real_lengths(xp, host, kernel: Kernel, env: dict, probs: str) -> np.ndarray:
    """(samples,) real tokens per sample: keys with a non-zero probability somewhere in `probs`."""
    length = kernel.nest.extent("j")
    p = env[probs].reshape(kernel.samples, -1, length)
    return host(xp.count_nonzero(xp.any(p != 0, axis=1), axis=1)).astype(np.int64)


def computed_pairs(xp, host, kernel: Kernel, env: dict, probs: str, rows: int, cols: int) -> np.ndarray:
    """(samples, rows, cols) the (query, key) pairs each core computes: among the sample's real
    tokens (`real_lengths`), cut into contiguous blocks as `block_sizes` cuts them, the pairs
    whose probability is non-zero for some head in `probs`."""
    length = kernel.nest.extent("j")
    allowed = host(xp.any(env[probs].reshape(kernel.samples, -1, length, length) != 0, axis=1))
    is_real = allowed.any(axis=1)                                # (S, L) keys some query reads
    real = is_real.sum(axis=1)
    among_real = (allowed & is_real[:, :, None] & is_real[:, None, :]).sum(axis=(1, 2))
    if (among_real == real * real).all():                       # no mask among the real tokens
        return _every_pair(real, real, rows, cols).astype(np.float64)
    out = np.zeros((kernel.samples, rows, cols))
    for sample, pairs in enumerate(allowed):
        real = np.flatnonzero(pairs.any(axis=0))
        n = len(real)
        q, k = -(-n // rows), -(-n // cols)
        blocks = np.zeros((rows * q, cols * k))
        blocks[:n, :n] = pairs[np.ix_(real, real)]
        out[sample] = blocks.reshape(rows, q, cols, k).sum(axis=(1, 3))
    return out


def _every_pair(queries: np.ndarray, keys: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """(..., rows, cols) every pair of each core's blocks."""
    return block_sizes(queries, rows)[..., :, None] * block_sizes(keys, cols)[..., None, :]


def _merge_cycles(stats, outs, cols: int, target) -> np.ndarray:
    """(..., cols) cycles each core of a row spends merging the partials that arrive from the
    core east of it (every core but the row's east end), `stats` (m, l) wavelets and `outs`
    output wavelets of them, each an operation on a fabric-input operand (`cost.Components`,
    reduce) of `MERGE_FLOPS` a value (the fabric model, `simulator.fabric.attention`)."""
    merges = (np.arange(cols) < cols - 1).astype(np.float64)
    per = target.dense_values_per_wavelet
    return merges * (stats * np.ceil(MERGE_FLOPS["stats"] / target.simd) +
                     outs * np.ceil(MERGE_FLOPS["out"] * per / target.simd))


def stash_values(kernel: Kernel, mapping, spread: bool) -> int:
    """Values a core keeps of one sample for its backward: its P block, and the Q, K and V
    blocks it read. Kept where they arrived, every core of row r holds all of Q[I_r] and every
    core of column c all of K[J_c] and V[J_c]; spread, each keeps its 1/cols share of its row's
    Q block and its 1/rows share of its column's K and V blocks, and the backward multicasts
    them again (`components`)."""
    heads, width, q, k = _blocks(kernel, mapping)
    if spread:
        return kernel.steps * (heads * q * k + math.ceil(q * width / mapping.cols) +
                               math.ceil(2 * k * width / mapping.rows))
    return kernel.steps * (heads * q * k + q * width + 2 * k * width)


def spreads_stash(kernel: Kernel, mapping, target) -> bool:
    """Whether the kernel spreads its stash over its rows and columns (`stash_values`): where
    the stash kept where it arrived would not fit beside the working set with the whole batch
    between its forward and backward, and the spread one would. Spreading trades SRAM for a
    second multicast of Q, K and V in the backward, so a kernel that fits keeps its stash (and
    one that fits neither way is refused by the memory check as it is)."""
    def fits(spread: bool) -> bool:
        return _bytes(kernel, mapping, target, kernel.samples, spread) <= target.sram_bytes
    return not fits(False) and fits(True)


def _blocks(kernel: Kernel, mapping) -> tuple[int, int, int, int]:
    """Heads, their total width, and a core's query and key block at the padded length."""
    heads, length, head_dim = shape_of(kernel)
    return heads, heads * head_dim, math.ceil(length / mapping.rows), math.ceil(length / mapping.cols)


def _bytes(kernel: Kernel, mapping, target, in_flight: int, spread: bool) -> int:
    heads, width, q, k = _blocks(kernel, mapping)
    working = 2 * q * width + 2 * k * width + heads * q * k + 2 * heads * q
    return int((working + in_flight * stash_values(kernel, mapping, spread)) * target.activation_bytes)


class AttentionKind(KindDefaults):
    name = "attention"
    priority = 20     # build_kernels asks the kinds by priority
    origin = "hand-optimized"
    build = staticmethod(build)
    # what its fabric program (simulator.fabric.attention) shares with the formulas
    score_flops, merge_flops = FORWARD_SCORE_FLOPS, MERGE_FLOPS
    block_sizes = staticmethod(block_sizes)
    fabric_operand = staticmethod(fabric_operand)

    @staticmethod
    def fabric_streams(kernel: Kernel) -> dict[str, str]:
        """The values of the first call its fabric program streams (role -> graph value):
        the softmax P and, where the capture found them, q, k and v (`FABRIC_ROLES`)."""
        return {role: v for role, v in kernel.calls[0].items() if role in FABRIC_ROLES}

    @staticmethod
    def weights_per_core(kernel: Kernel, mapping, tiles=None) -> int:
        return 0

    @staticmethod
    def memory_per_core(kernel: Kernel, mapping, target, optimizer, in_flight: int,
                        kept: int | None = None) -> int:
        """At the padded length: the working set of the sample in flight (Q block, K and V
        blocks, the score block, O partials, row max and sum) plus, for every sample between
        its forward and backward, the stash the backward reads of every call (`stash_values`).
        No weights, so no optimizer state."""
        return _bytes(kernel, mapping, target, in_flight, spreads_stash(kernel, mapping, target))

    @staticmethod
    def dense_macs(kernel: Kernel) -> int:
        """Q K^T and P V forward, four as large backward, per call."""
        heads, length, head_dim = shape_of(kernel)
        return 6 * kernel.steps * heads * length * length * head_dim

    @staticmethod
    def assumed_counts(kernel: Kernel, mapping, target, density, harvest: bool) -> Counts:
        """Every position real and computing, every call (density and harvest do not apply)."""
        full = np.full((1, kernel.steps), shape_of(kernel)[1])
        return Counts(AttentionCounts(full, full), np.zeros((1, 1), dtype=np.intp))

    @staticmethod
    def measured_counts(kernel: Kernel, mapping, env: dict, runs) -> Counts:
        """Keys: each call's real tokens (every position for the padded variant); queries: the
        positions each variant runs (`runs.queries`), every real one without markers. Variants
        that charge the same positions (harvesting does not apply) share their samples."""
        real = np.stack([real_lengths(runs.xp, runs.host, kernel, env, call["probs"])
                         for call in kernel.calls], axis=1)                          # (S, calls)
        running = runs.queries(kernel)
        measured = None
        blocks, rows, keys, queries, pairs = {}, [], [], [], []
        for v in runs.variants:
            if v.positions not in blocks:
                k = np.full_like(real, shape_of(kernel)[1]) if v.positions == "padded" else real
                q = k if running is None else np.stack(running[v.positions], axis=1)
                blocks[v.positions] = len(keys) * len(real)
                keys.append(np.where(q > 0, k, 0))          # a call with no query sends nothing
                queries.append(q)
                if v.positions == "padded" or running is not None:
                    pairs.append(_every_pair(q, keys[-1], mapping.rows, mapping.cols))
                else:
                    if measured is None:
                        measured = np.stack([computed_pairs(runs.xp, runs.host, kernel, env,
                                                            call["probs"], mapping.rows, mapping.cols)
                                             for call in kernel.calls], axis=1)
                    pairs.append(measured)
            rows.append(blocks[v.positions] + np.arange(len(real)))
        return Counts(AttentionCounts(np.concatenate(keys), np.concatenate(queries),
                                      np.concatenate(pairs)), np.stack(rows))

    @staticmethod
    def components(kernel: Kernel, c: AttentionCounts, mapping, target) -> cost.Components:
        """Per distinct sample, call and core: the formulas of the module docstring."""
        heads, _, head_dim = shape_of(kernel)
        width = heads * head_dim
        q = block_sizes(c.queries, mapping.rows).astype(np.float64)[..., :, None]   # (U, calls, R, 1)
        k = block_sizes(c.keys, mapping.cols).astype(np.float64)[..., None, :]      # (U, calls, 1, C)
        pairs = q * k if c.pairs is None else c.pairs                              # (U, calls, R, C)
        scores = heads * pairs
        across = mapping.cols > 1      # row statistics travel only when a row has several cores
        simd = target.simd

        def wavelets(values):
            return cost.dense_wavelets(values, target)
        sends = (c.queries > 0)[..., None, None]                # a call with no query: nothing
        q_in = cost.streamed_wavelets(wavelets(q * width), wavelets(q * width), sends)
        kv_in = cost.streamed_wavelets(wavelets(2 * k * width), wavelets(2 * k * width), sends)
        fwd_in = np.maximum(q_in, kv_in)              # Q along the row, K and V down the column
        fwd_out = wavelets(q * width + across * 2 * heads * q)  # O partials, max and sum out
        spread = spreads_stash(kernel, mapping, target)
        row_in, col_in = wavelets(q * width * (1 + spread)), wavelets(2 * k * width * spread)
        bwd_in = np.maximum(row_in, col_in)  # dO along the row; a spread stash's Q, K, V again
        bwd_out = np.maximum(wavelets(q * width + across * heads * q +   # dQ partials, row sums
                                      spread * np.ceil(q * width / mapping.cols)),   # Q share
                             wavelets(2 * k * width +            # dK and dV partials, down the column
                                      spread * np.ceil(2 * k * width / mapping.rows)))  # K, V share
        macs = 6.0 * width * pairs.sum(axis=(-1, -2)).sum(axis=1)
        return cost.Components(np.ceil((2 * pairs * width + FORWARD_SCORE_FLOPS * scores) / simd),
                               fwd_in, fwd_out,
                               np.ceil((4 * pairs * width + BACKWARD_SCORE_FLOPS * scores) / simd),
                               bwd_in, bwd_out, macs, fwd_recv=q_in + kv_in,
                               bwd_recv=row_in + col_in if spread else None,
                               fwd_reduce=_merge_cycles(heads * q, wavelets(q * width),
                                                        mapping.cols, target),
                               fwd_drain=0 if across else wavelets(q * width),
                               **cost.core_terms(target))

    @staticmethod
    def governed(graph, kernel: Kernel, mask_shape) -> list:
        """Per call: its softmax, whose marker governs the queries when P has the positions."""
        positions = mask_shape[1]
        return [(call["probs"], "tokens" if graph.type_of[call["probs"]].shape[-2:-1] == (positions,)
                 else None) for call in kernel.calls]


ATTENTION = KIND = AttentionKind()
