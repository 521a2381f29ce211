"""Model parameters and search spaces checked against the catalogue, without torch.

The workflow runs these on ``model_params`` and ``search`` before any job, so a misspelt
parameter or ``lr: fast`` stops the run at once instead of failing the train job hours
later; :func:`stflow.models.search.check_space` refuses the same spaces with the same words.
Standard library only.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from stflow.config import Problem
from stflow.models.model_specs import MODELS, parameters
from stflow.models.parameters import Param, check_value


def _unknown(where: str, name: str, value: Any, model: str, names: list[str]) -> Problem:
    """A parameter the model does not take, with the nearest spelling it does."""
    near = difflib.get_close_matches(name, names, n=1)
    hint = f"write '{near[0]}' (the nearest name); " if near else ""
    return Problem(where, value, f"model '{model}' has no parameter '{name}'",
                   f"{hint}use only {names}")


def _name_problem(where: str, model: str, name: str, value: Any,
                  accepted: Mapping[str, Param], fix_fixed: str) -> Problem | None:
    """A parameter ``model`` does not take, or one its registry entry fixes; else None."""
    if name not in accepted:
        return _unknown(where, name, value, model, sorted(accepted))
    fixed = MODELS[model].fixed
    if name in fixed:
        return Problem(where, value, f"'{name}' is fixed by the registry entry '{model}' "
                       f"({fixed[name]!r})", fix_fixed)
    return None


def model_param_problems(model: str, params: Mapping[str, Any],
                         prefix: str = "model_params") -> list[Problem]:
    """Every unknown, fixed, mistyped or out-of-range parameter in ``params``.

    ``k`` is left to the one-k check (graph.k is the neighbour count).
    """
    accepted = parameters(model)
    problems = []
    for name, value in params.items():
        where = f"{prefix}.{model}.{name}"
        named = _name_problem(where, model, name, value, accepted,
                              f"remove it, or use a model whose {name} you may set")
        if named:
            problems.append(named)
        else:
            _, problem = check_value(name, value, accepted[name])
            if problem:
                problems.append(Problem(where, value, *problem))
    return problems


def _range_problem(name: str, spec: Mapping[str, Any], param: Param) -> tuple[str, str] | None:
    """Why ``{low, high, log}`` is no range of ``param``, or None."""
    low, high = spec.get("low"), spec.get("high")
    example = "{low: 1e-4, high: 1e-3, log: true}"
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (low, high)) \
            or not low < high:
        return f"needs numbers low < high, got {dict(spec)}", f"e.g. {example}"
    if spec.get("log") and low <= 0:
        return "a log range needs low > 0", "raise low"
    numeric = {int, float} & set(param.types)
    if not numeric:
        return (f"'{name}' is {param.kind}, which a range cannot draw",
                f"list its choices instead, e.g. [{param.default!r}]")
    if numeric == {int} and not (isinstance(low, int) and isinstance(high, int)):
        return (f"'{name}' is a whole number, but the range {low}..{high} would draw "
                "fractions", "give whole-number bounds")
    for bound in (low, high):
        _, problem = check_value(name, bound, param)
        if problem:
            return f"bound {bound}: {problem[0]}", problem[1]
    return None


def space_problems(model: str, space: Mapping[str, Any], prefix: str = "search"
                   ) -> list[Problem]:
    """Every search-space entry that names no parameter of ``model``, a fixed one, or
    choices / a ``{low, high, log}`` range the parameter cannot take."""
    accepted = {k: v for k, v in parameters(model).items() if k != "device"}
    problems = []
    for name, spec in space.items():
        where = f"{prefix}.{model}.space.{name}"
        named = _name_problem(where, model, name, spec, accepted, "remove it from the space")
        if named:
            problems.append(named)
        elif isinstance(spec, list):
            if not spec:
                problems.append(Problem(where, spec, "an empty list of choices",
                                        "list the values"))
            for choice in spec:
                _, problem = check_value(name, choice, accepted[name])
                if problem:
                    problems.append(Problem(where, spec, f"choice {problem[0]}", problem[1]))
        elif isinstance(spec, Mapping):
            problem = _range_problem(name, spec, accepted[name])
            if problem:
                problems.append(Problem(where, spec, *problem))
        else:
            problems.append(Problem(where, spec, f"{spec!r} is neither a list of choices nor "
                                    "a range", "[a, b, c] or {low: x, high: y, log: false}"))
    return problems


def trials_problems(model: str, trials: Any, prefix: str = "search") -> list[Problem]:
    """A trial count that is no whole number of at least 1."""
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        return [Problem(f"{prefix}.{model}.trials", trials, f"{trials!r} trials",
                        "at least 1 trial")]
    return []

