"""Independent check of a contest solution: recomputes everything from the .kgraph and the
solution text, sharing no code with the solver, library or writer (only the file reader).

Checks: every kernel has exactly one definition and one placement; formal args equal the node's;
execution args are positive, within their loop extents and of the right number; the stated
rectangle (if any) equals the one the args give; memory <= memlimit; every rectangle lies in the
fabric; no two overlap. Returns max time, total L1 wire length between connected kernels'
centres, and T* (recomputed by brute force over each kernel's execution parameters).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from .reader import KGraph

_DEF = re.compile(r"^(\w+)\s*=\s*(\w+)\s*\((.*)\)\s*$")
_PLACE = re.compile(r"^(\w+)\s*:\s*place\s*\(\s*(-?\d+)\s+(-?\d+)\s+(R0|R90)\s*\)\s*$")
_RECT = re.compile(r"^\(\*\s*(\w+)\s+rect\s+(\d+)\s*x\s*(\d+)\s*\*\)$")
_ARG = re.compile(r"^([\w]+'?)=(-?\d+)$")


class InvalidSolution(ValueError):
    """The solution breaks a contest rule; the message says which and where."""


@dataclass(frozen=True)
class Verdict:
    max_time: float
    wire_length: float
    t_star: float
    used_tiles: int

    @property
    def ratio(self) -> float:
        return self.max_time / self.t_star


def _convs(kind: str, a: dict) -> list[tuple]:
    """(H, W, R, S, C, K, T) per convolution of a kernel (see library docstring)."""
    if kind == "conv":
        return [(a["H"], a["W"], a["R"], a["S"], a["C"], a["K"], a["T"])]
    f, h, w = a["f"], a["h"], a["w"]
    if kind == "dblock":
        return [(h, w, 1, 1, f, f // 4, 1), (h, w, 3, 3, f // 4, f // 4, 1),
                (h, w, 1, 1, f // 4, f, 1)]
    h2, w2 = max(1, h // 2), max(1, w // 2)
    return [(h, w, 1, 1, f // 2, f // 4, 1), (h, w, 3, 3, f // 4, f // 4, 2),
            (h2, w2, 1, 1, f // 4, f, 1), (h, w, 1, 1, f // 2, f, 2)]


def _cost(convs, h, w, cs, ks):
    """(height, width, time, memory) of execution args h', w', c'_i, k'_i."""
    height, width = h * w * (max(cs) + 1), 3 * sum(ks)
    t = m = 0
    for (H, W, R, S, C, K, T), c, k in zip(convs, cs, ks):
        t = max(t, math.ceil(H / h) * math.ceil(W / w) * math.ceil(C / c) * math.ceil(K / k)
                * R * S / T ** 2)
        m = max(m, math.ceil(C / c) * math.ceil(K / k) * R * S
                + math.ceil((W + S - 1) / w) * math.ceil((H + R - 1) / h) * math.ceil(K / k))
    return height, width, t, m


def validate(graph: KGraph, text: str, t_star: float | None = None) -> Verdict:
    kernels = {n.name: n for n in graph.kernels}
    defs, places, stated = {}, {}, {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        s = raw.strip()
        if not s:
            continue
        if (m := _RECT.match(s)):
            stated[m.group(1)] = (int(m.group(2)), int(m.group(3)), lineno)
            continue
        if s.startswith("(*") and s.endswith("*)"):
            continue
        if (m := _PLACE.match(s)):
            if m.group(1) in places:
                raise InvalidSolution(f"line {lineno}: {m.group(1)} is placed twice")
            places[m.group(1)] = (int(m.group(2)), int(m.group(3)), m.group(4) == "R90", lineno)
            continue
        if (m := _DEF.match(s)):
            name, kind = m.group(1), m.group(2)
            if name in defs:
                raise InvalidSolution(f"line {lineno}: {name} is defined twice")
            args = {}
            for tok in m.group(3).split():
                a = _ARG.match(tok)
                if not a:
                    raise InvalidSolution(f"line {lineno}: cannot parse argument {tok!r}")
                args[a.group(1)] = int(a.group(2))
            defs[name] = (kind, args, lineno)
            continue
        raise InvalidSolution(f"line {lineno}: cannot parse {s!r}")
    for name in set(defs) | set(places):
        if name not in kernels:
            raise InvalidSolution(f"{name} is not a kernel of {graph.source}")
    grid = np.zeros((graph.height, graph.width), dtype=np.int32)
    times, centres, used = {}, {}, 0
    for idx, (name, node) in enumerate(kernels.items(), 1):
        if name not in defs:
            raise InvalidSolution(f"kernel {name} has no definition")
        if name not in places:
            raise InvalidSolution(f"kernel {name} has no placement")
        kind, args, lineno = defs[name]
        where = f"line {lineno} ({name})"
        if kind != node.kind:
            raise InvalidSolution(f"{where}: kind {kind} but the graph says {node.kind}")
        formal = node.attr
        for k, v in formal.items():
            if args.get(k) != v:
                raise InvalidSolution(f"{where}: formal arg {k}={args.get(k)} but the graph says {v}")
        execution = {k: v for k, v in args.items() if k not in formal}
        convs = _convs(kind, formal)
        if kind == "conv":
            keys = [("c'", "k'")]
        else:
            keys = [(f"c{i}'", f"k{i}'") for i in range(1, len(convs) + 1)]
        expected = {"h'", "w'"} | {k for pair in keys for k in pair}
        if set(execution) != expected:
            raise InvalidSolution(f"{where}: execution args {sorted(execution)} but {kind} takes "
                                  f"{sorted(expected)}")
        h, w = execution["h'"], execution["w'"]
        cs, ks = [execution[c] for c, _ in keys], [execution[k] for _, k in keys]
        for (H, W, R, S, C, K, T), c, k in zip(convs, cs, ks):
            for label, v, hi in (("h'", h, H), ("w'", w, W), ("c'", c, C), ("k'", k, K)):
                if not 1 <= v <= hi:
                    raise InvalidSolution(f"{where}: {label}={v} outside 1..{hi}")
        height, width, t, mem = _cost(convs, h, w, cs, ks)
        if name in stated and stated[name][:2] != (height, width):
            raise InvalidSolution(f"line {stated[name][2]} ({name}): stated rectangle "
                                  f"{stated[name][0]} x {stated[name][1]} but the execution args "
                                  f"give {height} x {width}")
        if mem > graph.memlimit:
            raise InvalidSolution(f"{where}: {mem} words per tile exceeds memlimit "
                                  f"{graph.memlimit}")
        x, y, rot, pline = places[name]
        if rot:
            height, width = width, height
        if x < 0 or y < 0 or x + width > graph.width or y + height > graph.height:
            raise InvalidSolution(f"line {pline} ({name}): {height} x {width} rectangle at "
                                  f"x={x} y={y} leaves the {graph.width} x {graph.height} fabric")
        cells = grid[y:y + height, x:x + width]
        if cells.any():
            other = list(kernels)[int(cells.max()) - 1]
            raise InvalidSolution(f"line {pline} ({name}): overlaps {other}")
        cells[...] = idx
        times[name] = t
        centres[name] = (x + width / 2, y + height / 2)
        used += height * width
    wire = sum(abs(centres[a][0] - centres[b][0]) + abs(centres[a][1] - centres[b][1])
               for a, b in graph.kernel_pairs())
    return Verdict(max(times.values()), float(wire),
                   lower_bound(graph) if t_star is None else t_star, used)


def lower_bound(graph: KGraph) -> float:
    """T*: the least time at which the sum of per-kernel least areas fits the fabric. Per kernel,
    the least area for every achievable time comes from a brute-force sweep of h', w' and one
    shared c', k' ratio per conv (exact for single convolutions; blocks take each conv's least k'
    at the target)."""
    long_side, short_side = max(graph.width, graph.height), min(graph.width, graph.height)
    curves = []
    for node in graph.kernels:
        convs = _convs(node.kind, node.attr)
        best: dict[float, int] = {}
        hmin, wmin = min(c[0] for c in convs), min(c[1] for c in convs)
        cmax = max(c[4] for c in convs)
        for h in _useful(hmin, long_side):
            for w in _useful(wmin, long_side // h):
                for c in _useful(cmax, long_side // (h * w) - 1):
                    height = h * w * (c + 1)
                    if height > long_side:
                        continue
                    cap = (long_side if height <= short_side else short_side) // 3
                    per = []
                    for conv in convs:
                        ci = min(c, conv[4])
                        per.append([(k, _cost([conv], h, w, [ci], [k])) for k in _useful(conv[5], cap)
                                    if _cost([conv], h, w, [ci], [k])[3] <= graph.memlimit])
                    if any(not p for p in per):
                        continue
                    for target in sorted({cost[2] for p in per for _, cost in p}):
                        ks = []
                        for p in per:
                            ok = [k for k, cost in p if cost[2] <= target]
                            if not ok:
                                break
                            ks.append(min(ok))
                        if len(ks) == len(per) and sum(ks) <= cap:
                            area = height * 3 * sum(ks)
                            if area < best.get(target, 1 << 62):
                                best[target] = area
        curves.append(best)
    times = sorted({t for c in curves for t in c})
    for t in times:
        total = 0
        for c in curves:
            fits = [a for tt, a in c.items() if tt <= t]
            if not fits:
                total = None
                break
            total += min(fits)
        if total is not None and total <= graph.width * graph.height:
            return float(t)
    return math.inf


def _useful(extent: int, limit: int) -> list[int]:
    best = {}
    for n in range(1, max(1, min(extent, limit)) + 1):
        best.setdefault(math.ceil(extent / n), n)
    return sorted(best.values())
