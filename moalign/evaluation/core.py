"""Evaluating a policy: generate on held-out prompts and score every objective.

- :func:`generate_completions`: batched generation with left padding, seeded sampling or greedy
  decoding, chat template applied to conversational prompts;
- :func:`evaluate_policy`: generation + :class:`~moalign.objective.ObjectiveSet` scoring -> mean
  and standard error per objective (:class:`PolicyEvaluation`);
- :func:`sequence_logprobs` and :func:`implicit_reward_accuracy`: the generation-free metric
  for DPO-family policies (Rafailov et al. 2023): the implicit reward
  ``beta * (log pi(y|x) - log pi_ref(y|x))`` ranks the labelled-better reply first, measured per
  objective on held-out pairs.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from moalign.objective import ObjectiveSet, as_text

__all__ = [
    "generation_problems",
    "summarize",
    "PolicyEvaluation",
    "evaluate_policy",
    "generate_completions",
    "implicit_reward_accuracy",
    "implicit_reward_outcomes",
    "labelled_rows",
    "mean_and_stderr",
    "pair_logprobs",
    "render_prompt",
    "sequence_logprobs",
]


def mean_and_stderr(values: Sequence[float] | np.ndarray) -> tuple[float, float, int]:
    """Mean, standard error of the mean and count of the finite entries (NaN ignored).

    The standard error is ``std(ddof=1) / sqrt(n)``; 0.0 when fewer than two values.
    """
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    n = int(x.size)
    if n == 0:
        return float("nan"), float("nan"), 0
    se = float(x.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0
    return float(x.mean()), se, n


def render_prompt(tokenizer: Any, prompt: Any) -> str:
    """Text fed to the model for ``prompt``.

    Chat-message prompts go through the tokenizer's chat template with the generation prompt
    appended; plain strings are used as they are.
    """
    if isinstance(prompt, str):
        return prompt
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(list(prompt), tokenize=False, add_generation_prompt=True)
    return "".join(f"{m['role']}: {m['content']}\n" for m in prompt) + "assistant: "


def _device_of(model: Any):
    import torch

    try:
        return next(model.parameters()).device
    except StopIteration:  # pragma: no cover - a model without parameters
        return torch.device("cpu")


def generate_completions(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[Any],
    *,
    max_new_tokens: int = 48,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    batch_size: int = 8,
    seed: int = 0,
    max_prompt_length: int | None = None,
    logits_processor: Any = None,
    progress: bool = False,
) -> list[str]:
    """Generate one completion per prompt (left padding, batched) and decode it.

    Sampling is seeded per batch (``seed + batch index``), so results do not depend on what ran
    before. ``max_prompt_length`` keeps the last tokens of long prompts.
    """
    import torch

    if batch_size < 1 or max_new_tokens < 1:
        raise ValueError("batch_size and max_new_tokens must be positive")
    texts = [render_prompt(tokenizer, p) for p in prompts]
    device = _device_of(model)
    old_side, old_trunc = tokenizer.padding_side, getattr(tokenizer, "truncation_side", "right")
    tokenizer.padding_side = "left"
    tokenizer.truncation_side = "left"
    out: list[str] = []
    starts = range(0, len(texts), batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="generating", unit="batch")
    was_training = model.training
    model.eval()
    try:
        for b, start in enumerate(starts):
            chunk = texts[start : start + batch_size]
            enc = tokenizer(
                chunk,
                return_tensors="pt",
                padding=True,
                add_special_tokens=False,
                truncation=max_prompt_length is not None,
                max_length=max_prompt_length,
            ).to(device)
            gen_kwargs: dict[str, Any] = dict(
                max_new_tokens=max_new_tokens,
                do_sample=do_sample,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
            if do_sample:
                gen_kwargs.update(temperature=temperature, top_p=top_p, top_k=0)
            else:
                gen_kwargs.update(temperature=None, top_p=None, top_k=None)
            if logits_processor is not None:
                gen_kwargs["logits_processor"] = logits_processor
            with torch.random.fork_rng(devices=[]), torch.no_grad():
                torch.manual_seed(seed + b)
                ids = model.generate(**enc, **gen_kwargs)
            new = ids[:, enc["input_ids"].shape[1] :]
            out.extend(tokenizer.batch_decode(new, skip_special_tokens=True))
    finally:
        tokenizer.padding_side, tokenizer.truncation_side = old_side, old_trunc
        model.train(was_training)
    return out


@dataclass
class PolicyEvaluation:
    """Scores of one policy on a prompt set.

    ``scores`` / ``stderr`` / ``counts`` are per objective (mean, standard error, number of
    scored examples); ``per_example`` is ``[N, K]`` with NaN where unscored.
    """

    objectives: tuple[str, ...]
    scores: dict[str, float]
    stderr: dict[str, float]
    counts: dict[str, int]
    per_example: np.ndarray
    completions: list[str] = field(default_factory=list)
    seconds: float = 0.0


def summarize(names: Sequence[str], per_example: np.ndarray) -> tuple[dict, dict, dict]:
    """Per-objective (means, stderrs, counts) of a ``[N, K]`` score matrix."""
    scores, stderr, counts = {}, {}, {}
    for k, name in enumerate(names):
        m, se, n = mean_and_stderr(per_example[:, k])
        scores[name], stderr[name], counts[name] = m, se, n
    return scores, stderr, counts


def evaluate_policy(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[Any],
    objectives: ObjectiveSet | Sequence[Any],
    *,
    columns: Mapping[str, Sequence[Any]] | None = None,
    generate: Callable[..., list[str]] | None = None,
    **generation: Any,
) -> PolicyEvaluation:
    """Generate a completion for every prompt and score it with every objective.

    ``columns`` are passed to the objectives (e.g. ``{"answer": [...]}`` for
    ``reasoning_accuracy``). ``generation`` holds :func:`generate_completions` settings
    (``max_new_tokens``, ``do_sample``, ``temperature``, ``batch_size``, ``seed``, ...);
    ``generate`` replaces the generation function (e.g. for decoding-time mixtures).
    """
    import time

    objective_set = objectives if isinstance(objectives, ObjectiveSet) else ObjectiveSet(objectives)
    if not prompts:
        raise ValueError("evaluate_policy needs at least one prompt")
    columns = dict(columns or {})
    for name, values in columns.items():
        if len(values) != len(prompts):
            raise ValueError(f"column '{name}' has {len(values)} values for {len(prompts)} prompts")
    start = time.perf_counter()
    completions = (generate or generate_completions)(model, tokenizer, prompts, **generation)
    rewards = objective_set.score(list(prompts), completions, **columns)
    per_example = rewards.values.double().numpy()
    scores, stderr, counts = summarize(objective_set.names, per_example)
    return PolicyEvaluation(
        objectives=objective_set.names,
        scores=scores,
        stderr=stderr,
        counts=counts,
        per_example=per_example,
        completions=list(completions),
        seconds=time.perf_counter() - start,
    )


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _completion_ids(tokenizer: Any, prompt: Any, completions: Sequence[Any]):
    """Untruncated ``(prompt ids, [ids of each completion])``, as the DPO trainers see them.

    Plain text (prompt and completions strings) follows TRL's DPO tokenization: EOS appended to
    a completion that does not end with it, prompt + completion tokenized as one text with the
    tokenizer's special tokens (a BOS, if it adds one), and every completion starting where the
    first of them parts from the prompt tokenized alone (tokens can merge across the boundary).
    Otherwise (unchanged) prompt and completion are tokenized apart, without special tokens: a
    conversational prompt through the chat template, and a conversational completion as the
    text the template appends for its assistant turn.
    """
    if isinstance(prompt, str) and all(isinstance(c, str) for c in completions):
        eos = tokenizer.eos_token
        p = tokenizer(prompt)["input_ids"]
        full = [tokenizer(prompt + (c if not eos or c.endswith(eos) else c + eos))["input_ids"]
                for c in completions]
        n = min([len(p)] + [_common_prefix(p, f) for f in full])
        return p[:n], [f[n:] for f in full]
    prompt_text = render_prompt(tokenizer, prompt)
    p = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
    out = []
    for completion in completions:
        completion_text = as_text(completion)
        if (not isinstance(completion, str) and not isinstance(prompt, str)
                and getattr(tokenizer, "chat_template", None)):
            full = tokenizer.apply_chat_template(
                list(prompt) + [{"role": "assistant", "content": completion_text}], tokenize=False
            )
            if full.startswith(prompt_text):
                completion_text = full[len(prompt_text) :]
        out.append(tokenizer(completion_text, add_special_tokens=False)["input_ids"])
    return p, out


def _truncate(p: list[int], c: list[int], max_length: int) -> tuple[list[int], list[int]]:
    """At most ``max_length`` ids together: the completion is cut from the right (as TRL's
    trainers do), so the start of the prompt, where a weight condition lives, is kept; only a
    prompt longer than ``max_length - 1`` ids on its own is cut, from the left, to leave room
    for one completion token."""
    if len(p) > max_length - 1:
        p = p[len(p) - (max_length - 1) :]
    return p, c[: max_length - len(p)]


def _tokenize_pair(tokenizer: Any, prompt: Any, completion: Any, max_length: int):
    """Token ids of prompt and completion (see :func:`_completion_ids`), at most
    ``max_length`` together (see :func:`_truncate`)."""
    p, (c,) = _completion_ids(tokenizer, prompt, [completion])
    return _truncate(p, c, max_length)


def _logprobs_of_ids(model: Any, pairs: Sequence[tuple[list[int], list[int]]], pad: int,
                     batch_size: int) -> np.ndarray:
    """``sum log p(c | p)`` for each ``(p, c)`` of token ids, right-padded batches."""
    import torch

    device = _device_of(model)
    out = np.zeros(len(pairs), dtype=np.float64)
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(pairs), batch_size):
            chunk = pairs[start : start + batch_size]
            width = max(len(p) + len(c) for p, c in chunk)
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            attn = torch.zeros_like(ids)
            comp = torch.zeros_like(ids, dtype=torch.bool)
            for i, (p, c) in enumerate(chunk):
                seq = list(p) + list(c)
                ids[i, : len(seq)] = torch.tensor(seq)
                attn[i, : len(seq)] = 1
                comp[i, len(p) : len(seq)] = True
            ids, attn, comp = ids.to(device), attn.to(device), comp.to(device)
            with torch.no_grad():
                logits = model(input_ids=ids, attention_mask=attn).logits.float()
            logp = torch.log_softmax(logits[:, :-1], dim=-1)
            tok = logp.gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
            summed = (tok * comp[:, 1:]).sum(-1)
            out[start : start + len(chunk)] = summed.double().cpu().numpy()
    finally:
        model.train(was_training)
    return out


def _pad_id(tokenizer: Any) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


def sequence_logprobs(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[Any],
    completions: Sequence[Any],
    *,
    batch_size: int = 8,
    max_length: int = 512,
) -> np.ndarray:
    """Sum of ``log p(completion tokens | prompt)`` for each pair, shape ``[N]`` (float64).

    Tokenized as the DPO trainers tokenize (TRL): plain-text completions end with EOS (appended
    when missing) and are tokenized together with their prompt; conversational prompts use the
    chat template, and a conversational completion is the text the template appends for an
    assistant turn. Long completions are cut from the right; a prompt too long on its own from
    the left.
    """
    pairs = [_tokenize_pair(tokenizer, p, c, max_length) for p, c in zip(prompts, completions)]
    return _logprobs_of_ids(model, pairs, _pad_id(tokenizer), batch_size)


def _reference_context(model: Any, ref_model: Any):
    """The reference policy: ``ref_model`` if given, else the adapter-disabled base (peft)."""
    if ref_model is not None:
        return ref_model, contextlib.nullcontext()
    if hasattr(model, "disable_adapter"):
        return model, model.disable_adapter()
    raise ValueError(
        "implicit_reward_accuracy needs a reference: pass ref_model=, or a peft model whose "
        "disabled adapter is the reference"
    )


def pair_logprobs(
    model: Any,
    tokenizer: Any,
    rows: Sequence[Mapping[str, Any]],
    *,
    batch_size: int = 8,
    max_length: int = 512,
    transform_prompt: Callable[[Any], Any] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(log p(chosen | prompt), log p(rejected | prompt))`` for preference rows, ``[N]`` each.

    Tokenized as the DPO trainers tokenize a pair (see :func:`sequence_logprobs`); for plain
    text, chosen and rejected start where the first of them parts from the prompt, as in TRL.
    """
    chosen, rejected = [], []
    for r in rows:
        prompt = transform_prompt(r["prompt"]) if transform_prompt else r["prompt"]
        p, (c, j) = _completion_ids(tokenizer, prompt, [r["chosen"], r["rejected"]])
        chosen.append(_truncate(p, c, max_length))
        rejected.append(_truncate(p, j, max_length))
    pad = _pad_id(tokenizer)
    return (_logprobs_of_ids(model, chosen, pad, batch_size),
            _logprobs_of_ids(model, rejected, pad, batch_size))


