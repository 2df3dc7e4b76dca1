"""Expose a named submodule's output as the embedding of a torch.export program.

An exported program's graph is flat (submodules are inlined), so a forward hook on a
submodule never fires. Instead, every graph node records the module stack it came from
(`meta["nn_module_stack"]`); the submodule's output is the one node inside it that is used
outside it. The graph is rewritten to return `(original output, that node)`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.fx


def _paths(node: torch.fx.Node) -> set[str]:
    stack: dict[str, Any] = node.meta.get("nn_module_stack") or {}
    out = set()
    for value in stack.values():
        path = value[0] if isinstance(value, tuple) else str(value)
        out.add(path.removeprefix("L['self'].").removeprefix("L__self__."))
    return out


def tap_submodule_output(module: torch.fx.GraphModule, name: str) -> torch.fx.GraphModule:
    """Rewrite `module` (a fresh `ExportedProgram.module()`; changed in place) so that
    forward(x) returns (original single output, output of submodule `name`). Raises
    ValueError when `name` is not a submodule of the graph or has no single output."""
    if not isinstance(module, torch.fx.GraphModule):
        raise ValueError(f"cannot tap submodule {name!r} of a {type(module).__name__}")
    gm = module
    graph = gm.graph
    nodes = list(graph.nodes)
    inside = {n for n in nodes if name in _paths(n)}
    if not inside:
        known = sorted({p for n in nodes for p in _paths(n) if p})
        raise ValueError(f"no submodule named {name!r} in the exported graph; known "
                         f"submodules include {known[:15]}")
    outputs = [n for n in nodes if n in inside and any(u not in inside for u in n.users)]
    if len(outputs) != 1:
        raise ValueError(f"submodule {name!r} has {len(outputs)} outputs used outside it; "
                         "expected exactly one tensor")
    placeholders = [n for n in nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise ValueError(f"the exported program takes {len(placeholders)} inputs, expected one")
    out_node = next(n for n in nodes if n.op == "output")
    flat = out_node.args[0]
    flat_list = list(flat) if isinstance(flat, tuple | list) else [flat]
    if len(flat_list) != 1:
        raise ValueError(f"the exported program returns {len(flat_list)} values; with a "
                         "submodule embedding it must return the logits only")
    out_node.args = ((flat_list[0], outputs[0]),)
    graph._codegen = torch.fx.graph.CodeGen()  # plain forward(x) -> tuple, no pytree specs
    gm.recompile()
    return gm
