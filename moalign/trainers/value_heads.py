"""The vector critic of multi-objective PPO: one value head per reward channel.

Design choice: the critic is a **separate** model, not a head on the policy. Here it is a copy of
the policy's transformer backbone (without the LM head) topped by one linear layer with ``C``
outputs, one per channel (the K objectives, then the KL penalty). The heads share the critic's
backbone, so the K objectives cost one forward pass, while the policy's representation is not
pulled by the value regression (the setup of InstructGPT, Ouyang et al. 2022, and of Safe
RLHF's separate reward and cost critics, Dai et al. 2023). Because each objective keeps its own
head, the weights or Lagrange multipliers that combine them can change at any step without
retraining the critic. (A LoRA policy gets a LoRA critic by default instead:
:class:`moalign.trainers.ppo_models.LoraValueModel`, its own adapter over the shared frozen base.)
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from moalign.errors import CheckpointError, ModelError
from moalign.trainers.checkpointing import is_peft_model

__all__ = ["VectorValueModel"]

_WEIGHTS = "critic.safetensors"


def _backbone_of(model: nn.Module) -> nn.Module:
    """The transformer body of a causal LM (e.g. ``LlamaForCausalLM.model``)."""
    if is_peft_model(model):  # merge a copy of its adapters
        model = copy.deepcopy(model).merge_and_unload()
    prefix = getattr(model, "base_model_prefix", None)
    body = getattr(model, prefix, None) if prefix else None
    if body is None:
        raise ModelError(
            f"cannot find the backbone of {type(model).__name__} (no '{prefix}' attribute); "
            "pass a value_model explicitly"
        )
    return body


class VectorValueModel(nn.Module):
    """A backbone plus a linear head with one output per channel: ``[B, L] -> [B, L, C]``.

    ``names`` labels the channels (used in logs and checkpoints). The head starts at zero, so
    every initial value estimate is 0 and the first advantages are the raw returns.
    """

    #: what the critic's weights are: ``full`` (backbone and heads), ``lora`` (see
    #: :class:`moalign.trainers.ppo_models.LoraValueModel`); recorded in its checkpoint
    kind = "full"

    def __init__(self, backbone: nn.Module, hidden_size: int, names: Sequence[str]):
        super().__init__()
        self.backbone = backbone
        self._init_heads(hidden_size, names)

    def _init_heads(self, hidden_size: int, names: Sequence[str]) -> None:
        if not names:
            raise ValueError("a vector critic needs at least one channel name")
        self.names = tuple(names)
        self.head = nn.Linear(hidden_size, len(self.names))
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    @classmethod
    def from_causal_lm(cls, model: nn.Module, names: Sequence[str]) -> VectorValueModel:
        """A critic whose backbone is an independent copy of ``model``'s backbone.

        For a peft model the copy has the adapters merged (the current policy's weights).
        """
        backbone = copy.deepcopy(_backbone_of(model))
        backbone.requires_grad_(True)
        config = getattr(model, "config", None)
        hidden = getattr(config.get_text_config(), "hidden_size", None) if config else None
        if hidden is None:
            raise ModelError(f"cannot read hidden_size from the config of {type(model).__name__}")
        return cls(backbone, hidden, names)

    @property
    def num_heads(self) -> int:
        return len(self.names)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
                ) -> torch.Tensor:
        hidden = self._body_hidden(self.backbone, input_ids, attention_mask)
        return self.head(hidden.to(self.head.weight.dtype))

    @staticmethod
    def _body_hidden(body: nn.Module, input_ids: torch.Tensor,
                     attention_mask: torch.Tensor | None) -> torch.Tensor:
        """The last hidden states of a transformer body ``[B, L, H]``."""
        positions = None
        if attention_mask is not None:  # left padding: count positions from the first real token
            positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        out = body(input_ids=input_ids, attention_mask=attention_mask,
                   position_ids=positions, use_cache=False)
        return out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]

    def save(self, directory: str | os.PathLike, state: Mapping[str, torch.Tensor] | None = None
             ) -> None:
        """Write the critic's weights (``state``, e.g. gathered from partitions; default its
        ``state_dict()``) and channel names to ``directory/critic.safetensors``."""
        from safetensors.torch import save_file

        state = {k: v.detach().contiguous().cpu()
                 for k, v in (self.state_dict() if state is None else state).items()}
        save_file(state, os.path.join(directory, _WEIGHTS),
                  metadata={"names": ",".join(self.names), "kind": self.kind})

    def load(self, directory: str | os.PathLike) -> None:
        """Load weights written by :meth:`save`; the channel names must match."""
        from safetensors import safe_open
        from safetensors.torch import load_file

        path = os.path.join(directory, _WEIGHTS)
        if not os.path.isfile(path):
            raise CheckpointError(f"critic weights not found: '{path}'")
        with safe_open(path, framework="pt") as f:
            metadata = f.metadata() or {}
        names = tuple(metadata.get("names", "").split(","))
        if names != self.names:
            raise CheckpointError(
                f"critic checkpoint '{path}' has heads {list(names)}, expected {list(self.names)}"
            )
        kind = metadata.get("kind", "full")  # written before LoRA critics existed: full
        if kind != self.kind:
            raise CheckpointError(
                f"critic checkpoint '{path}' holds a {kind} critic, but this trainer built a "
                f"{self.kind} one: resume with critic='{kind}'")
        self.load_state_dict(load_file(path))
