"""Shared pieces of the bad-input corpus (``tests/bad_inputs/``).

Every case of the corpus checks the same four things (issue: "Bad-input corpus"):

1. the CLI exits non-zero (or the API raises a specific exception type);
2. the message names the offending key / column / value / objective / file;
3. no Python traceback reaches the user unless ``--debug`` is given;
4. nothing that looks finished is left behind (``front.json``, an adapter, ``train.json``...).

:func:`run_cli_case` checks them for one table-driven case; the fixtures ``cli`` and
``no_model_load`` are in ``tests/bad_inputs/conftest.py``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

#: Names of files that only a finished command writes.
FINISHED = frozenset({
    "front.json", "front.png", "train.json", "run.json", "point.json", "adapter_config.json",
    "adapter_model.safetensors", "model.safetensors", "reward.json",
})


# ------------------------------------------------------------------------------------ CLI


@dataclass
class CliResult:
    rc: int
    out: str
    err: str

    def failed_cleanly(self, *needles: str) -> None:
        """Exit code 2, no traceback, and every needle in the error message."""
        assert self.rc == 2, f"exit code {self.rc}\nstdout: {self.out}\nstderr: {self.err}"
        assert "Traceback" not in self.err, self.err
        for needle in needles:
            assert needle in self.err, f"{needle!r} not in the message:\n{self.err}"


class ModelLoaded(AssertionError):
    """A model was loaded although the bad input should have been reported first."""


def finished_outputs(*folders: Path) -> list[Path]:
    """Files under ``folders`` that only a finished command writes."""
    found: list[Path] = []
    for folder in folders:
        if folder.is_file() and folder.name in FINISHED:
            found.append(folder)
        elif folder.is_dir():
            found += [p for p in folder.rglob("*") if p.name in FINISHED]
    return sorted(found)


def fill(template: Any, tmp: Path) -> Any:
    """``template`` with ``{tmp}`` replaced by the test's folder (in strings, lists, dicts)."""
    if isinstance(template, str):
        return template.replace("{tmp}", str(tmp))
    if isinstance(template, (list, tuple)):
        return [fill(t, tmp) for t in template]
    if isinstance(template, dict):
        return {k: fill(v, tmp) for k, v in template.items()}
    return template


def write_files(tmp: Path, files: dict[str, str | bytes]) -> None:
    """Create ``files`` (relative path -> content) under ``tmp``."""
    for name, content in files.items():
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(fill(content, tmp))


def run_cli_case(case: dict[str, Any], cli: Callable[..., CliResult], tmp: Path) -> CliResult:
    """One table-driven CLI case: write its files, run it, check the four properties.

    Keys: ``argv``; ``expect`` (substrings of the message); ``files`` (to create first);
    ``outputs`` (folders / files that must hold nothing finished afterwards, ``out`` by default).
    """
    write_files(tmp, case.get("files", {}))
    before = {p: p.stat().st_mtime_ns for p in finished_outputs(tmp)}
    result = cli(*fill(case["argv"], tmp))
    result.failed_cleanly(*fill(case["expect"], tmp))
    for name in case.get("outputs", ["out"]):
        new = [p for p in finished_outputs(tmp / name) if before.get(p) != p.stat().st_mtime_ns]
        assert new == [], f"a failed run left finished-looking outputs: {new}"
    return result


# ------------------------------------------------------------------------------------ data

#: Marker for :func:`pref_rows`: leave the column out.
DROP = object()


def pref_rows(n: int = 12, **columns: Any) -> list[dict[str, Any]]:
    """``n`` valid text preference pairs labelled for helpfulness and harmlessness; ``columns``
    overrides a column (a value, a callable of the row index, or ``DROP`` to leave it out)."""
    rows = []
    for i in range(n):
        row = {
            "prompt": f"\n\nHuman: question number {i}?\n\nAssistant:",
            "chosen": f" a helpful answer {i}",
            "rejected": " no.",
            "pref_helpfulness": 1.0 if i % 3 else -1.0,
            "pref_harmlessness": -1.0 if i % 2 else 1.0,
        }
        for key, value in columns.items():
            if value is DROP:
                row.pop(key, None)
            else:
                row[key] = value(i) if callable(value) else value
        rows.append(row)
    return rows


def chat_rows(n: int = 12, **columns: Any) -> list[dict[str, Any]]:
    """Like :func:`pref_rows`, in TRL's conversational format."""
    base = [{**row, "prompt": [{"role": "user", "content": row["prompt"].strip()}],
             "chosen": [{"role": "assistant", "content": row["chosen"]}],
             "rejected": [{"role": "assistant", "content": row["rejected"]}]}
            for row in pref_rows(n)]
    for row in base:
        for key, value in columns.items():
            row[key] = value
    return base


def jsonl(rows: Iterable[dict[str, Any]]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def front_dict(**changes: Any) -> dict[str, Any]:
    """A valid ``front.json`` content (two objectives, two points)."""
    data: dict[str, Any] = {
        "objectives": ["helpfulness", "harmlessness"], "method": "sweep",
        "reference_point": [0.0, 0.0],
        "points": [
            {"id": "w1.00-0.00", "weights": [1.0, 0.0],
             "scores": {"helpfulness": 0.7, "harmlessness": 0.4}, "stderr": {}},
            {"id": "w0.00-1.00", "weights": [0.0, 1.0],
             "scores": {"helpfulness": 0.5, "harmlessness": 0.6}, "stderr": {}},
        ],
        "cost": {"train_seconds": 1.0, "eval_seconds": 1.0, "train_steps": 2},
    }
    data.update(changes)
    return data
