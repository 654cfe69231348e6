"""Dataset adapters: plugins that turn a source's own rows into moalign's canonical schema.

An adapter is a :class:`DatasetAdapter`, found by name through the entry-point group
``moalign.datasets`` (:data:`ADAPTER_GROUP`). The built-in ones are declared in moalign's own
``pyproject.toml`` through that group, exactly as a user's package declares its own::

    [project.entry-points."moalign.datasets"]
    my-format = "my_package.adapters:MY_FORMAT"

Built-ins: ``hh-rlhf`` (Anthropic HH-RLHF transcripts), ``pku-saferlhf`` (PKU-SafeRLHF: both
objectives from one row), ``ratings`` (UltraFeedback / HelpSteer-style attribute scores),
``pairs`` (prompt + chosen / rejected conversations with scores, e.g. UltraFeedback binarized),
``gsm8k`` and ``math`` (prompts with reference answers) and ``canonical`` (rows already in the
schema; degenerate pairs are dropped and counted).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from moalign._plugins import Registry
from moalign.data.schema import CORE_COLUMNS, AdapterReport, AdapterResult, pref_column
from moalign.errors import DataError

__all__ = ["ADAPTER_GROUP", "DatasetAdapter", "available_adapters", "get_adapter",
           "register_adapter"]

#: The entry-point group of dataset adapters.
ADAPTER_GROUP = "moalign.datasets"


@dataclass(frozen=True)
class DatasetAdapter:
    """How to read one source format.

    ``convert(records, **options)`` returns an :class:`~moalign.data.AdapterResult` (the
    canonical dataset and a report of every input record: kept, or dropped with a reason).
    ``columns`` are the source columns it needs (checked against a local file before anything
    is trained); ``kind`` is ``"preference"`` (pairs with ``pref_<objective>`` labels) or
    ``"prompts"``; ``labels(options)`` names the objectives it labels (None: unknown until
    the data is read).
    """

    name: str
    kind: str
    columns: tuple[str, ...]
    convert: Callable[..., AdapterResult]
    description: str = ""
    labels: Callable[[Mapping[str, Any]], list[str] | None] = field(
        default=lambda options: None)

    def option_names(self) -> frozenset[str] | None:
        """The options ``convert`` accepts, from its signature (the parameters after the
        records); for a ``convert`` that passes ``**options`` on, those of the function it
        passes them to (:func:`_passes_options_to`). ``None``: any option (not known)."""
        return _keywords(self.convert)

    def option_problems(self, options: Any, key: str = "dataset") -> list[str]:
        """Options the adapter does not take, each named with the ones it does."""
        accepted = self.option_names()
        if accepted is None or not isinstance(options, Mapping):
            return []
        from moalign.config.checking import did_you_mean

        shown = ", ".join(sorted(accepted)) or "none"
        return [f"'{key}.options': adapter '{self.name}' has no option '{name}'"
                f"{did_you_mean(name, accepted)} (its options: {shown})"
                for name in options if name not in accepted]

    def output_columns(self, options: Mapping[str, Any]) -> frozenset[str] | None:
        """The canonical columns it writes, when they can be told without reading data."""
        labels = self.labels(options)
        if self.kind != "preference" or labels is None:
            return None
        return frozenset(CORE_COLUMNS) | {pref_column(o) for o in labels}


def _keywords(fn: Callable[..., Any]) -> frozenset[str] | None:
    """Keyword parameters of ``fn`` after its first (the records); ``None`` when it takes any."""
    import inspect

    target = getattr(fn, "_passes_options_to", None)
    try:
        params = list(inspect.signature(fn).parameters.values())[1:]
    except (TypeError, ValueError):  # a callable without a signature
        return None
    names = {p.name for p in params
             if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    if any(p.kind is p.VAR_KEYWORD for p in params):
        if target is None:
            return None
        module, _, attr = target[0].partition(":")
        import importlib

        inner = _keywords(getattr(importlib.import_module(module), attr))
        return None if inner is None else frozenset((names | inner) - set(target[1]))
    return frozenset(names)


def _passes_options_to(target: str, fixed: tuple[str, ...] = ()) -> Callable[[Any], Any]:
    """Mark a ``convert(records, **options)`` as passing its options to ``target``
    (``module:function``) with ``fixed`` set by the adapter itself, so that
    :meth:`DatasetAdapter.option_names` can tell which options it takes."""
    def mark(fn: Any) -> Any:
        fn._passes_options_to = (target, fixed)
        return fn

    return mark


def _accept(name: str, adapter: Any, where: str) -> DatasetAdapter:
    if not isinstance(adapter, DatasetAdapter):
        raise DataError(f"dataset adapter '{name}': {where} is not a "
                        f"moalign.data.DatasetAdapter (got {type(adapter).__name__})")
    if adapter.kind not in ("preference", "prompts"):
        raise DataError(f"dataset adapter '{name}': kind must be 'preference' or 'prompts', "
                        f"got {adapter.kind!r}")
    return adapter


_REGISTRY = Registry("dataset adapter", group=ADAPTER_GROUP, accept=_accept,
                     error=lambda message, name: DataError(message))


def available_adapters() -> list[str]:
    """Names of every dataset adapter (built-in, installed plugins, registered in-process)."""
    return _REGISTRY.names()


def get_adapter(name: str) -> DatasetAdapter:
    """The adapter registered under ``name``; an unknown name lists the known ones."""
    return _REGISTRY[name]


def register_adapter(adapter: DatasetAdapter) -> DatasetAdapter:
    """Register ``adapter`` in-process (for code that is not installed as a package)."""
    return _REGISTRY.register(adapter.name, adapter)


def describe_adapters() -> list[tuple[str, str, str, str]]:
    """``(name, kind, source, description)`` of every adapter (imports the plugins)."""
    rows = []
    for name in available_adapters():
        try:
            adapter = get_adapter(name)
            rows.append((name, adapter.kind, _REGISTRY.source(name), adapter.description))
        except DataError as exc:
            rows.append((name, "?", _REGISTRY.source(name), f"(cannot load: {exc})"))
    return rows


# --------------------------------------------------------------------------------------------
# Built-in adapters (registered through the entry-point group in pyproject.toml)
# --------------------------------------------------------------------------------------------


def _hh(records: Any, *, objective: str = "helpfulness", as_chat: bool = True) -> AdapterResult:
    from moalign.data.hh_rlhf import from_hh_rlhf

    return from_hh_rlhf(records, objective, as_chat=as_chat, drop_empty=True, errors="drop")


@_passes_options_to("moalign.data.pku:from_pku_saferlhf", ("errors",))
def _pku(records: Any, **options: Any) -> AdapterResult:
    from moalign.data.pku import from_pku_saferlhf

    return from_pku_saferlhf(records, errors="drop", **options)


@_passes_options_to("moalign.data.ratings:from_ratings", ())
def _ratings(records: Any, **options: Any) -> AdapterResult:
    from moalign.data.ratings import from_ratings

    if "attributes" not in options:
        raise DataError("adapter 'ratings' needs options.attributes: a mapping from each "
                        "objective to its score column, e.g. {helpfulness: helpfulness}")
    return from_ratings(records, **options)


@_passes_options_to("moalign.data.reasoning:load_gsm8k", ())
def _gsm8k(records: Any, **options: Any) -> AdapterResult:
    from moalign.data.reasoning import load_gsm8k

    return load_gsm8k(records, **options)


@_passes_options_to("moalign.data.reasoning:load_math500", ())
def _math(records: Any, **options: Any) -> AdapterResult:
    from moalign.data.reasoning import load_math500

    return load_math500(records, **options)


def _pairs(records: Any, *, objective: str = "helpfulness", score_chosen: str = "score_chosen",
           score_rejected: str = "score_rejected") -> AdapterResult:
    """Pairs whose replies may be whole conversations that repeat the prompt (UltraFeedback
    binarized: ``prompt``, ``chosen`` / ``rejected`` message lists, ``score_chosen`` /
    ``score_rejected``): the reply is what follows the prompt; the label of ``objective`` is
    +1 when the chosen score is higher, 0 (a tie) when equal, and -1 when lower (no scores:
    +1). Identical or empty replies are dropped and counted."""
    from datasets import Dataset

    from moalign.data.sources import get_columns

    cols = get_columns(records, ["prompt", "chosen", "rejected"], source="pairs",
                       optional=[score_chosen, score_rejected])
    report = AdapterReport(source="pairs", records_in=len(cols["prompt"]))
    out: dict[str, list[Any]] = {"prompt": [], "chosen": [], "rejected": [],
                                 pref_column(objective): []}
    for i, prompt in enumerate(cols["prompt"]):
        chat = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
        replies = [_reply_after(cols[c][i], chat) for c in ("chosen", "rejected")]
        if any(_empty(r) for r in replies):
            report.drop("empty reply", i)
            continue
        if replies[0] == replies[1]:
            report.drop("chosen == rejected", i)
            continue
        label = 1.0
        if score_chosen in cols and score_rejected in cols:
            a, b = (_number(cols[c][i], c, i) for c in (score_chosen, score_rejected))
            label = 1.0 if a > b else (0.0 if a == b else -1.0)
        out["prompt"].append(chat)
        out["chosen"].append(replies[0])
        out["rejected"].append(replies[1])
        out[pref_column(objective)].append(label)
    report.records_kept = report.rows_out = len(out["prompt"])
    return AdapterResult(Dataset.from_dict(out), report)


def _number(value: Any, column: str, row: int) -> float:
    """A score of the ``pairs`` adapter as a float; text, a bool or a missing score is a
    :class:`DataError` naming the column and the row."""
    import math

    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if math.isfinite(number):
            return number
    raise DataError(f"adapter 'pairs': row {row}, column '{column}': a score must be a finite "
                    f"number, got {value!r:.60}")


def _reply_after(conversation: Any, prompt: list[dict[str, Any]]) -> Any:
    """The assistant turns of ``conversation`` after ``prompt`` (a string stays a string)."""
    if isinstance(conversation, str):
        return conversation
    turns = [dict(m) for m in conversation]
    if turns[:len(prompt)] == prompt:
        turns = turns[len(prompt):]
    return [m for m in turns if m.get("role") == "assistant"] or turns


def _canonical(records: Any, *, objectives: Sequence[str] | None = None) -> AdapterResult:
    """Rows already in the schema. Pairs that say nothing are dropped and counted: identical
    chosen / rejected, an empty reply, no label for any of ``objectives`` (default: every
    ``pref_`` column)."""
    import math

    from datasets import Dataset

    ds = records if isinstance(records, Dataset) else Dataset.from_list(list(records))
    report = AdapterReport(source="canonical", records_in=len(ds))
    for column in CORE_COLUMNS:
        if column not in ds.column_names:
            raise DataError(f"canonical data has no column '{column}' (columns: "
                            f"{', '.join(ds.column_names)})")
    labels = [pref_column(o) for o in objectives] if objectives else [
        c for c in ds.column_names if c.startswith("pref_")]
    keep = []
    for i, row in enumerate(ds.select_columns([*CORE_COLUMNS, *labels])):
        if row["chosen"] == row["rejected"]:
            report.drop("chosen == rejected", i)
        elif any(_empty(row[c]) for c in ("chosen", "rejected")):
            report.drop("empty reply", i)
        elif labels and not any(isinstance(row[c], (int, float)) and not math.isnan(row[c])
                                and row[c] != 0 for c in labels):
            report.drop("no label for any objective", i)
        else:
            keep.append(i)
    report.records_kept = report.rows_out = len(keep)
    return AdapterResult(ds.select(keep) if len(keep) < len(ds) else ds, report)


def _empty(reply: Any) -> bool:
    if isinstance(reply, str):
        return not reply.strip()
    if isinstance(reply, list):
        return not reply or all(not str(m.get("content", "")).strip() for m in reply)
    return reply is None


HH_RLHF = DatasetAdapter(
    "hh-rlhf", "preference", ("chosen", "rejected"), _hh,
    "Anthropic HH-RLHF transcripts: every pair labelled for options.objective "
    "(default helpfulness)",
    labels=lambda o: [o.get("objective", "helpfulness")])
PKU_SAFERLHF = DatasetAdapter(
    "pku-saferlhf", "preference",
    ("prompt", "response_0", "response_1", "better_response_id", "safer_response_id",
     "is_response_0_safe", "is_response_1_safe"), _pku,
    "PKU-SafeRLHF: one row gives a helpfulness and a harmlessness label",
    labels=lambda o: [o.get("helpful_objective", "helpfulness"),
                      o.get("harmless_objective", "harmlessness")])
RATINGS = DatasetAdapter(
    "ratings", "preference", (), _ratings,
    "rated responses (UltraFeedback, HelpSteer): options.attributes maps objectives to scores",
    labels=lambda o: list(o["attributes"]) if isinstance(o.get("attributes"), Mapping) else None)
GSM8K = DatasetAdapter("gsm8k", "prompts", ("question", "answer"), _gsm8k,
                       "GSM8K problems (question, answer with '####')")
MATH = DatasetAdapter("math", "prompts", ("problem", "solution", "subject", "level"), _math,
                      "MATH / MATH-500 problems (problem, solution, subject, level)")
PAIRS = DatasetAdapter(
    "pairs", "preference", ("prompt", "chosen", "rejected"), _pairs,
    "prompt + chosen / rejected conversations with scores (UltraFeedback binarized); "
    "labels options.objective", labels=lambda o: [o.get("objective", "helpfulness")])
CANONICAL = DatasetAdapter("canonical", "preference", CORE_COLUMNS, _canonical,
                           "rows already in moalign's schema; degenerate pairs are dropped")
