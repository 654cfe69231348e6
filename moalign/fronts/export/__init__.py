"""Using a traced front's points outside the trace: rebuild any point's policy
(:mod:`~moalign.fronts.export.traced`), write it as a standard transformers folder or a grid of
LoRA adapters with their vLLM command (:mod:`~moalign.fronts.export.folder`), each with a model
card (:mod:`~moalign.fronts.export.card`). Used by ``moalign export`` and ``moalign generate``.
"""

from __future__ import annotations

from moalign._lazy import attach, exports_of

_EXPORTS = exports_of({
    "traced": ["TracedFront", "parse_weights"],
    "folder": ["condition_chat_template", "export_grid", "export_point", "vllm_command"],
})
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = attach(__name__, _EXPORTS)
