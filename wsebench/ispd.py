"""The ISPD 2020 wafer-placement contest from the workbench: read a `.kgraph`, solve it with the
compiler's own search, validate the solution independently, and draw the floorplan. File IO
lives here: the compiler parses and formats text only (DESIGN.md, "Layout")."""
from __future__ import annotations

from pathlib import Path

from compiler.ispd.reader import KGraph, KGraphError, parse_kgraph
from compiler.ispd.solver import solve
from compiler.ispd.validator import validate
from compiler.ispd.writer import format_solution

from .plots import plot_floorplan

__all__ = ["read_kgraph", "write_solution", "solve", "validate", "format_solution",
           "plot_floorplan", "KGraphError"]


def read_kgraph(path) -> KGraph:
    """Read and parse a contest `.kgraph` file; errors name the file (and line)."""
    path = Path(path)
    if path.exists() and not path.is_file():     # a FIFO or device would block the read forever
        raise KGraphError(f"{path}: not a regular file; give the path of a .kgraph file")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise KGraphError(f"{path}: not UTF-8 text ({err}); give a .kgraph text file") from None
    except OSError as err:
        raise KGraphError(f"{path}: cannot read: {err.strerror or err}") from None
    graph = parse_kgraph(text, str(path))
    loops = [e for e in graph.edges if e.src == e.dst]
    if loops:
        raise KGraphError(f"{path}:{loops[0].line}: edge from {loops[0].src!r} to itself; a "
                          f"kernel cannot feed itself: remove the self-loop")
    return graph


def write_solution(solution, path) -> Path:
    """Write a solution in the contest's format."""
    path = Path(path)
    path.write_text(format_solution(solution))
    return path
