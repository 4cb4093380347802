"""Reader for the ISPD 2020 wafer-placement contest's `.kgraph` files.

A file has a header block `(* key=value ... *)` (test, width, height, memlimit and the weights
wlength / wdeltat / wadapter), node lines such as
`conv[3] W=56 H=56 R=3 S=3 C=64 K=64 T=1 U=1 name='k3'` and edge lines such as
`conv[1]:y -> conv[2]:x, shape:[56][56][64]`. Other `(* ... *)` lines are comments.

Anything malformed or truncated raises `KGraphError` naming the file and the line.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

KERNEL_ATTRS = {"conv": ("W", "H", "R", "S", "C", "K", "T", "U"),
                "dblock": ("f", "h", "w"),
                "cblock": ("f", "h", "w")}
TERMINALS = ("input", "output")
HEADER_INTS = ("width", "height", "memlimit")
WEIGHTS = ("wlength", "wdeltat", "wadapter")

_NODE = re.compile(r"^(\w+)\[\s*(\d+)\s*\]\s*(.*)$")
_EDGE = re.compile(r"^(\w+)\[\s*(\d+)\s*\]\s*:\s*(\w+)\s*->\s*(\w+)\[\s*(\d+)\s*\]\s*:\s*(\w+)\s*"
                   r",\s*shape\s*:\s*((?:\[\s*\d+\s*\])+)\s*$")
_ATTR = re.compile(r"(\w+)\s*=\s*('[^']*'|\[[^\]]*\]|-?\d+)")


class KGraphError(ValueError):
    """A `.kgraph` file that cannot be read; the message names the file and line."""


@dataclass(frozen=True)
class Node:
    kind: str                      # conv | dblock | cblock | input | output
    index: int
    name: str
    attrs: tuple                   # ((key, int or tuple of ints), ...) without `name`
    line: int

    @property
    def attr(self) -> dict:
        return dict(self.attrs)

    @property
    def is_kernel(self) -> bool:
        return self.kind in KERNEL_ATTRS


@dataclass(frozen=True)
class KEdge:
    src: str                       # node names
    dst: str
    shape: tuple[int, ...]
    line: int


@dataclass(frozen=True)
class KGraph:
    test: str
    width: int                     # fabric columns (x)
    height: int                    # fabric rows (y)
    memlimit: int                  # words per tile
    weights: tuple                 # ((wlength, v), (wdeltat, v), (wadapter, v))
    nodes: tuple[Node, ...]
    edges: tuple[KEdge, ...]
    source: str = field(default="<string>")

    @property
    def kernels(self) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.is_kernel)

    @property
    def node(self) -> dict:
        return {n.name: n for n in self.nodes}

    def kernel_pairs(self) -> list[tuple[str, str]]:
        """Connected kernel pairs (input/output nodes are not placed), each once."""
        kinds = {n.name: n.is_kernel for n in self.nodes}
        return sorted({tuple(sorted((e.src, e.dst))) for e in self.edges
                       if kinds[e.src] and kinds[e.dst] and e.src != e.dst})

    def pipeline_order(self) -> list[str]:
        """Kernel names in topological order of the edges (ties by node index)."""
        import heapq
        index = {n.name: n.index for n in self.nodes}
        indeg = {n.name: 0 for n in self.nodes}
        out: dict[str, list[str]] = {n.name: [] for n in self.nodes}
        for e in self.edges:
            out[e.src].append(e.dst)
            indeg[e.dst] += 1
        heap = [(index[n], n) for n, d in indeg.items() if d == 0]
        heapq.heapify(heap)
        order = []
        while heap:
            _, n = heapq.heappop(heap)
            order.append(n)
            for m in out[n]:
                indeg[m] -= 1
                if indeg[m] == 0:
                    heapq.heappush(heap, (index[m], m))
        seen = set(order)
        order += sorted((n for n in indeg if n not in seen), key=index.get)   # cycles: by index
        kernels = {n.name for n in self.kernels}
        return [n for n in order if n in kernels]


def _value(raw: str):
    if raw.startswith("'"):
        return raw[1:-1]
    if raw.startswith("["):
        return tuple(int(v) for v in raw[1:-1].split())
    return int(raw)


def parse_kgraph(text: str, source: str = "<string>") -> KGraph:
    lines = text.splitlines()

    def fail(lineno: int, msg: str):
        raise KGraphError(f"{source}:{lineno}: {msg}")

    header: dict[str, str] = {}
    i = 0
    while i < len(lines) and not lines[i].strip():
        i += 1
    if i == len(lines):
        fail(max(1, len(lines)), "empty file: expected a header block starting with '(*'")
    if lines[i].strip() != "(*":
        fail(i + 1, f"expected the header block '(*', got {lines[i].strip()!r}")
    start = i + 1
    i += 1
    while True:
        if i == len(lines):
            fail(len(lines), f"truncated header: the '(*' on line {start} is never closed by '*)'")
        s = lines[i].strip()
        if s == "*)":
            break
        if s:
            key, eq, val = s.partition("=")
            if not eq or not key.strip():
                fail(i + 1, f"header line must be key=value, got {s!r}")
            header[key.strip()] = val.strip()
        i += 1
    header_end = i + 1
    numbers = {}
    for key in HEADER_INTS:
        if key not in header:
            fail(header_end, f"header lacks {key!r}")
        try:
            numbers[key] = int(header[key])
        except ValueError:
            fail(header_end, f"header {key}={header[key]!r} is not an integer")
        if numbers[key] <= 0:
            fail(header_end, f"header {key}={numbers[key]} must be positive")
    weights = []
    for key in WEIGHTS:
        try:
            weights.append((key, float(header.get(key, 0))))
        except ValueError:
            fail(header_end, f"header {key}={header[key]!r} is not a number")

    nodes: dict[tuple[str, int], Node] = {}
    names: set[str] = set()
    edges: list[KEdge] = []
    for lineno in range(header_end + 1, len(lines) + 1):
        s = lines[lineno - 1].strip()
        if not s or (s.startswith("(*") and s.endswith("*)")):
            continue
        if s.startswith("(*"):
            fail(lineno, "comment '(*' is not closed on the same line")
        if "->" in s:
            m = _EDGE.match(s)
            if not m:
                fail(lineno, f"malformed edge (expected 'kind[i]:port -> kind[j]:port, "
                             f"shape:[a][b]...'): {s!r}")
            ends = []
            for kind, idx in ((m.group(1), m.group(2)), (m.group(4), m.group(5))):
                key = (kind, int(idx))
                if key not in nodes:
                    fail(lineno, f"edge refers to undefined node {kind}[{idx}]")
                ends.append(nodes[key].name)
            shape = tuple(int(v) for v in re.findall(r"\d+", m.group(7)))
            edges.append(KEdge(ends[0], ends[1], shape, lineno))
            continue
        m = _NODE.match(s)
        if not m:
            fail(lineno, f"cannot parse line: {s!r}")
        kind, idx, rest = m.group(1), int(m.group(2)), m.group(3)
        if kind not in KERNEL_ATTRS and kind not in TERMINALS:
            fail(lineno, f"unknown node kind {kind!r} (known: "
                         f"{', '.join(list(KERNEL_ATTRS) + list(TERMINALS))})")
        attrs = {}
        pos = 0
        for a in _ATTR.finditer(rest):
            if rest[pos:a.start()].strip():
                fail(lineno, f"cannot parse {rest[pos:a.start()].strip()!r} in node {kind}[{idx}]")
            attrs[a.group(1)] = _value(a.group(2))
            pos = a.end()
        if rest[pos:].strip():
            fail(lineno, f"cannot parse {rest[pos:].strip()!r} in node {kind}[{idx}] "
                         f"(truncated line?)")
        for key in KERNEL_ATTRS.get(kind, ()):
            if key not in attrs:
                fail(lineno, f"{kind}[{idx}] lacks {key}= (needs "
                             f"{', '.join(KERNEL_ATTRS[kind])}; truncated line?)")
            if not isinstance(attrs[key], int) or attrs[key] <= 0:
                fail(lineno, f"{kind}[{idx}] {key}={attrs[key]!r} must be a positive integer")
        name = attrs.pop("name", None)
        if not isinstance(name, str) or not name:
            fail(lineno, f"node {kind}[{idx}] has no name='...'")
        if (kind, idx) in nodes:
            fail(lineno, f"node {kind}[{idx}] is defined twice")
        if name in names:
            fail(lineno, f"node name {name!r} is used twice")
        if kind in ("dblock", "cblock") and attrs["f"] % 4:
            fail(lineno, f"{kind}[{idx}] f={attrs['f']} must be a multiple of 4")
        nodes[(kind, idx)] = Node(kind, idx, name, tuple(attrs.items()), lineno)
        names.add(name)
    if not any(n.is_kernel for n in nodes.values()):
        fail(max(1, len(lines)), "no kernel nodes (conv, dblock, cblock) in the file")
    return KGraph(header.get("test", ""), numbers["width"], numbers["height"],
                  numbers["memlimit"], tuple(weights), tuple(nodes.values()), tuple(edges),
                  source)
