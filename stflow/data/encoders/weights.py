"""Where encoder weights come from: local files, the Hugging Face hub, or a URL.

Every loader returns the file it read so its SHA-256 can be recorded with the features.
Local checkpoints are read with ``weights_only=True`` (or as safetensors): no pickled code runs.
"""

from __future__ import annotations

import argparse
import hashlib
import os
from pathlib import Path

import torch

from stflow.atomic import atomic_output, sha256_file
from stflow.errors import StflowError, input_error


def weights_sha256(path: Path) -> str:
    """SHA-256 of a weights file, cached by its path, size and modification time.

    It is recorded with every features store; a multi-GB foundation-model checkpoint is
    hashed once, not once per embedded sample. (Downloads are still verified in full.)
    """
    stat = path.stat()
    key = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    cache_root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    cached = cache_root / "stflow" / "sha256" / hashlib.sha256(key.encode()).hexdigest()
    if cached.is_file():
        return cached.read_text().strip()
    digest = sha256_file(path)
    try:
        with atomic_output(cached) as tmp:
            tmp.write_text(digest)
    except OSError:  # a read-only home: hash again next time
        pass
    return digest


def missing_weights(encoder: str, source: str, reason: str) -> StflowError:
    """The error for weights that cannot be had offline: says how to give a local path."""
    return StflowError(
        f"encoder '{encoder}': cannot load weights from {source} ({reason}). Fix: download the "
        f"checkpoint where there is network access (gated hub models need an HF_TOKEN with "
        f"access granted) and pass it with `--weights /path/to/pytorch_model.bin` or "
        f"`encoder_weights: {{{encoder}: /path/to/pytorch_model.bin}}` in the config")


def check_local(encoder: str, weights: str | Path) -> Path:
    """A local weights path that exists."""
    path = Path(os.path.expanduser(weights))  # '~nobody' stays as written
    if not path.exists():
        raise input_error(path, f"weights for encoder '{encoder}' not found",
                          "give the path of the downloaded checkpoint (file or hub snapshot "
                          "folder) with --weights")
    return path


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file (.safetensors, or a torch file loaded weights-only)."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        # Lightning checkpoints keep their hyper-parameters as an argparse.Namespace
        with torch.serialization.safe_globals([argparse.Namespace]):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # corrupt or foreign files raise many different types
        raise input_error(path, f"cannot read this checkpoint ({type(err).__name__}: {err})",
                          "check the file is a complete PyTorch or safetensors checkpoint") from err
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise input_error(path, "the checkpoint holds no state dict",
                          "pass a checkpoint saved with torch.save(model.state_dict())")
    return state


def load_into(model: torch.nn.Module, state: dict[str, torch.Tensor], encoder: str,
              path: Path) -> None:
    """Strictly load ``state`` into ``model``, naming the encoder and file when keys differ."""
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise input_error(path, f"these weights do not fit encoder '{encoder}' "
                          f"({str(err).splitlines()[0]} ...)",
                          f"pass the checkpoint published for '{encoder}'") from err


def hub_file(encoder: str, repo: str, filenames: tuple[str, ...]) -> Path:
    """Download (or find in the cache) the first of ``filenames`` in hub ``repo``.

    The token comes from HF_TOKEN (read by huggingface_hub itself; never logged here).
    """
    from huggingface_hub import hf_hub_download

    reasons = []
    for name in filenames:
        try:
            return Path(hf_hub_download(repo, name))
        except Exception as err:  # offline, gated, missing file: all mean "not available"
            reasons.append(f"{name}: {type(err).__name__}")
    raise missing_weights(encoder, f"the Hugging Face hub ({repo})", "; ".join(reasons))


def url_file(encoder: str, url: str, sha256: str | None = None) -> Path:
    """Download ``url`` into the torch hub cache once (checking ``sha256`` when pinned)."""

    cache = Path(torch.hub.get_dir()) / "checkpoints"
    path = cache / url.rsplit("/", 1)[-1]
    if not path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        try:
            torch.hub.download_url_to_file(url, str(path), progress=os.isatty(2))
        except Exception as err:  # no network, HTTP errors
            raise missing_weights(encoder, url, f"{type(err).__name__}: {err}") from err
    if sha256 is not None and sha256_file(path) != sha256:
        raise input_error(path, f"checksum differs from the published one for '{encoder}'",
                          "delete the file so it is downloaded again")
    return path
