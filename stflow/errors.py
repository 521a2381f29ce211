"""One exception type for bad input, so the CLI can print it without a traceback.

Every message names the file (or object), the problem, and the fix.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy is imported where arrays are checked: `stflow --help` needs none
    import numpy as np


class StflowError(ValueError):
    """Bad input or configuration, explained for a person to fix."""


def input_error(where: str | Path, problem: str, fix: str) -> StflowError:
    """Build a StflowError worded as ``<where>: <problem>. Fix: <fix>``."""
    return StflowError(f"{where}: {problem}. Fix: {fix}")


def check_finite(array: np.ndarray, name: str, where: str | Path = "input") -> None:
    """Refuse NaN or inf, naming how many and where the first one is."""
    import numpy as np

    array = np.asarray(array)
    if array.dtype.kind not in "fc":
        return
    bad = ~np.isfinite(array)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise input_error(
            where,
            f"{name} holds {int(bad.sum())} NaN/inf values (first at index {first})",
            f"clean or drop those entries of {name} before running stflow",
        )


def check_shape(array: np.ndarray, name: str, shape: tuple, where: str | Path = "input") -> None:
    """Check ``array.shape`` against ``shape``, where ``None`` matches any length."""
    import numpy as np

    actual = np.shape(array)
    ok = len(actual) == len(shape) and all(
        want is None or want == got for want, got in zip(shape, actual, strict=True)
    )
    if not ok:
        expected = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise input_error(where, f"{name} has shape {actual}, expected {expected}",
                          f"pass {name} with shape {expected}")
