"""A stride-1 average pool run as a depthwise convolution: the module :func:`.optimize.avg_pool_as_conv` puts in
graphs, which every device runs and the CPU gradient program packs like any convolution."""

from __future__ import annotations

import torch
from torch import nn


class BoxFilter(nn.Module):
    """``avg_pool2d(x, k, stride=1, padding=pad)`` as a depthwise convolution (fast in bf16 on oneDNN).

    The averaging weights (1/k² folded in) are made once per channel count, dtype and device, not every call.
    ``bias`` (per channel, added after averaging) lets a following 1×1 convolution move in front of the pool
    (:func:`.optimize.conv_before_box_filter`).
    """

    bias: torch.Tensor | None

    def __init__(
        self, kernel_size: int, padding: int, count_include_pad: bool, bias: torch.Tensor | None = None
    ) -> None:
        super().__init__()
        self.kernel_size, self.padding, self.count_include_pad = kernel_size, padding, count_include_pad
        self.register_buffer("bias", bias)
        self._weights: dict[tuple[int, torch.dtype, torch.device], torch.Tensor] = {}
        self._counts: dict[tuple[int, int, torch.dtype, torch.device], torch.Tensor] = {}

    @property
    def is_convolution(self) -> bool:
        """Whether the filter is exactly one depthwise convolution (with :meth:`weight` and ``bias``)."""
        return self.count_include_pad or self.padding == 0

    def weight(self, channels: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """The depthwise averaging kernel (channels, 1, k, k), made once per channel count, dtype and device."""
        key, k = (channels, dtype, device), self.kernel_size
        if key not in self._weights:
            self._weights[key] = torch.full((channels, 1, k, k), 1 / (k * k), dtype=dtype, device=device)
        return self._weights[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad, channels = self.padding, x.shape[1]
        weight = self.weight(channels, x.dtype, x.device)
        if self.is_convolution:
            return torch.nn.functional.conv2d(x, weight, self.bias, padding=pad, groups=channels)
        mean = torch.nn.functional.conv2d(x, weight, padding=pad, groups=channels)
        mean = mean * self._border_correction(x)
        return mean if self.bias is None else mean + self.bias.view(1, -1, 1, 1)

    def _border_correction(self, x: torch.Tensor) -> torch.Tensor:
        """k² / (pixels inside the image) per output pixel: the pool excludes the padding from its count."""
        h, w = x.shape[-2:]
        key = (h, w, x.dtype, x.device)
        if key not in self._counts:
            k, pad = self.kernel_size, self.padding
            ones = torch.ones(1, 1, h, w, dtype=torch.float32, device=x.device)
            count = torch.nn.functional.conv2d(ones, torch.ones(1, 1, k, k, device=x.device), padding=pad)
            self._counts[key] = ((k * k) / count).to(x.dtype)
        return self._counts[key]

    def extra_repr(self) -> str:
        bias = ", bias=True" if self.bias is not None else ""
        pad = f"padding={self.padding}, count_include_pad={self.count_include_pad}"
        return f"kernel_size={self.kernel_size}, {pad}{bias}"
