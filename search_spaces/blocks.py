"""The block library: ResNeXt bottlenecks with SE, selective-kernel and split attention.

Structure and cost live side by side (as in pycls): every module has a
``forward`` and, right beside it, a static ``complexity(cx, ...)`` that walks the
same structure on a :class:`Cx` accumulator without building anything. The
analytic count must equal the measured one exactly (``FlopCounterMode`` / 2 and
``sum(p.numel())``), so each ``complexity`` mirrors its ``__init__`` line by line.

Module names and registration order follow timm's ``resnet``/``sknet``/``resnest``
models, so a reference network's state dict lines up with ours tensor for tensor.

Counting conventions: FLOPs are multiply-adds of convolutions and linear layers
(biases, norms, activations, pools and element-wise products not counted);
params are all parameters; activations are the output elements of every
convolution and linear layer (pycls), all at batch size 1.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn


class Cx:
    """Running complexity while walking a network: feature-map side and the three counts."""

    __slots__ = ("size", "flops", "params", "acts")

    def __init__(self, size: int) -> None:
        self.size = size
        self.flops = 0
        self.params = 0
        self.acts = 0

    def counts(self) -> tuple[int, int, int]:
        return self.flops, self.params, self.acts

    def repeat_since(self, before: tuple[int, int, int], times: int) -> None:
        """Count what was added since ``before`` ``times`` times in all (identical layers or blocks)."""
        k = times - 1
        self.flops += k * (self.flops - before[0])
        self.params += k * (self.params - before[1])
        self.acts += k * (self.acts - before[2])


def make_divisible(v: float, divisor: int, min_value: int | None = None, round_limit: float = 0.9) -> int:
    """Round a channel count to a multiple of ``divisor`` (timm/MobileNet rule, so counts match timm)."""
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < round_limit * v:
        new_v += divisor
    return new_v


def se_channels(channels: int, ratio: int, divisor: int) -> int:
    """Reduced channels of an SE module (timm ``SEModule``: never rounds up past 0.9x)."""
    return make_divisible(channels / ratio, divisor, round_limit=0.0)


def sk_channels(width: int, reduction: int, divisor: int) -> int:
    """Hidden channels of the selective-kernel attention (timm ``SelectiveKernel``)."""
    return make_divisible(width / reduction, divisor)


def split_channels(width: int, radix: int, cardinality: int, reduction: int, divisor: int, min_value: int) -> int:
    """Hidden channels of split attention (timm ``SplitAttn``).

    The attention's 1×1 convs are grouped by cardinality, so the count is rounded up to
    a multiple of it; timm would fail on such configs instead, and agrees everywhere else.
    """
    c = make_divisible(width * radix / reduction, divisor, min_value=min_value)
    return -(-c // cardinality) * cardinality


# ---- primitive layers: builders and their costs -------------------------------------------------


def conv2d(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, dilation: int = 1,
           bias: bool = False) -> nn.Conv2d:
    """A k×k conv with "same" padding (for odd k), as every conv in these networks has."""
    return nn.Conv2d(cin, cout, k, stride, dilation * (k - 1) // 2, dilation, groups, bias)


def conv2d_cx(cx: Cx, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, dilation: int = 1,
              bias: bool = False, bn: bool = False) -> None:
    """Cost of :func:`conv2d` (``bn``: followed by :func:`norm2d`, counted in the same call because
    this is the hot loop of every budget check)."""
    # "Same" padding makes the output size independent of k and dilation.
    s = (cx.size - 1) // stride + 1
    w = cout * (cin // groups) * k * k
    cx.size = s
    cx.flops += w * s * s
    cx.params += w + (cout if bias else 0) + (2 * cout if bn else 0)
    cx.acts += cout * s * s


def norm2d(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c)


def norm2d_cx(cx: Cx, c: int) -> None:
    cx.params += 2 * c


def pool_cx(cx: Cx, k: int, stride: int, pad: int) -> None:
    """Max/avg pool, floor mode: changes the size only."""
    cx.size = (cx.size + 2 * pad - k) // stride + 1


def linear_cx(cx: Cx, cin: int, cout: int) -> None:
    cx.flops += cin * cout
    cx.params += cin * cout + cout
    cx.acts += cout


class ConvNormAct(nn.Sequential):
    """conv → BN → ReLU; submodules named ``conv``/``bn``/``act`` as in timm."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, dilation: int = 1,
                 act: bool = True) -> None:
        super().__init__()
        self.conv = conv2d(cin, cout, k, stride, groups, dilation)
        self.bn = norm2d(cout)
        self.act = nn.ReLU(inplace=True) if act else nn.Identity()

    @staticmethod
    def complexity(cx: Cx, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1,
                   dilation: int = 1) -> None:
        conv2d_cx(cx, cin, cout, k, stride, groups, dilation, bn=True)


# ---- attention modules -----------------------------------------------------------------------------


