"""Reward-model objectives: score completions with a Hugging Face sequence classifier.

:class:`RewardModelObjective` turns any ``AutoModelForSequenceClassification`` checkpoint (a
local folder, a hub id when online, or a model already in memory) into an
:class:`~moalign.objective.Objective`. One objective reads one output column ("head") of the
model; a multi-head reward model (one logit per objective, ``config.id2label`` naming them)
gives one objective per head with :meth:`RewardModelObjective.each_head`, all sharing one copy
of the model.

How an example is scored (the format TRL's ``RewardTrainer`` trains on, so a reward model it
trained reads its own inputs):

1. **Text.** When the tokenizer has a chat template, the prompt messages (a string prompt is one
   user message) followed by the completion as an assistant message are rendered with it and
   tokenized without extra special tokens. Otherwise the text is ``prompt + completion`` (plus
   the eos token, as the ``RewardTrainer`` appends it), tokenized with the tokenizer's special
   tokens; chat messages in a prompt are then written as ``"role: content"`` lines.
2. **Truncation from the left.** A sequence longer than ``max_length`` tokens loses its
   *first* tokens (a leading BOS token is kept), so the completion, which is at the end, is
   kept whole whenever it fits.
3. **Padding on the right** with the model's own ``config.pad_token_id`` (the tokenizer's pad,
   or eos, token when the config has none; it is then written into the config). Positions then
   start at 0 in every row, and Llama/GPT-style classifiers, which read the logits at the
   rightmost token that is not ``pad_token_id``, read the same token as for the unpadded
   sequence, so batching does not change scores.
4. **Head and transform.** ``logits[:, head]`` goes through ``transform`` (see
   :data:`TRANSFORMS`), then ``normalize`` (``(x - mean) / std``) when given.

A checkpoint trained by ``moalign reward`` carries a ``moalign_reward.json`` input spec
(:class:`moalign.rewards.head.RewardInputSpec`): its by-part truncation (the last N prompt
tokens, the first M completion tokens) and its pooling (``"last"``, or the mean of the
completion's states) are then used, so the objective reads inputs exactly as the model was
trained; ``max_length`` still caps the total from the left.

Scoring runs without gradients in batches of ``batch_size`` on the model's device, formed by the
one batcher of reward scoring (:func:`moalign.rewards.head.reward_scores`).
"""

from __future__ import annotations

import copy
import math
import os
import re
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from moalign.errors import ModelError, ObjectiveError
from moalign.objective.base import Objective, as_text
from moalign.objective.registry import _check_name
from moalign.rewards.head import _messages, _plain  # one encoding of prompts for both

__all__ = ["TRANSFORMS", "RewardModelObjective", "shared_reward_model"]


def _column(logits, head: int):
    return logits[:, head]


def _softmax(logits, head: int):
    return logits.softmax(dim=-1)[:, head]


def _one_minus_softmax(logits, head: int):
    probs = logits.softmax(dim=-1)
    others = [i for i in range(logits.shape[-1]) if i != head]
    return probs[:, others].sum(dim=-1)  # = 1 - p(head), without cancellation


#: How the logits ``[B, num_labels]`` (float64) of a batch become scores ``[B]``; ``head`` is
#: the selected column. The ``*_label`` transforms need a classifier with at least 2 labels.
TRANSFORMS: dict[str, Callable[[Any, int], Any]] = {
    "identity": _column,  # the raw score of the head
    "negate": lambda logits, head: -logits[:, head],  # a cost model read as a reward
    "sigmoid": lambda logits, head: logits[:, head].sigmoid(),  # P(head) of a binary logit
    "one_minus_sigmoid": lambda logits, head: (-logits[:, head]).sigmoid(),  # 1 - sigmoid
    "softmax_label": _softmax,  # P(label) of a classifier
    "one_minus_softmax_label": _one_minus_softmax,  # 1 - P(label)
}
_NEEDS_CLASSES = {"softmax_label", "one_minus_softmax_label"}


#: Reward models loaded from checkpoints in this process: one copy per (checkpoint folder,
#: device, dtype, trust_remote_code, files' time), shared by every objective that reads it while
#: any holds it (weak references: a copy no objective uses is freed).
_SHARED_MODELS: Any = weakref.WeakValueDictionary()


