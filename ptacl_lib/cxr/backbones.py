"""Pretrained-style image backbones for the captioner, written in plain torch with torchvision's layer names.

``resnet18``, ``resnet34``, ``resnet50`` and ``densenet121`` reproduce torchvision's architectures and
parameter names, so torchvision's ImageNet weight files load as they are; ``xrv-densenet121`` is the
one-channel DenseNet-121 of torchxrayvision (same names, input scaled to [-1024, 1024]). The spatial
grid before pooling (stride 32: 224 px -> 7 x 7 cells) feeds the attention.

No weights are downloaded. ``load_backbone_weights`` takes ``"none"`` (random init, as in the tests), a
path to a state dict, or ``"imagenet"``: torchvision's file in the torch hub cache
(``$TORCH_HOME/hub/checkpoints``). A missing file is a ``FileNotFoundError`` that names the file to fetch.
Files load weights only: one that pickles other objects (a whole model, say) is refused, since that could run code.
(torchvision itself is not a dependency: its PyPI build for torch 2.13.0 is a CUDA build whose compiled
operators fail to load next to the CPU torch wheel.)
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from ..runtime import load_weights_only

BACKBONES: tuple[str, ...] = ("resnet18", "resnet34", "resnet50", "densenet121", "xrv-densenet121")
BACKBONE_STRIDE = 32
# torchvision's ImageNet weight files (IMAGENET1K_V1), as named in its model zoo.
IMAGENET_FILES: dict[str, str] = {
    "resnet18": "resnet18-f37072fd.pth", "resnet34": "resnet34-b627a593.pth",
    "resnet50": "resnet50-0676ba61.pth", "densenet121": "densenet121-a639ec97.pth",
}
_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, c_in: int, c: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(c_in, c * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(out + (self.downsample(x) if self.downsample is not None else x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, c_in: int, c: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.conv3 = nn.Conv2d(c, c * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(c_in, c * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn3(self.conv3(self.relu(self.bn2(self.conv2(out)))))
        return self.relu(out + (self.downsample(x) if self.downsample is not None else x))


def _downsample(c_in: int, c_out: int, stride: int) -> nn.Sequential | None:
    if stride == 1 and c_in == c_out:
        return None
    return nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))


class ResNet(nn.Module):
    """torchvision's ResNet up to ``layer4`` (no pooling, no ``fc``)."""

    def __init__(self, block: type[BasicBlock | Bottleneck], layers: tuple[int, int, int, int]) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        c_in = 64
        for n, (c, blocks) in enumerate(zip((64, 128, 256, 512), layers), 1):
            stride = 1 if n == 1 else 2
            stage = [block(c_in, c, stride)] + [block(c * block.expansion, c) for _ in range(blocks - 1)]
            setattr(self, f"layer{n}", nn.Sequential(*stage))
            c_in = c * block.expansion
        self.out_channels = c_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class _DenseLayer(nn.Sequential):
    def __init__(self, c_in: int, growth: int, bn_size: int) -> None:
        super().__init__()
        self.add_module("norm1", nn.BatchNorm2d(c_in))
        self.add_module("relu1", nn.ReLU(inplace=True))
        self.add_module("conv1", nn.Conv2d(c_in, bn_size * growth, 1, bias=False))
        self.add_module("norm2", nn.BatchNorm2d(bn_size * growth))
        self.add_module("relu2", nn.ReLU(inplace=True))
        self.add_module("conv2", nn.Conv2d(bn_size * growth, growth, 3, padding=1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return torch.cat([x, super().forward(x)], 1)


class DenseNet(nn.Module):
    """torchvision's DenseNet ``features`` (ending in ``norm5`` + ReLU), optionally with one input channel."""

    def __init__(self, blocks: tuple[int, ...] = (6, 12, 24, 16), growth: int = 32, init: int = 64,
                 bn_size: int = 4, in_channels: int = 3) -> None:
        super().__init__()
        f = nn.Sequential()
        f.add_module("conv0", nn.Conv2d(in_channels, init, 7, 2, 3, bias=False))
        f.add_module("norm0", nn.BatchNorm2d(init))
        f.add_module("relu0", nn.ReLU(inplace=True))
        f.add_module("pool0", nn.MaxPool2d(3, 2, 1))
        c = init
        for i, n in enumerate(blocks, 1):
            block = nn.Sequential()
            for k in range(n):
                block.add_module(f"denselayer{k + 1}", _DenseLayer(c + k * growth, growth, bn_size))
            f.add_module(f"denseblock{i}", block)
            c += n * growth
            if i < len(blocks):
                trans = nn.Sequential()
                trans.add_module("norm", nn.BatchNorm2d(c))
                trans.add_module("relu", nn.ReLU(inplace=True))
                trans.add_module("conv", nn.Conv2d(c, c // 2, 1, bias=False))
                trans.add_module("pool", nn.AvgPool2d(2, 2))
                f.add_module(f"transition{i}", trans)
                c //= 2
        f.add_module("norm5", nn.BatchNorm2d(c))
        self.features = f
        self.out_channels = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.features(x))


def build_backbone(name: str) -> nn.Module:
    """A randomly initialised backbone with an ``out_channels`` attribute."""
    if name == "resnet18":
        return ResNet(BasicBlock, (2, 2, 2, 2))
    if name == "resnet34":
        return ResNet(BasicBlock, (3, 4, 6, 3))
    if name == "resnet50":
        return ResNet(Bottleneck, (3, 4, 6, 3))
    if name == "densenet121":
        return DenseNet()
    if name == "xrv-densenet121":
        return DenseNet(in_channels=1)
    raise ValueError(f"unknown backbone {name!r}; choose one of {BACKBONES}")


def prepare_input(name: str, images: torch.Tensor) -> torch.Tensor:
    """Grey ``[B, 1, H, W]`` in [0, 1] -> the backbone's input (ImageNet-normalised RGB, or xrv's range)."""
    if name.startswith("xrv-"):
        return images * 2048.0 - 1024.0
    mean = images.new_tensor(_IMAGENET_MEAN).view(1, 3, 1, 1)
    std = images.new_tensor(_IMAGENET_STD).view(1, 3, 1, 1)
    return (images.expand(-1, 3, -1, -1) - mean) / std


_OLD_DENSENET_KEY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|"
                               r"running_var|num_batches_tracked))$")


def _state_dict_from_file(path: Path) -> dict[str, torch.Tensor]:
    """The state dict in a weights file, loaded weights only (a pickled whole model is refused)."""
    obj = load_weights_only(path)
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: not a state dict (got {type(obj).__name__})")
    out = {}
    for k, v in obj.items():
        k = k.removeprefix("module.")
        m = _OLD_DENSENET_KEY.match(k)
        out[m.group(1) + m.group(2) if m else k] = v
    return out


def weights_file(name: str, weights: str) -> Path:
    """The file ``weights`` refers to: a path, or torchvision's ImageNet file in the torch hub cache."""
    if weights != "imagenet":
        return Path(weights).expanduser()
    if name not in IMAGENET_FILES:
        raise ValueError(f"{name} has no ImageNet weights; pass a weight file path or 'none'")
    return Path(torch.hub.get_dir()) / "checkpoints" / IMAGENET_FILES[name]


def load_backbone_weights(backbone: nn.Module, name: str, weights: str) -> dict[str, int]:
    """Load ``weights`` (``none`` | ``imagenet`` | a file) into ``backbone``; returns matched/skipped counts.

    Keys the backbone lacks (a classifier head) are ignored; a file that matches no key is an error.
    """
    if weights == "none":
        return {"loaded": 0, "missing": 0, "unused": 0}
    path = weights_file(name, weights)
    if not path.exists():
        hint = (f" Download https://download.pytorch.org/models/{IMAGENET_FILES[name]} to that path on a machine "
                "with internet access, or pass --encoder-weights none to train from random weights."
                if weights == "imagenet" else "")
        raise FileNotFoundError(f"{name} weights not found: {path}.{hint}")
    state = _state_dict_from_file(path)
    own = backbone.state_dict()
    matched = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not matched:
        raise ValueError(f"{path}: no parameter matches the {name} backbone (wrong architecture?)")
    backbone.load_state_dict(matched, strict=False)
    return {"loaded": len(matched), "missing": len(own) - len(matched), "unused": len(state) - len(matched)}
