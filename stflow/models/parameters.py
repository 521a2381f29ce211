"""Model parameters declared once: each model's settings dataclass carries, per field, its
type (the annotation), default, allowed choices or range, and help; every table of
parameters (the config check, the search spaces, the registry's conversion, ``stflow
models NAME``) is derived from those fields by :func:`parameters_of`.

Standard library only, so the workflow checks a config and ``stflow --help`` runs without
torch or numpy.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from dataclasses import dataclass
from typing import Any, ClassVar

from stflow.config import spelled
from stflow.errors import StflowError

_DECLARED = "stflow.param"  # the field-metadata key of a declaration


@dataclass(frozen=True)
class Param:
    """One keyword parameter: its default, the types it takes, and its allowed values.

    ``choices`` are the strings a parameter takes (beside numbers where ``types`` has them);
    ``low``/``high`` bound numbers, inclusively unless ``low_open``/``high_open``.
    """

    default: Any
    types: tuple[type, ...]
    choices: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    help: str = ""

    @property
    def kind(self) -> str:
        """The types as a person reads them: ``int``, ``float or null``, ..."""
        return " or ".join("null" if t is type(None) else t.__name__ for t in self.types)

    @property
    def allowed(self) -> str:
        """The allowed values in words, for a Fix."""
        parts = [f"one of {list(self.choices)}"] if self.choices else []
        if self.low is not None or self.high is not None:
            low = "" if self.low is None else f"{self.low} {'<' if self.low_open else '<='} "
            high = "" if self.high is None else f" {'<' if self.high_open else '<='} {self.high}"
            parts.append(f"a {'number' if float in self.types else 'whole number'} "
                         f"{low}x{high}")
        return " or ".join(parts) or f"a value of type {self.kind}"


def setting(default: Any, help: str, *, choices: tuple[str, ...] = (), low: float | None = None,
            high: float | None = None, low_open: bool = False, high_open: bool = False) -> Any:
    """A settings field: its default and what it allows (its type is the annotation)."""
    declared = {"choices": choices, "low": low, "high": high, "low_open": low_open,
                "high_open": high_open, "help": help}
    return dataclasses.field(default=default, metadata={_DECLARED: declared})


def _types(hint: Any) -> tuple[type, ...]:
    """``int | None`` → (int, NoneType): the types an annotation admits, in its order."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return tuple(t for arg in typing.get_args(hint) for t in _types(arg))
    return (hint,)


DEVICE = Param("auto", (str,), help="where to run: auto, cpu, cuda or cuda:N (the workflow "
               "sets it from `device`; not a model setting, so never saved)")


@functools.cache
def parameters_of(settings: type) -> dict[str, Param]:
    """The declared fields of a settings dataclass as :class:`Param`s (``seed`` included),
    then ``device`` where the model runs on one."""
    hints = typing.get_type_hints(settings)
    table = {f.name: Param(f.default, _types(hints[f.name]), **f.metadata[_DECLARED])
             for f in dataclasses.fields(settings)}
    return {**table, "device": DEVICE} if settings.runs_on_device else table


@dataclass(frozen=True)
class Settings:
    """The base of every model's settings: each value is converted to its field's type and
    checked against its declaration when the settings are made, so an estimator never holds
    a value the config check would refuse."""

    runs_on_device: ClassVar[bool] = False  # its estimator takes `device` beside the settings

    def __post_init__(self) -> None:
        for name, declared in parameters_of(type(self)).items():
            if name == "device":
                continue
            value, problem = check_value(name, getattr(self, name), declared)
            if problem:
                raise StflowError(f"{type(self).__name__}: {name}={value!r}: {problem[0]}. "
                                  f"Fix: {problem[1]}")
            object.__setattr__(self, name, value)

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Parameter name → default, ``seed`` included."""
        return {f.name: f.default for f in dataclasses.fields(cls)}

    def as_dict(self) -> dict[str, Any]:
        """The settings as a trained model's config saves them."""
        return dataclasses.asdict(self)


def coerce(key: str, value: Any, param: Param) -> Any:
    """``value`` as one of ``param``'s types, or ValueError naming ``key``.

    Snakemake's ``--config`` hands nested values over as strings ("100"), so a string that
    spells a value of the right type is converted; an int is taken where a float is wanted.
    """
    kinds = param.types
    if value is None and type(None) in kinds:
        return None
    if isinstance(value, bool):
        if bool in kinds:
            return value
    elif isinstance(value, int):
        if int in kinds:
            return value
        if float in kinds:
            return float(value)
    elif isinstance(value, float):
        if float in kinds:
            return value
    elif isinstance(value, str):
        if str in kinds and (not param.choices or value in param.choices):
            return value
        for kind in (t for t in kinds if t is not str):
            try:
                return spelled(value, kind)
            except ValueError:
                continue
        if str in kinds:
            return value  # a string the choices refuse, by name (see problems)
    raise ValueError(f"parameter {key}={value!r} should be {param.kind}. Fix: give {key} "
                     f"as a {param.kind} (default {param.default!r})")


def value_problem(value: Any, param: Param) -> str | None:
    """Why a coerced ``value`` is not allowed (a choice or range), or None."""
    if isinstance(value, str) and str in param.types:
        if param.choices and value not in param.choices:
            return f"'{value}' is not one of {list(param.choices)}"
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if param.low is not None and (value < param.low or (param.low_open and value == param.low)):
        return f"{value} is {'<=' if param.low_open else '<'} {param.low}"
    if param.high is not None and (value > param.high
                                   or (param.high_open and value == param.high)):
        return f"{value} is {'>=' if param.high_open else '>'} {param.high}"
    return None


def check_value(key: str, value: Any, param: Param) -> tuple[Any, tuple[str, str] | None]:
    """(the coerced value, None), or (``value``, (the problem, its fix)) where it is refused."""
    try:
        value = coerce(key, value, param)
    except ValueError:
        return value, (f"{value!r} should be {param.kind}",
                       f"give {key} as a {param.kind} (default {param.default!r})")
    problem = value_problem(value, param)
    if problem:
        return value, (problem, f"use {param.allowed} (default {param.default!r})")
    return value, None