def implicit_reward_accuracy(
    model: Any,
    tokenizer: Any,
    dataset: Any,
    objectives: Sequence[str],
    *,
    ref_model: Any = None,
    beta: float = 0.1,
    batch_size: int = 8,
    max_length: int = 512,
    transform_prompt: Callable[[Any], Any] | None = None,
    reference_logprobs: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, dict[str, float]]:
    """Held-out implicit-reward pairwise accuracy per objective (generation-free).

    For each pair labelled for objective ``k`` (``pref_<k>`` = +1 or -1; ties and NaN are
    skipped), the implicit reward ``beta * (log pi - log pi_ref)`` of the labelled-better reply
    must exceed that of the other; an exact tie counts one half (so the reference policy itself
    scores 0.5). Returns ``{objective: {"accuracy", "stderr", "margin", "n"}}``; ``margin`` is
    the mean implicit-reward difference (better minus worse). ``transform_prompt`` rewrites
    each prompt first (e.g. to add a weight condition). ``reference_logprobs`` (from
    :func:`pair_logprobs` of the reference on :func:`labelled_rows`, with the same
    ``transform_prompt``) skips the reference passes, e.g. when many policies share one
    reference. The per-pair values are :func:`implicit_reward_outcomes`.
    """
    outcomes, margins = implicit_reward_outcomes(
        model, tokenizer, dataset, objectives, ref_model=ref_model, beta=beta,
        batch_size=batch_size, max_length=max_length, transform_prompt=transform_prompt,
        reference_logprobs=reference_logprobs)
    result: dict[str, dict[str, float]] = {}
    for j, k in enumerate(objectives):
        acc, se, n = mean_and_stderr(outcomes[:, j])
        signed = margins[np.isfinite(margins[:, j]), j]
        result[k] = {
            "accuracy": acc,
            "stderr": se,
            "margin": float(signed.mean()) if n else float("nan"),
            "n": n,
        }
    return result


