"""The encoder registry: name → builder, input transform, feature size, precision, weights.

The encoders are data in :data:`stflow.catalogue.ENCODER_FACTS` (light: the schema and the
rules read it); this module only maps each entry's builder kind to the code that builds it.
Adding an encoder is one ``EncoderFacts`` entry there. ``timm:<name>`` reaches any timm model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from stflow.catalogue import ENCODER_FACTS, IMAGENET_MEAN, IMAGENET_STD, TIMM_PREFIX, EncoderFacts
from stflow.data.encoders.efficientnet import build_efficientnet_lite0
from stflow.data.encoders.foundation import (
    ClassAndMeanPatchTokens,
    build_ciga,
    build_timm_any,
    timm_builder,
)
from stflow.data.encoders.weights import weights_sha256
from stflow.errors import StflowError

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


# the heads a timm network may be wrapped in (EncoderFacts.head)
HEADS: dict[str, Callable[[nn.Module], nn.Module]] = {
    "class_and_mean_patch_tokens": ClassAndMeanPatchTokens}

# builder kind (EncoderFacts.builder) → the builder of that entry
BUILDERS: dict[str, Callable[[EncoderFacts], Builder]] = {
    "efficientnet_lite0": lambda facts: build_efficientnet_lite0,
    "ciga": lambda facts: lambda weights: build_ciga(weights, url=facts.url),
    "timm": lambda facts: timm_builder(facts.name, facts.repo, facts.arch,
                                       dict(facts.arch_kwargs),
                                       head=HEADS[facts.head] if facts.head else None),
}


def spec_of(facts: EncoderFacts) -> EncoderSpec:
    """The registry entry of one catalogue entry."""
    return EncoderSpec(facts.name, BUILDERS[facts.builder](facts), facts.feature_dim,
                       facts.source, input_size=facts.input_size, mean=facts.mean,
                       std=facts.std, precision=facts.precision, summary=facts.summary)


ENCODERS: dict[str, EncoderSpec] = {name: spec_of(facts) for name, facts in ENCODER_FACTS.items()}


def get_encoder_spec(name: str) -> EncoderSpec:
    """The registry entry for ``name`` (or a ``timm:<model>`` entry made on the fly)."""
    if name.startswith(TIMM_PREFIX) and len(name) > len(TIMM_PREFIX):
        model = name[len(TIMM_PREFIX):]
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
