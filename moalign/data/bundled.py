"""Paths to the data files bundled with moalign (see ``moalign/bundled/PROVENANCE.md``).

What each name means as a dataset (its loader and columns) is :mod:`moalign.data.catalog`."""

from __future__ import annotations

from pathlib import Path

BUNDLED = Path(__file__).resolve().parent.parent / "bundled"

#: short names of the bundled datasets -> file
BUNDLED_FILES = {
    "hh-rlhf/helpful-base": BUNDLED / "hh-rlhf" / "helpful-base" / "test.jsonl.gz",
    "hh-rlhf/harmless-base": BUNDLED / "hh-rlhf" / "harmless-base" / "test.jsonl.gz",
    "gsm8k": BUNDLED / "gsm8k" / "test.jsonl",
    "math500": BUNDLED / "math500" / "test.jsonl",
}


def bundled_path(name: str) -> Path:
    """Path of a bundled dataset by short name (``"gsm8k"``, ``"hh-rlhf/helpful-base"``, ...)."""
    try:
        return BUNDLED_FILES[name]
    except KeyError:
        raise KeyError(
            f"no bundled dataset '{name}'; available: {', '.join(sorted(BUNDLED_FILES))}"
        ) from None
