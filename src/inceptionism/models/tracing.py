"""Feature extraction without torchvision: trace a network with torch.fx and return chosen modules' outputs.

torchvision's ``create_feature_extractor`` does this for its own networks (and we use it for them), but
importing torchvision costs about a second, which the default network, defined in this package, need not pay.
Same rule as torchvision's: a module path's output is the last node traced inside that module.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
from torch import fx, nn


class _ScopeTracer(fx.Tracer):
    """A tracer that remembers, for every node, the path of the module it was traced in (fx's own scope)."""

    def __init__(self) -> None:
        super().__init__()
        self.paths: dict[fx.Node, str] = {}

    def create_node(self, *args: Any, **kwargs: Any) -> fx.Node:
        node = super().create_node(*args, **kwargs)
        self.paths[node] = self.scope.module_path
        return node


def trace_features(module: nn.Module, return_nodes: Mapping[str, str]) -> fx.GraphModule:
    """A graph of ``module`` returning ``{name: output of the module at path}`` for ``{path: name}``.

    Everything the outputs do not need (the layers past the deepest one) is dropped.
    """
    tracer = _ScopeTracer()
    graph = tracer.trace(module)
    found: dict[str, fx.Node] = {}
    for node in reversed(list(graph.nodes)):
        scope = tracer.paths.get(node, "")
        for path, name in return_nodes.items():
            if name not in found and path and (scope == path or scope.startswith(path + ".")):
                found[name] = node
    missing = [path for path, name in return_nodes.items() if name not in found]
    if missing:
        raise ValueError(f"no module at {', '.join(missing)} in {type(module).__name__}")
    for node in [n for n in graph.nodes if n.op == "output"]:
        graph.erase_node(node)
    graph.output({name: found[name] for name in return_nodes.values()})
    traced = fx.GraphModule(module, graph, class_name=type(module).__name__)
    traced.graph.eliminate_dead_code()
    traced.graph.lint()
    traced.delete_all_unused_submodules()
    traced.recompile()
    return traced


_IN_PLACE_FUNCTIONS = {torch.relu_: torch.relu}
_IN_PLACE_METHODS = {"relu_": "relu", "clamp_": "clamp", "clamp_min_": "clamp_min", "hardtanh_": "hardtanh"}


def unshare_in_place(graph: fx.GraphModule) -> fx.GraphModule:
    """Make every in-place operation whose input is also read elsewhere (a returned feature, another branch)
    out of place, in place on ``graph``.

    Networks write ``ReLU(inplace=True)`` after a convolution because nothing else reads its output; once the
    convolution's output is a requested feature, the ReLU would change the returned tensor after the fact (VGG's
    ``conv4_1`` came back rectified when a deeper layer was also asked for, and not when it was alone). Modules
    are copied, never changed: the graph shares them with the loaded network.
    """
    modules = dict(graph.named_modules())
    changed = False
    for node in graph.graph.nodes:
        source = node.args[0] if node.args else None
        if not isinstance(source, fx.Node) or len(source.users) < 2:
            continue
        if node.op == "call_module" and getattr(modules.get(str(node.target)), "inplace", False):
            copy_ = copy.copy(modules[str(node.target)])
            copy_.inplace = False
            name = f"_out_of_place_{str(node.target).replace('.', '_')}"
            graph.add_submodule(name, copy_)
            node.target = name
        elif node.op == "call_function" and node.kwargs.get("inplace"):
            node.kwargs = {**node.kwargs, "inplace": False}
        elif node.op == "call_function" and node.target in _IN_PLACE_FUNCTIONS:
            node.target = _IN_PLACE_FUNCTIONS[node.target]
        elif node.op == "call_method" and node.target in _IN_PLACE_METHODS:
            node.target = _IN_PLACE_METHODS[str(node.target)]
        else:
            continue
        changed = True
    if changed:
        graph.recompile()
    return graph
