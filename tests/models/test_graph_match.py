import pytest
import torch
import torch.nn.functional as F
from torch import fx, nn

from inceptionism.models.graph_match import activation, max_pool_params, pointwise_conv


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.relu, self.relu6, self.silu = nn.ReLU(), nn.ReLU6(), nn.SiLU()
        self.pool, self.indexed = nn.MaxPool2d(3, 2, 1, ceil_mode=True), nn.MaxPool2d(2, return_indices=True)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {
            "relu": self.relu(x),
            "relu6": self.relu6(x),
            "silu": self.silu(x),
            "f_relu": F.relu(x),
            "torch_relu_": torch.relu_(x.clone()),
            "f_relu6": F.relu6(x),
            "method_relu": x.relu(),
            "pool": self.pool(x),
            "f_pool": F.max_pool2d(x, 2),
            "f_pool_kw": F.max_pool2d(x, kernel_size=(3, 2), stride=1, padding=(1, 0)),
            "indexed": self.indexed(x)[0],
            "f_indexed": F.max_pool2d(x, 2, 2, 0, 1, False, True)[0],
        }


@pytest.fixture(scope="module")
def nodes():
    graph = fx.symbolic_trace(Net())
    modules = dict(graph.named_modules())
    out = next(n for n in graph.graph.nodes if n.op == "output").args[0]
    return {name: node for name, node in out.items()}, modules


def test_activations_are_found_as_modules_functions_and_methods(nodes):
    found, modules = nodes
    kinds = {name: activation(found[name], modules) for name in found}
    assert kinds["relu"] == kinds["f_relu"] == kinds["torch_relu_"] == kinds["method_relu"] == "relu"
    assert kinds["relu6"] == kinds["f_relu6"] == "relu6"
    assert kinds["silu"] is None and kinds["pool"] is None


def test_max_pool_params_are_normalised_and_pools_returning_indices_are_not_matched(nodes):
    found, modules = nodes
    assert max_pool_params(found["pool"], modules) == [[3, 3], [2, 2], [1, 1], [1, 1], True]
    assert max_pool_params(found["f_pool"], modules) == [[2, 2], [2, 2], [0, 0], [1, 1], False]  # stride: kernel
    assert max_pool_params(found["f_pool_kw"], modules) == [[3, 2], [1, 1], [1, 0], [1, 1], False]
    indexed = [n.args[0] for n in (found["indexed"], found["f_indexed"])]  # the pools behind the getitems
    assert [max_pool_params(n, modules) for n in indexed] == [None, None]
    assert max_pool_params(found["relu"], modules) is None


def test_pointwise_conv_is_a_plain_1x1_convolution_only():
    assert pointwise_conv(nn.Conv2d(4, 8, 1)) is not None
    others = (nn.Conv2d(4, 8, 3), nn.Conv2d(4, 8, 1, stride=2), nn.Conv2d(4, 8, 1, groups=2), nn.Linear(4, 8))
    for other in (*others, None):
        assert pointwise_conv(other) is None
