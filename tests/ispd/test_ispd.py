"""The ISPD 2020 contest solver: reader errors, valid solutions, and a validator that rejects
hand-broken solutions."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from compiler.ispd.library import kernel_options
from compiler.ispd.reader import KGraphError, parse_kgraph
from wsebench.ispd import read_kgraph
from compiler.ispd.solver import solve
from compiler.ispd.validator import InvalidSolution, validate
from compiler.ispd.writer import format_solution
from compiler.search import exhaustive, min_bottleneck

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "ispd2020"
if not DATA.is_dir():
    DATA = Path("/work/shared/ispd2020")
pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason="ISPD 2020 benchmarks not present")

HEADER = "(*\ntest=t\nwidth=40\nheight=30\nwlength=1\nmemlimit=24576\n*)\n"


@pytest.fixture(scope="module")
def solved():
    out = {}
    for name in ("N", "L", "I"):
        g = read_kgraph(DATA / f"{name}.kgraph")
        s = solve(g, time_limit=60)
        out[name] = (g, s, format_solution(s))
    return out


@pytest.mark.parametrize("name", ["N", "L", "I"])
def test_valid_solution(solved, name):
    g, s, text = solved[name]
    v = validate(g, text, t_star=s.t_star)
    assert v.max_time == s.max_time and v.wire_length == pytest.approx(s.wire_length)
    assert s.max_time >= s.t_star and v.ratio <= 1.10
    assert s.seconds < 60


@pytest.mark.parametrize("name", ["N", "L"])
def test_validator_recomputes_t_star_independently(solved, name):
    g, s, text = solved[name]
    assert validate(g, text).t_star == s.t_star


def _edit(text, name, fn):
    return "\n".join(fn(line) if line.startswith(f"{name} ") else line for line in text.splitlines())


def _place_line(text, name):
    m = re.search(rf"^{name} : place\((\d+) (\d+) (R0|R90)\)$", text, re.M)
    return int(m.group(1)), int(m.group(2)), m.group(3)


def test_rejects_overlap(solved):
    g, s, text = solved["N"]
    x, y, r = _place_line(text, "k2")
    bad = _edit(text, "k1", lambda l: f"k1 : place({x} {y} {r})" if ": place" in l else l)
    with pytest.raises(InvalidSolution, match="overlaps"):
        validate(g, bad, t_star=s.t_star)


def test_rejects_out_of_bounds(solved):
    g, s, text = solved["N"]
    bad = _edit(text, "k1", lambda l: f"k1 : place({g.width - 1} 0 R0)" if ": place" in l else l)
    with pytest.raises(InvalidSolution, match="leaves the"):
        validate(g, bad, t_star=s.t_star)


def test_rejects_memory_over_limit(solved):
    g, s, text = solved["N"]
    # one tile for the whole kernel: its weights alone exceed the limit
    node = max(g.kernels, key=lambda n: n.attr["C"] * n.attr["K"])
    bad = _edit(text, node.name, lambda l: re.sub(r"h'=\d+ w'=\d+ c'=\d+ k'=\d+", "h'=1 w'=1 c'=1 k'=1", l)
                if " = conv(" in l else l)
    bad = re.sub(rf"\(\* {node.name} rect .*\*\)\n", "", bad)
    bad = _edit(bad, node.name, lambda l: f"{node.name} : place(0 0 R0)" if ": place" in l else l)
    with pytest.raises(InvalidSolution, match="exceeds memlimit"):
        validate(g, bad, t_star=s.t_star)


def test_rejects_wrong_rectangle(solved):
    g, s, text = solved["N"]
    bad = re.sub(r"\(\* k1 rect (\d+) x (\d+) \*\)", lambda m: f"(* k1 rect {m.group(1)} x "
                 f"{int(m.group(2)) + 3} *)", text)
    with pytest.raises(InvalidSolution, match="stated rectangle"):
        validate(g, bad, t_star=s.t_star)


def test_rejects_args_outside_extents(solved):
    g, s, text = solved["L"]
    bad = _edit(text, "k1", lambda l: re.sub(r"h'=\d+", "h'=999", l) if " = " in l else l)
    with pytest.raises(InvalidSolution, match="outside"):
        validate(g, bad, t_star=s.t_star)


def test_contest_options_fit_the_search_interface():
    g = parse_kgraph(HEADER + "conv[1] W=4 H=4 R=3 S=3 C=8 K=8 T=1 U=1 name='a'\n"
                     "conv[2] W=2 H=2 R=1 S=1 C=16 K=4 T=1 U=1 name='b'\n"
                     "conv[1]:y -> conv[2]:x, shape:[4][4][8]\n")
    lists = {n.name: kernel_options(n, g.memlimit, (g.height, g.width))[:12] for n in g.kernels}
    for cap in (40, 200, 1200):
        a, b = min_bottleneck(lists, cap, 1), exhaustive(lists, cap, 1)
        assert (a is None) == (b is None)
        if a:
            assert a.bottleneck == b.bottleneck


@pytest.mark.parametrize("text, line, message", [
    ("", 1, "empty file"),
    ("(*\nwidth=633\nheight=633\n", 3, "never closed"),
    ("(*\nwidth=633\nmemlimit=1\n*)\n", 4, "lacks 'height'"),
    ("(*\nwidth=x\nheight=1\nmemlimit=1\n*)\n", 5, "not an integer"),
    (HEADER + "conv[1] W=4 H=4 R=3 S=3 C=8\n", 8, "lacks K="),
    (HEADER + "conv[1] W=4 H=4 R=3 S=3 C=8 K=8 T=1 U=1 name='a'\nconv[1]:y -> conv[2]:x, "
     "shape:[4][4][8]\n", 9, "undefined node conv\\[2\\]"),
    (HEADER + "conv[1] W=4 H=4 R=3 S=3 C=8 K=8 T=1 U=1 name='a'\nconv[1]:y -> conv[1]:x, "
     "shape:[4][4\n", 9, "malformed edge"),
    (HEADER + "pool[1] k=2 name='p'\n", 8, "unknown node kind"),
    (HEADER + "conv[1] W=4 H=4 R=3 S=3 C=8 K=8 T=1 U=1 name='a' junk\n", 8, "cannot parse"),
    (HEADER + "input[0] n=[1 1 1] name='i'\n", 8, "no kernel nodes"),
])
def test_reader_errors_name_the_line(text, line, message):
    with pytest.raises(KGraphError, match=rf"^bad\.kgraph:{line}: .*{message}"):
        parse_kgraph(text, "bad.kgraph")


def test_reader_reads_every_public_instance():
    for path in sorted(DATA.glob("*.kgraph")):
        g = read_kgraph(path)
        assert (g.width, g.height, g.memlimit) == (633, 633, 24576)
        assert g.kernels and g.edges
        assert len(g.pipeline_order()) == len(g.kernels)


def test_truncated_public_file(tmp_path):
    text = (DATA / "A.kgraph").read_text().splitlines()
    cut = next(i for i, l in enumerate(text) if l.startswith("cblock[ 2]"))
    bad = tmp_path / "cut.kgraph"
    bad.write_text("\n".join(text[:cut] + [text[cut][:20]]) + "\n")
    with pytest.raises(KGraphError, match=rf"cut\.kgraph:{cut + 1}: "):
        read_kgraph(bad)


def test_place_rotates_only_when_allowed():
    from compiler.mapping import Mapping
    from compiler.errors import PlacementError
    from compiler.placement import place
    from compiler.target import Target
    t = Target("thin", rows=10, cols=3)
    with pytest.raises(PlacementError):
        place(["a"], {"a": Mapping(2, 8)}, t)
    (r,) = place(["a"], {"a": Mapping(2, 8)}, t, rotate=True)
    assert (r.height, r.width) == (8, 2)


def test_cli_writes_a_valid_solution_and_png(tmp_path, capsys):
    from wsebench.cli import main
    out = tmp_path / "N.solution"
    assert main(["ispd", str(DATA / "N.kgraph"), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "T*" in text and "wire length" in text and "fabric used" in text
    validate(read_kgraph(DATA / "N.kgraph"), out.read_text(), t_star=1020.0)
    assert out.with_suffix(".png").stat().st_size > 0


def test_shared_packer_chooses_contest_shapes_within_the_target():
    """The contest library only supplies options: the compiler's shared packer (the one
    compile_plan uses) chooses their shapes and turns them, since contest options are rotatable."""
    from compiler.ispd.library import option_lists
    from compiler.packing import pack, shapes_of, shelf_pack
    from compiler.placement import occupancy
    from compiler.target import Target
    g = read_kgraph(DATA / "N.kgraph")
    lists = option_lists(g)
    items = shapes_of(lists, 1)
    assert all(s.rotatable for v in items.values() for s in v)
    t_star = min_bottleneck(lists, g.width * g.height, 1).bottleneck
    limit = 1.05 * t_star
    got = shelf_pack(items, limit, g.height, g.width, 0, g.pipeline_order())
    assert got is not None
    shapes, rects = got
    assert set(shapes) == set(rects) == set(lists)
    for n, s in shapes.items():
        o, r = s.payload, rects[n]
        assert o.time <= limit and o in lists[n]
        assert (r.height, r.width) in ((o.height, o.width), (o.width, o.height))
        assert 0 <= r.row and r.row + r.height <= g.height
        assert 0 <= r.col and r.col + r.width <= g.width
    fabric = Target("f", rows=g.height, cols=g.width)
    occupancy(tuple(rects.values()), fabric)          # no overlap
    # a target below T* cannot pack: the least areas alone overflow the fabric
    assert shelf_pack(items, 0.9 * t_star, g.height, g.width, 0) is None
    assert pack(items, 0.9 * t_star, fabric) is None


def test_solver_uses_the_compilers_search_and_packer():
    from compiler import packing
    from compiler.ispd import solver
    assert solver.search_and_pack is packing.search_and_pack