class SqueezeExcite(nn.Module):
    """SE: global pool → 1×1 reduce → ReLU → 1×1 expand → sigmoid gate on every channel."""

    def __init__(self, channels: int, rd: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, rd, 1, bias=True)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(rd, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.fc2(self.act(self.fc1(x.mean((2, 3), keepdim=True))))
        return x * s.sigmoid()

    @staticmethod
    def complexity(cx: Cx, channels: int, rd: int) -> None:
        cx.flops += 2 * channels * rd
        cx.params += 2 * channels * rd + rd + channels
        cx.acts += rd + channels


class SelectiveKernelAttn(nn.Module):
    """SK fuse/select: sum the paths, pool, reduce, and a softmax over paths per channel."""

    def __init__(self, channels: int, paths: int, rd: int) -> None:
        super().__init__()
        self.paths = paths
        self.fc_reduce = nn.Conv2d(channels, rd, 1, bias=False)
        self.bn = norm2d(rd)
        self.act = nn.ReLU(inplace=True)
        self.fc_select = nn.Conv2d(rd, channels * paths, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, p, c = x.shape[:3]
        a = self.fc_select(self.act(self.bn(self.fc_reduce(x.sum(1).mean((2, 3), keepdim=True)))))
        return torch.softmax(a.view(b, p, c, 1, 1), dim=1)

    @staticmethod
    def complexity(cx: Cx, channels: int, paths: int, rd: int) -> None:
        cx.flops += channels * rd + rd * channels * paths
        cx.params += channels * rd + 2 * rd + rd * channels * paths
        cx.acts += rd + channels * paths


class SelectiveKernel(nn.Module):
    """Selective kernel conv (SKNet): a 3×3 path and a dilated 3×3 (5×5 field) path, fused by attention."""

    PATHS = 2

    def __init__(self, cin: int, cout: int, stride: int, cardinality: int, rd: int, split_input: bool) -> None:
        super().__init__()
        self.split_input = split_input
        path_in = cin // self.PATHS if split_input else cin
        groups = min(cout, cardinality)
        self.paths = nn.ModuleList(
            ConvNormAct(path_in, cout, 3, stride, groups, dilation=d + 1) for d in range(self.PATHS))
        self.attn = SelectiveKernelAttn(cout, self.PATHS, rd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.split_input:
            xs = torch.chunk(x, self.PATHS, dim=1)
            y = torch.stack([p(xi) for p, xi in zip(self.paths, xs)], dim=1)
        else:
            y = torch.stack([p(x) for p in self.paths], dim=1)
        return (y * self.attn(y)).sum(1)

    @staticmethod
    def complexity(cx: Cx, cin: int, cout: int, stride: int, cardinality: int, rd: int,
                   split_input: bool) -> None:
        paths = SelectiveKernel.PATHS
        path_in = cin // paths if split_input else cin
        # The paths differ only in dilation, which "same" padding makes irrelevant to the cost.
        before = cx.counts()
        conv2d_cx(cx, path_in, cout, 3, stride, min(cout, cardinality), bn=True)
        cx.repeat_since(before, paths)
        SelectiveKernelAttn.complexity(cx, cout, SelectiveKernel.PATHS, rd)


class SplitAttention(nn.Module):
    """ResNeSt split attention: a grouped 3×3 conv producing ``radix`` splits per cardinal group,
    weighted by a softmax across splits (sigmoid when radix is 1) computed from their pooled sum."""

    def __init__(self, cin: int, cout: int, stride: int, cardinality: int, radix: int, rd: int) -> None:
        super().__init__()
        self.radix = radix
        self.cardinality = cardinality
        mid = cout * radix
        self.conv = conv2d(cin, mid, 3, stride, groups=cardinality * radix)
        self.bn0 = norm2d(mid)
        self.act0 = nn.ReLU(inplace=True)
        self.fc1 = nn.Conv2d(cout, rd, 1, groups=cardinality)
        self.bn1 = norm2d(rd)
        self.act1 = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(rd, mid, 1, groups=cardinality)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act0(self.bn0(self.conv(x)))
        b, rc, h, w = x.shape
        r = self.radix
        if r > 1:
            x = x.reshape(b, r, rc // r, h, w)
            gap = x.sum(1)
        else:
            gap = x
        a = self.fc2(self.act1(self.bn1(self.fc1(gap.mean((2, 3), keepdim=True)))))
        if r > 1:
            # timm's RadixSoftmax: logits laid out (cardinality, radix, c); softmax over radix.
            a = a.view(b, self.cardinality, r, -1).transpose(1, 2)
            a = F.softmax(a, dim=1).reshape(b, r, rc // r, 1, 1)
            return (x * a).sum(1)
        return x * a.sigmoid()

    @staticmethod
    def complexity(cx: Cx, cin: int, cout: int, stride: int, cardinality: int, radix: int, rd: int) -> None:
        mid = cout * radix
        conv2d_cx(cx, cin, mid, 3, stride, cardinality * radix, bn=True)
        cx.flops += (cout * rd + rd * mid) // cardinality
        cx.params += (cout * rd + rd * mid) // cardinality + rd + mid + 2 * rd
        cx.acts += rd + mid


# ---- the bottleneck ----------------------------------------------------------------------------------

Avd = Literal["none", "first", "last"]


class Bottleneck(nn.Module):
    """1×1 reduce → 3×3 (grouped conv, SK, or split attention) → 1×1 expand [→ SE] + shortcut.

    The 3×3 stage is ``cardinality × group_width`` wide. With ``avd`` a strided block
    downsamples with a 3×3 average pool before (``first``) or after (``last``) a
    stride-1 3×3 (ResNeSt); with ``avg_down`` its shortcut is 2×2 avg-pool + 1×1 conv
    (ResNet-D) instead of a strided 1×1 conv.
    """

    def __init__(self, cin: int, cout: int, stride: int, cardinality: int, group_width: int,
                 se_rd: int | None, radix: int, sk_rd: int | None, split_rd: int | None,
                 sk_split_input: bool, avd: Avd, avg_down: bool) -> None:
        super().__init__()
        mid = cardinality * group_width
        avd_stride = stride if avd != "none" and stride > 1 else 1
        conv_stride = stride if avd_stride == 1 else 1
        self.conv1 = conv2d(cin, mid, 1)
        self.bn1 = norm2d(mid)
        self.act1 = nn.ReLU(inplace=True)
        self.avd_first = nn.AvgPool2d(3, avd_stride, 1) if avd_stride > 1 and avd == "first" else None
        if radix:
            assert split_rd is not None
            self.conv2: nn.Module = SplitAttention(mid, mid, conv_stride, cardinality, radix, split_rd)
        elif sk_rd is not None:
            self.conv2 = SelectiveKernel(mid, mid, conv_stride, cardinality, sk_rd, sk_split_input)
        else:
            self.conv2 = conv2d(mid, mid, 3, conv_stride, cardinality)
        plain = not radix and sk_rd is None
        self.bn2 = norm2d(mid) if plain else nn.Identity()
        self.act2 = nn.ReLU(inplace=True) if plain else nn.Identity()
        self.avd_last = nn.AvgPool2d(3, avd_stride, 1) if avd_stride > 1 and avd == "last" else None
        self.conv3 = conv2d(mid, cout, 1)
        self.bn3 = norm2d(cout)
        self.se = SqueezeExcite(cout, se_rd) if se_rd else None
        self.act3 = nn.ReLU(inplace=True)
        self.downsample = Bottleneck._shortcut(cin, cout, stride, avg_down)

    @staticmethod
    def _shortcut(cin: int, cout: int, stride: int, avg_down: bool) -> nn.Sequential | None:
        if stride == 1 and cin == cout:
            return None
        if avg_down:
            pool: nn.Module = (nn.AvgPool2d(2, stride, ceil_mode=True, count_include_pad=False)
                               if stride > 1 else nn.Identity())
            return nn.Sequential(pool, conv2d(cin, cout, 1), norm2d(cout))
        return nn.Sequential(conv2d(cin, cout, 1, stride), norm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        x = self.act1(self.bn1(self.conv1(x)))
        if self.avd_first is not None:
            x = self.avd_first(x)
        x = self.act2(self.bn2(self.conv2(x)))
        if self.avd_last is not None:
            x = self.avd_last(x)
        x = self.bn3(self.conv3(x))
        if self.se is not None:
            x = self.se(x)
        return self.act3(x + shortcut)

    @staticmethod
    def complexity(cx: Cx, cin: int, cout: int, stride: int, cardinality: int, group_width: int,
                   se_rd: int | None, radix: int, sk_rd: int | None, split_rd: int | None,
                   sk_split_input: bool, avd: Avd, avg_down: bool) -> None:
        mid = cardinality * group_width
        avd_stride = stride if avd != "none" and stride > 1 else 1
        conv_stride = stride if avd_stride == 1 else 1
        # conv1 + bn1 (a 1×1 keeps the size), written out: this method is the budget check's hot loop.
        hw = cx.size * cx.size
        cx.flops += cin * mid * hw
        cx.params += cin * mid + 2 * mid
        cx.acts += mid * hw
        if avd_stride > 1 and avd == "first":
            pool_cx(cx, 3, avd_stride, 1)
        if radix:
            SplitAttention.complexity(cx, mid, mid, conv_stride, cardinality, radix, split_rd or 0)
        elif sk_rd is not None:
            SelectiveKernel.complexity(cx, mid, mid, conv_stride, cardinality, sk_rd, sk_split_input)
        else:
            conv2d_cx(cx, mid, mid, 3, conv_stride, cardinality, bn=True)
        if avd_stride > 1 and avd == "last":
            pool_cx(cx, 3, avd_stride, 1)
        # conv3 + bn3, and the shortcut's 1×1 conv + BN: both shortcut forms (strided 1×1 conv, or
        # ceil-mode avg-pool then 1×1 conv) end at the main path's size, ceil(size / stride).
        hw = cx.size * cx.size
        shortcut = cin if stride != 1 or cin != cout else 0
        cx.flops += (mid + shortcut) * cout * hw
        cx.params += (mid + shortcut) * cout + (4 if shortcut else 2) * cout
        cx.acts += (2 if shortcut else 1) * cout * hw
        if se_rd:
            SqueezeExcite.complexity(cx, cout, se_rd)
