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

    exit_status = 2  # of the `stflow` command and of a workflow job that stops on it


class DiskFullError(StflowError):
    """No space left (or a quota hit) where an output is written: not the input's fault, so
    the command exits 1, not 2, and a script can tell "free space and rerun" from "fix the
    input"."""

    exit_status = 1


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


_ANNOTATED = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,),
              "None": (type(None),)}


def _accepted(annotation: str) -> tuple[type, ...] | None:
    """The types a field annotation (a string, as ``from __future__ import annotations``
    leaves it) admits: int, float, str, bool, None and tuple[...] unions; None where the
    annotation is another kind, which is then not checked."""
    kinds: list[type] = []
    for part in annotation.split("|"):
        part = part.strip()
        if part.startswith("tuple["):
            kinds.append(tuple)
        elif part in _ANNOTATED:
            kinds.extend(_ANNOTATED[part])
        else:
            return None
    return tuple(kinds)


def check_field_types(settings: object, where: str) -> None:
    """Refuse a dataclass of settings whose field holds a value of another type than its
    annotation says, as a string that spells a number would (``--config`` values before
    they are typed): the project's error naming the setting and the fix, not a TypeError
    from deep inside numpy."""
    import dataclasses

    for field in dataclasses.fields(settings):  # type: ignore[arg-type]
        value = getattr(settings, field.name)
        kinds = _accepted(str(field.type))
        if kinds is None or isinstance(value, kinds) and not (
                isinstance(value, bool) and bool not in kinds):
            continue
        raise input_error(where, f"setting {field.name} is {value!r} "
                          f"({type(value).__name__}), not {field.type}",
                          f"give {field.name} as a value of type {field.type} (a setting "
                          "from a config is read as the schema types it: check the schema)")


def require_number(value: object, name: str, where: str | Path, fix: str) -> float:
    """``value`` as a float, or the project's error naming the setting ``name`` and ``fix``
    when it is not a real number (a string, a bool, None)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise input_error(where, f"{name} is {value!r} ({type(value).__name__}), not a "
                          "number", fix)
    return float(value)
