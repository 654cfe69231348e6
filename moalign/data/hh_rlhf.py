"""Anthropic HH-RLHF (Bai et al. 2022, "Training a Helpful and Harmless Assistant with RLHF").

Source schema: one JSON object per line, ``{"chosen": str, "rejected": str}``; each value is a
whole dialogue ``"\\n\\nHuman: ...\\n\\nAssistant: ...\\n\\nHuman: ...\\n\\nAssistant: reply"``, and
the two differ only in the final assistant reply. In ``helpful-base`` the chosen dialogue has
the more helpful reply, in ``harmless-base`` the more harmless one.

Conversion rules (exact and reversible):

- A turn is a marker ``"\\n\\nHuman: "`` or ``"\\n\\nAssistant: "`` (with its space) followed by the
  content up to the next marker; ``Human`` becomes role ``user``, ``Assistant`` role
  ``assistant``. :func:`format_hh_dialogue` is the inverse of :func:`parse_hh_dialogue`.
- The shared prompt is the longest common prefix of chosen and rejected that ends at a
  ``"\\n\\nAssistant:"`` following a Human turn. Splitting each side at its own last
  ``Assistant:`` would be wrong: some replies contain ``Assistant:`` or ``Human:`` text of their
  own. Each side must continue with a space after that marker; the rest is its reply.
- Text format (``as_chat=False``): ``prompt`` ends with ``"\\n\\nAssistant:"`` and each
  completion starts with the space, so ``prompt + chosen`` is the original transcript.
  Chat format (default): ``prompt`` is the list of turns, each completion one assistant message;
  ``format_hh_transcript(prompt, reply)`` rebuilds the transcript.
- ``chosen == rejected``: dropped and counted (no preference). An empty final reply (the source
  has 8 such rows in the two test splits) is KEPT by default: saying nothing is a legitimate
  reply, and in harmless-base it is the preferred one; it is counted in the report's notes, and
  ``drop_empty=True`` drops it with a counted reason instead.
- A transcript not in this format (no leading ``"\\n\\nHuman: "``, no shared final
  ``"\\n\\nAssistant:"`` turn, no space after it, an empty prompt) raises :class:`DataError`
  naming the row and column, or, with ``errors="drop"``, is dropped with a counted reason.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from datasets import Dataset, Features, Value

from moalign.data.schema import (
    AdapterReport,
    AdapterResult,
    chat_feature,
    mix_preference_datasets,
    pref_column,
)
from moalign.data.sources import Source, get_columns, read_records
from moalign.errors import DataError

__all__ = [
    "HH_SUBSETS",
    "format_hh_dialogue",
    "format_hh_transcript",
    "from_hh_rlhf",
    "load_hh_rlhf",
    "parse_hh_dialogue",
    "split_hh_pair",
]

HUMAN = "\n\nHuman: "
ASSISTANT = "\n\nAssistant: "
_FINAL = "\n\nAssistant:"  # the end of a text-format prompt
_ROLE_OF = {"Human": "user", "Assistant": "assistant"}
_MARKER_OF = {"user": HUMAN, "assistant": ASSISTANT}
_TURN_RE = re.compile(r"\n\n(Human|Assistant): ")

#: HH-RLHF subsets with this schema -> the objective their preference speaks for.
HH_SUBSETS: dict[str, str] = {
    "helpful-base": "helpfulness",
    "helpful-online": "helpfulness",
    "helpful-rejection-sampled": "helpfulness",
    "harmless-base": "harmlessness",
}
_ERRORS = ("raise", "drop")


class _Malformed(Exception):
    def __init__(self, column: str, reason: str):
        self.column, self.reason = column, reason
        super().__init__(reason)


def parse_hh_dialogue(text: str) -> list[dict[str, str]]:
    """Split ``"\\n\\nHuman: a\\n\\nAssistant: b..."`` into chat messages (exactly reversible)."""
    if not text.startswith(HUMAN):
        raise DataError(f"an HH dialogue starts with {HUMAN!r}, got {text[:20]!r}")
    marks = list(_TURN_RE.finditer(text))
    return [
        {
            "role": _ROLE_OF[m.group(1)],
            "content": text[m.end() : marks[i + 1].start() if i + 1 < len(marks) else len(text)],
        }
        for i, m in enumerate(marks)
    ]


def format_hh_dialogue(messages: Sequence[Mapping[str, str]]) -> str:
    """The HH transcript of chat ``messages`` (roles ``user`` / ``assistant``)."""
    parts = []
    for j, m in enumerate(messages):
        if m.get("role") not in _MARKER_OF:
            raise DataError(f"message {j}: HH dialogues have roles user/assistant, got {m.get('role')!r}")
        parts.append(_MARKER_OF[m["role"]] + m["content"])
    return "".join(parts)


def format_hh_transcript(prompt: Sequence[Mapping[str, str]] | str, reply: Any) -> str:
    """Rebuild the HH transcript from a converted prompt and one completion.

    Chat format: ``prompt`` is the message list and ``reply`` the assistant content (a string)
    or the completion ``[{"role": "assistant", "content": ...}]``. Text format: ``prompt`` ends
    with ``"\\n\\nAssistant:"`` and ``reply`` is the completion (starting with its space).
    """
    if isinstance(prompt, str):
        if not isinstance(reply, str):
            raise DataError("a text-format prompt takes a text completion")
        return prompt + reply
    if isinstance(reply, list):
        if len(reply) != 1 or reply[0].get("role") != "assistant":
            raise DataError("an HH completion is exactly one assistant message")
        reply = reply[0]["content"]
    return format_hh_dialogue(prompt) + ASSISTANT + reply


def split_hh_pair(chosen: str, rejected: str) -> tuple[list[dict[str, str]], str, str]:
    """``(prompt messages, chosen reply, rejected reply)`` of one HH pair (module rules).

    Raises :class:`DataError` (naming the column) when the pair is not in HH format.
    """
    try:
        cut = _boundary(chosen, rejected)
    except _Malformed as exc:
        raise DataError(f"column '{exc.column}': {exc.reason}") from None
    return parse_hh_dialogue(chosen[:cut]), chosen[cut + len(ASSISTANT):], rejected[cut + len(ASSISTANT):]


def _common_prefix_length(a: str, b: str) -> int:
    n = min(len(a), len(b))
    lo, hi = 0, n  # a[:lo] == b[:lo]; binary search on slices is C-speed
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _boundary(chosen: str, rejected: str) -> int:
    """Index of the final ``"\\n\\nAssistant:"`` of the shared prompt."""
    for column, text in (("chosen", chosen), ("rejected", rejected)):
        if not isinstance(text, str):
            raise _Malformed(column, f"expected a string, got {type(text).__name__}")
        if not text.startswith(HUMAN):
            raise _Malformed(column, f"transcript does not start with {HUMAN!r}")
        if _FINAL not in text:
            raise _Malformed(column, f"transcript has no {_FINAL!r} turn")
    n = _common_prefix_length(chosen, rejected)
    k = chosen.rfind(_FINAL, 0, n)
    while k > 0:
        turns = _TURN_RE.findall(chosen, 0, k)
        if turns and turns[-1] == "Human":
            break
        k = chosen.rfind(_FINAL, 0, k + len(_FINAL) - 1)
    if k <= 0:
        raise _Malformed(
            "chosen/rejected", f"no shared prompt ending with a Human turn and {_FINAL!r}"
        )
    for column, text in (("chosen", chosen), ("rejected", rejected)):
        if not text.startswith(" ", k + len(_FINAL)):
            raise _Malformed(column, f"the final reply does not start with a space after {_FINAL!r}")
    return k


def from_hh_rlhf(
    source: Source,
    objective: str = "helpfulness",
    *,
    as_chat: bool = True,
    drop_empty: bool = False,
    errors: str = "raise",
    name: str = "hh-rlhf",
) -> AdapterResult:
    """Convert HH-RLHF pairs (module docstring) into the canonical schema.

    ``source``: rows with ``chosen``/``rejected`` strings, a ``Dataset``, a path or a hub id.
    Every kept row gets ``pref_<objective> = +1``. ``errors="drop"`` drops malformed rows with
    a counted reason instead of raising. Returns ``(dataset, report)``.
    """
    label = pref_column(objective)
    if errors not in _ERRORS:
        raise DataError(f"errors must be one of {_ERRORS}, got {errors!r}")
    records = read_records(source)
    cols = get_columns(records, ["chosen", "rejected"], source=name)
    report = AdapterReport(source=name, records_in=len(cols["chosen"]))
    prompts: list[Any] = []
    chosen_out: list[Any] = []
    rejected_out: list[Any] = []
    for i, (chosen, rejected) in enumerate(zip(cols["chosen"], cols["rejected"], strict=True)):
        if isinstance(chosen, str) and chosen == rejected:
            report.drop("chosen == rejected", i)
            continue
        try:
            k = _boundary(chosen, rejected)
            prompt_text = chosen[:k]
            messages = parse_hh_dialogue(prompt_text)
            if not any(m["content"].strip() for m in messages if m["role"] == "user"):
                raise _Malformed("chosen", "empty prompt (no Human text before the final turn)")
        except _Malformed as exc:
            if errors == "raise":
                raise DataError(f"{name}: row {i}, column '{exc.column}': {exc.reason}") from None
            report.drop(f"malformed: {exc.reason}", i)
            continue
        start = k + len(_FINAL)
        replies = {"chosen": chosen[start + 1 :], "rejected": rejected[start + 1 :]}
        empty = [side for side, r in replies.items() if r == ""]
        if empty and drop_empty:
            report.drop(f"empty {empty[0]} reply", i)
            continue
        for side in empty:
            report.note(f"empty {side} reply")
        if as_chat:
            prompts.append(messages)
            chosen_out.append([{"role": "assistant", "content": replies["chosen"]}])
            rejected_out.append([{"role": "assistant", "content": replies["rejected"]}])
        else:
            prompts.append(chosen[: start])
            chosen_out.append(chosen[start:])
            rejected_out.append(rejected[start:])
        report.records_kept += 1
    fmt = chat_feature() if as_chat else Value("string")
    features = Features({"prompt": fmt, "chosen": fmt, "rejected": fmt, label: Value("float32")})
    ds = Dataset.from_dict(
        {"prompt": prompts, "chosen": chosen_out, "rejected": rejected_out,
         label: [1.0] * len(prompts)},
        features=features,
    )
    report.rows_out = len(ds)
    return AdapterResult(ds, report)


def _subset_source(subset: str, path: str | os.PathLike | None, split: str, single: bool):
    if path is None:
        if split != "test":
            raise DataError(
                f"only the 'test' split of HH-RLHF is bundled; for split '{split}' pass "
                "path= (a local copy of anthropics/hh-rlhf, or 'Anthropic/hh-rlhf' when online)"
            )
        from moalign.data.bundled import bundled_path

        return bundled_path(f"hh-rlhf/{subset}"), None
    local = Path(os.fspath(path)).expanduser()
    if local.is_dir():
        for suffix in (".jsonl.gz", ".jsonl"):
            candidate = local / subset / f"{split}{suffix}"
            if candidate.is_file():
                return candidate, None
        raise DataError(f"{local}: no {subset}/{split}.jsonl.gz (the anthropics/hh-rlhf layout)")
    if local.is_file():
        if not single:
            raise DataError(f"path '{path}' is one file; give a folder to load several subsets")
        return local, None
    return os.fspath(path), subset  # a hub id: the subset is its data_dir


def load_hh_rlhf(
    subset: str | Sequence[str] = "helpful-base",
    path: str | os.PathLike | None = None,
    *,
    split: str = "test",
    as_chat: bool = True,
    drop_empty: bool = False,
    errors: str = "raise",
) -> AdapterResult:
    """Load HH-RLHF subsets as a preference dataset (the bundled test splits by default).

    ``subset``: ``"helpful-base"`` (labels ``pref_helpfulness``), ``"harmless-base"``
    (``pref_harmlessness``), ``"both"`` (the two mixed; each row is NaN for the objective its
    subset says nothing about) or a list of subsets. ``path``: ``None`` for the bundled files,
    a folder laid out like anthropics/hh-rlhf (``<subset>/<split>.jsonl.gz``), a single file
    (one subset only), or a hub id such as ``"Anthropic/hh-rlhf"`` (when online).
    """
    subsets = ["helpful-base", "harmless-base"] if subset == "both" else (
        [subset] if isinstance(subset, str) else list(subset)
    )
    for s in subsets:
        if s not in HH_SUBSETS:
            raise DataError(
                f"unknown HH-RLHF subset '{s}'; choose from {', '.join(HH_SUBSETS)} or 'both'"
            )
    results = []
    for s in subsets:
        where, data_dir = _subset_source(s, path, split, single=len(subsets) == 1)
        records = read_records(where, split=split, data_dir=data_dir) if data_dir else where
        results.append(
            from_hh_rlhf(records, HH_SUBSETS[s], as_chat=as_chat, drop_empty=drop_empty,
                         errors=errors, name=f"hh-rlhf/{s}")
        )
    if len(results) == 1:
        return results[0]
    ds = mix_preference_datasets(*(r.dataset for r in results))
    report = AdapterReport.combine("hh-rlhf/" + "+".join(subsets), [r.report for r in results])
    return AdapterResult(ds, report)

