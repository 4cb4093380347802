"""The ISPD 2020 wafer-placement contest from the workbench: read a `.kgraph`, solve it with the
compiler's own search and placer, validate the solution independently, and draw the floorplan."""
from compiler.ispd.reader import read_kgraph
from compiler.ispd.solver import solve
from compiler.ispd.validator import validate
from compiler.ispd.writer import format_solution

from .plots import plot_floorplan

__all__ = ["read_kgraph", "solve", "validate", "format_solution", "plot_floorplan"]
