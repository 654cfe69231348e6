"""The canonical multi-objective preference schema.

A preference dataset is a Hugging Face :class:`datasets.Dataset` with the columns

- ``prompt``: a plain string, or a list of ``{"role", "content"}`` chat messages ending with a
  ``user`` turn (TRL's conversational format);
- ``chosen`` / ``rejected``: two completions of that prompt, plain strings (text format) or
  lists of ``{"role": "assistant", "content": ...}`` messages (conversational format);
- one float column per objective, ``pref_<objective>``: ``+1`` the chosen completion is better
  for that objective, ``-1`` the rejected one is, ``0`` a tie, ``NaN`` no label.

"chosen" is only the side a pair is oriented on (usually the overall or first-labelled
preference); each ``pref_`` column says for itself which side wins. Adapters return an
:class:`AdapterResult`: the dataset and an :class:`AdapterReport` that accounts for every input
record (converted, or dropped with a counted reason).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
from datasets import Dataset, List, Value, concatenate_datasets

from moalign.errors import DataError

__all__ = [
    "CORE_COLUMNS",
    "LABEL_VALUES",
    "PREF_PREFIX",
    "AdapterReport",
    "AdapterResult",
    "chat_feature",
    "column_values",
    "label_counts",
    "mix_preference_datasets",
    "objectives_in",
    "pairs_for_objective",
    "pref_column",
    "prompt_key",
    "validate_preference_dataset",
]

PREF_PREFIX = "pref_"
CORE_COLUMNS = ("prompt", "chosen", "rejected")
#: Allowed non-NaN label values.
LABEL_VALUES = (1.0, -1.0, 0.0)
#: Roles accepted in a conversational prompt.
PROMPT_ROLES = frozenset({"system", "user", "assistant", "tool"})
#: dtype of every ``pref_`` column produced by moalign.
LABEL_FEATURE = Value("float32")
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")


def chat_feature() -> List:
    """The :mod:`datasets` feature of a chat-message list column."""
    return List({"role": Value("string"), "content": Value("string")})


def column_values(ds: Dataset, name: str) -> list[Any]:
    """Column ``name`` of ``ds`` as a Python list (one Arrow conversion, not row by row)."""
    return ds.select_columns([name])[:][name]


def pref_column(name: str) -> str:
    """Column name of objective ``name``'s labels: ``pref_<name>``.

    Objective names are lowercase letters, digits and underscores (as in the objective registry).
    """
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise DataError(
            f"invalid objective name {name!r}: use lowercase letters, digits and underscores"
        )
    return PREF_PREFIX + name


def objectives_in(dataset: Dataset) -> list[str]:
    """Objectives labelled in ``dataset`` (its ``pref_<objective>`` columns), in column order."""
    return [c[len(PREF_PREFIX) :] for c in dataset.column_names if c.startswith(PREF_PREFIX)]


# --------------------------------------------------------------------------------------------
# Reports
# --------------------------------------------------------------------------------------------


@dataclass
class AdapterReport:
    """What an adapter did with its input: every record converted or dropped with a reason.

    ``record`` says what one input record is (a row of the source file, or a prompt group for
    rating data); ``notes`` counts records that were kept but are worth knowing about (e.g. an
    empty reply). ``accounted_for`` checks ``records_in == records_kept + sum(dropped)``.
    """

    source: str
    record: str = "row"
    records_in: int = 0
    records_kept: int = 0
    rows_out: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    dropped_indices: dict[str, list[int]] = field(default_factory=dict)
    notes: dict[str, int] = field(default_factory=dict)

    def drop(self, reason: str, index: int) -> None:
        """Count input record ``index`` as dropped for ``reason``."""
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        self.dropped_indices.setdefault(reason, []).append(index)

    def note(self, what: str, n: int = 1) -> None:
        """Count ``n`` kept records under ``what``."""
        self.notes[what] = self.notes.get(what, 0) + n

    @property
    def n_dropped(self) -> int:
        return sum(self.dropped.values())

    @property
    def accounted_for(self) -> bool:
        return self.records_in == self.records_kept + self.n_dropped

    @classmethod
    def combine(cls, source: str, reports: Sequence[AdapterReport]) -> AdapterReport:
        """One report summing ``reports`` (indices stay those of each part's own input)."""
        out = cls(source=source, record=reports[0].record if reports else "row")
        for r in reports:
            out.records_in += r.records_in
            out.records_kept += r.records_kept
            out.rows_out += r.rows_out
            for k, v in r.dropped.items():
                out.dropped[f"{r.source}: {k}"] = v
                out.dropped_indices[f"{r.source}: {k}"] = list(r.dropped_indices.get(k, []))
            for k, v in r.notes.items():
                out.notes[f"{r.source}: {k}"] = v
        return out

    def __str__(self) -> str:
        lines = [
            f"{self.source}: {self.records_in} {self.record}s in, {self.records_kept} converted "
            f"into {self.rows_out} rows, {self.n_dropped} dropped"
        ]
        lines += [f"  dropped ({k}): {v}" for k, v in self.dropped.items()]
        lines += [f"  kept ({k}): {v}" for k, v in self.notes.items()]
        return "\n".join(lines)


class AdapterResult(NamedTuple):
    """Return value of every adapter and loader: ``dataset, report = adapter(...)``."""

    dataset: Dataset
    report: AdapterReport


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


def _is_chat(value: Any) -> bool:
    return isinstance(value, list)


def _check_messages(value: Any, column: str, row: int, *, completion: bool) -> None:
    if not isinstance(value, list) or not value:
        raise DataError(f"row {row}, column '{column}': expected a non-empty list of messages")
    for j, message in enumerate(value):
        if not isinstance(message, Mapping) or "role" not in message or "content" not in message:
            raise DataError(
                f"row {row}, column '{column}': message {j} must be a mapping with "
                f"'role' and 'content' keys, got {message!r:.80}"
            )
        role, content = message["role"], message["content"]
        allowed = {"assistant"} if completion else PROMPT_ROLES
        if role not in allowed:
            raise DataError(
                f"row {row}, column '{column}': message {j} has role {role!r}; "
                f"expected one of {sorted(allowed)}"
            )
        if not isinstance(content, str):
            raise DataError(
                f"row {row}, column '{column}': message {j} content must be a string, "
                f"got {type(content).__name__}"
            )
    if not completion:
        if value[-1]["role"] != "user":
            raise DataError(
                f"row {row}, column '{column}': the prompt must end with a 'user' message, "
                f"not {value[-1]['role']!r}"
            )
        if not any(m["content"].strip() for m in value):
            raise DataError(f"row {row}, column '{column}': empty prompt")


def _check_row(prompt: Any, chosen: Any, rejected: Any, row: int, chat: bool) -> None:
    fmt = "a list of chat messages" if chat else "a string"
    for column, value in (("prompt", prompt), ("chosen", chosen), ("rejected", rejected)):
        if _is_chat(value) != chat or not (chat or isinstance(value, str)):
            raise DataError(
                f"row {row}, column '{column}': expected {fmt} (as in row 0), "
                f"got {type(value).__name__}"
            )
        if chat:
            _check_messages(value, column, row, completion=column != "prompt")
    if not chat and not prompt.strip():
        raise DataError(f"row {row}, column 'prompt': empty prompt")


def _check_label(value: Any, column: str, row: int) -> bool:
    """Validate one label; return whether it is a label (not NaN / None)."""
    if value is None:
        return False
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise DataError(f"row {row}, column '{column}': label must be a number, got {value!r}")
    if math.isnan(value):
        return False
    if float(value) not in LABEL_VALUES:
        raise DataError(
            f"row {row}, column '{column}': label {value!r} is not +1, -1, 0 or NaN"
        )
    return True


def validate_preference_dataset(
    ds: Dataset,
    objectives: Iterable[str] | None = None,
    require_labels_for: Iterable[str] | None = None,
) -> list[str]:
    """Check that ``ds`` follows the canonical schema; return the objectives checked.

    ``objectives``: the ``pref_`` columns that must exist (default: every one present; at least
    one is required). ``require_labels_for``: objectives that need at least one labelled row
    (default: all checked ones; pass ``[]`` to skip). Checks the core columns, each row's format
    (all text or all chat; chat messages have ``role``/``content`` keys and valid roles; prompts
    end with a user turn and are not empty; completions are assistant messages) and that every
    label is +1, -1, 0 or NaN. The first problem raises :class:`DataError` naming the column
    and the row index.
    """
    if not isinstance(ds, Dataset):
        raise DataError(f"expected a datasets.Dataset, got {type(ds).__name__}")
    columns = ds.column_names
    for column in CORE_COLUMNS:
        if column not in columns:
            raise DataError(
                f"preference dataset has no column '{column}' (columns: {', '.join(columns)})"
            )
    present = objectives_in(ds)
    if objectives is None:
        checked = present
        if not checked:
            raise DataError(
                f"preference dataset has no '{PREF_PREFIX}<objective>' label column "
                f"(columns: {', '.join(columns)})"
            )
    else:
        checked = list(objectives)
        for name in checked:
            if pref_column(name) not in columns:
                raise DataError(
                    f"preference dataset has no column '{pref_column(name)}' for objective "
                    f"'{name}' (labelled objectives: {', '.join(present) or 'none'})"
                )
    required = checked if require_labels_for is None else list(require_labels_for)
    for name in required:
        if pref_column(name) not in columns:
            raise DataError(f"preference dataset has no column '{pref_column(name)}'")
    if len(ds) == 0:
        raise DataError("preference dataset is empty")

    label_columns = [pref_column(n) for n in dict.fromkeys([*checked, *required])]
    n_labelled = dict.fromkeys(label_columns, 0)
    chat = None
    offset = 0
    for batch in ds.select_columns([*CORE_COLUMNS, *label_columns]).iter(batch_size=1000):
        for i in range(len(batch["prompt"])):
            row = offset + i
            if chat is None:
                chat = _is_chat(batch["prompt"][i])
            _check_row(batch["prompt"][i], batch["chosen"][i], batch["rejected"][i], row, chat)
            for column in label_columns:
                n_labelled[column] += _check_label(batch[column][i], column, row)
        offset += len(batch["prompt"])
    for name in required:
        if n_labelled[pref_column(name)] == 0:
            raise DataError(
                f"column '{pref_column(name)}': objective '{name}' has no labelled row "
                f"(all {len(ds)} labels are NaN)"
            )
    return checked


# --------------------------------------------------------------------------------------------
# Counting, selecting, mixing
# --------------------------------------------------------------------------------------------


def _labels(ds: Dataset, name: str) -> np.ndarray:
    column = pref_column(name)
    if column not in ds.column_names:
        raise DataError(f"dataset has no column '{column}'")
    values = np.asarray(column_values(ds, column), dtype=np.float64)
    bad = ~np.isnan(values) & ~np.isin(values, LABEL_VALUES)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(f"row {row}, column '{column}': label {values[row]!r} is not +1, -1, 0 or NaN")
    return values


def label_counts(ds: Dataset) -> dict[str, dict[str, int]]:
    """Per objective, how many rows say chosen better (``"chosen"``, +1), rejected better
    (``"rejected"``, -1), ``"tie"`` (0) and ``"unlabeled"`` (NaN)."""
    out: dict[str, dict[str, int]] = {}
    for name in objectives_in(ds):
        v = _labels(ds, name)
        out[name] = {
            "chosen": int((v == 1).sum()),
            "rejected": int((v == -1).sum()),
            "tie": int((v == 0).sum()),
            "unlabeled": int(np.isnan(v).sum()),
        }
    return out


def pairs_for_objective(ds: Dataset, objective: str, *, include_ties: bool = False) -> Dataset:
    """The rows labelled for ``objective``, oriented so that ``chosen`` is better for it.

    Rows labelled -1 get chosen and rejected swapped, and every ``pref_`` column of a swapped row
    is negated so the labels stay true. This is the input a single-objective reward model or DPO
    run on ``objective`` needs. Ties (0) are left out unless ``include_ties``.
    """
    labels = _labels(ds, objective)
    keep = (labels == 1) | (labels == -1) | ((labels == 0) if include_ties else False)
    idx = np.flatnonzero(keep)
    if len(idx) == 0:
        raise DataError(f"column '{pref_column(objective)}': no row is labelled for '{objective}'")
    sub = ds.select(idx.tolist())
    flip = labels[idx] == -1
    if not flip.any():
        return sub
    columns = {c: column_values(sub, c) for c in ("chosen", "rejected")}
    chosen = [r if f else c for c, r, f in zip(columns["chosen"], columns["rejected"], flip, strict=True)]
    rejected = [c if f else r for c, r, f in zip(columns["chosen"], columns["rejected"], flip, strict=True)]
    features = sub.features
    out = sub.remove_columns(["chosen", "rejected"])
    out = out.add_column("chosen", chosen, feature=features["chosen"])
    out = out.add_column("rejected", rejected, feature=features["rejected"])
    for name in objectives_in(sub):
        v = np.asarray(column_values(sub, pref_column(name)), dtype=np.float32)
        v = np.where(flip, -v, v)
        out = out.remove_columns(pref_column(name)).add_column(
            pref_column(name), v.tolist(), feature=LABEL_FEATURE
        )
    return out.select_columns(sub.column_names)


def mix_preference_datasets(*datasets: Dataset) -> Dataset:
    """Concatenate preference datasets; a ``pref_`` column missing from one is NaN there.

    All datasets must use the same format (text or chat). Other extra columns missing from a
    dataset are filled with ``None``. Label columns become float32.
    """
    if not datasets:
        raise DataError("mix_preference_datasets needs at least one dataset")
    for i, ds in enumerate(datasets):
        if not isinstance(ds, Dataset):
            raise DataError(f"dataset {i}: expected a datasets.Dataset, got {type(ds).__name__}")
        missing = [c for c in CORE_COLUMNS if c not in ds.column_names]
        if missing:
            raise DataError(f"dataset {i} has no column '{missing[0]}'")
    order: dict[str, Any] = {}
    for ds in datasets:
        for c in ds.column_names:
            if c not in order:
                order[c] = LABEL_FEATURE if c.startswith(PREF_PREFIX) else ds.features[c]
    ref = datasets[0].features
    out = []
    for i, ds in enumerate(datasets):
        for c in ("prompt", "chosen", "rejected"):
            if ds.features[c] != ref[c]:
                raise DataError(
                    f"dataset {i}, column '{c}': format {ds.features[c]} differs from "
                    f"dataset 0's {ref[c]} (mix text with text and chat with chat)"
                )
        for c, feature in order.items():
            if c not in ds.column_names:
                fill = [math.nan] * len(ds) if c.startswith(PREF_PREFIX) else [None] * len(ds)
                ds = ds.add_column(c, fill, feature=feature)
            elif c.startswith(PREF_PREFIX) and ds.features[c] != LABEL_FEATURE:
                ds = ds.cast_column(c, LABEL_FEATURE)
        out.append(ds.select_columns(list(order)))
    try:
        return concatenate_datasets(out)
    except ValueError as exc:
        raise DataError(f"cannot concatenate the datasets: {exc}") from None


def prompt_key(prompt: Any) -> str:
    """A string that is equal for equal prompts (a text, or a message list as sorted JSON):
    what the held-out split groups by and what makes held-out prompts distinct."""
    import json

    return prompt if isinstance(prompt, str) else json.dumps(prompt, sort_keys=True)
