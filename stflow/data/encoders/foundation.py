"""Pathology foundation models: timm architectures with weights from the hub or a local file.

Each builder takes an optional local path (a checkpoint file, or a folder holding
``model.safetensors`` / ``pytorch_model.bin`` such as a hub snapshot) and otherwise fetches
the published weights. Architectures are spelled out here, so a local file needs no network.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from stflow.data.encoders.weights import check_local, hub_file, load_into, load_state_dict, url_file

HUB_FILES = ("model.safetensors", "pytorch_model.bin")


def _weights_file(encoder: str, weights: Path | None, repo: str) -> Path:
    """The checkpoint to read: the local override (file or folder) or the hub's file."""
    if weights is None:
        return hub_file(encoder, repo, HUB_FILES)
    path = check_local(encoder, weights)
    if path.is_dir():
        for name in HUB_FILES:
            if (path / name).is_file():
                return path / name
        raise missing_weights_in_folder(encoder, path)
    return path


def missing_weights_in_folder(encoder: str, folder: Path) -> Exception:
    from stflow.errors import input_error

    return input_error(folder, f"no {' or '.join(HUB_FILES)} in this folder for '{encoder}'",
                       "point --weights at the checkpoint file itself")


def _timm_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Resolve the string names of timm layers (kept as strings so the table stays data)."""
    import timm

    resolved = dict(kwargs)
    if resolved.get("mlp_layer") == "SwiGLUPacked":
        resolved["mlp_layer"] = timm.layers.SwiGLUPacked
    if resolved.get("act_layer") == "SiLU":
        resolved["act_layer"] = nn.SiLU
    return resolved


def timm_builder(encoder: str, repo: str, arch: str, kwargs: dict[str, Any],
                 head: Callable[[nn.Module], nn.Module] | None = None
                 ) -> Callable[[Path | None], tuple[nn.Module, Path]]:
    """A builder for a timm architecture whose weights are published in hub ``repo``."""

    def build(weights: Path | None) -> tuple[nn.Module, Path]:
        import timm

        path = _weights_file(encoder, weights, repo)
        model = timm.create_model(arch, pretrained=False, **_timm_kwargs(kwargs))
        load_into(model, load_state_dict(path), encoder, path)
        return (head(model) if head else model), path

    return build


class ClassAndMeanPatchTokens(nn.Module):
    """Virchow2's embedding: class token ‖ mean of the patch tokens (registers skipped)."""

    def __init__(self, vit: nn.Module) -> None:
        super().__init__()
        self.vit = vit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.vit(x)
        prefix = self.vit.num_prefix_tokens  # class token + register tokens
        return torch.cat([tokens[:, 0], tokens[:, prefix:].mean(1)], dim=-1)


def build_ciga(weights: Path | None, *, url: str) -> tuple[nn.Module, Path]:
    """Ciga et al. SimCLR ResNet-18 (Lightning checkpoint at ``url``; ``model.resnet.``
    prefix)."""
    from torchvision.models import resnet18

    path = url_file("ciga", url) if weights is None else check_local("ciga", weights)
    state = load_state_dict(path)
    prefix = "model.resnet."
    state = {k.removeprefix(prefix): v for k, v in state.items()
             if k.startswith(prefix) and not k.startswith(prefix + "fc.")}
    model = resnet18(weights=None)
    model.fc = nn.Identity()
    load_into(model, state, "ciga", path)
    return model, path


def build_timm_any(name: str) -> Callable[[Path | None], tuple[nn.Module, Path]]:
    """``timm:<name>``: any timm model, classifier removed, weights from its hub entry or a file."""
    encoder = f"timm:{name}"

    def build(weights: Path | None) -> tuple[nn.Module, Path]:
        import timm

        from stflow.errors import input_error

        try:
            model = timm.create_model(name, pretrained=False, num_classes=0)
        except RuntimeError as err:
            raise input_error(encoder, f"timm has no model '{name}'",
                              "use a name from timm.list_models()") from err
        if weights is None:
            repo = model.pretrained_cfg.get("hf_hub_id")
            if not repo:
                from stflow.data.encoders.weights import missing_weights

                raise missing_weights(encoder, "timm", "no hub entry for this model")
        path = _weights_file(encoder, weights, repo if weights is None else "")
        own = model.state_dict()
        state = {k: v for k, v in load_state_dict(path).items() if k in own}  # drop the head
        load_into(model, state, encoder, path)
        return model, path

    return build
