"""Train a reward model for one objective: ``moalign reward``.

From the pairs of a preference dataset labelled for one objective (``pref_<objective>`` = +1 or
-1, oriented so ``chosen`` is the better reply for it), with a held-out split, three methods:

- ``head_only`` (default): the backbone stays frozen; its pooled last-layer features are computed
  once (cached on disk) and a linear Bradley-Terry head is fitted on ``f(chosen) - f(rejected)``
  (:func:`moalign.rewards.head.fit_bradley_terry`), then written as the ``score`` head of a
  ``*ForSequenceClassification`` model, so the ordinary HF forward gives the trained scores.
- ``full`` / ``lora``: TRL's ``RewardTrainer`` (all weights, or a LoRA adapter merged after).

The result is a standard sequence-classification folder (safetensors + tokenizer), written
atomically, with ``moalign_reward.json`` (how inputs are truncated and pooled, see
:class:`~moalign.rewards.head.RewardInputSpec`) and ``metrics.json`` (held-out pairwise accuracy).
:class:`~moalign.rewards.model.RewardModelObjective` and the ``helpfulness`` / ``harmlessness``
objectives load it directly; by default it goes to :func:`default_reward_model_dir`.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from moalign.config.checking import Range, range_problems
from moalign.data.catalog import CATALOG, dataset_problems, describe_spec, load_dataset
from moalign.data.split import TEST_SIZE
from moalign.errors import ConfigError, DataError, ModelError
from moalign.models.loading import quiet_transformers
from moalign.models.lora import LORA_DEFAULTS
from moalign.models.specs import model_problems, resolve_model
from moalign.storage.files import output_dir_problems

__all__ = [
    "METHODS",
    "METRICS_FILE",
    "REWARD_RANGES",
    "RewardTrainingConfig",
    "RewardTrainingResult",
    "default_reward_model_dir",
    "load_preference_pairs",
    "train_reward_model",
]

METRICS_FILE = "metrics.json"
#: Allowed ranges of the numeric keys of :class:`RewardTrainingConfig`.
REWARD_RANGES: dict[str, Range] = {
    "test_size": Range(low=0, high=1, low_open=True, high_open=True), "seed": Range(low=0),
    "max_train_pairs": Range(low=2, none=True), "max_test_pairs": Range(low=2, none=True),
    "max_prompt_tokens": Range(low=0, none=True), "max_completion_tokens": Range(low=1, none=True),
    "num_layers": Range(low=1, none=True), "batch_size": Range(low=1), "cv_folds": Range(low=2),
    "l2": Range(low=0, low_open=True, none=True), "learning_rate": Range(low=0, low_open=True),
    "num_train_epochs": Range(low=0, low_open=True),
    "max_steps": Range(low=1, also=(-1,), note="train num_train_epochs"),
    "gradient_accumulation_steps": Range(low=1), "logging_steps": Range(low=1),
    "lora_r": Range(low=1), "lora_alpha": Range(low=1),
    "lora_dropout": Range(low=0, high=1, high_open=True),
}


def default_reward_model_dir(objective: str) -> Path:
    """Where ``moalign reward`` saves the reward model of ``objective`` and where the
    ``helpfulness`` / ``harmlessness`` objectives look for it by default:
    ``$MOALIGN_CACHE/reward-models/<objective>`` (``~/.cache/moalign`` when unset)."""
    from moalign.models import default_reward_model_path

    return default_reward_model_path(objective)


@dataclass
class RewardTrainingConfig:
    """Configuration of ``moalign reward`` (YAML keys and ``--key value`` overrides)."""

    #: the objective to learn; pairs are the rows whose ``pref_<objective>`` is +1 or -1
    objective: str = "helpfulness"
    #: backbone: ``smollm2`` (the embedded SmolLM2-135M-Instruct), a local folder or a hub id
    model: str = "smollm2"
    #: ``hh-rlhf`` (bundled helpful + harmless), ``hh-rlhf/helpful-base``,
    #: ``hh-rlhf/harmless-base``, or a file / folder / hub id in moalign's preference schema
    dataset: str | dict[str, Any] = "hh-rlhf"
    #: ``head_only`` (frozen backbone, Bradley-Terry head), ``full`` or ``lora`` (TRL RewardTrainer)
    method: Literal["head_only", "full", "lora"] = "head_only"
    #: where the checkpoint goes (default: ``$MOALIGN_CACHE/reward-models/<objective>``)
    output_dir: str | None = None
    #: replace an existing ``output_dir``
    overwrite: bool = True
    #: held-out fraction of the labelled pairs (prompts never straddle the split)
    test_size: float = TEST_SIZE
    #: seed of the split, of the training subsample and of training
    seed: int = 0
    #: train on at most this many pairs of the training side (``null``: all)
    max_train_pairs: int | None = None
    #: evaluate on at most this many held-out pairs (``null``: all)
    max_test_pairs: int | None = None
    #: keep the last N tokens of each rendered prompt (``null``: all)
    max_prompt_tokens: int | None = 64
    #: keep the first M tokens of each rendered reply (``null``: all)
    max_completion_tokens: int | None = 96
    #: ``last`` (the token HF classifiers read) or ``mean_completion`` (mean over the reply's
    #: tokens; head_only only); ``null``: ``mean_completion`` for head_only, else ``last``
    pooling: Literal["last", "mean_completion"] | None = None
    #: head_only: keep only the first N transformer layers of the backbone (its final norm is
    #: kept), so features cost less; the saved checkpoint has N layers (``null``: all)
    num_layers: int | None = None
    #: compute dtype of the backbone: ``auto`` (bfloat16 where the machine runs it fast: CUDA
    #: with bf16, or a CPU with AMX-BF16 / AVX512-BF16 units; float32 elsewhere), ``float32``
    #: or ``bfloat16``
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    #: sequences per forward pass (features) or pairs per step (TRL)
    batch_size: int = 16
    #: head_only: L2 penalty of the head; ``null`` picks it from ``l2_grid`` by cross-validation
    l2: float | None = None
    #: head_only: candidates for ``l2``
    l2_grid: list[float] = field(default_factory=lambda: [0.1, 0.3, 1.0, 3.0, 10.0, 30.0])
    #: head_only: folds of the cross-validation that picks ``l2``
    cv_folds: int = 5
    #: head_only: cache features on disk (keyed by backbone, token ids and pooling)
    cache_features: bool = True
    #: folder of the feature cache (default ``$MOALIGN_CACHE/reward-features``)
    feature_cache_dir: str | None = None
    #: full/lora: learning rate
    learning_rate: float = 1e-4
    #: full/lora: passes over the training pairs (ignored when ``max_steps`` > 0)
    num_train_epochs: float = 1.0
    #: full/lora: optimizer steps (-1: from ``num_train_epochs``)
    max_steps: int = -1
    #: full/lora: gradient accumulation steps
    gradient_accumulation_steps: int = 1
    #: full/lora: log every N steps
    logging_steps: int = 10
    #: lora: rank, alpha, dropout and target modules of the adapter: the ``r``, ``lora_alpha``,
    #: ``lora_dropout`` and ``target_modules`` of :func:`moalign.models.lora_config` (the builder
    #: and defaults of ``moalign train`` and front traces), spelled flat
    lora_r: int = LORA_DEFAULTS["r"]
    lora_alpha: int = LORA_DEFAULTS["lora_alpha"]
    lora_dropout: float = LORA_DEFAULTS["lora_dropout"]
    lora_target_modules: list[str] = field(
        default_factory=lambda: list(LORA_DEFAULTS["target_modules"])
    )

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise ConfigError(problems)
        if self.dtype == "auto":  # resolved once, when read: the checkpoint records the result
            from moalign.models.precision import resolve_precision

            self.dtype = resolve_precision("auto")

    def problems(self) -> list[str]:
        """Every problem of this configuration, found without loading any model or data."""
        from moalign.objective.registry import _NAME_RE

        p: list[str] = []
        if not _NAME_RE.match(self.objective or ""):
            p.append(f"'objective' must be a lowercase name such as 'helpfulness', got {self.objective!r}")
        elif (isinstance(self.dataset, str) and self.dataset in CATALOG
              and f"pref_{self.objective}" not in CATALOG[self.dataset].columns):
            labels = sorted(c[5:] for c in CATALOG[self.dataset].columns if c.startswith("pref_"))
            p.append(f"objective '{self.objective}' has no labelled pairs in the bundled dataset "
                     f"'{self.dataset}' (it labels: {', '.join(labels) or 'nothing'})")
        p += range_problems(self, REWARD_RANGES)
        if self.num_layers is not None and self.method != "head_only":
            p.append("'num_layers' is only used by method 'head_only'; remove it or set it to null")
        if self.l2 is None and (not self.l2_grid or any(not (v > 0 and math.isfinite(v))
                                                         for v in self.l2_grid)):
            p.append(f"'l2_grid' must be a non-empty list of positive numbers, got {self.l2_grid}")
        if self.method == "lora" and not self.lora_target_modules:
            p.append("'lora_target_modules' must name at least one module for method 'lora'")
        if self.method != "head_only" and self.pooling not in (None, "last"):
            p.append(f"pooling '{self.pooling}' is only available with method 'head_only' (TRL's "
                     "RewardTrainer trains the last-token score)")
        p.extend(model_problems(self.model, tiny=False))
        p.extend(dataset_problems(self.dataset, hub=True))
        p.extend(output_dir_problems(self.output_dir, self.overwrite))
        return p

    @property
    def spec(self):
        """The :class:`~moalign.rewards.head.RewardInputSpec` the checkpoint is trained with."""
        from moalign.rewards.head import RewardInputSpec

        pooling = self.pooling or ("mean_completion" if self.method == "head_only" else "last")
        return RewardInputSpec(self.max_prompt_tokens, self.max_completion_tokens, pooling)


@dataclass
class RewardTrainingResult:
    """What :func:`train_reward_model` produced."""

    output_dir: Path
    objective: str
    method: str
    #: held-out pairwise accuracy (chosen scored above rejected; ties count one half)
    test_accuracy: float
    train_accuracy: float
    n_train: int
    n_test: int
    seconds: float
    metrics: dict[str, Any]


def load_preference_pairs(dataset: str | dict[str, Any], objective: str, *, test_size: float = TEST_SIZE, seed: int = 0):
    """The pairs labelled for ``objective``, oriented, split ``{"train", "test"}`` (a DatasetDict).

    Raises :class:`DataError` when the dataset lacks the ``pref_<objective>`` column or has no
    labelled row for it.
    """
    from moalign import data

    ds = load_dataset(dataset, hub=True)
    if not (isinstance(dataset, str) and dataset in CATALOG):
        data.validate_preference_dataset(ds, objectives=[objective], require_labels_for=[])
    if data.pref_column(objective) not in ds.column_names:
        raise DataError(f"dataset '{describe_spec(dataset)}' has no column '{data.pref_column(objective)}' "
                        f"(labelled objectives: {', '.join(data.objectives_in(ds)) or 'none'})")
    pairs = data.pairs_for_objective(ds, objective)
    if len(pairs) < 4:
        raise DataError(f"dataset '{describe_spec(dataset)}': only {len(pairs)} pair(s) labelled for "
                        f"'{objective}'; at least 4 are needed for a train/test split")
    return data.train_test_split_pairs(pairs, test_size=test_size, seed=seed)


def _subsample(ds, n: int | None, seed: int):
    if n is None or len(ds) <= n:
        return ds
    return ds.shuffle(seed=seed).select(range(n))


def _load_classifier(source: str, dtype: str, num_layers: int | None = None):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from moalign.models import prepare_tokenizer

    tokenizer = AutoTokenizer.from_pretrained(source)
    torch.manual_seed(0)
    extra: dict[str, Any] = {}
    if num_layers is not None:
        from transformers import AutoConfig

        total = AutoConfig.from_pretrained(source).get_text_config().num_hidden_layers
        if num_layers > total:
            raise ModelError(f"'num_layers' is {num_layers} but the model has {total} layers")
        extra["num_hidden_layers"] = num_layers
    # the new score head is reported as "missing" (and dropped layers as "unexpected"): expected
    with quiet_transformers():
        model = AutoModelForSequenceClassification.from_pretrained(
            source, num_labels=1, dtype=getattr(torch, dtype), **extra
        )
    prepare_tokenizer(tokenizer, model)
    model.config.pad_token_id = model.config.get_text_config().pad_token_id
    return model.eval(), tokenizer


def _encode(tokenizer, ds, spec) -> tuple[list, list]:
    from moalign.rewards.head import encode_reward_input

    chosen, rejected = [], []
    for p, c, r in zip(ds["prompt"], ds["chosen"], ds["rejected"], strict=True):
        chosen.append(encode_reward_input(tokenizer, p, c, spec))
        rejected.append(encode_reward_input(tokenizer, p, r, spec))
    return chosen, rejected


class _Progress:
    """A tqdm bar (on stderr) fed by ``__call__(n)``; silent when ``enabled`` is False."""

    def __init__(self, total: int, desc: str, enabled: bool):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, desc=desc, unit="seq", disable=not enabled, leave=False)

    def __call__(self, n: int) -> None:
        self.bar.update(n)

    def close(self) -> None:
        self.bar.close()


def _train_head_only(cfg: RewardTrainingConfig, source: str, model, tokenizer, split,
                     progress: bool) -> tuple[Any, dict[str, Any], Callable]:
    import torch

    from moalign.models import cache_root
    from moalign.rewards.head import (
        FeatureCache,
        cached_features,
        fit_bradley_terry,
        model_fingerprint,
        select_l2,
    )

    spec = cfg.spec
    fingerprint = model_fingerprint(model, source, pooling=spec.pooling, dtype=cfg.dtype)
    folder = (Path(cfg.feature_cache_dir).expanduser() if cfg.feature_cache_dir
              else cache_root() / "reward-features") if cfg.cache_features else None
    cache = FeatureCache(folder, fingerprint)
    enc = {name: _encode(tokenizer, split[name], spec) for name in ("train", "test")}
    total = sum(2 * len(split[name]) for name in enc)
    bar = _Progress(total, f"features ({cfg.objective})", progress)
    feats = {}
    try:
        for name, (ch, rj) in enc.items():
            f = cached_features(model, ch + rj, spec.pooling, cache, batch_size=cfg.batch_size,
                                progress=bar)
            feats[name] = (f[: len(ch)], f[len(ch):])
    finally:
        bar.close()
    diff = (feats["train"][0] - feats["train"][1]).double()
    cv: dict[float, float] = {}
    l2 = cfg.l2
    if l2 is None:
        l2, cv = select_l2(diff, cfg.l2_grid, folds=cfg.cv_folds, seed=cfg.seed)
    w = fit_bradley_terry(diff, l2)
    if cfg.dtype != "float32":  # the checkpoint gets the backbone's own float32 weights
        model, _ = _load_classifier(source, "float32", cfg.num_layers)
    with torch.no_grad():
        model.score.weight.copy_(w.float().unsqueeze(0))
    head = model.score.weight.detach().double()[0]

    def scores(name: str):  # what the saved model's forward returns, from the features
        ch, rj = feats[name]
        return ch.double() @ head, rj.double() @ head

    info = {"l2": l2, "cv_accuracy": {str(k): v for k, v in cv.items()},
            "feature_cache_entries": len(cache)}
    return model, info, scores


def _train_trl(cfg: RewardTrainingConfig, source: str, model, tokenizer, split,
               progress: bool) -> tuple[Any, dict[str, Any], Callable]:
    import tempfile

    import torch
    from datasets import Dataset
    from transformers import PrinterCallback
    from trl import RewardConfig, RewardTrainer

    from moalign.rewards.head import reward_scores

    spec = cfg.spec
    ch, rj = _encode(tokenizer, split["train"], spec)
    train = Dataset.from_dict({"chosen_ids": [c[0] for c in ch], "rejected_ids": [r[0] for r in rj]})
    peft_config = None
    if cfg.method == "lora":
        from moalign.models import flat_lora_options, lora_config

        peft_config = lora_config(task_type="SEQ_CLS", **flat_lora_options(cfg))
    with tempfile.TemporaryDirectory(prefix="moalign-reward-") as tmp:
        args = RewardConfig(
            output_dir=tmp, per_device_train_batch_size=cfg.batch_size,
            gradient_accumulation_steps=cfg.gradient_accumulation_steps,
            learning_rate=cfg.learning_rate, num_train_epochs=cfg.num_train_epochs,
            max_steps=cfg.max_steps, logging_steps=cfg.logging_steps, seed=cfg.seed,
            max_length=None, save_strategy="no", report_to="none", bf16=cfg.dtype == "bfloat16",
            use_cpu=not torch.cuda.is_available(), gradient_checkpointing=None, activation_checkpointing=False,
            disable_tqdm=not progress,
        )
        model.train()
        trainer = RewardTrainer(model=model, args=args, train_dataset=train,
                                processing_class=tokenizer, peft_config=peft_config)
        if not progress:
            trainer.remove_callback(PrinterCallback)
        out = trainer.train()
        model = trainer.model
    if cfg.method == "lora":
        model = model.merge_and_unload()
    model = model.float().eval()
    enc = {name: _encode(tokenizer, split[name], spec) for name in ("train", "test")}

    def scores(name: str):
        c, r = enc[name]
        s = reward_scores(model, c + r, spec.pooling, batch_size=cfg.batch_size)[:, 0]
        return s[: len(c)], s[len(c):]

    info = {"train_loss": float(out.training_loss), "steps": int(out.global_step)}
    return model, info, scores


#: method name -> trainer function ``(cfg, source, model, tokenizer, split, progress)``
METHODS: dict[str, Callable] = {
    "head_only": _train_head_only,
    "full": _train_trl,
    "lora": _train_trl,
}


def _launched_processes() -> Any:
    """accelerate's ``PartialState`` under a multi-process launch (``accelerate launch``,
    ``torchrun``: ``WORLD_SIZE`` > 1), None in a single process."""
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    from accelerate import PartialState

    return PartialState()


def train_reward_model(config: RewardTrainingConfig | dict[str, Any], *,
                       progress: bool = False) -> RewardTrainingResult:
    """Train and save a reward model for ``config.objective``; see the module docstring.

    Order: the configuration is checked (every problem at once), then the data are loaded and
    split (a :class:`DataError` if the objective has no labelled pair), then the model.
    """
    from moalign.config import build_config
    from moalign.rewards.head import pairwise_accuracy
    from moalign.storage.files import atomic_directory, atomic_write_json

    cfg = config if isinstance(config, RewardTrainingConfig) else build_config(
        RewardTrainingConfig, config)
    start = time.perf_counter()
    split = load_preference_pairs(cfg.dataset, cfg.objective, test_size=cfg.test_size, seed=cfg.seed)
    split["train"] = _subsample(split["train"], cfg.max_train_pairs, cfg.seed)
    split["test"] = _subsample(split["test"], cfg.max_test_pairs, cfg.seed)
    source = resolve_model(cfg.model)
    # TRL trains float32 weights (bfloat16 as autocast); head_only may run the frozen backbone in
    # bfloat16, but the checkpoint always gets the backbone's own float32 weights
    dtype = cfg.dtype if cfg.method == "head_only" else "float32"
    model, tokenizer = _load_classifier(source, dtype, cfg.num_layers)
    model, info, scores = METHODS[cfg.method](cfg, source, model, tokenizer, split, progress)
    acc = {name: pairwise_accuracy(*scores(name)) for name in ("train", "test")}
    seconds = time.perf_counter() - start
    output = Path(cfg.output_dir).expanduser() if cfg.output_dir else default_reward_model_dir(cfg.objective)
    metrics = {
        "objective": cfg.objective, "method": cfg.method, "model": cfg.model,
        "dataset": cfg.dataset, "test_accuracy": acc["test"], "train_accuracy": acc["train"],
        "n_train": len(split["train"]), "n_test": len(split["test"]),
        "test_size": cfg.test_size, "seed": cfg.seed, "seconds": round(seconds, 1),
        **info, "config": dataclasses.asdict(cfg),
    }
    model.config.id2label = {0: cfg.objective}
    model.config.label2id = {cfg.objective: 0}
    processes = _launched_processes()
    if processes is None or processes.is_main_process:  # one writer, the others wait for it
        with atomic_directory(output, overwrite=cfg.overwrite) as tmp:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            cfg.spec.save(tmp, objective=cfg.objective, method=cfg.method, trained_dtype=cfg.dtype)
            atomic_write_json(Path(tmp) / METRICS_FILE, metrics)
    if processes is not None:
        processes.wait_for_everyone()
    return RewardTrainingResult(output, cfg.objective, cfg.method, acc["test"], acc["train"],
                                len(split["train"]), len(split["test"]), seconds, metrics)

