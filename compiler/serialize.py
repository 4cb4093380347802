"""Plan <-> plain JSON-able dicts. Tuples become lists; `Ref`s become {"$ref": name}.

Format 2 adds what the estimate assumed (`harvest`, `precision`); a format 1 plan (written before
them) had harvesting on and the target's precision, which is what it is read back with."""
from __future__ import annotations

from dataclasses import asdict

from .ir import Graph, Op, Ref, TensorType
from .kernels.base import Access, Kernel, LoopNest
from .mapping import Mapping
from .optim_spec import OptimizerSpec
from .placement import Edge, Rect, Route, is_sample_route
from .target import Target


def _enc(value):
    if isinstance(value, Ref):
        return {"$ref": value.name}
    if isinstance(value, (tuple, list)):
        return [_enc(v) for v in value]
    return value


def _dec(value):
    if isinstance(value, dict) and "$ref" in value:
        return Ref(value["$ref"])
    if isinstance(value, list):
        return tuple(_dec(v) for v in value)
    return value


def graph_to_dict(g: Graph) -> dict:
    return {"inputs": list(g.inputs), "params": g.params, "buffers": g.buffers, "masks": g.masks,
            "ops": [{"op": o.op, "args": _enc(o.args), "kwargs": [[k, _enc(v)] for k, v in o.kwargs],
                     "outputs": list(o.outputs)} for o in g.ops],
            "types": [[n, list(t.shape), t.dtype] for n, t in g.types],
            "loss": g.loss, "grads": g.grads, "meta": [list(m) for m in g.meta]}


def graph_from_dict(d: dict) -> Graph:
    pairs = lambda rows: tuple(tuple(r) for r in rows)  # noqa: E731
    return Graph(inputs=tuple(d["inputs"]), params=pairs(d["params"]), buffers=pairs(d["buffers"]),
                 masks=tuple((n, float(p)) for n, p in d["masks"]),
                 ops=tuple(Op(o["op"], _dec(o["args"]), tuple((k, _dec(v)) for k, v in o["kwargs"]),
                              tuple(o["outputs"])) for o in d["ops"]),
                 types=tuple((n, TensorType(tuple(s), dt)) for n, s, dt in d["types"]),
                 loss=d["loss"], grads=pairs(d["grads"]), meta=pairs(d.get("meta", [])))


def _kernel_from_dict(d: dict) -> Kernel:
    nest = d["nest"]
    nest = LoopNest(dims=tuple((n, e) for n, e in nest["dims"]),
                    accesses=tuple(Access(a["tensor"], tuple(a["dims"]), a["role"])
                                   for a in nest["accesses"]),
                    row_dim=nest["row_dim"], col_dim=nest["col_dim"],
                    reduce_dims=tuple(nest["reduce_dims"]), flops_per_point=nest["flops_per_point"])
    return Kernel(d["name"], d["kind"], tuple(d["ops"]), tuple(d["params"]), nest,
                  tuple(tuple(s) for s in d["streams"]), d["samples"], d["param_numel"])


def plan_to_dict(plan, format_: int) -> dict:
    return {"format": format_, "target": asdict(plan.target), "graph": graph_to_dict(plan.graph),
            "kernels": [asdict(k) for k in plan.kernels], "kernel_of": plan.kernel_of,
            "optimizer": plan.optimizer.to_dict(),
            "mappings": [[n, asdict(m)] for n, m in plan.mappings], "pinned": list(plan.pinned),
            "rects": [asdict(r) for r in plan.rects],
            "routes": [{"edge": asdict(r.edge), "path": r.path, "bands": r.bands} for r in plan.routes],
            "density": plan.density, "meta": [list(m) for m in plan.meta],
            "densities": [[n, list(d)] for n, d in plan.densities],
            "harvest": plan.harvest, "precision": plan.precision}


def plan_fields(d: dict, format_: int) -> dict:
    """The `Plan(**fields)` of a dict written by `plan_to_dict` (this format or an older one)."""
    if d.get("format") not in range(1, format_ + 1):
        raise ValueError(f"plan format {d.get('format')!r} is not supported (expected {format_})")
    target = Target(**d["target"])
    rects = tuple(Rect(**r) for r in d["rects"])
    return dict(target=target, graph=graph_from_dict(d["graph"]),
                kernels=tuple(_kernel_from_dict(k) for k in d["kernels"]),
                kernel_of=tuple(tuple(p) for p in d["kernel_of"]),
                optimizer=OptimizerSpec.from_dict(d["optimizer"]),
                mappings=tuple((n, Mapping(**m)) for n, m in d["mappings"]),
                pinned=tuple(d["pinned"]), rects=rects, routes=tuple(_route(r, rects) for r in d["routes"]),
                density=d["density"], meta=tuple(tuple(m) for m in d["meta"]),
                densities=tuple((n, tuple(v)) for n, v in d.get("densities", [])),
                harvest=bool(d.get("harvest", True)), precision=d.get("precision", target.precision))


def _route(r: dict, rects: tuple) -> Route:
    """A stored route. Plans before format 3 kept a lane count, not bands: their bands are
    rebuilt from the rectangles as `routing.route` and `reduction_routes` lay them."""
    edge, path = Edge(**r["edge"]), tuple(tuple(p) for p in r["path"])
    if "bands" in r:
        return Route(edge, path, tuple(tuple(b) for b in r["bands"]))
    where = {rect.name: rect for rect in rects}
    a, b = where[edge.src], where[edge.dst]
    if not is_sample_route(Route(edge, path)):
        return Route(edge, path, ((a.row, a.row + r.get("lanes", 1)),))
    return Route(edge, path, ((a.row, a.row + a.height), (b.col, b.col + b.width)))
