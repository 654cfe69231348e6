"""The modules MO-PPO trains: one module holding the policy and the critic, and a LoRA critic.

- :class:`PolicyAndCritic` puts the policy and the vector critic in **one** ``nn.Module``, so
  ``accelerate`` prepares a single model with a single optimizer (two parameter groups, each
  with its own learning rate). DeepSpeed accepts one model per engine and FSDP2 one model per
  ``Accelerator``; two models passed to one ``prepare`` are refused by both. Every forward
  that a gradient flows through goes through the prepared wrapper (DDP synchronizes the
  gradients of a forward it ran itself), and one backward per minibatch covers both losses.
- :class:`LoraValueModel` is the critic of a LoRA policy: its own low-rank adapter on the
  layers the policy's adapter targets, over the **same frozen base** (the policy's, with the
  policy's adapter disabled), plus the value heads. Only the adapter and the heads are
  trainable, so the critic costs a few MB of weights, gradients and optimizer state instead of
  a full trainable copy of the backbone. It is the default critic of a LoRA policy
  (``critic="auto"``); full fine-tuning keeps the full copy
  (:class:`~moalign.trainers.value_heads.VectorValueModel`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from moalign.errors import ConfigError, ModelError
from moalign.trainers.checkpointing import is_peft_model
from moalign.trainers.value_heads import VectorValueModel

__all__ = ["CRITIC_KINDS", "LoraValueModel", "PolicyAndCritic", "build_parts", "joint_optimizer",
           "joint_optimizer_state"]

#: ``critic`` values of :class:`~moalign.trainers.ppo.MultiObjectivePPOConfig`.
CRITIC_KINDS = ("auto", "lora", "full")


def _hidden_size(model: nn.Module) -> int:
    config = getattr(model, "config", None)
    hidden = getattr(config.get_text_config(), "hidden_size", None) if config else None
    if hidden is None:
        raise ModelError(f"cannot read hidden_size from the config of {type(model).__name__}")
    return int(hidden)


class _LowRank(nn.Module):
    """``scaling * B(A(dropout(x)))``; ``B`` starts at zero, ``A`` as a ``Linear`` does
    (Kaiming-uniform, as peft's default LoRA initialization)."""

    def __init__(self, base: nn.Linear, rank: int, scaling: float, dropout: float):
        super().__init__()
        weight = base.weight
        self.A = nn.Linear(base.in_features, rank, bias=False, device=weight.device)
        self.B = nn.Linear(rank, base.out_features, bias=False, device=weight.device)
        nn.init.zeros_(self.B.weight)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.scaling = float(scaling)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.B(self.A(self.dropout(x.to(self.A.weight.dtype)))) * self.scaling


def _adapted_linears(policy: nn.Module) -> Iterator[tuple[str, nn.Linear, Any]]:
    """``(name, frozen base Linear, peft LoRA layer)`` for every linear layer the policy's
    active adapter targets."""
    for name, module in policy.named_modules():
        if not (hasattr(module, "lora_A") and hasattr(module, "get_base_layer")):
            continue
        base = module.get_base_layer()
        adapter = next((a for a in module.active_adapters if a in module.lora_A), None)
        if adapter is not None and isinstance(base, nn.Linear):
            yield name, base, (module, adapter)


class LoraValueModel(VectorValueModel):
    """A vector critic made of a LoRA adapter over a LoRA policy's frozen base, plus the heads.

    The adapter mirrors the policy's (same target layers, rank, scaling and dropout) but is
    its own, starting at ``B = 0`` like any LoRA adapter; the head starts at zero, so the
    initial values are 0 as for the full critic. The base is not a submodule of the critic
    (its parameters belong to the policy): the critic's ``parameters()`` and
    ``state_dict()`` hold the adapter and the heads only. Its forward runs the policy's
    transformer body with the policy's adapter disabled and this adapter added (forward
    hooks on the base linear layers, active only during the critic's forward).
    """

    kind = "lora"

    def __init__(self, policy: nn.Module, names: Sequence[str]):
        if not is_peft_model(policy):
            raise ConfigError("a LoRA critic needs a LoRA policy (peft model); use critic='full'")
        nn.Module.__init__(self)
        self._init_heads(_hidden_size(policy), names)
        base_model = policy.get_base_model()
        body = getattr(base_model, base_model.base_model_prefix, None)
        if body is None:
            raise ModelError(f"cannot find the backbone of {type(base_model).__name__}; "
                             "pass a value_model explicitly")
        self._shared = (policy, body)  # a tuple: not registered, so not the critic's parameters
        self._on = False
        self.adapters = nn.ModuleDict()
        self._hooks = []
        for name, base, (layer, adapter) in _adapted_linears(policy):
            dropout = layer.lora_dropout[adapter]
            pair = _LowRank(base, layer.r[adapter], layer.scaling[adapter],
                            getattr(dropout, "p", 0.0))
            self.adapters[name.replace(".", "-")] = pair
            self._hooks.append(base.register_forward_hook(self._hook(pair)))
        if not self.adapters:
            raise ModelError("the policy's LoRA adapter targets no linear layer; use critic='full'")
        self.to(next(policy.parameters()).device)

    def _hook(self, pair: _LowRank):
        def add_adapter(module, args, output):
            return output + pair(args[0]).to(output.dtype) if self._on else output
        return add_adapter

    @contextlib.contextmanager
    def _active(self) -> Iterator[None]:
        self._on = True
        try:
            yield
        finally:
            self._on = False

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
                ) -> torch.Tensor:
        policy, body = self._shared
        with policy.disable_adapter(), self._active():
            hidden = self._body_hidden(body, input_ids, attention_mask)
        return self.head(hidden.to(self.head.weight.dtype))


