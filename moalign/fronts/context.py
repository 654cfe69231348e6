"""What the methods of a front share: the data splits, the starting policy, the objectives,
trained runs and the weight vectors of the points.

:class:`Context` loads (and checks) the data before the model, trains each run once from a copy
of the pristine base (:func:`moalign.fronts.runs.train_run`, any trainer), keeps finished runs
on disk (resumable) and loads them back: LoRA adapters into one peft model (wrapped around a
copy of the base, so the base stays pristine and runs may follow evaluated points, as in an
adaptive sweep), fully fine-tuned models one at a time. :class:`Policy` says how to query one
point.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from moalign.data.selection import first_labelled
from moalign.fronts import runs
from moalign.fronts.config import FrontConfig
from moalign.fronts.plan import ADAPTIVE
from moalign.storage.checkpoints import check_adapter, check_model_folder, read_json
from moalign.storage.files import atomic_directory, atomic_write_json
from moalign.trainers.registry import TRAINERS

__all__ = ["Context", "Policy", "load_preference_splits", "load_prompt_splits", "run_placement"]


@dataclass
class Policy:
    """How to query one point's policy: the model with its active adapter, an optional prompt
    rewrite (conditioning) and an optional replacement generation function (mixtures)."""

    model: Any
    adapter: str | None = None
    transform_prompt: Callable[[Any], Any] | None = None
    generate: Callable[..., list[str]] | None = None
    checkpoint: str | None = None

    def activate(self) -> None:
        if self.adapter is not None:
            self.model.set_adapter(self.adapter)


class Context:
    """What a method needs: the base model, data splits, objectives, trained runs."""

    def __init__(self, cfg: FrontConfig, out: Path):
        from moalign.models import specs

        self.cfg, self.out = cfg, out
        self.spec = TRAINERS[cfg.trainer]
        self.names = list(cfg.objective_names)
        self._objectives: Any = None
        self._scorers: Any = None
        #: what evaluation prepares once per trace (:mod:`moalign.fronts.evaluate`): the
        #: held-out ``pairs`` / ``prompts`` (and ``prompt_rows``), the ``reference_logprobs``
        self.heldout: dict[str, Any] = {}
        if self.spec.data == "prompts":  # bad data: before the model
            self.train_ds, self.test_ds = load_prompt_splits(cfg, self.objective_set())
        else:
            self.train_ds, self.test_ds = load_preference_splits(cfg)
        #: where the front's models train and are evaluated (the GPU when there is one and
        #: the run does not ask for the CPU) and the dtype their weights load in (``cfg.dtype``)
        self.device, self.dtype = run_placement(cfg)
        self.base, self.tokenizer = specs.load_model_spec(cfg.model, seed=cfg.seed,
                                                          dtype=self.dtype, device=self.device)
        self.base.eval()
        self.peft: Any = None  # a copy of the base wrapped with every loaded adapter
        self.train_seconds, self.train_steps = 0.0, 0
        #: ``(weights, scores)`` of every evaluated point, in order (filled by the trace)
        self.measured: list[tuple[np.ndarray, dict[str, float]]] = []
        #: the hypervolume's reference point (set by the trace before the points)
        self.reference_point: list[float] | None = None

    # ---------------------------------------------------------------- objectives

    def objective_set(self) -> Any:
        """The objectives, loaded once: the rewards of the RL runs and the default scorers of
        the ``generation`` metric are the same objects (a reward model is loaded once)."""
        if self._objectives is None:
            from moalign.objective import ObjectiveSet

            self._objectives = ObjectiveSet(list(self.cfg.objectives))
        return self._objectives

    def scorer_set(self) -> Any:
        """The scorers of the ``generation`` metric: ``FrontConfig.scorers`` where given, the
        loaded objectives (:meth:`objective_set`) otherwise."""
        if self._scorers is None:
            from moalign.errors import ConfigError
            from moalign.objective import ObjectiveSet

            given = self.cfg.scorers
            if not given and self.spec.data == "prompts":
                self._scorers = self.objective_set()
            else:
                loaded = self.objective_set().objectives if self.spec.data == "prompts" else None
                specs = [given[n] if n in given else (loaded[i] if loaded else spec)
                         for i, (n, spec) in enumerate(zip(self.names, self.cfg.objectives))]
                self._scorers = ObjectiveSet(specs)
            if self._scorers.names != tuple(self.names):
                raise ConfigError(f"scorers {list(self._scorers.names)} must be named like the "
                                  f"objectives {self.names}")
        return self._scorers

    # ---------------------------------------------------------------- runs

    def run(self, run_id: str, **trainer_fields: Any) -> str:
        """Train (or find, when finished before) the run ``run_id``; return its id."""
        folder = self.out / "runs" / run_id
        if not (folder / "run.json").is_file():
            with atomic_directory(folder, overwrite=True) as tmp:
                info = runs.train_run(self, tmp, run_id=run_id, **trainer_fields)
                atomic_write_json(tmp / "run.json", info)
        info = read_json(folder / "run.json", required=("seconds", "steps"), what="run record",
                         hint=f"delete '{folder}' to retrain it")
        # damaged weights are reported, never loaded
        if self.cfg.lora is None:
            check_model_folder(folder / "model")
        else:
            check_adapter(folder / "adapter")
        self.train_seconds += float(info["seconds"])
        self.train_steps += int(info["steps"])
        return run_id

    def per_objective_runs(self) -> list[str]:
        """One run per objective, trained at that objective's vertex of the simplex (the
        policies ``soup`` interpolates and ``decoding`` mixes)."""
        k = len(self.names)
        return [self.run(f"only_{name}", weights=np.eye(k)[i].tolist())
                for i, name in enumerate(self.names)]

    def adapter(self, run_id: str) -> Any:
        """The peft model with LoRA run ``run_id``'s adapter loaded (under that name)."""
        path = str(self.out / "runs" / run_id / "adapter")
        if self.peft is None:
            from peft import PeftModel

            self.peft = PeftModel.from_pretrained(copy.deepcopy(self.base), path,
                                                  adapter_name=run_id)
        elif run_id not in self.peft.peft_config:
            self.peft.load_adapter(path, adapter_name=run_id)
        return self.peft

    def full_model(self, run_id: str) -> Any:
        """Fully fine-tuned run ``run_id``'s model, loaded from its folder."""
        return runs.load_run_model(self, self.out / "runs" / run_id / "model")

    def policy(self, run_id: str, **fields: Any) -> Policy:
        """A run as a point's policy (its adapter, or its own model)."""
        where = f"runs/{run_id}/{runs.run_weights_folder(self.cfg)}"
        if self.cfg.lora is None:
            return Policy(self.full_model(run_id), adapter=None, checkpoint=where, **fields)
        return Policy(self.adapter(run_id), adapter=run_id, checkpoint=where, **fields)

    # ---------------------------------------------------------------- points

    def weight_vectors(self) -> Iterator[np.ndarray]:
        """The points' weight vectors, in order: the configured grid, or for ``weights:
        adaptive`` the starting grid and then each next vector chosen from the points measured
        so far (:mod:`moalign.fronts.adaptive`; consume lazily, after each evaluation)."""
        if self.cfg.weights == ADAPTIVE:
            from moalign.fronts.adaptive import adaptive_weights

            yield from adaptive_weights(self)
        else:
            yield from self.cfg.weight_vectors()


