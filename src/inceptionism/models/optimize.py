"""Speed levers on a traced feature extractor that keep its results (allclose), each kept because it measured.

- :func:`fold_preprocessing`: the input's normalisation folded into an unpadded first convolution (exact).
- :func:`fold_batchnorm`: eval BatchNorm folded into the convolution before it.
- :func:`avg_pool_as_conv`: stride-1 average pools as depthwise convolutions (:class:`BoxFilter`).
- :func:`conv_before_box_filter`: a 1×1 convolution after an average pool moves in front of it (exact).
- :func:`pool_before_activation`: ``max_pool(relu(x))`` → ``relu(max_pool(x))`` (exact).
- :func:`merge_sibling_convs`: 1×1 convolutions reading one tensor run as one wider convolution.
- :func:`guard_strided_depthwise`: bf16/fp16 strided depthwise convolutions take a faster road to their input
  gradient on CPUs (:mod:`.depthwise`).
- :func:`guard_strided_stem`: the image's strided stem convolution takes its input gradient as a sub-pixel
  convolution on CPUs (:mod:`.stem`).
- :func:`to_channels_last`: NHWC weights (and, in the extractor, inputs).

:func:`fast_graph` runs them in order, on a copy of the extractor's graph (holding only the layers it
runs): the loaded model's modules are never changed, so every extractor of a model stays independent and
``fast=False`` stays the plain network.
Figures: docs/performance.md (``benchmarks/bench.py``).
"""

from __future__ import annotations

import copy
import operator
from collections.abc import Callable
from typing import cast

import torch
from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from inceptionism.models.box_filter import BoxFilter
from inceptionism.models.cpu import StridedDepthwise, StridedStem, is_strided_depthwise, is_strided_stem
from inceptionism.models.graph_match import activation, max_pool_params, pointwise_conv


def fold_batchnorm(graph: fx.GraphModule) -> fx.GraphModule:
    """Fold every eval-mode BatchNorm that directly follows a convolution into a new, fused convolution.

    Saves one memory-bound pass over each activation, forward and backward. Only the graph's own references
    change; the shared, original modules are left as they were.
    """
    modules = dict(graph.named_modules())
    count = 0
    for node in list(graph.graph.nodes):
        if node.op != "call_module" or not isinstance(modules.get(node.target), nn.BatchNorm2d):
            continue
        prev = node.args[0]
        if not (isinstance(prev, fx.Node) and prev.op == "call_module" and len(prev.users) == 1):
            continue
        conv, bn = modules.get(prev.target), modules[node.target]
        if not isinstance(conv, nn.Conv2d) or conv.training or bn.training or not bn.track_running_stats:
            continue
        fused = fuse_conv_bn_eval(conv, bn)
        fused.requires_grad_(False)
        name = f"_folded_{count}"
        graph.add_submodule(name, fused)
        prev.target = name
        node.replace_all_uses_with(prev)
        graph.graph.erase_node(node)
        count += 1
    if count:
        graph.graph.lint()
        graph.recompile()
    return graph


