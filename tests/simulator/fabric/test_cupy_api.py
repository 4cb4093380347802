"""Every `xp.<name>` the fabric model calls exists in CuPy: the names used, read off the source,
against the list checked in CuPy's API reference (cupy_api.txt), so the model stays xp-generic
where no GPU runs the tests."""
import ast
from pathlib import Path

HERE = Path(__file__).resolve().parent
FABRIC = HERE.parents[2] / "simulator" / "fabric"


def _is_xp(node) -> bool:
    """`xp` or `<anything>.xp` (a module's or a program's own `self.xp`)."""
    return (isinstance(node, ast.Name) and node.id == "xp") or \
        (isinstance(node, ast.Attribute) and node.attr == "xp")


def _used(source: str) -> set[str]:
    return {node.attr for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Attribute) and _is_xp(node.value)}


def _fabric_calls() -> set[str]:
    return set().union(*(_used(path.read_text()) for path in FABRIC.glob("*.py")))


def test_the_scan_finds_xp_and_self_xp_calls_alike():
    assert _used("xp.where(a)\nself.xp.nonzero(b)\nfabric.xp.take(c)\nnp.cumsum(d)") == \
        {"where", "nonzero", "take"}


def test_every_xp_call_of_the_fabric_model_is_in_cupys_documented_api():
    listed = {line.strip() for line in (HERE / "cupy_api.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")}
    used = _fabric_calls()
    assert used, "found no xp calls: the source moved?"
    missing = used - listed
    assert not missing, f"xp calls not checked against CuPy's API reference: {sorted(missing)}"
