"""How a reward checkpoint reads its input, and head-only reward models on a frozen backbone.

A reward model trained by ``moalign reward`` is a standard Hugging Face
``*ForSequenceClassification`` folder plus a small ``moalign_reward.json`` (:class:`RewardInputSpec`)
that says how an example is turned into tokens and pooled:

- **Rendering.** With a chat template: the prompt messages (a string prompt is one user message)
  followed by the completion as an assistant message, rendered and tokenized without extra special
  tokens. Without one: ``prompt + completion + eos``, tokenized with the special tokens. This is
  what TRL's ``RewardTrainer`` and :class:`~moalign.rewards.model.RewardModelObjective` read.
- **Truncation by part.** The tokens are split where the completion starts; only the last
  ``max_prompt_tokens`` of the prompt and the first ``max_completion_tokens`` of the completion are
  kept (``None``: all), so long dialogue histories do not push the reply out.
- **Pooling.** ``"last"``: the score of the rightmost token that is not the pad token, exactly what
  the HF ``forward`` of a Llama/GPT-style classifier returns. ``"mean_completion"``: the mean over
  the completion's tokens of the per-token scores ``score(h_t)``; since the score head is linear
  without bias this equals ``score(mean_t h_t)``, the head of a mean-pooled feature.

Head-only training (:func:`fit_bradley_terry`) fits the linear ``score`` head on frozen backbone
features with the Bradley-Terry model (Bradley & Terry 1952), as in the reward models of
Stiennon et al. 2020 and Ouyang et al. 2022 but with the backbone frozen: minimize
``mean(softplus(-w . (f(chosen) - f(rejected)))) + l2/2 * |w|^2`` with L-BFGS.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from moalign.errors import CheckpointError
from moalign.objective import as_text
from moalign.storage.files import atomic_write_json

__all__ = [
    "POOLINGS",
    "SPEC_FILE",
    "FeatureCache",
    "RewardInputSpec",
    "cached_features",
    "encode_reward_input",
    "features",
    "fit_bradley_terry",
    "model_fingerprint",
    "pairwise_accuracy",
    "reward_scores",
    "select_l2",
]

#: File next to the weights of a reward checkpoint that holds its :class:`RewardInputSpec`.
SPEC_FILE = "moalign_reward.json"
#: How the per-token states of one example become one score (see the module docstring).
POOLINGS = ("last", "mean_completion")


@dataclasses.dataclass(frozen=True)
class RewardInputSpec:
    """How a reward checkpoint reads ``(prompt, completion)``; stored as ``moalign_reward.json``."""

    #: keep only the last N tokens of the rendered prompt (``None``: all)
    max_prompt_tokens: int | None = None
    #: keep only the first M tokens of the rendered completion (``None``: all)
    max_completion_tokens: int | None = None
    #: ``"last"`` (the HF forward) or ``"mean_completion"``
    pooling: str = "last"

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got {self.pooling!r}")
        for key in ("max_prompt_tokens", "max_completion_tokens"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, int) or value < 0):
                raise ValueError(f"{key} must be None or an integer >= 0, got {value!r}")

    def save(self, folder: str | os.PathLike, **extra: Any) -> Path:
        """Write the spec (plus ``extra`` informative keys) to ``folder/moalign_reward.json``."""
        return atomic_write_json(Path(folder) / SPEC_FILE, {**dataclasses.asdict(self), **extra})

    @classmethod
    def load(cls, folder: str | os.PathLike) -> RewardInputSpec | None:
        """The spec of a checkpoint folder, or ``None`` when it has no ``moalign_reward.json``."""
        path = Path(folder) / SPEC_FILE
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            names = {f.name for f in dataclasses.fields(cls)}
            return cls(**{k: v for k, v in data.items() if k in names})
        except (ValueError, TypeError) as exc:
            raise CheckpointError(f"reward checkpoint '{folder}': bad {SPEC_FILE}: {exc}") from None


# --------------------------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------------------------


def _messages(item: Any, role: str) -> list[dict[str, Any]]:
    if item is None:
        return []
    if isinstance(item, str):
        return [{"role": role, "content": item}]
    if isinstance(item, Mapping):
        return [dict(item)]
    return [dict(m) for m in item]


def _plain(prompt: Any) -> str:
    if prompt is None:
        return ""
    if isinstance(prompt, str):
        return prompt
    return "".join(f"{m['role']}: {m['content']}\n" for m in _messages(prompt, "user"))


def _render(tokenizer, prompt: Any, completion: Any, use_chat_template: bool | None,
            append_eos: bool) -> tuple[str, int, bool]:
    """(full text, character where the completion starts, add special tokens?)."""
    chat = bool(getattr(tokenizer, "chat_template", None)) if use_chat_template is None else use_chat_template
    if chat:
        head = _messages(prompt, "user")
        text = tokenizer.apply_chat_template(head + _messages(completion, "assistant"), tokenize=False)
        if not head:
            return text, 0, False
        prefix = tokenizer.apply_chat_template(head, tokenize=False, add_generation_prompt=True)
        cut = len(os.path.commonprefix([text, prefix]))
        return text, cut, False
    prefix = _plain(prompt)
    text = prefix + as_text(completion)
    eos = tokenizer.eos_token
    if append_eos and eos and not text.endswith(eos):
        text += eos
    return text, len(prefix), True


def encode_reward_input(
    tokenizer,
    prompt: Any,
    completion: Any,
    spec: RewardInputSpec | None = None,
    *,
    use_chat_template: bool | None = None,
    append_eos: bool = True,
) -> tuple[list[int], int]:
    """Token ids of one example and the index where its completion starts: ``(ids, start)``.

    The example is rendered and tokenized as a whole (so the ids equal those of an untruncated
    :class:`~moalign.rewards.model.RewardModelObjective`), split at the first token that begins
    at or after the completion's first character, then truncated by part as ``spec`` says.
    """
    text, cut, special = _render(tokenizer, prompt, completion, use_chat_template, append_eos)
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(text, add_special_tokens=special, return_offsets_mapping=True)
        ids = list(enc["input_ids"])
        offsets = enc["offset_mapping"]
        start = len(ids)
        for i, (a, b) in enumerate(offsets):
            if a >= cut and b > a:
                start = i
                break
    else:  # slow tokenizers: tokenize the two parts apart
        head = tokenizer(text[:cut], add_special_tokens=special)["input_ids"]
        ids = list(head) + list(tokenizer(text[cut:], add_special_tokens=False)["input_ids"])
        start = len(head)
    spec = spec or RewardInputSpec()
    head, tail = ids[:start], ids[start:]
    n, m = spec.max_prompt_tokens, spec.max_completion_tokens
    if n is not None and len(head) > n:
        bos = tokenizer.bos_token_id
        keep_bos = n > 0 and bos is not None and head[0] == bos
        head = ([bos] + head[len(head) - n + 1:]) if keep_bos else head[len(head) - n:]
    if m is not None:
        tail = tail[:m]
    return head + tail, len(head)


# --------------------------------------------------------------------------------------------
# Forward passes: pooled features and scores
# --------------------------------------------------------------------------------------------


def _batches(encoded: Sequence[tuple[list[int], int]], batch_size: int, pad_id: int,
             pad_multiple: int = 8):
    """Yield (rows, input_ids, attention_mask, starts, lengths), right-padded, the rows grouped
    by length (:func:`moalign.evaluation.batching.length_batches`): the one batcher of reward
    scoring, for reward checkpoints and reward-model objectives alike."""
    from moalign.evaluation.batching import length_batches
    from moalign.evaluation.prompts import pad_rows

    lengths = [len(ids) for ids, _ in encoded]
    for rows in length_batches(lengths, batch_size=batch_size, max_batch_tokens=None):
        ids, mask = pad_rows([encoded[i][0] for i in rows], pad_id, side="right",
                             multiple=pad_multiple)
        yield rows, ids, mask, [encoded[i][1] for i in rows], [lengths[i] for i in rows]


def _pad_id(model) -> int:
    pad = model.config.get_text_config().pad_token_id
    if pad is None:
        raise CheckpointError("the reward model's config has no pad_token_id; set one before scoring")
    return int(pad)


def _pool(hidden, ids, starts, lengths, pooling: str, pad_id: int):
    """[B, T, H] states -> [B, H] pooled features (float32), computed where the states are
    (only the pooled rows leave the device)."""
    import torch

    device = hidden.device
    hidden, ids = hidden.float(), ids.to(device)
    if pooling == "last":
        # the rightmost token that is not the pad token: the rule of HF's sequence classifiers
        positions = torch.arange(ids.shape[1], dtype=torch.int32, device=device)
        last = (positions * (ids != pad_id).to(torch.int32)).argmax(-1)
        return hidden[torch.arange(ids.shape[0], device=device), last]
    out = torch.empty(hidden.shape[0], hidden.shape[2], device=device)
    for r, (s, n) in enumerate(zip(starts, lengths, strict=True)):
        # an empty completion has no token to average: its last token stands in
        out[r] = hidden[r, s:n].mean(0) if n > s else hidden[r, max(n - 1, 0)]
    return out


def _each_batch(model, encoded: Sequence[tuple[list[int], int]], batch_size: int, width: int,
                step, dtype=None):
    """``[N, width]`` rows filled batch by batch (:func:`_batches`, on the model's device, no
    gradients) with ``step(input_ids, attention_mask, starts, lengths, pad_id)``."""
    import torch

    pad_id = _pad_id(model)
    device = next(model.parameters()).device
    out = torch.empty(len(encoded), width, dtype=dtype or torch.float32)
    with torch.inference_mode():
        for rows, ids, mask, starts, lengths in _batches(encoded, batch_size, pad_id):
            out[rows] = step(ids, mask.to(device), starts, lengths, pad_id).to(out.dtype)
    return out


def features(
    model,
    encoded: Sequence[tuple[list[int], int]],
    pooling: str = "last",
    *,
    batch_size: int = 16,
    progress: Any = None,
):
    """Pooled last-layer features ``[N, H]`` (float32) of a sequence classifier's backbone.

    ``encoded`` holds ``(ids, completion start)`` pairs from :func:`encode_reward_input`.
    ``progress`` (optional) is called with the number of examples done after each batch.
    """
    backbone = getattr(model, model.base_model_prefix)
    device = next(model.parameters()).device

    def step(ids, mask, starts, lengths, pad_id):
        hidden = backbone(input_ids=ids.to(device), attention_mask=mask).last_hidden_state
        pooled = _pool(hidden, ids, starts, lengths, pooling, pad_id)  # states stay put
        if progress is not None:
            progress(len(starts))
        return pooled

    return _each_batch(model, encoded, batch_size, model.config.get_text_config().hidden_size,
                       step)


def reward_scores(
    model,
    encoded: Sequence[tuple[list[int], int]],
    pooling: str = "last",
    *,
    batch_size: int = 16,
):
    """Scores ``[N, num_labels]`` (float64) of encoded examples under ``pooling``.

    ``"last"`` is the plain HF ``forward`` (``logits``); ``"mean_completion"`` applies the
    model's linear ``score`` head to the mean of the completion's last-layer states.
    """
    import torch

    device = next(model.parameters()).device
    if pooling == "last":
        def step(ids, mask, starts, lengths, pad_id):
            return model(input_ids=ids.to(device), attention_mask=mask).logits.double().cpu()

        return _each_batch(model, encoded, batch_size, model.config.num_labels, step,
                           dtype=torch.float64)
    pooled = features(model, encoded, pooling, batch_size=batch_size)
    head = model.score
    with torch.no_grad():
        return head(pooled.to(head.weight.dtype).to(device)).double().cpu()


def pairwise_accuracy(chosen, rejected) -> float:
    """Fraction of pairs whose chosen score is above the rejected one (ties count one half)."""
    import torch

    chosen, rejected = torch.as_tensor(chosen).double(), torch.as_tensor(rejected).double()
    if chosen.numel() == 0:
        return float("nan")
    wins = (chosen > rejected).double() + 0.5 * (chosen == rejected).double()
    return float(wins.mean())


# --------------------------------------------------------------------------------------------
# Feature cache
# --------------------------------------------------------------------------------------------


def model_fingerprint(model, source: str | os.PathLike | None, **settings: Any) -> str | None:
    """A key for "these features came from this backbone with these settings", or ``None`` when
    the model did not come from a folder (then nothing is cached)."""
    if source is None or not Path(source).is_dir():
        return None
    h = hashlib.sha256()
    h.update(json.dumps(model.config.get_text_config().to_dict(), sort_keys=True, default=str).encode())
    for f in sorted(Path(source).iterdir()):
        if f.suffix in (".safetensors", ".bin", ".gguf"):
            st = f.stat()
            h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return h.hexdigest()[:24]


class FeatureCache:
    """Pooled features on disk, keyed by (backbone fingerprint, token ids, completion start).

    Each :meth:`flush` writes the new entries as one more shard (``torch.save``, atomic rename),
    so an interrupted run keeps what it computed. ``folder=None`` caches nothing.
    """

    def __init__(self, folder: str | os.PathLike | None, fingerprint: str | None):
        self.folder = Path(folder) / fingerprint if folder is not None and fingerprint else None
        self._data: dict[str, Any] = {}
        self._new: dict[str, Any] = {}
        if self.folder is not None and self.folder.is_dir():
            import torch

            for shard in sorted(self.folder.glob("shard-*.pt")):
                try:
                    blob = torch.load(shard, map_location="cpu", weights_only=True)
                except Exception:  # a damaged shard is recomputed, never trusted
                    continue
                self._data.update(zip(blob["keys"], blob["features"], strict=True))

    @staticmethod
    def key(item: tuple[list[int], int]) -> str:
        ids, start = item
        return hashlib.sha1(f"{start}|{','.join(map(str, ids))}".encode()).hexdigest()

    def __len__(self) -> int:
        return len(self._data)

    def lookup(self, items: Iterable[tuple[list[int], int]]) -> list[Any]:
        return [self._data.get(self.key(it)) for it in items]

    def add(self, items: Sequence[tuple[list[int], int]], values) -> None:
        for it, v in zip(items, values, strict=True):
            k = self.key(it)
            self._data[k] = v.clone()
            self._new[k] = self._data[k]

    def flush(self) -> None:
        if self.folder is None or not self._new:
            self._new.clear()
            return
        import torch

        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"shard-{time.time_ns()}-{os.getpid()}.pt"
        tmp = self.folder / f".{name}.tmp"
        torch.save({"keys": list(self._new), "features": torch.stack(list(self._new.values()))}, tmp)
        os.replace(tmp, self.folder / name)
        self._new.clear()


def cached_features(model, encoded, pooling, cache: FeatureCache, *, batch_size: int = 16,
                    chunk: int = 256, progress: Any = None):
    """:func:`features` for the examples ``cache`` lacks, flushed every ``chunk`` examples."""
    import torch

    found = cache.lookup(encoded)
    # longest first: similar lengths share a chunk (less padding), and memory peaks early
    missing = sorted((i for i, f in enumerate(found) if f is None), key=lambda i: -len(encoded[i][0]))
    if progress is not None and len(found) > len(missing):
        progress(len(found) - len(missing))
    for c in range(0, len(missing), chunk):
        part = missing[c:c + chunk]
        items = [encoded[i] for i in part]
        values = features(model, items, pooling, batch_size=batch_size, progress=progress)
        cache.add(items, values)
        cache.flush()
        for i, v in zip(part, values, strict=True):
            found[i] = v
    if not found:
        return torch.empty(0, model.config.get_text_config().hidden_size)
    return torch.stack(found)


# --------------------------------------------------------------------------------------------
# Bradley-Terry head
# --------------------------------------------------------------------------------------------


def fit_bradley_terry(diff, l2: float = 1e-2, *, max_iter: int = 300):
    """Weights ``w [H]`` (float64) minimizing ``mean softplus(-diff @ w) + l2/2 |w|^2``.

    ``diff [N, H]`` holds ``f(chosen) - f(rejected)``. Features are scaled to unit RMS per
    dimension for the solve, so ``l2`` means the same across backbones; the returned ``w`` is
    for the unscaled features. The objective is strictly convex for ``l2 > 0``.
    """
    import torch

    x = torch.as_tensor(diff, dtype=torch.float64)
    scale = x.pow(2).mean(0).sqrt().clamp_min(1e-12)
    xs = x / scale
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w], lr=1.0, max_iter=max_iter, tolerance_grad=1e-9,
                            tolerance_change=1e-12, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.softplus(-(xs @ w)).mean() + 0.5 * l2 * w.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return (w.detach() / scale).clone()


def select_l2(diff, grid: Sequence[float], *, folds: int = 5, seed: int = 0) -> tuple[float, dict[float, float]]:
    """Pick ``l2`` from ``grid`` by ``folds``-fold cross-validated pairwise accuracy on ``diff``
    (ties broken towards the larger ``l2``). Returns ``(best, {l2: cv accuracy})``."""
    import torch

    x = torch.as_tensor(diff, dtype=torch.float64)
    n = x.shape[0]
    folds = max(2, min(folds, n))
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    parts = [perm[i::folds] for i in range(folds)]
    scores: dict[float, float] = {}
    for l2 in grid:
        correct = 0.0
        for k in range(folds):
            train = torch.cat([p for j, p in enumerate(parts) if j != k])
            w = fit_bradley_terry(x[train], l2)
            margin = x[parts[k]] @ w
            correct += float((margin > 0).double().sum() + 0.5 * (margin == 0).double().sum())
        scores[float(l2)] = correct / n
    best = max(scores, key=lambda l2: (round(scores[l2], 12), l2))
    if not math.isfinite(scores[best]):
        best = float(grid[-1])
    return best, scores
