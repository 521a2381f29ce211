"""Atomic outputs: write to a temporary name beside the target, then rename.

An interrupted stage therefore never leaves a file (or zarr folder) that looks finished.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from stflow.errors import DiskFullError, input_error


def temporary_sibling(path: str | Path) -> Path:
    """A unique temporary path in the same folder, so the final rename is atomic."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")


TEMPORARY = re.compile(r"^\.(.+)\.tmp-[0-9a-f]{8}$")


def final_path(path: Path) -> Path:
    """``path`` as it will be named once written: a file written inside a temporary folder
    (a model folder, a zarr store) is named after the folder's final name."""
    return Path(*(TEMPORARY.sub(r"\1", part) for part in path.parts))


def remove_stale_temporaries(path: str | Path) -> None:
    """Drop the temporaries of ``path`` left by a killed writer (kill -9, power cut), which
    had no chance to remove them; one output has one writer at a time."""
    path = Path(path)
    for stale in path.parent.glob(f".{path.name}.tmp-*"):
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
DISK_FULL_WORDS = ("No space left on device", "Disk quota exceeded")
NEARLY_FULL = 1 << 20  # a write failing with less free than this failed for want of space


def human_bytes(n: float) -> str:
    """``n`` bytes as a person reads them (``1.5 GiB``)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def free_bytes(path: Path) -> int:
    """Free bytes of the filesystem holding ``path`` (its nearest existing ancestor)."""
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free


def size_on_disk(path: Path) -> int:
    """Bytes written to a file, or to every file of a folder; 0 where nothing is there."""
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size if path.exists() else 0


def is_disk_full(err: BaseException, folder: Path) -> bool:
    """Whether ``err`` is a full filesystem or quota: ENOSPC/EDQUOT, also as wrapped by h5py,
    zarr or anndata; or (torch says only "file write failed") a write failing on a
    filesystem with less than 1 MiB left."""
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in DISK_FULL or any(
                words in str(seen) for words in DISK_FULL_WORDS):
            return True
        seen = seen.__cause__ or seen.__context__
    return isinstance(err, OSError | RuntimeError) and free_bytes(folder) < NEARLY_FULL


def disk_full_error(path: Path, needs: str) -> DiskFullError:
    """The one line a full disk gives: the file, the free space, what it needs, the fix."""
    free = human_bytes(free_bytes(path.parent))
    return DiskFullError(f"{path}: no space left on its filesystem ({free} free; the output "
                         f"needs {needs}). Fix: free space there (or move results/ to a larger "
                         "filesystem) and rerun the same command: finished outputs are kept, "
                         "this one's temporary file was removed")


def check_space(path: Path, needs: int) -> None:
    """Refuse up front an output of known size that its filesystem cannot hold."""
    if needs > (free := free_bytes(path.parent)):
        raise DiskFullError(f"{final_path(path)}: needs up to {human_bytes(needs)} but its "
                            f"filesystem has {human_bytes(free)} free. Fix: free space there "
                            "(or move results/ to a larger filesystem) and rerun the same "
                            "command")


def remove_temporary(tmp: Path) -> None:
    """Remove a writer's temporary file or folder, if it is there."""
    if tmp.is_dir() and not tmp.is_symlink():
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.unlink(missing_ok=True)


def release_temporary(tmp: Path) -> None:
    """Empty, then remove, a temporary that filled the disk. Emptied first because a library
    may still hold it open (h5py, whose close failed for want of space): removing alone would
    free nothing, and HDF5 would crash the interpreter flushing it at exit."""
    files = [p for p in tmp.rglob("*") if p.is_file()] if tmp.is_dir() else [tmp]
    for file in files:
        with contextlib.suppress(OSError):
            os.truncate(file, 0)
    remove_temporary(tmp)


@contextlib.contextmanager
def atomic_output(path: str | Path, *, needs: int | None = None) -> Iterator[Path]:
    """Yield a temporary path to write; on success move it onto ``path``.

    Works for files and for folders (zarr stores); the content's SHA-256 is recorded beside
    it (``{name}.sha256``) for ``stflow verify``. On error the temporary is removed, and
    those of an earlier writer that was killed outright are removed first. A full disk
    (or quota) becomes one StflowError naming ``path``; ``needs`` (bytes, where the size is
    known) refuses up front an output the filesystem cannot hold.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    if needs is not None:
        check_space(path, needs)
    tmp = temporary_sibling(path)
    try:
        yield tmp
        inside_another = final_path(path) != path  # whose folder records it when renamed
        lines = None if inside_another else checksum_lines(tmp, path.name)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        os.replace(tmp, path)
        if lines is not None:
            write_sidecar(path, lines)
    except (OSError, RuntimeError) as err:
        if not is_disk_full(err, path.parent):
            raise
        written = size_on_disk(tmp)
        release_temporary(tmp)
        wanted = f"up to {human_bytes(needs)}" if needs else \
            f"more than the {human_bytes(written)} written before it failed"
        raise disk_full_error(final_path(path), wanted) from None
    finally:
        remove_temporary(tmp)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


SIDECAR = ".sha256"


def sidecar_of(path: str | Path) -> Path:
    """Where an artifact's checksum is recorded: ``{name}.sha256`` beside it. Beside, not in
    one manifest per folder: each output has one writer, so parallel jobs never share a
    file; the paths in it are relative, so it stays true wherever the folder is copied."""
    path = Path(path)
    return path.with_name(path.name + SIDECAR)


def checksum_lines(path: Path, name: str) -> str:
    """``sha256sum`` lines of a file, or of every file of a folder (``name/relative``), so
    ``sha256sum -c {name}.sha256`` run in its folder checks it too."""
    if not path.is_dir():
        return f"{sha256_file(path)}  {name}\n"
    files = sorted(p for p in path.rglob("*") if p.is_file())
    return "".join(f"{sha256_file(p)}  {name}/{p.relative_to(path).as_posix()}\n"
                   for p in files)


def write_sidecar(path: Path, lines: str) -> None:
    """Write the checksum record of ``path``, itself through a temporary name."""
    sidecar = sidecar_of(path)
    remove_stale_temporaries(sidecar)
    tmp = temporary_sibling(sidecar)
    try:
        tmp.write_text(lines)
        os.replace(tmp, sidecar)
    finally:
        tmp.unlink(missing_ok=True)


def write_h5ad(adata: Any, path: str | Path) -> Path:
    """``adata`` as an h5ad at ``path``, atomically, as anndata writes it but into an HDF5
    file without a chunk cache: on a full disk a write then fails once, cleanly, where
    anndata's own file flushes a cache the disk cannot take and leaves HDF5 broken for the
    rest of the process."""
    import h5py
    from anndata.io import write_elem

    adata.strings_to_categoricals()  # as AnnData.write_h5ad does
    with atomic_output(path) as tmp, h5py.File(tmp, "w", rdcc_nbytes=0) as file:
        write_elem(file, "/", adata)
    return Path(path)


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
    except RecursionError:  # brackets nested past the decoder's depth: not a file we wrote
        raise input_error(path, "not valid JSON (nested too deeply)", fix) from None
    except OSError as err:  # a folder by that name, or no permission to read it
        raise input_error(path, f"cannot be read ({err.strerror})", fix) from err
