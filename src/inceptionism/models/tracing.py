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


def inline_modules(graph: fx.GraphModule, kinds: tuple[type[nn.Module], ...]) -> fx.GraphModule:
    """Replace, in place, each call of a module of ``kinds`` by the operations of its forward, traced.

    torchvision's tracer keeps its ``torchvision.ops`` modules whole (``Conv2dNormActivation``, MobileNet's and
    EfficientNet's convolution-BatchNorm-activation unit): the graph optimisations and the CPU gradient program
    see one opaque module there. Inlined, they see the convolution, the BatchNorm and the activation. A module
    that does not trace stays whole. The outputs are the same tensors: nothing is computed differently.
    """
    changed = True
    while changed:
        changed = False
        for node in list(graph.graph.nodes):
            if node.op != "call_module" or node.kwargs:
                continue
            module = graph.get_submodule(str(node.target))
            if not isinstance(module, kinds):
                continue
            try:
                body = fx.symbolic_trace(module)
            except Exception:  # control flow on values, or an operation fx cannot see through: keep it whole
                continue
            if _inline(graph, node, body):
                changed = True
    graph.graph.lint()
    graph.recompile()
    return graph


def _inline(graph: fx.GraphModule, node: fx.Node, body: fx.GraphModule) -> bool:
    """Put ``body``'s operations in place of ``node`` (a call of the module it was traced from)."""
    inputs = [n for n in body.graph.nodes if n.op == "placeholder"]
    if len(inputs) != len(node.args):
        return False
    env: dict[fx.Node, Any] = dict(zip(inputs, node.args, strict=True))
    result: Any = None
    with graph.graph.inserting_before(node):
        for n in body.graph.nodes:
            if n.op == "placeholder":
                continue
            if n.op == "output":
                result = fx.map_arg(n.args[0], env.__getitem__)
                break
            copied = graph.graph.node_copy(n, env.__getitem__)
            if n.op in ("call_module", "get_attr"):
                copied.target = f"{node.target}.{n.target}"  # the module's own paths, under its own
            env[n] = copied
    node.replace_all_uses_with(result)
    graph.graph.erase_node(node)
    return True
