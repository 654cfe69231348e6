"""Tracing Pareto fronts: :class:`FrontConfig`, :func:`trace_front`, and one module per method.

- :mod:`moalign.fronts.config`: :class:`FrontConfig` and its complete up-front check;
- :mod:`moalign.fronts.trace`: :func:`trace_front` (resumable: finished runs and points are
  reused);
- :mod:`moalign.fronts.context`: what methods share (data splits, the base, trained runs);
- :mod:`moalign.fronts.evaluate`: the score of one point;
- methods, each a small module with ``policies(ctx)``: :mod:`~moalign.fronts.sweep`,
  :mod:`~moalign.fronts.soup` (Rewarded Soups), :mod:`~moalign.fronts.conditioned`
  (Rewards-in-Context), :mod:`~moalign.fronts.decoding` (MOD).
"""

from __future__ import annotations

from moalign._lazy import attach, exports_of

_EXPORTS = exports_of({
    "config": ["FrontConfig", "resolve_front_config"],
    "plan": ["METHODS"],
    "trace": ["trace_front"],
    "soup": ["soup_adapter", "soup_state_dicts"],
    "decoding": ["generate_mixture"],
})
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = attach(__name__, _EXPORTS)
