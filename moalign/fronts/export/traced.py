"""A traced front's points as policies outside the trace, for ``export`` and ``generate``.

:class:`TracedFront` reads a trace folder (``front.json`` and the ``config.json`` the trace
saved), loads its starting policy as the trace did (the same model spec and seed) and rebuilds
the policy at a weight vector:

- ``sweep`` (and adaptive sweeps): the run of a traced point, found by its id or its exact
  weights; other weights are refused naming the traced points;
- ``soup``: the exact interpolation of the per-objective runs at **any** weights on the simplex
  (:func:`moalign.fronts.soup.soup_adapter`, or :func:`~moalign.fronts.soup.soup_state_dicts`
  for fully fine-tuned runs), the same policy the trace measured at its own weights;
- ``conditioned``: the conditioned run with the weights shown in the prompt
  (:func:`moalign.tradeoff.conditioning.apply_condition`, in the style and format it was
  trained with);
- ``decoding``: the per-objective runs mixed token by token (MOD), for generation only.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from moalign.errors import CheckpointError, ConfigError
from moalign.fronts.context import Policy
from moalign.pareto.front import FrontPoint, ParetoFront
from moalign.storage.checkpoints import read_json
from moalign.weights import as_weights, format_weights

__all__ = ["TracedFront", "parse_weights", "policy_replies"]


def parse_weights(text: str | Sequence[float]) -> list[float]:
    """``"0.3,0.7"``, ``"[0.3, 0.7]"`` or a sequence -> a list of floats (not yet checked)."""
    if not isinstance(text, str):
        return [float(x) for x in text]
    try:
        return [float(v) for v in text.strip().strip("[]()").replace(" ", "").split(",") if v]
    except ValueError:
        raise ConfigError(f"--weights '{text}' must be comma-separated numbers, e.g. 0.3,0.7") from None


def policy_replies(policy: Policy, tokenizer: Any, prompts: Sequence[Any], *, precision: str,
                   **settings: Any) -> list[str]:
    """Replies of one point's ``policy`` to ``prompts`` through the one decode driver, as the
    trace's evaluation generates: the point's condition shown, its adapter active and merged
    (float32) or the weights in ``precision``, a mixture through its own generation; ``settings``
    (``seed``, ``max_new_tokens``, ...) go to the driver. The trace records its replies with it,
    and ``moalign generate`` / ``report --replies`` generate theirs."""
    from moalign.evaluation.generation import generate_completions
    from moalign.models.inference import inference_weights

    shown = [policy.transform_prompt(p) for p in prompts] if policy.transform_prompt \
        else list(prompts)
    fn = policy.generate or generate_completions
    policy.activate()
    with inference_weights(policy.model, precision, merge=policy.generate is None):
        return fn(policy.model, tokenizer, shown, **settings)


class TracedFront:
    """A trace folder (or its ``front.json``), ready to rebuild any of its policies."""

    def __init__(self, path: str | Path):
        path = Path(path)
        self.folder = path if path.is_dir() else path.parent
        file = self.folder / "front.json"
        if not file.is_file():
            raise ConfigError(f"'{path}' is not a traced front: no front.json in '{self.folder}'")
        self.front = ParetoFront.load(file)
        self.config = read_json(self.folder / "config.json", required=("method", "model"),
                                what="trace configuration")
        self.method: str = self.config["method"]
        self.objectives: list[str] = list(self.front.objectives)
        self.lora = self.config.get("lora")
        self._base: tuple[Any, Any] | None = None
        self._soup_model: Any = None  # the per-objective adapters, loaded once for every soup

    # ------------------------------------------------------------------ facts

    @property
    def k(self) -> int:
        return len(self.objectives)

    @property
    def condition_style(self) -> str:
        return str((self.config.get("train") or {}).get("condition_style", "system"))

    @property
    def condition_format(self) -> str:
        return str((self.config.get("train") or {}).get("condition_format", "full"))

    @property
    def precision(self) -> str:
        return str(self.config.get("precision", "float32"))

    def per_objective_runs(self) -> list[str]:
        return [f"only_{name}" for name in self.objectives]

    def traced_point(self, weights: Sequence[float]) -> FrontPoint | None:
        """The traced point at exactly these weights (up to 1e-6), if any."""
        w = np.asarray(weights, dtype=np.float64)
        for point in self.front.points:
            if point.weights is not None and np.allclose(point.weights, w, atol=1e-6, rtol=0):
                return point
        return None

    def resolve(self, weights: Any = None, point: str | None = None
                ) -> tuple[np.ndarray, FrontPoint | None]:
        """``(weights, traced point or None)`` from a point id or a weight vector. Methods whose
        policies exist only at traced weights (``sweep``) refuse any other vector, naming the
        traced points closest to it."""
        if (weights is None) == (point is None):
            raise ConfigError("give either --weights or --point")
        ids = [p.id for p in self.front.points]
        if point is not None:
            found = next((p for p in self.front.points if p.id == point), None)
            if found is None:
                from moalign.config.checking import did_you_mean

                raise ConfigError(f"no point '{point}' on the front{did_you_mean(point, ids)} "
                                  f"(points: {', '.join(ids)})")
            if found.weights is None:
                raise ConfigError(f"point '{point}' has no weight vector to rebuild it from")
            return as_weights(found.weights, self.k), found
        w = as_weights(parse_weights(weights), self.k, name="--weights")
        found = self.traced_point(w)
        if found is None and self.method == "sweep":
            near = sorted((p for p in self.front.points if p.weights is not None),
                          key=lambda p: float(np.abs(np.asarray(p.weights) - w).sum()))
            raise ConfigError(
                f"the sweep front has no point at {format_weights(w, 4)}: a sweep point is one "
                f"trained run, so only its traced weights exist; did you mean "
                f"{', '.join(p.id for p in near[:3])}? (points: {', '.join(ids)}; a soup or "
                "conditioned front serves any weights)")
        return w, found

    # ------------------------------------------------------------------ models

    def base(self) -> tuple[Any, Any]:
        """``(model, tokenizer)``: the starting policy, loaded as the trace loaded it."""
        if self._base is None:
            from moalign.models import specs

            model, tokenizer = specs.load_model_spec(self.config["model"],
                                                     seed=int(self.config.get("seed", 0)))
            self._base = (model.eval(), tokenizer)
        return self._base

    def _run_folder(self, run: str) -> Path:
        folder = self.folder / "runs" / run / ("model" if self.lora is None else "adapter")
        if not folder.is_dir():
            raise CheckpointError(f"the front's run '{run}' has no weights at '{folder}'")
        return folder

    def _checkpoint_run(self, point: FrontPoint) -> str:
        """The run a sweep point was trained as (``runs/<run>/...`` in its checkpoint)."""
        parts = Path(point.checkpoint or "").parts
        if len(parts) < 2 or parts[0] != "runs":
            raise CheckpointError(f"point '{point.id}' names no run folder (checkpoint: "
                                  f"{point.checkpoint!r})")
        return parts[1]

    def _peft(self, runs: Sequence[str]) -> Any:
        """A copy of the base with the LoRA adapters of ``runs`` loaded under their names."""
        from peft import PeftModel

        base, _ = self.base()
        model = None
        for run in runs:
            path = str(self._run_folder(run))
            if model is None:
                model = PeftModel.from_pretrained(copy.deepcopy(base), path, adapter_name=run)
            else:
                model.load_adapter(path, adapter_name=run)
        return model.eval()

    def _full(self, run: str) -> Any:
        from transformers import AutoModelForCausalLM

        base, _ = self.base()
        return AutoModelForCausalLM.from_pretrained(str(self._run_folder(run)),
                                                    dtype=base.dtype).eval()

    def policy(self, weights: Any = None, point: str | None = None) -> tuple[Policy, np.ndarray]:
        """The policy at these weights (see the module docstring) and its weight vector."""
        w, found = self.resolve(weights, point)
        if self.method == "sweep":
            run = self._checkpoint_run(found)  # resolve refused untraced weights
            if self.lora is None:
                return Policy(self._full(run)), w
            return Policy(self._peft([run]), adapter=run), w
        if self.method == "soup":
            return self._soup(w), w
        if self.method == "conditioned":
            from moalign.tradeoff.conditioning import apply_condition

            run, objectives = "conditioned", self.objectives
            style, form = self.condition_style, self.condition_format
            model = self._full(run) if self.lora is None else self._peft([run])

            def transform(prompt: Any) -> Any:
                return apply_condition(prompt, w, objectives, style=style, form=form)

            return Policy(model, adapter=None if self.lora is None else run,
                          transform_prompt=transform), w
        if self.method == "decoding":
            return self._mixture(w), w
        raise ConfigError(f"unknown front method '{self.method}'")

    def start_policy(self) -> Policy:
        """The starting (SFT) policy, as the trace's baseline."""
        return Policy(self.base()[0])

    def replies(self, policy: Policy, prompts: Sequence[Any], *, precision: str | None = None,
                **settings: Any) -> list[str]:
        """Replies of ``policy`` to ``prompts`` (text, or chat messages rendered with the
        tokenizer's chat template) as the trace generated them (:func:`policy_replies`), in
        ``precision`` (default: the trace's), with the trace's ``generation`` settings and seed
        unless ``settings`` override them."""
        settings = {"seed": int(self.config.get("seed", 0)),
                    **(self.config.get("generation") or {}), **settings}
        return policy_replies(policy, self.base()[1], prompts,
                              precision=precision or self.precision, **settings)

    def _soup(self, w: np.ndarray) -> Policy:
        from moalign.fronts.soup import soup_adapter, soup_state_dicts

        runs = self.per_objective_runs()
        if self.lora is None:
            states = [self._full(r).state_dict() for r in runs]
            model = copy.deepcopy(self.base()[0]).eval()
            model.load_state_dict(soup_state_dicts(states, w))
            return Policy(model)
        if self._soup_model is None:
            self._soup_model = self._peft(runs)
        model = self._soup_model
        return Policy(model, adapter=soup_adapter(model, runs, w, name="soup"))

    def _mixture(self, w: np.ndarray) -> Policy:
        from moalign.fronts.decoding import generate_mixture

        runs = self.per_objective_runs()
        if self.lora is None:
            members: list[Any] = [self._full(r) for r in runs]
            model = members[0]
        else:
            model = self._peft(runs)
            members = [(model, r) for r in runs]

        def generate(model: Any, tokenizer: Any, prompts: Any, **kw: Any) -> list[str]:
            return generate_mixture(members, w, tokenizer, prompts, **kw)

        return Policy(model, generate=generate)
