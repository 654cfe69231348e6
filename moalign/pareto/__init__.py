"""Pareto fronts: dominance, exact hypervolume, indicators, simplex grids, and :class:`ParetoFront`.

- :mod:`moalign.pareto.indicators`: :func:`is_nondominated`, :func:`hypervolume` and its
  per-point contributions (moocore underneath), IGD / IGD+ / spacing, simplex grids;
- :mod:`moalign.pareto.front`: :class:`ParetoFront` / :class:`FrontPoint`, the ``front.json``
  round trip, tables and plots.

Every objective is maximized; a point set is ``[N, K]``.
"""

from __future__ import annotations

from moalign.pareto import front, indicators
from moalign.pareto.front import *  # noqa: F403
from moalign.pareto.indicators import *  # noqa: F403

__all__ = sorted([*front.__all__, *indicators.__all__])
