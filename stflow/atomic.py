"""Atomic outputs: write to a temporary name beside the target, then rename.

An interrupted stage therefore never leaves a file (or zarr folder) that looks finished.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from stflow.errors import input_error


def temporary_sibling(path: str | Path) -> Path:
    """A unique temporary path in the same folder, so the final rename is atomic."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")


def remove_stale_temporaries(path: str | Path) -> None:
    """Drop the temporaries of ``path`` left by a killed writer (kill -9, power cut), which
    had no chance to remove them; one output has one writer at a time."""
    path = Path(path)
    for stale in path.parent.glob(f".{path.name}.tmp-*"):
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success move it onto ``path``.

    Works for files and for folders (zarr stores). On error the temporary is removed, and
    those of an earlier writer that was killed outright are removed first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = temporary_sibling(path)
    try:
        yield tmp
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def write_json(data: Any, path: str | Path) -> Path:
    """Write ``data`` as indented JSON, atomically."""
    path = Path(path)
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n")
    return path


def read_json(path: str | Path, what: str, fix: str) -> Any:
    """Parsed JSON of ``path`` (a ``what``); missing or malformed is a StflowError saying ``fix``."""
    path = Path(path)
    if not path.exists():
        raise input_error(path, f"{what} does not exist", fix)
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise input_error(path, f"not valid JSON ({err})", fix) from err
