"""The three demo liveness networks (torch). Each mirrors a common published family:

- FasA: a MobileNet-style depthwise-separable net, 80x80 RGB, input already normalised by the
  runtime (unit scale, mean/std 0.5), 2 logits (attack, live).
- FasB: a MiniFASNet-like net, 80x80 BGR raw 0..255 (normalisation inside the network),
  3 logits (print, live, replay).
- FasC: a heavier ResNet-style net, 128x128 RGB with ImageNet normalisation done by the
  runtime, NHWC input (a permute inside the network), one sigmoid logit = live.
"""

from __future__ import annotations

import torch
from torch import nn


def conv_bn(cin: int, cout: int, k: int = 3, s: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if act:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def dw_sep(cin: int, cout: int, s: int = 1) -> nn.Sequential:
    return nn.Sequential(conv_bn(cin, cin, 3, s, groups=cin), conv_bn(cin, cout, 1))


class FasA(nn.Module):
    """Depthwise-separable (MobileNet v1 style). Input NCHW float, normalised outside."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            conv_bn(3, 24, 3, 2),  # 40
            dw_sep(24, 32),
            dw_sep(32, 64, 2),  # 20
            dw_sep(64, 64),
            dw_sep(64, 128, 2),  # 10
            dw_sep(128, 128),
            dw_sep(128, 192, 2),  # 5
            dw_sep(192, 192),
        )
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(192, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, s: int, expand: int) -> None:
        super().__init__()
        mid = cin * expand
        self.use_res = s == 1 and cin == cout
        self.block = nn.Sequential(
            conv_bn(cin, mid, 1),
            conv_bn(mid, mid, 3, s, groups=mid),
            conv_bn(mid, cout, 1, act=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.use_res else y


class FasB(nn.Module):
    """MiniFASNet-like (inverted residuals). Input NCHW BGR 0..255; normalises inside."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor([127.5, 127.5, 127.5]).view(1, 3, 1, 1))
        self.register_buffer("inv_std", torch.tensor([1 / 127.5] * 3).view(1, 3, 1, 1))
        self.features = nn.Sequential(
            conv_bn(3, 32, 3, 2),  # 40
            conv_bn(32, 32, 3, 1, groups=32),
            InvertedResidual(32, 48, 2, 2),  # 20
            InvertedResidual(48, 48, 1, 2),
            InvertedResidual(48, 96, 2, 2),  # 10
            InvertedResidual(96, 96, 1, 2),
            InvertedResidual(96, 128, 2, 2),  # 5
            conv_bn(128, 256, 1),
        )
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(256, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features((x - self.mean) * self.inv_std))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, s: int) -> None:
        super().__init__()
        self.body = nn.Sequential(conv_bn(cin, cout, 3, s), conv_bn(cout, cout, 3, 1, act=False))
        self.short = nn.Identity() if s == 1 and cin == cout else conv_bn(cin, cout, 1, s, act=False)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.short(x))


class FasC(nn.Module):
    """A small ResNet at 128x128. Takes NCHW; wrap with NHWCInput for export."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            conv_bn(3, 24, 3, 2),  # 64
            BasicBlock(24, 24, 1),
            BasicBlock(24, 48, 2),  # 32
            BasicBlock(48, 96, 2),  # 16
            BasicBlock(96, 160, 2),  # 8
        )
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(160, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class NHWCInput(nn.Module):
    """Exported wrapper: input (n, h, w, 3) -> the wrapped NCHW network."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.permute(0, 3, 1, 2))


def count_macs(model: nn.Module, shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of convolutions and linear layers for one input of `shape`."""
    total = 0

    def conv_hook(mod: nn.Conv2d, _inp, out) -> None:
        nonlocal total
        kh, kw = mod.kernel_size
        total += out.numel() // out.shape[0] * (mod.in_channels // mod.groups) * kh * kw

    def lin_hook(mod: nn.Linear, _inp, out) -> None:
        nonlocal total
        total += mod.in_features * mod.out_features

    hooks = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(lin_hook))
    was = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, *shape))
    model.train(was)
    for h in hooks:
        h.remove()
    return total
