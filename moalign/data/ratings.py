"""Rating datasets -> multi-objective preference pairs.

Rating datasets score several responses to one prompt on K attributes, e.g. HelpSteer (Wang et
al. 2023: ``helpfulness``, ``correctness``, ``coherence``, ``complexity``, ``verbosity``, 0-4) or
UltraFeedback (Cui et al. 2023: fine-grained 1-5 ratings of ``helpfulness``, ``honesty``,
``instruction_following``, ``truthfulness``). Two layouts are read:

- **long** (HelpSteer): one row per response, with a prompt column, a response column and one
  column per attribute; rows with the same prompt form a group.
- **nested** (UltraFeedback): one row per prompt, whose ``responses_column`` holds a list of
  dicts; the response text and each attribute are looked up in each dict, attributes by a
  dotted path such as ``"annotations.helpfulness.Rating"``.

Scores may be numbers or numeric strings; ``None``, ``""`` and ``"N/A"`` mean "not rated".
Pairs: ``pairs="best_worst"`` (default) makes one pair per prompt, the response with the highest
mean attribute score (over the attributes it has) as ``chosen`` and the lowest as ``rejected``
(ties broken by order of appearance); ``pairs="all"`` makes every pair, oriented by the mean.
Each objective's label is the sign of ``score(chosen) - score(rejected)`` for its attribute: 0
when the difference is at most ``tie_margin``, NaN when either response lacks the score. A pair
with identical texts, or with no +1/-1 label, is not emitted; a prompt left with no pair is
dropped with a counted reason. ``as_chat=False`` keeps the raw strings (no template applied).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from itertools import combinations
from typing import Any

import numpy as np
from datasets import Dataset, Features, Value

from moalign.data.schema import AdapterReport, AdapterResult, chat_feature, pref_column
from moalign.data.sources import Source, get_columns, read_records
from moalign.errors import DataError

__all__ = ["from_ratings"]

_MISSING = {"", "n/a", "na", "none", "null"}
_PAIRS = ("best_worst", "all")


def _score(value: Any, where: str) -> float:
    if value is None:
        return math.nan
    if isinstance(value, bool):
        raise DataError(f"{where}: a score must be a number, got {value!r}")
    if isinstance(value, str):
        if value.strip().lower() in _MISSING:
            return math.nan
        try:
            return float(value)
        except ValueError:
            raise DataError(f"{where}: score {value!r} is not a number") from None
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    raise DataError(f"{where}: a score must be a number, got {type(value).__name__}")


def _lookup(item: Any, path: str, where: str) -> Any:
    for key in path.split("."):
        if not isinstance(item, Mapping) or key not in item:
            raise DataError(f"{where}: no '{path}' (missing '{key}')")
        item = item[key]
    return item


def _long_groups(records, prompt_column, response_column, attributes, name):
    cols = get_columns(records, [prompt_column, response_column, *attributes.values()], source=name)
    groups: dict[str, dict[str, Any]] = {}
    for i, prompt in enumerate(cols[prompt_column]):
        key = prompt if isinstance(prompt, str) else json.dumps(prompt, sort_keys=True)
        group = groups.setdefault(key, {"prompt": prompt, "row": i, "responses": []})
        scores = [_score(cols[c][i], f"{name}: row {i}, column '{c}'") for c in attributes.values()]
        group["responses"].append((cols[response_column][i], scores, f"row {i}, column '{response_column}'"))
    return list(groups.values())


def _nested_groups(records, prompt_column, responses_column, response_column, attributes, name):
    cols = get_columns(records, [prompt_column, responses_column], source=name)
    groups = []
    for i, (prompt, items) in enumerate(zip(cols[prompt_column], cols[responses_column], strict=True)):
        if not isinstance(items, list):
            raise DataError(f"{name}: row {i}, column '{responses_column}': expected a list")
        responses = []
        for j, item in enumerate(items):
            where = f"{name}: row {i}, column '{responses_column}', response {j}"
            text = _lookup(item, response_column, where)
            scores = [_score(_lookup(item, p, where), f"{where}, '{p}'") for p in attributes.values()]
            responses.append((text, scores, f"row {i}, column '{responses_column}', response {j}"))
        groups.append({"prompt": prompt, "row": i, "responses": responses})
    return groups


def _labels(a: list[float], b: list[float], tie_margin: float) -> list[float]:
    out = []
    for x, y in zip(a, b, strict=True):
        d = x - y
        out.append(math.nan if math.isnan(d) else 0.0 if abs(d) <= tie_margin else math.copysign(1.0, d))
    return out


def from_ratings(
    source: Source,
    attributes: Mapping[str, str],
    *,
    prompt_column: str = "prompt",
    response_column: str = "response",
    responses_column: str | None = None,
    pairs: str = "best_worst",
    tie_margin: float = 0.0,
    as_chat: bool = True,
    name: str = "ratings",
) -> AdapterResult:
    """Turn rated responses into pairs with one label per objective (module docstring).

    ``attributes`` maps each objective name to its score column (long layout) or dotted path
    inside a response dict (nested layout, chosen by giving ``responses_column``). Example,
    HelpSteer: ``from_ratings(rows, {"helpfulness": "helpfulness", "verbosity": "verbosity"})``;
    UltraFeedback: ``from_ratings(rows, {"honesty": "annotations.honesty.Rating"},
    prompt_column="instruction", responses_column="completions")``. Every input prompt is
    accounted for in the report (``record = "prompt"``). Returns ``(dataset, report)``.
    """
    if not isinstance(attributes, Mapping) or not attributes:
        raise DataError("attributes must map at least one objective name to a score column")
    label_cols = [pref_column(o) for o in attributes]
    if pairs not in _PAIRS:
        raise DataError(f"pairs must be one of {_PAIRS}, got {pairs!r}")
    if not (isinstance(tie_margin, (int, float)) and tie_margin >= 0):
        raise DataError(f"tie_margin must be a number >= 0, got {tie_margin!r}")
    records = read_records(source)
    if responses_column is None:
        groups = _long_groups(records, prompt_column, response_column, attributes, name)
    else:
        groups = _nested_groups(records, prompt_column, responses_column, response_column,
                                attributes, name)
    report = AdapterReport(source=name, record="prompt", records_in=len(groups))
    out: dict[str, list[Any]] = {k: [] for k in ("prompt", "chosen", "rejected", *label_cols)}
    for g, group in enumerate(groups):
        prompt = group["prompt"]
        if isinstance(prompt, str):
            if not prompt.strip():
                raise DataError(f"{name}: row {group['row']}, column '{prompt_column}': empty prompt")
            prompt_out = [{"role": "user", "content": prompt}] if as_chat else prompt
        elif isinstance(prompt, list) and as_chat:
            prompt_out = prompt
        else:
            raise DataError(
                f"{name}: row {group['row']}, column '{prompt_column}': expected a string, "
                f"got {type(prompt).__name__}"
            )
        scored = []
        for text, scores, where in group["responses"]:
            if not isinstance(text, str):
                raise DataError(f"{name}: {where}: expected a string, got {type(text).__name__}")
            if all(math.isnan(s) for s in scores):
                report.note("responses without any score")
                continue
            scored.append((text, scores, float(np.nanmean(scores))))
        if len(scored) < 2:
            report.drop("fewer than 2 rated responses", g)
            continue
        order = sorted(range(len(scored)), key=lambda r: -scored[r][2])  # stable: ties by order
        candidates = [(order[0], order[-1])] if pairs == "best_worst" else [
            (order[a], order[b]) for a, b in combinations(range(len(order)), 2)
        ]
        emitted = 0
        for c, r in candidates:
            if scored[c][0] == scored[r][0]:
                continue
            labels = _labels(scored[c][1], scored[r][1], float(tie_margin))
            if not any(abs(v) == 1.0 for v in labels):
                continue
            out["prompt"].append(prompt_out)
            out["chosen"].append([{"role": "assistant", "content": scored[c][0]}] if as_chat
                                 else scored[c][0])
            out["rejected"].append([{"role": "assistant", "content": scored[r][0]}] if as_chat
                                   else scored[r][0])
            for col, v in zip(label_cols, labels, strict=True):
                out[col].append(v)
            emitted += 1
        if emitted == 0:
            report.drop("no pair with a preference", g)
            continue
        report.records_kept += 1
    fmt = chat_feature() if as_chat else Value("string")
    features = Features({"prompt": fmt, "chosen": fmt, "rejected": fmt,
                         **{c: Value("float32") for c in label_cols}})
    ds = Dataset.from_dict(out, features=features)
    report.rows_out = len(ds)
    return AdapterResult(ds, report)
