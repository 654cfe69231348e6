"""Pareto fronts: dominance, exact hypervolume, indicators, simplex grids, and :class:`ParetoFront`.

- :mod:`moalign.pareto.indicators`: :func:`is_nondominated`, :func:`hypervolume` and its
  per-point contributions (moocore underneath), IGD / IGD+ / spacing, simplex grids;
- :mod:`moalign.pareto.front`: :class:`ParetoFront` / :class:`FrontPoint`, the ``front.json``
  round trip, tables and plots.

Every objective is maximized; a point set is ``[N, K]``.
"""

from __future__ import annotations

from moalign.pareto.front import FrontPoint, ParetoFront, plot_fronts
from moalign.pareto.indicators import (
    ParetoError,
    hypervolume,
    hypervolume_contributions,
    igd,
    igd_plus,
    is_nondominated,
    n_nondominated,
    simplex_extremes,
    simplex_grid,
    simplex_uniform,
    spacing,
)

__all__ = [
    "FrontPoint",
    "ParetoError",
    "ParetoFront",
    "hypervolume",
    "hypervolume_contributions",
    "igd",
    "igd_plus",
    "is_nondominated",
    "n_nondominated",
    "plot_fronts",
    "simplex_extremes",
    "simplex_grid",
    "simplex_uniform",
    "spacing",
]
