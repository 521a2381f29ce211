"""Checksummed downloads and mirror copies into ``raw/``, and the manifest that closes it.

A file in ``raw/`` is either absent or verified: downloads go to a temporary name, are hashed
while they stream, and are renamed only when the SHA-256 matches. Mirror files are copied
(copy-on-write where the filesystem allows), never hard-linked, so editing a mirror later
cannot change ``raw/`` after its check. ``MANIFEST.tsv`` is written last, so its presence
tells Snakemake the folder is complete.
"""

from __future__ import annotations

import fcntl
import fnmatch
import hashlib
import logging
import os
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path

from tqdm import tqdm

from stflow.atomic import (
    SIDECAR,
    atomic_output,
    remove_stale_temporaries,
    sha256_file,
    temporary_sibling,
)
from stflow.errors import input_error

log = logging.getLogger(__name__)

MANIFEST = "MANIFEST.tsv"
DONE = "DOWNLOAD_DONE"  # the workflow's record of a finished download job, not a data file
FICLONE = 0x40049409  # linux/fs.h: _IOW(0x94, 9, int)
CHECKSUMS = "SHA256SUMS"


def read_checksums(path: str | Path) -> dict[str, str]:
    """Parse a ``sha256sum`` list (``HASH  ./rel/path``) into {relative path: hash}.

    The list's own entry (hashed while it was empty) is skipped.
    """
    path = Path(path)
    if not path.is_file():
        raise input_error(path, "checksum list is missing", "restore it from the stflow package "
                          "or the mirror's SHA256SUMS")
    sums: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or len(parts[0]) != 64:
            raise input_error(path, f"line {number} is not 'SHA256  path': {line!r}",
                              "write the list with `sha256sum`")
        rel = parts[1].strip().lstrip("*")
        rel = rel[2:] if rel.startswith("./") else rel
        if Path(rel).name in {CHECKSUMS, MANIFEST}:
            continue
        sums[rel] = parts[0].lower()
    return sums


def checksum_mismatch(path: str | Path, expected: str, actual: str, fix: str) -> Exception:
    """The one wording of a failed checksum: file, expected and actual hash, the fix."""
    return input_error(path, f"SHA-256 mismatch: expected {expected}, got {actual}", fix)


def verify_file(path: str | Path, expected: str, fix: str) -> None:
    """Hash ``path`` and refuse it when it differs from ``expected``."""
    path = Path(path)
    if not path.is_file():
        raise input_error(path, "file is missing", fix)
    actual = sha256_file(path)
    if actual != expected:
        raise checksum_mismatch(path, expected, actual, fix)


