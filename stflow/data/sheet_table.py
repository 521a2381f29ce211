"""What the sample sheet and the slide sheet share: a tab-separated table read once, every
problem of it collected (line, row name, column, what, fix) and refused at once.

Only the standard library is imported (the Snakefile reads the sheets while it builds the DAG).
"""

from __future__ import annotations

import csv
import functools
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from stflow.errors import StflowError

NAME = re.compile(r"^[A-Za-z0-9_.-]+$")  # a row's name becomes a file name
EXTRA = "\0extra"  # the cells of a row beyond the header's columns
Row = TypeVar("Row")


@dataclass(frozen=True)
class SheetKind:
    """Which sheet: how errors name it, its rows, the config key that gives it and its
    format (said in every fix that asks for a rewrite)."""

    noun: str
    row: str
    config_key: str
    format: str


@dataclass(frozen=True)
class CellProblem:
    """One bad cell: where, what, and how to fix it."""

    line: int
    name: str
    column: str
    problem: str
    fix: str
    row: str = "sample"  # what a row of this sheet is

    def __str__(self) -> str:
        if not self.line:
            return f"{self.problem}. Fix: {self.fix}"
        where = f"line {self.line}" + (f" ({self.row} {self.name})" if self.name else "")
        return f"{where}, column {self.column}: {self.problem}. Fix: {self.fix}"


class SheetError(StflowError):
    """A sheet that does not read, with every problem it has (the config check lists them
    beside the config's own)."""

    def __init__(self, path: Path, problems: list[CellProblem], kind: SheetKind) -> None:
        self.problems = problems
        listed = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{path}: {len(problems)} problem(s) in the {kind.noun}:\n{listed}\n"
                         f"Fix: correct each listed cell ({kind.format})")


def cell_path(cell: str, base: Path) -> Path:
    """A path cell: ``~`` expanded, relative paths read from the sheet's folder ``base``."""
    path = Path(os.path.expanduser(cell))  # '~nobody' stays as written: Path's would raise
    return path if path.is_absolute() else (base / path)


def positive_number(cell: str) -> float | None:
    """A finite number > 0 (µm/px, say), None when the cell is not one."""
    try:
        value = float(cell)
    except ValueError:
        return None
    return value if math.isfinite(value) and value > 0 else None


def _text(path: Path, kind: SheetKind) -> str:
    """The sheet as text: UTF-8 (a byte-order mark, as Excel writes one, is dropped); a
    sheet saved in another encoding is refused here rather than as a decoder's traceback."""
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise SheetError(path, [CellProblem(0, "", "-", f"{kind.noun} is not UTF-8 text (byte "
                                        f"{err.start} is {err.object[err.start:err.start + 1]!r})",
                                        "save it as UTF-8 tab-separated text")], kind) from None


def read_table(path: Path, kind: SheetKind
               ) -> tuple[int, list[str], list[tuple[int, dict[str, str]]]]:
    """The header's line number, the header and (line number, row) pairs; blank lines and
    ``#`` comments skipped, quotes kept as they are (plain TSV)."""
    if not path.is_file():
        raise SheetError(path, [CellProblem(0, "", "-", f"{kind.noun} does not exist"
                                        if not path.exists() else f"{kind.noun} is not a file",
                                        f"give {kind.config_key} as a TSV file (a relative "
                                        "path is read from the working directory)")], kind)
    lines = [(n, line) for n, line in enumerate(_text(path, kind).splitlines(), start=1)
             if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        raise SheetError(path, [CellProblem(0, "", "-", f"{kind.noun} is empty",
                                        f"write a header and rows: {kind.format}")], kind)
    reader = csv.reader((line for _, line in lines), delimiter="\t", quoting=csv.QUOTE_NONE)
    header = [h.strip() for h in next(reader)]
    rows = []
    for (number, _), cells in zip(lines[1:], reader, strict=True):
        cells = [c.strip() for c in cells]
        rows.append((number, dict(zip(header, cells + [""] * (len(header) - len(cells)),
                                      strict=False))))
        if len(cells) > len(header):
            rows[-1][1][EXTRA] = "\t".join(cells[len(header):])
    return lines[0][0], header, rows


def name_problems(number: int, row: dict[str, str], kind: SheetKind, seen: dict[str, int]
                  ) -> list[tuple[str, str, str]]:
    """Problems of a row's cell count and name (column ``kind.row``; recorded in ``seen``
    when new), as (column, problem, fix)."""
    column, out = kind.row, []
    name = row.get(column, "")
    if EXTRA in row:
        out.append(("-", f"more cells than header columns ({row[EXTRA]!r})",
                    "use one tab between cells and name every column in the header"))
    if not name:
        out.append((column, "empty", f"give the {column} a name"))
    elif not NAME.match(name):
        out.append((column, f"{name!r} holds characters other than letters, digits, _ . -",
                    "rename it (it becomes a file name)"))
    elif name in seen:
        out.append((column, f"{name!r} already on line {seen[name]}",
                    f"give each {column} its own name"))
    else:
        seen[name] = number
    return out


def duplicate_columns(line: int, header: list[str]) -> list[CellProblem]:
    """A column named twice: which of the two cells is meant is unknowable."""
    return [CellProblem(line, "", c, "column appears twice", "keep one")
            for c in sorted({c for c in header if header.count(c) > 1})]


def read_once(path: str | Path, read: Callable[[Path], list[Row]]) -> list[Row]:
    """``read(path)``, once per version of the file (its mtime and size): the DAG asks for
    a sheet's rows many times."""
    path = Path(path)
    try:
        stat = path.stat()
    except OSError:
        return read(path)  # refused by ``read``, naming the path as given
    return list(_cached(read, str(path.resolve()), stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=16)
def _cached(read: Callable[[Path], list[Row]], path: str, mtime_ns: int, size: int
            ) -> tuple[Row, ...]:
    return tuple(read(Path(path)))
