"""Write a solution in the contest's format.

Per kernel, in node order:

    k3 = conv( W=56 H=56 R=3 S=3 C=64 K=64 T=1 U=1 h'=2 w'=2 c'=4 k'=8 )
    (* k3 rect 40 x 24 *)
    k3 : place(x y R0)

The formal args repeat the node's attributes; the execution args are h', w' and, per
convolution of the kernel, c' and k' (`c'`/`k'` for conv, `c1'`/`k1'`, `c2'`/`k2'`, ... for the
blocks). `place(x y R)` puts the kernel's top-left tile at column x, row y; R0 keeps the
rectangle as the args define it (height = h'w'(c'+1) rows, width = 3k' columns), R90 swaps it.
The `(* kN rect H x W *)` comment states the unrotated rectangle; the validator checks it
against the args when present.
"""
from __future__ import annotations



def exec_arg_names(kind: str, n_args: int) -> list[str]:
    if kind == "conv":
        return ["h'", "w'", "c'", "k'"]
    names = ["h'", "w'"]
    for i in range(1, (n_args - 2) // 2 + 1):
        names += [f"c{i}'", f"k{i}'"]
    return names


def format_solution(solution) -> str:
    g = solution.graph
    lines = [f"(* wsebench ispd solution for {g.source} ({g.test}): max time "
             f"{solution.max_time:g}, T* {solution.t_star:g}, ratio {solution.ratio:.4f}, "
             f"wire length {solution.wire_length:g} *)"]
    for node in g.kernels:
        opt, rect = solution.options[node.name], solution.rects[node.name]
        formal = " ".join(f"{k}={v}" for k, v in node.attrs)
        execution = " ".join(f"{k}={v}" for k, v in zip(exec_arg_names(node.kind, len(opt.args)),
                                                        opt.args))
        rot = "R90" if solution.rotated(node.name) else "R0"
        lines.append(f"{node.name} = {node.kind}( {formal} {execution} )")
        lines.append(f"(* {node.name} rect {opt.height} x {opt.width} *)")
        lines.append(f"{node.name} : place({rect.col} {rect.row} {rot})")
    return "\n".join(lines) + "\n"
