"""Checks of the objectives a config names, made before any model or data loads."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from moalign.config.checking import did_you_mean
from moalign.errors import MoalignError
from moalign.objective.registry import available_objectives, load_objective, objective_name

__all__ = ["objective_problems"]


def _objective_name(spec: Any) -> str | None:
    if isinstance(spec, str) and ":" in spec and "." in spec.split(":")[0]:
        return objective_name(spec) or spec  # an explicit class: its name, or the path
    if isinstance(spec, Mapping):
        return spec.get("name")
    return objective_name(spec) if isinstance(spec, str) else None


def _instantiate(spec: Any, key: str) -> list[str]:
    """Build an objective (cheap: reward models read only their config) to catch a missing
    reward model or bad arguments now rather than after loading the policy."""
    try:
        load_objective(spec)
    except MoalignError as exc:
        return [f"'{key}': {exc}"]
    return []


def objective_problems(names: Any, *, labels: str, columns: frozenset[str] | None,
                       dataset: str = "", key: str = "objectives") -> list[str]:
    """Problems with the objectives of a run.

    ``labels`` says what each objective needs: ``"scorer"`` (a registered objective that can
    be built: online trainers, generation metrics), ``"column"`` (a ``pref_<name>`` label
    column in the dataset: front tracing, implicit metric) or ``"column_or_scorer"`` (DPO
    trainers: a label column, or a scorer that labels the pairs). Columns are checked only when
    ``columns`` is known.
    """
    if not isinstance(names, list) or not names:
        return [] if names is None else [f"'{key}' must be a non-empty list of objective names"]
    available = available_objectives()
    labelled = sorted(c[len("pref_"):] for c in (columns or ()) if c.startswith("pref_"))
    problems = []
    for spec in names:
        name = _objective_name(spec)
        if not isinstance(name, str):
            problems.append(f"'{key}': {spec!r} is not an objective name or spec")
            continue
        has_column = columns is not None and f"pref_{name}" in columns
        registered = name in available or (":" in str(spec) and "." in str(spec).split(":")[0])
        if labels == "scorer" or (labels == "column_or_scorer" and not has_column
                                  and columns is not None):
            if not registered:
                hint = did_you_mean(name, available + labelled)
                extra = (f" and dataset '{dataset}' has no 'pref_{name}' label column"
                         if labels == "column_or_scorer" else "")
                problems.append(f"'{key}': unknown objective '{name}'{extra}{hint} (registered: "
                                f"{', '.join(available) or 'none'}"
                                + (f"; labelled in the data: {', '.join(labelled)})" if labelled
                                   else ")"))
            else:
                problems += _instantiate(spec, key)
        elif labels == "column" and columns is not None and not has_column:
            problems.append(f"'{key}': dataset '{dataset}' has no label column 'pref_{name}' for "
                            f"objective '{name}'{did_you_mean(name, labelled)} (labelled: "
                            f"{', '.join(labelled) or 'none'})")
    return problems
