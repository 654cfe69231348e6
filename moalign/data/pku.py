"""PKU-SafeRLHF (Ji et al. 2023, "BeaverTails"; Dai et al. 2023, "Safe RLHF").

Source schema, one row per prompt and two responses:

===========================  ===================================================
``prompt``                   the user's request (string)
``response_0``, ``response_1``  two model responses (strings)
``better_response_id``       0 or 1: the more helpful response
``safer_response_id``        0 or 1: the more harmless response
``is_response_0_safe``,      bools: each response's own safety judgement
``is_response_1_safe``
===========================  ===================================================

Both preferences come from the same row, so each converted pair carries two labels, oriented
consistently: ``chosen`` is the better (more helpful) response, so ``pref_helpfulness = +1``;
``pref_harmlessness = +1`` when that response is also the safer one and ``-1`` when the rejected
response is safer. The safety flags are kept as ``is_chosen_safe`` / ``is_rejected_safe`` (for
cost models and safety constraints, as in Safe RLHF). A row with two identical responses says
nothing and is dropped with a counted reason. ``as_chat=False`` keeps the raw strings (no chat
template and no separator between prompt and completion: format them yourself).
"""

from __future__ import annotations

from typing import Any

from datasets import Dataset, Features, Value

from moalign.data.schema import AdapterReport, AdapterResult, chat_feature, pref_column
from moalign.data.sources import Source, get_columns, read_records
from moalign.errors import DataError

__all__ = ["PKU_COLUMNS", "from_pku_saferlhf"]

PKU_COLUMNS = (
    "prompt",
    "response_0",
    "response_1",
    "better_response_id",
    "safer_response_id",
    "is_response_0_safe",
    "is_response_1_safe",
)


class _Bad(Exception):
    def __init__(self, column: str, reason: str):
        self.column, self.reason = column, reason
        super().__init__(reason)


def _response_id(value: Any, column: str) -> int:
    if isinstance(value, bool) or value not in (0, 1):
        raise _Bad(column, f"must be 0 or 1, got {value!r}")
    return int(value)


def _flag(value: Any, column: str) -> bool:
    if isinstance(value, bool) or (not isinstance(value, str) and value in (0, 1)):
        return bool(value)
    raise _Bad(column, f"must be a boolean, got {value!r}")


def from_pku_saferlhf(
    source: Source,
    *,
    as_chat: bool = True,
    helpful_objective: str = "helpfulness",
    harmless_objective: str = "harmlessness",
    keep_safety: bool = True,
    errors: str = "raise",
    name: str = "pku-saferlhf",
) -> AdapterResult:
    """Convert PKU-SafeRLHF rows (module docstring) into pairs labelled for both objectives.

    ``source``: rows, a ``Dataset``, a local path, or a hub id (``"PKU-Alignment/PKU-SafeRLHF"``
    when online). Invalid rows raise :class:`DataError` naming the row and column, or are
    dropped and counted with ``errors="drop"``. Returns ``(dataset, report)``.
    """
    help_col, harm_col = pref_column(helpful_objective), pref_column(harmless_objective)
    if help_col == harm_col:
        raise DataError("helpful_objective and harmless_objective must differ")
    if errors not in ("raise", "drop"):
        raise DataError(f"errors must be 'raise' or 'drop', got {errors!r}")
    cols = get_columns(read_records(source), PKU_COLUMNS, source=name)
    report = AdapterReport(source=name, records_in=len(cols["prompt"]))
    out: dict[str, list[Any]] = {
        k: [] for k in ("prompt", "chosen", "rejected", help_col, harm_col,
                        "is_chosen_safe", "is_rejected_safe")
    }
    for i in range(report.records_in):
        row = {c: cols[c][i] for c in PKU_COLUMNS}
        try:
            for column in ("prompt", "response_0", "response_1"):
                if not isinstance(row[column], str):
                    raise _Bad(column, f"expected a string, got {type(row[column]).__name__}")
            if not row["prompt"].strip():
                raise _Bad("prompt", "empty prompt")
            better = _response_id(row["better_response_id"], "better_response_id")
            safer = _response_id(row["safer_response_id"], "safer_response_id")
            safe = [_flag(row[f"is_response_{j}_safe"], f"is_response_{j}_safe") for j in (0, 1)]
        except _Bad as exc:
            if errors == "raise":
                raise DataError(f"{name}: row {i}, column '{exc.column}': {exc.reason}") from None
            report.drop(f"invalid {exc.column}", i)
            continue
        responses = (row["response_0"], row["response_1"])
        if responses[0] == responses[1]:
            report.drop("response_0 == response_1", i)
            continue
        worse = 1 - better
        if as_chat:
            out["prompt"].append([{"role": "user", "content": row["prompt"]}])
            out["chosen"].append([{"role": "assistant", "content": responses[better]}])
            out["rejected"].append([{"role": "assistant", "content": responses[worse]}])
        else:
            out["prompt"].append(row["prompt"])
            out["chosen"].append(responses[better])
            out["rejected"].append(responses[worse])
        out[help_col].append(1.0)
        out[harm_col].append(1.0 if safer == better else -1.0)
        out["is_chosen_safe"].append(safe[better])
        out["is_rejected_safe"].append(safe[worse])
        report.records_kept += 1
    fmt = chat_feature() if as_chat else Value("string")
    features = {"prompt": fmt, "chosen": fmt, "rejected": fmt,
                help_col: Value("float32"), harm_col: Value("float32"),
                "is_chosen_safe": Value("bool"), "is_rejected_safe": Value("bool")}
    if not keep_safety:
        for k in ("is_chosen_safe", "is_rejected_safe"):
            del out[k], features[k]
    ds = Dataset.from_dict(out, features=Features(features))
    report.rows_out = len(ds)
    return AdapterResult(ds, report)
