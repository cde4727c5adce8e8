import subprocess
import sys

import pytest
import torch
from torch import fx, nn

from inceptionism.models import load_model
from inceptionism.models.tracing import inline_modules, trace_features, unshare_in_place


@pytest.fixture(scope="module")
def lite0():
    return load_model("efficientnet-lite0")


def test_outputs_match_torchvision_feature_extraction(lite0):
    from torchvision.models.feature_extraction import create_feature_extractor

    paths = {lite0.resolve_layer(n): n for n in ("stem", "block5", "block10", "head", "logits")}
    ours = trace_features(lite0.module, paths)
    theirs = create_feature_extractor(lite0.module, return_nodes=paths)
    x = torch.rand(1, 3, 96, 128)
    a, b = ours(x), theirs(x)
    assert list(a) == list(paths.values())
    for name in a:
        assert torch.equal(a[name], b[name])


def test_layers_past_the_deepest_are_dropped(lite0):
    graph = trace_features(lite0.module, {lite0.resolve_layer("block3"): "block3"})
    targets = {str(n.target) for n in graph.graph.nodes if n.op == "call_module"}
    assert any(t.startswith("_blocks.3.") for t in targets)
    assert not any(t.startswith(("_blocks.4.", "_conv_head", "_fc")) for t in targets)


def test_unknown_path_is_an_error(lite0):
    with pytest.raises(ValueError, match=r"no module at _blocks\.99"):
        trace_features(lite0.module, {"_blocks.99": "nope"})


def test_the_default_network_never_imports_torchvision():
    code = (
        "import sys, torch, inceptionism\n"
        "from inceptionism.models import load_model\n"
        "m = load_model()\n"
        "m.extractor(m.spec.default_layers)(torch.rand(1, 3, 64, 64))\n"
        "print('torchvision' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"  # importing torchvision costs about a second


def test_in_place_operations_on_shared_tensors_become_out_of_place_and_modules_stay_untouched():
    class Shared(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.relu = nn.ReLU(inplace=True)

        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            a = self.conv(x)
            b = self.conv(x)
            c = self.conv(x)
            d = self.conv(x)
            return {
                "a": a, "relu_a": self.relu(a),  # module
                "b": b, "relu_b": torch.nn.functional.relu(b, inplace=True),  # function
                "c": c, "relu_c": c.relu_(),  # method
                "d": d, "relu_d": torch.relu_(d),  # torch function
            }  # fmt: skip

    net = Shared().eval()
    graph = unshare_in_place(torch.fx.symbolic_trace(net))
    assert net.relu.inplace  # the network's own module is not changed
    torch.manual_seed(0)
    out = graph(torch.randn(1, 3, 8, 8))
    for k in "abcd":
        assert out[k].min() < 0, k  # not rectified after the fact
        assert torch.equal(out[f"relu_{k}"], out[k].relu()), k


def test_in_place_operations_on_tensors_read_once_stay_in_place():
    class Chain(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.relu = nn.ReLU(inplace=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.relu(self.conv(x))

    graph = unshare_in_place(torch.fx.symbolic_trace(Chain()))
    assert [n.target for n in graph.graph.nodes if n.op == "call_module"] == ["conv", "relu"]


class Unit(nn.Sequential):
    """Like torchvision's Conv2dNormActivation: a unit its tracer keeps whole."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.unit = Unit(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.unit(x)


class Untraceable(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2 if x.sum() > 0 else x  # control flow on a value: fx cannot trace it


class KeepsUnitsWhole(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, (Unit, Block, Untraceable)) or super().is_leaf_module(m, qualname)


def test_inlined_units_compute_the_same_and_untraceable_ones_stay_whole():
    torch.manual_seed(0)
    net = nn.Sequential(Unit(3, 8), Block(), Untraceable()).eval()
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
    graph = fx.GraphModule(net, KeepsUnitsWhole().trace(net))
    x = torch.randn(1, 3, 10, 12)
    expected = net(x)
    inlined = inline_modules(graph, (Unit, Block, Untraceable))
    kinds = [type(inlined.get_submodule(str(n.target))) for n in inlined.graph.nodes if n.op == "call_module"]
    assert Unit not in kinds and Block not in kinds  # inlined, the unit inside the block too
    assert nn.BatchNorm2d in kinds and Untraceable in kinds  # its operations are visible; the untraceable stays
    assert torch.equal(inlined(x), expected)