def fetch_url(url: str, dest: str | Path, expected: str, attempts: int = 3,
              timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` through a temporary name, verifying SHA-256 on the fly."""
    dest = Path(dest)
    if dest.is_file() and sha256_file(dest) == expected:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(dest)
    for attempt in range(1, attempts + 1):
        tmp = temporary_sibling(dest)
        digest = hashlib.sha256()
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
                while block := response.read(1 << 20):
                    digest.update(block)
                    out.write(block)
            actual = digest.hexdigest()
            if actual != expected:
                raise checksum_mismatch(url, expected, actual,
                                        "the published file changed or the transfer was "
                                        "corrupted; retry, or use --mirror-dir with a verified copy")
            os.replace(tmp, dest)
            return dest
        except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
            if attempt == attempts:
                raise input_error(url, f"download failed after {attempts} attempts ({err})",
                                  "check the network, or pass --mirror-dir DIR with a local copy "
                                  "of the files") from err
            log.warning("download of %s failed (%s), retrying", url, err)
            time.sleep(2 * attempt)
        finally:
            if tmp.exists():
                tmp.unlink()
    raise AssertionError("unreachable")


def copy_from_mirror(mirror: str | Path, rel: str, raw_dir: str | Path, expected: str) -> Path:
    """Place ``mirror/rel`` at ``raw_dir/rel`` after verifying it.

    The mirror file is hashed first, so a corrupted mirror is refused before anything lands in
    ``raw/``; the copy is hashed again, so ``raw/`` holds exactly the verified bytes. It is a
    copy (copy-on-write where the filesystem can), never a hard link: a mirror edited in place
    later must not change ``raw/`` behind its checksum.
    """
    source = Path(mirror) / rel
    dest = Path(raw_dir) / rel
    verify_file(source, expected, f"replace the mirror's copy of {rel} with the published file "
                "(or drop --mirror-dir to download it)")
    if dest.is_file() and not dest.is_symlink() and sha256_file(dest) == expected:
        return dest
    return copy_file(source, dest, expected)


def clone(source: Path, dest: Path) -> bool:
    """Copy-on-write clone of ``source`` at ``dest`` (FICLONE: btrfs, XFS, ...); False where
    the filesystem cannot, leaving no ``dest`` behind."""
    try:
        with open(source, "rb") as src, open(dest, "wb") as dst:
            fcntl.ioctl(dst.fileno(), FICLONE, src.fileno())
        return True
    except OSError:
        dest.unlink(missing_ok=True)
        return False


def copy_file(source: Path, dest: Path, expected: str | None = None) -> Path:
    """Copy ``source`` to ``dest`` (a copy-on-write clone where possible) through a temporary
    name, so ``dest`` only ever appears complete; re-hashed against ``expected`` if given."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(dest)
    tmp = temporary_sibling(dest)
    try:
        if not clone(source, tmp):
            shutil.copyfile(source, tmp)
        if expected is not None:
            verify_file(tmp, expected, "the copy was corrupted; check the disk and retry")
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()
    return dest


def check_mirror(mirror: str | Path, layout: str) -> Path:
    """The mirror folder, refused by name when it does not exist (not each file in turn)."""
    mirror = Path(mirror)
    if not mirror.is_dir():
        where = mirror if mirror.is_absolute() else f"{mirror} (from {Path.cwd()})"
        raise input_error(where, "mirror folder does not exist" if not mirror.exists()
                          else "mirror is not a folder",
                          f"pass the folder that holds the pre-downloaded files ({layout}); a "
                          "relative path is read from the working directory")
    return mirror


def place_files(checksums: dict[str, str], raw_dir: str | Path, mirror: str | Path | None,
                url_for: Callable[[str], str] | None = None,
                layout: str = "laid out as the published source") -> list[Path]:
    """Place every listed file in ``raw_dir``, from ``mirror`` or by ``url_for(rel)``."""
    if mirror is None and url_for is None:
        raise input_error(raw_dir, "no mirror and no download address",
                          "pass --mirror-dir DIR or use a source that can download")
    if mirror is not None:
        check_mirror(mirror, layout)
    placed = []
    for rel, expected in tqdm(sorted(checksums.items()), desc="download", unit="file"):
        if mirror is not None:
            placed.append(copy_from_mirror(mirror, rel, raw_dir, expected))
        else:
            placed.append(fetch_url(url_for(rel), Path(raw_dir) / rel, expected))
    return placed


def copy_tree(mirror: Path, raw_dir: Path, patterns: list[str] | None,
              layout: str = "laid out as the published source") -> Path:
    """Copy the mirror's files matching ``patterns`` into ``raw_dir`` (copy-on-write where the
    filesystem can; files already there with the same bytes are kept)."""
    check_mirror(mirror, layout)
    placed = 0
    for path in sorted(mirror.rglob("*")):
        rel = path.relative_to(mirror).as_posix()
        if not path.is_file() or rel.startswith(".cache/"):
            continue
        if patterns and not any(fnmatch.fnmatch(rel, p) for p in patterns):
            continue
        dest = raw_dir / rel
        if not (dest.is_file() and not dest.is_symlink() and _same_file_content(path, dest)):
            copy_file(path, dest)
        placed += 1
    if not placed:
        raise input_error(mirror, f"no files match {patterns}",
                          "check the sample ids / task name against the mirror's contents")
    return raw_dir


def _same_file_content(a: Path, b: Path) -> bool:
    """Equal size and bytes (a rerun need not copy large images again)."""
    if a.stat().st_size != b.stat().st_size:
        return False
    return sha256_file(a) == sha256_file(b)


def iter_files(raw_dir: Path) -> Iterable[Path]:
    """Every finished file under ``raw_dir`` (temporaries, hub cache, manifest and the
    workflow's done-record, and the checksum records stflow writes beside what it wrote,
    left out: the manifest is raw/'s own checksum record)."""
    records = {MANIFEST, DONE}
    for path in sorted(raw_dir.rglob("*")):
        rel = path.relative_to(raw_dir)
        if (path.is_file() and path.name not in records and ".tmp-" not in path.name
                and not path.name.endswith(SIDECAR) and rel.parts[0] != ".cache"):
            yield path


def write_manifest(raw_dir: str | Path) -> Path:
    """Write ``MANIFEST.tsv`` (path, bytes, sha256 of every file) last, atomically."""
    raw_dir = Path(raw_dir)
    files = list(iter_files(raw_dir))
    if not files:
        raise input_error(raw_dir, "holds no files", "download the source into it first")
    lines = ["path\tbytes\tsha256"]
    for path in tqdm(files, desc="manifest", unit="file"):
        lines.append(f"{path.relative_to(raw_dir).as_posix()}\t{path.stat().st_size}\t"
                     f"{sha256_file(path)}")
    out = raw_dir / MANIFEST
    with atomic_output(out) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return out
