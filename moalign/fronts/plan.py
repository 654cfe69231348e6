"""Which trainer goes with which method of a front, what each combination trains, and the
checks of ``trainer:`` and ``train:`` made before any model loads.

A front's runs are trained by one trainer of :data:`moalign.trainers.registry.TRAINERS`
(:data:`FRONT_TRAINERS`), exactly as ``moalign train`` trains it
(:func:`moalign.trainers.runs.train_and_save`). What each method trains (N weight vectors, K
objectives):

=================  ============================  =========================  ===================
trainer            sweep                         soup / decoding            conditioned
=================  ============================  =========================  ===================
``mo_dpo``         N MO-DPO runs                 K runs (one per vertex)    1 conditioned-DPO run
``modpo``          N MODPO runs (``w_0 > 0``)    refused (a vertex has      refused
                                                 ``w_0 = 0``)
``grpo``           N MO-GRPO runs                K runs                     1 conditioned-GRPO run
``ppo``            N MO-PPO runs                 K runs                     1 conditioned-PPO run
=================  ============================  =========================  ===================

Every point is then evaluated (``metric``): the DPO family defaults to ``implicit`` (held-out
implicit-reward accuracy, no generation), the RL trainers to ``generation`` (their objectives
score replies to held-out prompts; ``implicit`` is refused for them: they have no DPO reference
margin to read). A soup point costs one interpolation, a conditioned point a prompt rewrite, a
decoding point K forward passes per generated token; training cost is runs x ``max_steps``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from moalign._plugins import IDENTIFIER, Registry, did_you_mean
from moalign.data.split import MAX_PROMPT_TOKENS
from moalign.models.lora import soup_lora_problems
from moalign.trainers.registry import TRAINERS

__all__ = ["ADAPTIVE", "CONDITIONED_TRAINERS", "DEFAULT_MAX_PROMPT_TOKENS", "FRONT_TRAINERS", "METHODS",
           "RL_TRAINERS",
           "TRACE_OWNED_TRAIN_KEYS", "TRAINER_METHOD_TABLE", "FrontOnlyTrainFields", "combination_problems",
           "default_metric", "is_online"]

#: The methods that make a front's policies: name -> ``policies(ctx)`` of its module, yielding
#: ``(point id, weights, Policy)`` (imported when a trace runs it).
METHODS = Registry("front method", name_pattern=IDENTIFIER)
for _method in ("sweep", "soup", "conditioned", "decoding"):
    METHODS.register(_method, path=f"moalign.fronts.{_method}:policies")
#: Trainers a front can be traced with (``FrontConfig.trainer``), read from the trainer registry.
FRONT_TRAINERS = tuple(name for name, spec in TRAINERS.items() if spec.front)
#: The online (RL) ones: trained on prompts, rewarded by the objectives.
RL_TRAINERS = tuple(name for name in FRONT_TRAINERS if TRAINERS[name].data == "prompts")
#: Trainers with a conditioned form (``method: conditioned``).
CONDITIONED_TRAINERS = tuple(name for name in FRONT_TRAINERS if TRAINERS[name].conditioned)
#: ``FrontConfig.weights`` value that places each next point where the front's gap is largest.
ADAPTIVE = "adaptive"
#: Keys of ``FrontConfig.train`` that the trace sets itself, run by run.
TRACE_OWNED_TRAIN_KEYS = ("objectives", "weights", "schedule", "conditioning", "seed",
                          "output_dir", "use_cpu", "disable_tqdm")
#: Prompts longer than this many tokens keep their end (so completions are never cut): the one
#: default of every command, :data:`moalign.data.split.MAX_PROMPT_TOKENS`.
DEFAULT_MAX_PROMPT_TOKENS = MAX_PROMPT_TOKENS
#: Methods whose runs sit at the simplex's vertices (one per objective).
_VERTEX_METHODS = ("soup", "decoding")


#: What each trainer x method trains, and what a point costs (``moalign trace --help``, README).
TRAINER_METHOD_TABLE = """\
what each trainer x method trains (N weight vectors, K objectives):

  trainer  sweep             soup / decoding        conditioned
  mo_dpo   N MO-DPO runs     K runs (one per        1 conditioned-DPO run
  modpo    N MODPO runs      objective) for both;   refused
           (w_0 > 0 only)    modpo: refused
  grpo     N MO-GRPO runs    K runs                 1 conditioned-GRPO run
  ppo      N MO-PPO runs     K runs                 1 conditioned-PPO run