def fold_preprocessing(graph: fx.GraphModule, scale: torch.Tensor, shift: torch.Tensor) -> bool:
    """Fold the per-channel input map ``x * scale + shift`` into the first convolution, if that is exact.

    Exact when the input feeds one unpadded convolution (InceptionV3's stem): every output sums ``w * x`` over
    image pixels only, so ``conv(x * scale + shift) = conv'(x)`` with ``w' = w * scale`` and the bias taking
    ``Σ w * shift``. Padded convolutions would see the padding's zeros shifted too, so they are left alone.
    Returns whether it folded; the caller then skips its own preprocessing.
    """
    modules = dict(graph.named_modules())
    inputs = [n for n in graph.graph.nodes if n.op == "placeholder"]
    if len(inputs) != 1 or len(inputs[0].users) != 1:
        return False
    (node,) = inputs[0].users
    conv = modules.get(str(node.target)) if node.op == "call_module" else None
    if type(conv) is not nn.Conv2d or conv.groups != 1 or conv.in_channels != scale.numel():
        return False
    if not (conv.padding == "valid" or (isinstance(conv.padding, tuple) and not any(conv.padding))):
        return False
    with torch.no_grad():
        weight = conv.weight.float()
        bias = (weight * shift.view(1, -1, 1, 1)).sum(dim=(1, 2, 3))
        if conv.bias is not None:
            bias += conv.bias.float()
        folded = copy.deepcopy(conv)
        folded.weight = nn.Parameter((weight * scale.view(1, -1, 1, 1)).to(conv.weight.dtype), requires_grad=False)
        folded.bias = nn.Parameter(bias.to(conv.weight.dtype), requires_grad=False)
    graph.add_submodule("_preprocessed", folded)
    node.target = "_preprocessed"
    graph.recompile()
    return True


def to_channels_last(module: nn.Module) -> nn.Module:
    """Store 4-D weights in channels_last (NHWC), which oneDNN and cuDNN convolutions run fastest on."""
    return module.to(memory_format=torch.channels_last)  # type: ignore[call-arg]


_AVG_POOL_PARAMS = ("input", "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override")


def _pair(v: object) -> tuple[int, int] | None:
    if isinstance(v, int):
        return (v, v)
    if isinstance(v, (tuple, list)) and len(v) == 2 and all(isinstance(i, int) for i in v):
        return (int(v[0]), int(v[1]))
    return None


def avg_pool_as_conv(graph: fx.GraphModule) -> fx.GraphModule:
    """Run stride-1 average pools (Inception's branch pools) as depthwise convolutions.

    Same values; on CPUs, bf16 average-pool backward is a slow kernel while a depthwise convolution is not.
    """
    changed = False
    for i, node in enumerate(list(graph.graph.nodes)):
        if node.op != "call_function" or node.target is not torch.nn.functional.avg_pool2d:
            continue
        p = {**dict(zip(_AVG_POOL_PARAMS, node.args, strict=False)), **node.kwargs}
        k, pad = _pair(p.get("kernel_size")), _pair(p.get("padding", 0))
        stride = _pair(p.get("stride") or p.get("kernel_size"))  # avg_pool2d: stride defaults to the kernel
        if k is None or k[0] != k[1] or stride != (1, 1) or pad is None or pad[0] != pad[1]:
            continue
        if p.get("ceil_mode") or p.get("divisor_override") is not None:
            continue
        name = f"_box_filter_{i}"
        graph.add_submodule(name, BoxFilter(k[0], pad[0], bool(p.get("count_include_pad", True))))
        node.op, node.target = "call_module", name
        node.args, node.kwargs = (p["input"],), {}
        changed = True
    if changed:
        graph.recompile()
    return graph


def pool_before_activation(graph: fx.GraphModule) -> fx.GraphModule:
    """Rewrite ``max_pool(relu(x))`` as ``relu(max_pool(x))``: the same values and gradients, exactly.

    A max commutes with any monotonic function, so the ReLU (and its backward) runs on the pooled tensor, a
    quarter of the size (VGG, GoogLeNet, InceptionV3 and ResNet stems all pool right after a ReLU).
    """
    modules = dict(graph.named_modules())
    changed = False
    for act in list(graph.graph.nodes):
        if activation(act, modules) is None or len(act.users) != 1 or not act.args:
            continue
        pool, source = next(iter(act.users)), act.args[0]
        is_pool = max_pool_params(pool, modules) is not None
        if not (is_pool and pool.args and pool.args[0] is act and isinstance(source, fx.Node)):
            continue
        if len(source.users) != 1:  # an in-place ReLU changed what other users of its input saw
            continue
        pool.replace_all_uses_with(act)
        pool.replace_input_with(act, source)
        act.args = (pool, *act.args[1:])
        pool.append(act)
        changed = True
    if changed:
        graph.graph.lint()
        graph.recompile()
    return graph


