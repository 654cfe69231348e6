"""Pareto fronts: dominance, exact hypervolume, indicators, simplex grids, :class:`ParetoFront`,
and the paired bootstrap that says which of a front's numbers are beyond noise.

- :mod:`moalign.pareto.indicators`: :func:`is_nondominated`, :func:`hypervolume` and its
  per-point contributions (moocore underneath), IGD / IGD+ / spacing, simplex grids;
- :mod:`moalign.pareto.front`: :class:`ParetoFront` / :class:`FrontPoint`, the ``front.json``
  round trip, :func:`plot_fronts`;
- :mod:`moalign.pareto.bootstrap`: the paired bootstrap over held-out examples (per-example
  score files, percentile intervals, spans, hypervolume intervals);
- :mod:`moalign.pareto.intervals`: that bootstrap applied to a front, one common reference
  point for comparisons (:func:`common_reference`), :func:`hypervolume_difference`;
- :mod:`moalign.pareto.summary` (tables and words) and :mod:`moalign.pareto.plot` (figures).

Every objective is maximized; a point set is ``[N, K]``.
"""

from __future__ import annotations

from moalign.pareto import bootstrap, front, indicators
from moalign.pareto.bootstrap import *  # noqa: F403
from moalign.pareto.front import *  # noqa: F403
from moalign.pareto.indicators import *  # noqa: F403

__all__ = sorted({*bootstrap.__all__, *front.__all__, *indicators.__all__})
