"""What the commands print: aligned tables, summaries, and library output kept quiet."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["format_table", "print_summary", "quiet_library_output", "throughput_line"]


def format_table(header: Sequence[str], rows: Sequence[Sequence[Any]], digits: int = 4) -> str:
    """An aligned text table; floats are shown with ``digits`` significant digits."""
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.{digits}g}"
        return "-" if v is None else str(v)

    body = [[cell(v) for v in row] for row in rows]
    widths = [max(len(r[c]) for r in [list(header), *body]) for c in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()
                     for r in [list(header), *body])


def print_summary(rows: list[tuple[str, Any]]) -> None:
    """Print ``(label, value)`` rows as an aligned two-column table; float seconds under the
    label ``time`` are shown as minutes and seconds."""
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        if key == "time" and isinstance(value, float):
            m, s = divmod(int(round(value)), 60)
            value = f"{m}m{s:02d}s" if m else f"{s}s"
        print(f"{key:<{width}}  {value}")


#: kind of work -> its unit, for the throughput line
UNITS = {"logprob": "tokens scored", "generation": "tokens generated", "scoring": "replies scored"}


def throughput_line(rates: dict[str, Any]) -> str:
    """``throughput: 612 tokens scored/s (80.2 s), ...`` from ``Throughput.rates()``: what
    evaluation computed per second of each kind of work, and the seconds it took."""
    parts = [f"{r['per_second']:,.0f} {UNITS.get(kind, kind)}/s ({r['seconds']:.1f} s)"
             for kind, r in rates.items() if r.get("seconds")]
    return "throughput: " + ", ".join(parts) if parts else ""


class quiet_library_output:
    """Context manager: hide library warnings and transformers' info/warning logs (kept with
    ``debug``) and, without ``progress``, the ``datasets`` progress bars, so that a command's
    own output stays readable."""

    def __init__(self, debug: bool = False, progress: bool = True):
        self.debug, self.progress = debug, progress

    def __enter__(self) -> quiet_library_output:
        import warnings

        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        self._verbosity = None
        if not self.debug:
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", UserWarning)
            from transformers.utils import logging as hf_logging

            self._verbosity = hf_logging.get_verbosity()
            hf_logging.set_verbosity_error()
        self._bars: tuple[bool, bool] | None = None
        if not self.progress:
            import datasets
            from transformers.utils import logging as hf_logging

            self._bars = (datasets.is_progress_bar_enabled(), hf_logging.is_progress_bar_enabled())
            datasets.disable_progress_bars()
            hf_logging.disable_progress_bar()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._bars is not None:
            import datasets
            from transformers.utils import logging as hf_logging

            if self._bars[0]:
                datasets.enable_progress_bars()
            if self._bars[1]:
                hf_logging.enable_progress_bar()
        if self._verbosity is not None:
            from transformers.utils import logging as hf_logging

            hf_logging.set_verbosity(self._verbosity)
        self._warnings.__exit__(*exc)
