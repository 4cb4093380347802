"""Every `xp.<name>` the fabric model calls exists in CuPy: the names used, read off the source,
against the list checked in CuPy's API reference (cupy_api.txt), so the model stays xp-generic
where no GPU runs the tests."""
import ast
from pathlib import Path

HERE = Path(__file__).resolve().parent
FABRIC = HERE.parents[2] / "simulator" / "fabric"


def _used() -> set[str]:
    names = set()
    for path in FABRIC.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                    and node.value.id == "xp":
                names.add(node.attr)
    return names


def test_every_xp_call_of_the_fabric_model_is_in_cupys_documented_api():
    listed = {line.strip() for line in (HERE / "cupy_api.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")}
    used = _used()
    assert used, "found no xp calls: the source moved?"
    missing = used - listed
    assert not missing, f"xp calls not checked against CuPy's API reference: {sorted(missing)}"