def run_placement(cfg: Any) -> tuple[Any, str]:
    """``(device, dtype)`` of a front's models: :func:`moalign.models.placement.run_device`
    (``ACCELERATE_USE_CPU`` asks for the CPU) and ``cfg.dtype`` resolved for that device
    (and the front's precision: float32 keeps float32 weights under ``auto``)."""
    from moalign.models.placement import resolve_dtype, run_device

    device = run_device()
    return device, resolve_dtype(getattr(cfg, "dtype", "float32"), device,
                                 cfg.resolved_precision())


def load_preference_splits(cfg: Any):
    """``(train, test)`` preference splits for a front, seeded; prompts truncated from the left.

    The training split keeps at most ``cfg.train_pairs`` pairs labelled for each objective.
    """
    from moalign.data import catalog, heldout_split, validate_preference_dataset

    names = list(cfg.objective_names)
    ds = catalog.load_dataset(cfg.dataset)
    validate_preference_dataset(ds, objectives=names)
    train, test = heldout_split(ds, test_size=cfg.test_size, seed=cfg.seed)
    if cfg.train_pairs is not None:
        train = train.select(first_labelled(train, names, cfg.train_pairs))
    return train, test


def load_prompt_splits(cfg: Any, objectives: Any):
    """``(train, test)`` prompt splits for an RL front, seeded; rows need a ``prompt`` and the
    columns the objectives read. The training split keeps its first ``cfg.train_pairs``
    prompts (after shuffling)."""
    from moalign.data import catalog, heldout_split
    from moalign.trainers.runs import check_prompt_columns

    ds = catalog.load_dataset(cfg.dataset)
    check_prompt_columns(ds, objectives, catalog.describe_spec(cfg.dataset),
                         f"trainer '{cfg.trainer}'")
    train, test = heldout_split(ds, test_size=cfg.test_size, seed=cfg.seed)
    if cfg.train_pairs is not None:
        train = train.select(range(min(len(train), cfg.train_pairs)))
    return train, test