def conv_before_box_filter(graph: fx.GraphModule) -> fx.GraphModule:
    """Rewrite ``conv1x1(box_filter(x))`` as ``box_filter(conv1x1(x)) + bias``: the same values.

    Both are linear, so they commute (the bias moves behind the average). Inception's pool branches average
    all of a block's input channels and then keep a few: averaging after the convolution touches 4–6× fewer
    channels, and the convolution now reads the block input like its sibling heads, so it merges with them.
    """
    modules = dict(graph.named_modules())
    count = 0
    for pool in list(graph.graph.nodes):
        box = modules.get(str(pool.target)) if pool.op == "call_module" else None
        if not isinstance(box, BoxFilter) or box.bias is not None or len(pool.users) != 1:
            continue
        conv_node = next(iter(pool.users))
        conv = pointwise_conv(modules.get(str(conv_node.target))) if conv_node.op == "call_module" else None
        if conv is None or conv_node.args != (pool,) or conv_node.kwargs or not isinstance(pool.args[0], fx.Node):
            continue
        w = conv.weight
        plain = nn.Conv2d(conv.in_channels, conv.out_channels, 1, bias=False, device=w.device, dtype=w.dtype)
        with torch.no_grad():
            plain.weight.copy_(w)
        bias = conv.bias.detach().clone() if conv.bias is not None else None
        graph.add_submodule(f"_pre_pool_conv_{count}", plain.requires_grad_(False).eval())
        graph.add_submodule(f"_box_bias_{count}", BoxFilter(box.kernel_size, box.padding, box.count_include_pad, bias))
        source = pool.args[0]
        conv_node.replace_all_uses_with(pool)
        conv_node.args, conv_node.target = (source,), f"_pre_pool_conv_{count}"
        pool.args, pool.target = (conv_node,), f"_box_bias_{count}"
        conv_node.append(pool)
        count += 1
    if count:
        graph.graph.lint()
        graph.delete_all_unused_submodules()
        graph.recompile()
    return graph