def implicit_reward_outcomes(
    model: Any,
    tokenizer: Any,
    dataset: Any,
    objectives: Sequence[str],
    *,
    ref_model: Any = None,
    beta: float = 0.1,
    batch_size: int = 8,
    max_length: int = 512,
    transform_prompt: Callable[[Any], Any] | None = None,
    reference_logprobs: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-pair implicit-reward outcomes and margins, ``[N, K]`` each, one row per pair of
    :func:`labelled_rows` (in order), one column per objective.

    An outcome is what :func:`implicit_reward_accuracy` averages: 1 when the labelled-better
    reply has the higher implicit reward ``beta * (log pi - log pi_ref)``, 0 when lower, 0.5 on
    an exact tie, NaN where the pair is not labelled (+1 / -1) for that objective. A margin is
    the implicit-reward difference, better minus worse (NaN where unlabelled). Arguments as
    for :func:`implicit_reward_accuracy`.
    """
    needed = labelled_rows(dataset, objectives)
    kw = dict(batch_size=batch_size, max_length=max_length, transform_prompt=transform_prompt)
    pol_c, pol_r = pair_logprobs(model, tokenizer, needed, **kw)
    if reference_logprobs is None:
        reference, ctx = _reference_context(model, ref_model)
        with ctx:
            reference_logprobs = pair_logprobs(reference, tokenizer, needed, **kw)
    ref_c, ref_r = reference_logprobs
    if len(ref_c) != len(needed):
        raise ValueError(f"reference_logprobs cover {len(ref_c)} pairs, expected {len(needed)}")
    diff = beta * ((pol_c - ref_c) - (pol_r - ref_r))
    outcomes = np.full((len(needed), len(objectives)), np.nan)
    margins = np.full_like(outcomes, np.nan)
    for j, k in enumerate(objectives):
        labels = np.array([r.get(_pref(k)) for r in needed], dtype=np.float64)
        use = np.isfinite(labels) & (labels != 0)
        signed = diff[use] * np.sign(labels[use])
        margins[use, j] = signed
        outcomes[use, j] = (signed > 0) + 0.5 * (signed == 0)
    return outcomes, margins


def _pref(name: str) -> str:
    from moalign.data.schema import pref_column

    return pref_column(name)


def labelled_rows(dataset: Any, objectives: Sequence[str]) -> list[dict[str, Any]]:
    """The rows of ``dataset`` labelled (+1 / -1) for at least one of ``objectives``."""
    rows = dataset if isinstance(dataset, list) else dataset.to_list()
    return [r for r in rows if any(_labelled(r.get(_pref(k))) for k in objectives)]


def _labelled(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value)) and value != 0


def generation_problems(settings: Any, key: str = "generation") -> list[str]:
    """Unknown keys of a ``generation`` mapping (arguments of
    :func:`moalign.evaluation.generate_completions`)."""
    if not isinstance(settings, Mapping):
        return []
    import inspect

    from moalign.config.checking import did_you_mean

    allowed = [p for p in inspect.signature(generate_completions).parameters
               if p not in ("model", "tokenizer", "prompts", "logits_processor")]
    return [f"'{key}': unknown generation setting '{name}'{did_you_mean(name, allowed)} "
            f"(settings: {', '.join(allowed)})" for name in settings if name not in allowed]