def _placement(options: Mapping[str, Any]) -> tuple[Any, str]:
    """``(device, dtype)`` of a reward model: ``device`` given, else the run's device
    (:func:`moalign.models.placement.run_device`); ``dtype`` given (``auto`` resolved for that
    device), else the precision of the run in progress, else ``auto`` for the device."""
    import torch

    from moalign.models.loading import _device
    from moalign.models.placement import resolve_dtype, run_device
    from moalign.models.precision import current_precision

    device = torch.device(_device(options["device"])) if options["device"] is not None \
        else run_device()
    dtype = options["dtype"]
    if dtype is None:
        dtype = current_precision() or "auto"
    return device, resolve_dtype(dtype, device)


def shared_reward_model(source: str, options: Mapping[str, Any]) -> Any:
    """The sequence classifier of ``source`` placed as :func:`_placement` says, loaded once per
    process and shared by every objective asking for the same folder, device and dtype."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from moalign.models.placement import place

    device, dtype = _placement(options)
    trust = bool(options["trust_remote_code"])
    folder = Path(source)
    where = os.path.realpath(source) if folder.exists() else source
    stamp = max((f.stat().st_mtime_ns for f in folder.iterdir() if f.is_file()), default=0) \
        if folder.is_dir() else 0  # a checkpoint written again is loaded again
    key = (where, str(device), dtype, trust, stamp)
    model = _SHARED_MODELS.get(key)
    if model is None:
        model = AutoModelForSequenceClassification.from_pretrained(
            source, dtype=getattr(torch, dtype), trust_remote_code=trust)
        model = place(model, device).eval()
        _SHARED_MODELS[key] = model
    return model


class _Loaded:
    """The model and tokenizer, loaded on first use and shared by the objectives of each head
    (and, for a checkpoint, by every objective of the process: :func:`shared_reward_model`)."""

    def __init__(self, source: str | None, model: Any, tokenizer: Any, options: dict[str, Any]):
        self.source, self.model, self.tokenizer, self.options = source, model, tokenizer, options
        self.pad_id: int | None = None

    def get(self, owner: str):
        if self.pad_id is not None:
            return self.model, self.tokenizer, self.pad_id
        from transformers import AutoTokenizer

        opts = self.options
        trust = opts["trust_remote_code"]
        if self.model is None:
            self.model = shared_reward_model(self.source, opts)
        elif opts["device"] is not None:  # a model given as an object moves when told to
            from moalign.models.placement import place

            self.model = place(self.model, _placement(opts)[0])
        if self.tokenizer is None or isinstance(self.tokenizer, (str, os.PathLike)):
            where = self.tokenizer or self.source or self.model.name_or_path
            self.tokenizer = AutoTokenizer.from_pretrained(os.fspath(where), trust_remote_code=trust)
        self.model.eval()
        config = self.model.config.get_text_config()
        tok = self.tokenizer
        if config.pad_token_id is None:
            fallback = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
            if fallback is None:
                raise ObjectiveError(
                    f"objective '{owner}': neither the model config nor the tokenizer has a pad "
                    "or eos token, so sequences of different lengths cannot be batched",
                    objective=owner,
                )
            config.pad_token_id = fallback
        self.pad_id = int(config.pad_token_id)
        return self.model, self.tokenizer, self.pad_id


class RewardModelObjective(Objective):
    """One head of a Hugging Face sequence-classification model, as an objective.

    Args:
        model: a checkpoint folder, a hub id (online, or already cached), or a loaded
            ``PreTrainedModel`` (put in eval mode on the first call). A path that does not
            exist is a :class:`ModelError` at construction; the weights load on the first call.
        tokenizer: a tokenizer or its path; default: the model's folder.
        head: the output column to read: an index, or a label name from ``config.id2label``.
        label: the same as ``head`` (reads better for classifiers); give one of the two.
        transform: a name in :data:`TRANSFORMS` (default ``"identity"``).
        normalize: ``None``, ``{"mean": m, "std": s}`` or ``(m, s)``: scores become
            ``(score - m) / s`` after the transform (e.g. the mean and spread of the reward
            model's scores on its training data, so objectives are on comparable scales).
        batch_size: examples per forward pass.
        max_length: tokens per example; longer ones are truncated from the left.
        append_eos: add the eos token to plain-text inputs (as TRL's ``RewardTrainer`` does when
            it trains on plain text). Not used with a chat template.
        use_chat_template: ``None`` (default) uses it when the tokenizer has one.
        device: where to run (``"cuda"``, ``"cpu"``, ``"auto"``); default: a checkpoint goes
            to the run's device (:func:`moalign.models.placement.run_device`: the GPU when
            there is one), a model given as an object stays where it is.
        dtype: ``None`` (default: a checkpoint loads in the precision of the run in progress,
            :func:`moalign.models.precision.current_precision`, else ``auto``; it is scored
            in that precision), or ``"float32"``, ``"bfloat16"``, ``"float16"``, ``"auto"``
            (bfloat16 on a CUDA device with bfloat16, else float32): loaded and scored in
            that dtype. A checkpoint is loaded once per process for each device and dtype
            and shared by every objective that reads it.
        name: the objective's name (default: the class's), e.g. to use two heads in one set.
        trust_remote_code: allow a checkpoint's own Python code to run (off by default).
    """

    name = "reward_model"
    description = "score of a Hugging Face sequence-classification reward model"
    #: Transform used when none is given (subclasses may decide per model, see
    #: :meth:`default_transform`).
    default_transform_name = "identity"

    def __init__(
        self,
        model: str | os.PathLike | Any | None = None,
        tokenizer: Any = None,
        *,
        head: int | str | None = None,
        label: int | str | None = None,
        transform: str | None = None,
        normalize: Mapping[str, float] | Sequence[float] | None = None,
        batch_size: int = 16,
        max_length: int = 512,
        append_eos: bool = True,
        use_chat_template: bool | None = None,
        device: Any = None,
        dtype: Any = None,
        name: str | None = None,
        trust_remote_code: bool = False,
    ):
        if name is not None:
            _check_name(name)
            self.name = name
        self._check_int("batch_size", batch_size)
        self._check_int("max_length", max_length, minimum=2)
        self.batch_size, self.max_length = batch_size, max_length
        self.append_eos, self.use_chat_template = bool(append_eos), use_chat_template
        self.normalize = self._parse_normalize(normalize)
        if model is None:
            model = self.default_model()
        options = {"dtype": dtype, "device": device, "trust_remote_code": trust_remote_code}
        if isinstance(model, (str, os.PathLike)):
            source, config = self._read_config(model, trust_remote_code)
            self._loaded = _Loaded(source, None, tokenizer, options)
            self.spec = _input_spec(source)
        elif hasattr(model, "config") and callable(model):
            config = model.config
            folder = getattr(model, "name_or_path", "") or ""
            if tokenizer is None and not (folder and Path(folder).is_dir()):
                raise self._error("pass tokenizer= with a model given as an object (it has no "
                                  "checkpoint folder to load one from)")
            self._loaded = _Loaded(None, model, tokenizer, options)
            self.spec = _input_spec(folder) if folder and Path(folder).is_dir() else None
        else:
            raise self._error(f"model must be a path, a hub id or a loaded model; got {model!r}")
        self.config = config
        self.num_labels = int(getattr(config, "num_labels", 1))
        if transform is not None and (not isinstance(transform, str) or transform not in TRANSFORMS):
            raise self._error(
                f"unknown transform {transform!r}; use one of {', '.join(TRANSFORMS)}"
            )
        if head is not None and label is not None and head != label:
            raise self._error(f"give head= or label=, not both (got head={head!r}, label={label!r})")
        self.head = self._resolve_head(label if head is None else head)
        self.transform = transform if transform is not None else self.default_transform()
        if self.transform in _NEEDS_CLASSES and self.num_labels < 2:
            raise self._error(
                f"transform '{self.transform}' needs a classifier with at least 2 labels; "
                "this model has 1 output (use 'identity', 'negate' or a sigmoid transform)"
            )

    # -- construction helpers ----------------------------------------------------------------

    def default_model(self) -> str | os.PathLike:
        """The checkpoint used when ``model`` is not given (subclasses may provide one)."""
        raise self._error("needs a reward model: pass model=PATH (a sequence-classification "
                          "checkpoint folder, or a hub id when online)")

    def default_transform(self) -> str:
        """The transform used when ``transform`` is not given."""
        return self.default_transform_name

    def default_head(self) -> int:
        """The column read when neither ``head`` nor ``label`` is given."""
        return 0

    def _error(self, message: str) -> ObjectiveError:
        return ObjectiveError(f"objective '{self.__name__}': {message}", objective=self.__name__)

    def _check_int(self, key: str, value: Any, minimum: int = 1) -> None:
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise self._error(f"{key} must be an integer >= {minimum}, got {value!r}")

    def _parse_normalize(self, normalize: Any) -> tuple[float, float] | None:
        if normalize is None:
            return None
        try:
            if isinstance(normalize, Mapping):
                extra = set(normalize) - {"mean", "std"}
                if extra:
                    raise ValueError(f"unknown key(s) {sorted(extra)}")
                mean, std = float(normalize["mean"]), float(normalize["std"])
            else:
                mean, std = (float(v) for v in normalize)
        except (KeyError, TypeError, ValueError) as exc:
            raise self._error(
                f"normalize must be {{'mean': m, 'std': s}} or (m, s); got {normalize!r} ({exc})"
            ) from None
        if not (math.isfinite(mean) and math.isfinite(std) and std > 0):
            raise self._error(f"normalize needs a finite mean and a std > 0; got {normalize!r}")
        return mean, std

    def _read_config(self, model: str | os.PathLike, trust_remote_code: bool):
        from moalign.models import resolve_model_source

        what = f"objective '{self.__name__}': reward model"
        try:
            source, gguf = resolve_model_source(model, what=what)
        except ModelError as exc:
            exc.objective = self.__name__  # type: ignore[attr-defined]
            raise
        if gguf is not None:
            raise ModelError(f"{what}: '{model}' is a GGUF file; a reward model must be a "
                             "sequence-classification checkpoint folder")
        if (Path(source) / "adapter_config.json").is_file():
            raise ModelError(f"{what}: '{model}' is a LoRA adapter; merge it into its base model "
                             "(peft merge_and_unload + save_pretrained) and pass that folder")
        from transformers import AutoConfig

        try:
            config = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
        except (OSError, ValueError) as exc:
            raise ModelError(f"{what}: cannot read the config of '{model}': {exc}") from exc
        return source, config

    def _resolve_head(self, head: int | str | None) -> int:
        if head is None:
            head = self.default_head()
        labels = {str(v): int(k) for k, v in (getattr(self.config, "id2label", None) or {}).items()}
        if isinstance(head, str):
            if head in labels:
                return labels[head]
            raise self._error(
                f"the model has no head named {head!r}; its heads: "
                + ", ".join(f"{i}={n}" for n, i in sorted(labels.items(), key=lambda x: x[1]))
            )
        if isinstance(head, bool) or not isinstance(head, int) or not 0 <= head < self.num_labels:
            raise self._error(
                f"head {head!r} is out of range: the model has {self.num_labels} output(s) "
                f"(0..{self.num_labels - 1})"
            )
        return head

    # -- multi-head models ---------------------------------------------------------------------

    @classmethod
    def each_head(
        cls, model: Any, tokenizer: Any = None, *, prefix: str | None = None, **kwargs: Any
    ) -> list[RewardModelObjective]:
        """One objective per head of a multi-head reward model, sharing one loaded model.

        Each is named ``<prefix>_<label>`` from ``config.id2label`` (lowercased; other
        characters become ``_``); ``prefix`` defaults to the class's name.
        """
        first = cls(model, tokenizer, head=0, **kwargs)
        prefix = prefix or cls.name
        id2label = getattr(first.config, "id2label", None) or {}
        out = []
        for i in range(first.num_labels):
            label = re.sub(r"[^a-z0-9_]+", "_", str(id2label.get(i, f"head_{i}")).lower()).strip("_")
            obj = copy.copy(first)
            obj.name = f"{prefix}_{label or i}"
            _check_name(obj.name)
            obj.head = i
            out.append(obj)
        return out

    # -- scoring -------------------------------------------------------------------------------

    def load(self):
        """Load the model and tokenizer now (otherwise done on the first call); returns them."""
        model, tokenizer, _ = self._loaded.get(self.__name__)
        return model, tokenizer

    def encode(self, prompt: Any, completion: Any) -> list[int]:
        """Token ids of one example as the model reads it (rendered, then left-truncated)."""
        return self._encode(prompt, completion)[0]

    def _encode(self, prompt: Any, completion: Any) -> tuple[list[int], int]:
        """``(ids, index where the completion starts)``; the start is only tracked (and used)
        for a checkpoint with an input spec."""
        _, tok, _ = self._loaded.get(self.__name__)
        if self.spec is not None:
            from moalign.rewards.head import encode_reward_input

            ids, start = encode_reward_input(
                tok, prompt, completion, self.spec,
                use_chat_template=self.use_chat_template, append_eos=self.append_eos,
            )
            kept = self._kept(len(ids), bool(ids) and ids[0] == tok.bos_token_id)
            return [ids[i] for i in kept], sum(1 for i in kept if i < start)
        chat = self.use_chat_template
        if chat is None:
            chat = bool(getattr(tok, "chat_template", None))
        if chat:
            messages = _messages(prompt, "user") + _messages(completion, "assistant")
            text = tok.apply_chat_template(messages, tokenize=False)
            ids = tok(text, add_special_tokens=False)["input_ids"]
        else:
            text = _plain(prompt) + as_text(completion)
            eos = tok.eos_token
            if self.append_eos and eos and not text.endswith(eos):
                text += eos
            ids = tok(text)["input_ids"]
        return self._truncate(list(ids), tok.bos_token_id), 0

    def _kept(self, n: int, leading_bos: bool) -> list[int]:
        """Positions kept by left truncation to ``max_length`` (a leading BOS stays)."""
        if n <= self.max_length:
            return list(range(n))
        if leading_bos:
            return [0, *range(n - self.max_length + 1, n)]
        return list(range(n - self.max_length, n))

    def _truncate(self, ids: list[int], bos_id: int | None) -> list[int]:
        leading_bos = bos_id is not None and bool(ids) and ids[0] == bos_id
        return [ids[i] for i in self._kept(len(ids), leading_bos)]

    def logits(self, prompts: Sequence[Any] | None, completions: Sequence[Any]):
        """Raw model outputs ``[B, num_labels]`` (float64, on the CPU), in input order."""
        from moalign.models.inference import inference_weights
        from moalign.models.precision import current_precision

        model, _, _ = self._loaded.get(self.__name__)
        precision = current_precision() if self._loaded.options["dtype"] is None else None
        with inference_weights(model, precision, merge=False):
            return self._logits(prompts, completions)

    def _logits(self, prompts: Sequence[Any] | None, completions: Sequence[Any]):
        from moalign.rewards.head import reward_scores

        model, _, _ = self._loaded.get(self.__name__)
        if prompts is None:
            prompts = [None] * len(completions)
        pairs = [self._encode(p, c) for p, c in zip(prompts, completions, strict=True)]
        pooling = "last" if self.spec is None else self.spec.pooling
        return reward_scores(model, pairs, pooling, batch_size=self.batch_size)

    def score(self, prompts: Sequence[Any], completions: Sequence[Any], **columns: Any):
        if len(completions) == 0:
            return []
        values = TRANSFORMS[self.transform](self.logits(prompts, completions), self.head)
        if self.normalize is not None:
            mean, std = self.normalize
            values = (values - mean) / std
        return values.tolist()

    def __repr__(self) -> str:
        where = self._loaded.source or type(self._loaded.model).__name__
        return (f"{type(self).__name__}(name={self.__name__!r}, model={where!r}, "
                f"head={self.head}, transform={self.transform!r})")


def _input_spec(folder: str | os.PathLike):
    """The ``moalign_reward.json`` input spec that ``moalign reward`` saves next to a
    checkpoint (prompt/completion truncation, pooling), or ``None``."""
    if not (Path(folder) / "moalign_reward.json").is_file():
        return None
    from moalign.rewards.head import RewardInputSpec

    return RewardInputSpec.load(folder)