training: runs x train.max_steps steps (an RL step also generates its rollouts); a point
costs its evaluation (metric implicit: log-probs of eval_pairs pairs, the DPO default;
metric generation: eval_prompts replies scored by the objectives, the RL default) plus: soup
one interpolation, conditioned a prompt rewrite, decoding K forward passes per generated
token. weights: adaptive trains one run per point like a sweep, placed where the measured
front has its largest hypervolume gap. lora: null fine-tunes every weight (a soup then
interpolates the weights)."""


def is_online(trainer: str) -> bool:
    return trainer in RL_TRAINERS


def default_metric(trainer: str) -> str:
    """``generation`` for the RL trainers, ``implicit`` for the DPO family."""
    return "generation" if is_online(trainer) else "implicit"


@dataclasses.dataclass
class FrontOnlyTrainFields:
    """``train:`` keys a front reads itself (not fields of a trainer config)."""

    #: Prompts longer than this many tokens keep their end.
    max_prompt_tokens: int = DEFAULT_MAX_PROMPT_TOKENS


def combination_problems(cfg: Any) -> list[str]:
    """What makes no sense in a :class:`~moalign.fronts.config.FrontConfig`'s trainer, method,
    metric, weights and LoRA options together (cheap: no library is imported)."""
    trainer, method = cfg.trainer, cfg.method
    if trainer not in FRONT_TRAINERS:
        hint = (" (conditioned DPO is trainer: mo_dpo with method: conditioned)"
                if trainer == "conditioned_dpo" else did_you_mean(trainer, FRONT_TRAINERS))
        return [f"'trainer' must be one of {', '.join(FRONT_TRAINERS)}, got {trainer!r}{hint}"]
    problems = []
    if is_online(trainer) and cfg.metric == "implicit":
        problems.append(f"'metric: implicit' reads DPO's implicit reward on held-out pairs; "
                        f"trainer '{trainer}' is scored with metric: generation (its objectives "
                        "score replies to held-out prompts)")
    if method == "conditioned" and trainer not in CONDITIONED_TRAINERS and trainer != "modpo":
        problems.append(f"trainer '{trainer}' has no conditioned form yet; method conditioned "
                        f"trains with {', '.join(CONDITIONED_TRAINERS)}")
    if trainer == "modpo":
        if method != "sweep":
            why = ("needs one run per objective, and at every vertex but the first the MODPO "
                   "weight w_0 is 0" if method in _VERTEX_METHODS
                   else "has no conditioned form (use trainer: mo_dpo)")
            problems.append(f"trainer 'modpo' with method '{method}': MODPO trains on the first "
                            f"objective's labels with weight w_0 > 0, so method '{method}' {why}; "
                            "use method: sweep")
        elif cfg.weights == ADAPTIVE:
            problems.append("trainer 'modpo' with weights: adaptive: the adaptive candidates "
                            "include w_0 = 0, which MODPO cannot train; give explicit weights")
        else:
            zero = [list(w) for w in _weights(cfg) if not w[0] > 0]
            if zero:
                problems.append(f"trainer 'modpo' needs w_0 > 0 (the weight of "
                                f"'{cfg.objective_names[0]}') at every point; {zero} have 0"
                                + ("" if cfg.weights else " (the default grid includes that "
                                   "vertex: give 'weights' explicitly)"))
    if method == "soup" and isinstance(cfg.lora, Mapping):
        problems += [f"{p} (method soup)" if "method soup" not in p else p
                     for p in soup_lora_problems(cfg.lora)]
    problems += _adaptive_problems(cfg)
    return problems


def _weights(cfg: Any) -> list[Sequence[float]]:
    try:
        return [list(w) for w in cfg.weight_vectors()]
    except (ValueError, TypeError):  # reported by the weight checks
        return []


def _adaptive_problems(cfg: Any) -> list[str]:
    from math import comb

    if cfg.weights != ADAPTIVE:
        if isinstance(cfg.weights, str):
            return [f"'weights' must be a list of weight vectors or '{ADAPTIVE}', got "
                    f"{cfg.weights!r}"]
        if cfg.points is not None:
            return ["'points' is the size of an adaptive front: set weights: adaptive, or "
                    "leave 'points' out"]
        return []
    k = len(cfg.objectives)
    start = comb(cfg.grid + k - 1, k - 1)
    if isinstance(cfg.points, bool) or not isinstance(cfg.points, int):
        return [f"weights: adaptive needs 'points': the front's size (the starting grid "
                f"of grid={cfg.grid} has {start} points, each further point is one more), got "
                f"{cfg.points!r}"]
    if cfg.points < start:
        return [f"'points' ({cfg.points}) is smaller than the adaptive front's starting grid "
                f"(grid={cfg.grid}: {start} points); raise points or lower grid"]
    return []
