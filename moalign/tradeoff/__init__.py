"""Trade-offs between objectives: how K rewards become one training signal.

- :mod:`moalign.tradeoff.scalarize` (+ ``scalarize_base``, ``normalize``, ``lagrangian``):
  scalarizers ``[B, K] -> [B]``: linear, (augmented) Tchebycheff, running / group-wise
  normalization, ``chain``, Lagrangian constraints with projected dual ascent;
- :mod:`moalign.tradeoff.schedule` (+ ``schedule_base``, ``adaptive``, ``mgda``): weight
  schedules with ``ask()`` / ``tell()`` / ``state_dict()``;
- :mod:`moalign.tradeoff.conditioning`: the text that shows a weight vector to a conditioned
  policy, shared by training and evaluation;
- :mod:`moalign.tradeoff.tradeoff`: :class:`TradeOff`, the one object every trainer uses to turn
  rewards into a scalar (weights, schedule, scalarizer, constraints) and to log it.

The public paths :mod:`moalign.scalarize` and :mod:`moalign.schedule` re-export the first two.
"""

from __future__ import annotations

from moalign._lazy import attach, exports_of

_EXPORTS = exports_of({
    "tradeoff": ["TradeOff", "check_scored"],
    "conditioning": ["apply_condition", "format_condition"],
    "scalarize": ["scalarize"],
    "schedule": ["schedule"],
})
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = attach(__name__, _EXPORTS)
