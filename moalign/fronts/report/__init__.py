"""``moalign report``: one self-contained HTML page for one or several traced fronts: the
interactive front (:mod:`~moalign.fronts.report.figure`), its statistics and cost, and the
replies behind the scores (:mod:`~moalign.fronts.report.replies`), assembled by
:mod:`~moalign.fronts.report.page`.
"""

from __future__ import annotations

from moalign._lazy import attach, exports_of

_EXPORTS = exports_of({
    "page": ["render_report", "write_report"],
    "replies": ["ensure_replies", "read_replies"],
})
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = attach(__name__, _EXPORTS)
