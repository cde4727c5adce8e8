"""Tests for models/features.py beyond the zoo and Lite tests: the extractor's own behaviour."""

import pytest
import torch
from torch import nn

from inceptionism.errors import ConfigError
from inceptionism.models.features import FeatureExtractor
from inceptionism.models.spec import Preprocessing
from inceptionism.models.tracing import trace_features


class FixedSize(nn.Module):
    """Like torchvision's ViT: it asserts on its input size, and the traced graph keeps the check."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        torch._assert(x.shape[-1] == 32, "Wrong image width! Expected 32")
        return self.conv(x)


def test_a_network_that_refuses_the_image_size_gets_a_message_not_an_internal_error():
    extractor = FeatureExtractor(trace_features(FixedSize(), {"conv": "conv"}), Preprocessing(), ("conv",))
    assert extractor(torch.rand(1, 3, 32, 32))["conv"].shape == (1, 4, 30, 30)
    with pytest.raises(ConfigError, match=r"refused a 40×48 input \(Wrong image width! Expected 32\)"):
        extractor(torch.rand(1, 3, 40, 48))