def build_parts(policy: nn.Module, heads: Sequence[str], kind: str = "auto",
                value_model: nn.Module | None = None, peft_config: Any = None
                ) -> tuple[nn.Module, nn.Module]:
    """``(policy, critic)``: the policy (given a LoRA adapter when ``peft_config`` is passed)
    and its critic with one head per name of ``heads``: ``value_model`` if given, else the
    critic of ``kind`` (``auto``: LoRA for a LoRA policy, else a full copy of the backbone,
    taken before the adapter is added, so of the base)."""
    if kind not in CRITIC_KINDS:
        raise ConfigError(f"'critic' must be one of {list(CRITIC_KINDS)}, got {kind!r}")
    lora = value_model is None and (kind == "lora" or (
        kind == "auto" and (is_peft_model(policy) or peft_config is not None)))
    critic = value_model or (None if lora else VectorValueModel.from_causal_lm(policy, heads))
    if peft_config is not None:
        from peft import get_peft_model

        policy = get_peft_model(policy, peft_config)
    critic = LoraValueModel(policy, heads) if lora else critic
    if getattr(critic, "num_heads", len(heads)) != len(heads):
        raise ModelError(f"the value model needs {len(heads)} heads ({', '.join(heads)})")
    return policy, critic


def joint_optimizer(policy: nn.Module, critic: nn.Module, lr: float, critic_lr: float,
                    weight_decay: float) -> torch.optim.Optimizer:
    """One AdamW over the trainable parameters (LoRA: the adapters and the value heads) with a
    parameter group per part, each with its learning rate: the policy's, then the critic's."""
    groups = [{"params": [p for p in part.parameters() if p.requires_grad], "lr": rate}
              for part, rate in ((policy, lr), (critic, critic_lr))]
    return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)


class PolicyAndCritic(nn.Module):
    """The policy and the critic as one module: what MO-PPO prepares with ``accelerate``.

    ``forward`` returns ``(logits, values)``: the policy's logits at the positions
    ``logits_to_keep`` (``None`` when ``policy=False``) and the critic's values ``[B, L, C]``
    (``None`` when ``critic=False``).
    """

    def __init__(self, policy: nn.Module, critic: nn.Module):
        super().__init__()
        self.policy = policy
        self.critic = critic

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                logits_to_keep: Any = 0, policy: bool = True, critic: bool = True
                ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        logits = values = None
        if policy:
            positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
            logits = self.policy(input_ids=input_ids, attention_mask=attention_mask,
                                 position_ids=positions, use_cache=False,
                                 logits_to_keep=logits_to_keep).logits
        if critic:
            values = self.critic(input_ids, attention_mask)
        return logits, values


def joint_optimizer_state(saved: Mapping[str, Any]) -> dict[str, Any]:
    """MO-PPO's ``optimizer.pt`` as ``{"optimizer", "scheduler"}``: one optimizer whose
    parameter groups are the policy's then the critic's, and one LR schedule.

    A checkpoint written when policy and critic had an optimizer and a schedule each
    (``policy``, ``critic``, ``schedulers``) is converted: the critic's parameters follow the
    policy's, and each schedule's per-group lists (base and last learning rates) are joined.
    """
    if "optimizer" in saved:
        return dict(saved)
    policy, critic = saved["policy"], saved["critic"]
    n = sum(len(group["params"]) for group in policy["param_groups"])
    optimizer = {
        "state": {**policy["state"], **{int(i) + n: v for i, v in critic["state"].items()}},
        "param_groups": [*policy["param_groups"],
                         *({**g, "params": [int(i) + n for i in g["params"]]}
                           for g in critic["param_groups"])]}
    first, second = saved["schedulers"]
    scheduler = {k: v + second[k] if isinstance(v, list) else v for k, v in first.items()}
    return {"optimizer": optimizer, "scheduler": scheduler}