def merge_sibling_convs(graph: fx.GraphModule) -> fx.GraphModule:
    """Run the 1×1 convolutions that read the same tensor (Inception's branch heads) as one wider convolution.

    ``relu(conv_a(x)), relu(conv_b(x)), conv_c(x)`` becomes one ``conv_abc(x)`` split in two: ``relu`` over the
    a-b block (split again), and c as it is. The same values, but one larger matrix product instead of several
    thin ones, one activation, and in the backward pass one input gradient instead of several that must then
    be added up.
    """
    modules = dict(graph.named_modules())
    order = {node: i for i, node in enumerate(graph.graph.nodes)}
    count = 0
    for source in list(graph.graph.nodes):
        activated: dict[str, list[tuple[fx.Node, nn.Conv2d, fx.Node]]] = {}
        plain: list[tuple[fx.Node, nn.Conv2d]] = []
        for user in sorted(source.users, key=order.__getitem__):
            conv = pointwise_conv(modules.get(str(user.target))) if user.op == "call_module" else None
            if conv is None or user.args != (source,) or user.kwargs or len(user.users) != 1:
                continue
            act = next(iter(user.users))
            kind = activation(act, modules)
            if kind is not None and act.args and act.args[0] is user and len(act.args) == 1:
                activated.setdefault(kind, []).append((user, conv, act))
            else:
                plain.append((user, conv))
        kind, heads = max(activated.items(), key=lambda kv: len(kv[1]), default=("relu", []))
        if len(heads) + len(plain) < 2:
            continue
        convs = [conv for _, conv, _ in heads] + [conv for _, conv in plain]
        like = convs[0].weight  # the merged convolution lives where its parts do (a GPU), in their dtype
        merged = nn.Conv2d(like.shape[1], sum(c.out_channels for c in convs), 1, device=like.device, dtype=like.dtype)
        with torch.no_grad():
            merged.weight.copy_(torch.cat([c.weight for c in convs]))
            biases = [c.bias if c.bias is not None else torch.zeros_like(c.weight[:, 0, 0, 0]) for c in convs]
            cast(torch.Tensor, merged.bias).copy_(torch.cat(biases))
        name = f"_merged_{count}"
        count += 1
        graph.add_submodule(name, merged.requires_grad_(False).eval())
        first = min([n for n, *_ in heads] + [n for n, _ in plain], key=order.__getitem__)
        graph_ = graph.graph
        with graph_.inserting_before(first):
            wide = graph_.call_module(name, (source,))
            head_width = sum(c.out_channels for _, c, _ in heads)
            sizes = ([head_width] if heads else []) + [c.out_channels for _, c in plain]
            blocks = graph_.call_function(torch.split, (wide, sizes), {"dim": 1})
            rest = [graph_.call_function(operator.getitem, (blocks, i + bool(heads))) for i in range(len(plain))]
            items = []
            if heads:
                act_fn = torch.nn.functional.relu6 if kind == "relu6" else torch.relu
                block = graph_.call_function(act_fn, (graph_.call_function(operator.getitem, (blocks, 0)),))
                parts = graph_.call_function(torch.split, (block, [c.out_channels for _, c, _ in heads]), {"dim": 1})
                items = [graph_.call_function(operator.getitem, (parts, i)) for i in range(len(heads))]
        for (conv_node, _, act), item in zip(heads, items, strict=True):
            act.replace_all_uses_with(item)
            graph_.erase_node(act)
            graph_.erase_node(conv_node)
        for (conv_node, _), item in zip(plain, rest, strict=True):
            conv_node.replace_all_uses_with(item)
            graph_.erase_node(conv_node)
    if count:
        graph.graph.lint()
        graph.delete_all_unused_submodules()
        graph.recompile()
    return graph


def _wrap_convs(
    graph: fx.GraphModule,
    matches: Callable[[nn.Module | None], bool],
    wrap: Callable[[nn.Conv2d], nn.Module],
    name: str,
) -> fx.GraphModule:
    """Replace every convolution module ``matches`` accepts by ``wrap(conv)``, registered as ``_{name}_{i}``."""
    modules = dict(graph.named_modules())
    count = 0
    for node in graph.graph.nodes:
        if node.op == "call_module" and matches(modules.get(str(node.target))):
            graph.add_submodule(f"_{name}_{count}", wrap(cast(nn.Conv2d, modules[str(node.target)])))
            node.target = f"_{name}_{count}"
            count += 1
    if count:
        graph.recompile()
    return graph


def guard_strided_depthwise(graph: fx.GraphModule) -> fx.GraphModule:
    """Run every strided depthwise convolution as a :class:`~inceptionism.models.cpu.depthwise.StridedDepthwise`."""
    return _wrap_convs(graph, is_strided_depthwise, StridedDepthwise, "strided_depthwise")


def guard_strided_stem(graph: fx.GraphModule) -> fx.GraphModule:
    """Run every strided stem convolution as a :class:`~inceptionism.models.cpu.stem.StridedStem`."""
    return _wrap_convs(graph, is_strided_stem, StridedStem, "strided_stem")


def fast_graph(graph: fx.GraphModule, dtype: torch.dtype | None = None) -> fx.GraphModule:
    """Every pass above but :func:`fold_preprocessing` (the extractor's), in order, on ``graph`` (changed in
    place); ``dtype``: hold the weights in it."""
    graph = fold_batchnorm(graph)
    graph = pool_before_activation(conv_before_box_filter(avg_pool_as_conv(graph)))
    graph = guard_strided_stem(guard_strided_depthwise(merge_sibling_convs(graph)))
    to_channels_last(graph)  # in place, like .to(dtype)
    return graph.to(dtype) if dtype is not None else graph
