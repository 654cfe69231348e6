"""Multi-objective PPO with a vector critic (MO-PPO), and PPO-Lagrangian constraints.

Each iteration samples responses to a batch of prompts, scores them with every objective
(rewards ``[B, K]``), and updates the policy with PPO's clipped surrogate (Schulman et al. 2017)
on a signal built from **per-objective advantages**:

- the critic (:class:`~moalign.trainers.value_heads.VectorValueModel`) has one value head per
  objective and one for the KL penalty, and GAE runs on each channel separately
  (:func:`~moalign.trainers.ppo_core.gae`); the terminal reward of objective ``k`` sits on the
  last response token of its channel;
- the objective advantages ``[tokens, K]`` are combined with the schedule's current weights,
  and, with constraints, through the Lagrangian combination of Safe RLHF (Dai et al. 2023); the
  multipliers take one dual-ascent step per batch;
- a linear scalarizer (normalizers included) combines the advantages token by token; a
  **non-linear** one (Tchebycheff) is a function ``S(J)`` of the objectives' expected rewards,
  which per-token scalarization does not optimize (``S(E[r]) != E[S(r)]``): each batch takes
  ``dS/dJ`` at its mean rewards as the linear weights of the per-objective advantages, the
  policy gradient of ``S(J)`` by the chain rule (scalarized expected returns, Hayes et al.
  2022; Reymond et al. 2023; see :meth:`~moalign.tradeoff.tradeoff.TradeOff.gradient_weights`);
- the KL penalty to the reference is its own channel: ``-kl_coef * A_kl`` is added after
  scalarization, so it counts once whatever the weights, and its value head never needs to
  know them. Per token (``kl_penalty="token"``) or once per sequence at the last token.

With the linear scalarizer the combined advantage is exactly the advantage of the weighted
reward (GAE is linear), so the weights may change at any iteration without retraining the
critic. The policy is trained on ``transformers`` + ``accelerate``; the reference is the
``ref_model`` passed, by default a frozen copy of the initial policy (with LoRA the base).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from moalign.errors import CheckpointError, ConfigError
from moalign.objective import ObjectiveSet
from moalign.storage.checkpoints import latest_checkpoint
from moalign.storage.files import atomic_directory, jsonable
from moalign.tradeoff.tradeoff import TradeOff, check_scored
from moalign.trainers import conditioned_rl as rl
from moalign.trainers import ppo_core as core
from moalign.trainers import ppo_distributed as ddp
from moalign.trainers import ppo_engine as engine
from moalign.trainers import ppo_models as parts
from moalign.trainers.checkpoint_state import load_state, restore_rng, rng_state, save_state
from moalign.trainers.checkpointing import is_peft_model, load_policy_weights, resolve_policy
from moalign.trainers.ppo_config import MultiObjectivePPOConfig
from moalign.trainers.ppo_distributed import combine_globally, seed_sampling
from moalign.trainers.rollout import (
    PromptSampler,
    Rollout,
    as_prompt_rows,
    encode_prompts,
    is_conversational,
    sample_responses,
)

__all__ = ["MultiObjectivePPOConfig", "MultiObjectivePPOTrainer"]

logger = logging.getLogger(__name__)
_STATE = "trainer_state.json"


class MultiObjectivePPOTrainer:
    """Train a causal LM policy on K objectives with PPO and a vector critic.

    ``model`` is a path/hub id or a ``PreTrainedModel`` (or a peft model); ``objectives`` an
    :class:`~moalign.objective.ObjectiveSet` or what builds one. ``train_dataset`` holds a
    ``prompt`` column plus the columns the objectives need. ``value_model`` defaults to the
    config's ``critic`` (see :mod:`moalign.trainers.ppo_models`). Policy and critic are one
    prepared module, ``self.model`` (``self.policy`` and ``self.critic`` are its parts), with one
    optimizer of two parameter groups. A ``ref_model`` passed is the reference,
    LoRA or not; by default a frozen copy (under LoRA the adapter-disabled base). ``schedule``
    and ``scalarizer`` objects override the config's specs. ``callbacks`` are called as
    ``callback(trainer, metrics)`` per iteration. The trade-off's metrics (``rewards/<k>/mean``,
    ``weights/<k>``, with constraints ``lagrange/<k>``, ``constraint/<k>/slack``) are logged too.
    """

    def __init__(self, model: Any, objectives: Any, args: MultiObjectivePPOConfig | None = None,
                 train_dataset: Any = None, processing_class: Any = None, ref_model: Any = None,
                 value_model: torch.nn.Module | None = None, peft_config: Any = None,
                 schedule: Any = None, scalarizer: Any = None,
                 callbacks: Sequence[Callable] = ()):
        from accelerate import Accelerator
        from accelerate.state import AcceleratorState
        from transformers import get_scheduler, set_seed

        self.args = args = args or MultiObjectivePPOConfig()
        self.objectives = objectives if isinstance(objectives, ObjectiveSet) else ObjectiveSet(objectives)
        names = self.objectives.names
        self.tradeoff = TradeOff.from_config(names, args, schedule=schedule, scalarizer=scalarizer)
        problems = self.tradeoff.gradient_weight_problems()
        if problems:
            raise ConfigError(problems)
        self.rows = as_prompt_rows(train_dataset, self.objectives.required_columns)
        if args.conditioning is not None:  # each prompt shows the weights of its rewards
            self.rows = rl.condition_prompts(self.rows, names, args)
        self.callbacks = list(callbacks)
        set_seed(args.seed)
        # a fresh accelerator state per trainer, as TrainingArguments does
        AcceleratorState._reset_state(reset_partial_state=True)
        self.accelerator = Accelerator(cpu=args.use_cpu,
                                       mixed_precision="bf16" if args.bf16 else "no",
                                       kwargs_handlers=engine.process_group_kwargs(args.ddp_backend))

        policy, self.tokenizer = resolve_policy(model, processing_class)
        policy, critic = parts.build_parts(policy, (*names, "kl"), args.critic, value_model, peft_config)
        self.ref_model = self._reference = None  # None: the adapter-disabled base
        if args.kl_coef != 0 and not (is_peft_model(policy) and ref_model is None):
            self.ref_model = (ref_model or copy.deepcopy(policy)).eval().requires_grad_(False)
            self.ref_model.to(self.accelerator.device)
            self._reference = parts.PolicyAndCritic(self.ref_model, None)
        # one module and one optimizer (DeepSpeed and FSDP2 prepare a single model)
        optimizer = parts.joint_optimizer(policy, critic, args.learning_rate,
                                    args.critic_learning_rate or args.learning_rate, args.weight_decay)
        self.scheduler = get_scheduler(args.lr_scheduler_type, optimizer, args.warmup_steps,
                                       args.max_steps)
        if (args.micro_batch_size is not None and args.micro_batch_size < args.mini_batch_size
                and self.accelerator.distributed_type == "DEEPSPEED"):
            raise ConfigError("'micro_batch_size' splits a minibatch into several backward passes, "
                              "but the DeepSpeed engine steps at every backward: leave "
                              "micro_batch_size unset and use DeepSpeed's "
                              "gradient_accumulation_steps instead")
        engine.fill_deepspeed_autos(self.accelerator, args.mini_batch_size, args.max_grad_norm)
        self.model, self.optimizer = self.accelerator.prepare(parts.PolicyAndCritic(policy, critic), optimizer)
        self.policy, self.critic = self._unwrap(self.model).policy, self._unwrap(self.model).critic
        seed_sampling(args.seed, self.accelerator.process_index)  # per process, models built
        self.sampler = PromptSampler(len(self.rows), seed=args.seed)
        self.generator = torch.Generator().manual_seed(args.seed)
        self.step = 0
        self.log_history: list[dict[str, float]] = []

    @property
    def names(self) -> tuple[str, ...]:
        return self.objectives.names

    def _unwrap(self, module):
        return self.accelerator.unwrap_model(module)

    def _generation_kwargs(self) -> dict[str, Any]:
        a = self.args
        return {"max_new_tokens": a.max_new_tokens, "temperature": a.temperature, "top_k": a.top_k,
                "top_p": a.top_p, **(a.generation_kwargs or {})}

    # ------------------------------------------------------------------ rollouts

    def rollout(self) -> Rollout:
        """Sample responses to the next batch of prompts (not yet scored)."""
        a, acc = self.args, self.accelerator
        indices = self.sampler.next_indices(a.batch_size * acc.num_processes)
        indices = indices[acc.process_index * a.batch_size:(acc.process_index + 1) * a.batch_size]
        rows = [self.rows[i] for i in indices for _ in range(a.num_samples_per_prompt)]
        groups = torch.arange(len(indices)).repeat_interleave(a.num_samples_per_prompt)
        prompts = [r["prompt"] for r in rows]
        columns = {c: [r[c] for r in rows] for c in rows[0] if c != "prompt"}
        q_ids, q_mask = encode_prompts(self.tokenizer, prompts, a.max_prompt_length, acc.device)
        with acc.autocast():
            r_ids, r_mask = sample_responses(self._unwrap(self.policy), self.tokenizer, q_ids,
                                             q_mask, self._generation_kwargs())
        texts = self.tokenizer.batch_decode(r_ids, skip_special_tokens=True)
        completions = [[{"role": "assistant", "content": t}] if is_conversational(p) else t
                       for p, t in zip(prompts, texts)]
        return Rollout(prompts, completions, columns, groups, q_ids, q_mask, r_ids, r_mask)

    def score(self, rollout: Rollout) -> torch.Tensor:
        """Rewards ``[B, K]`` (NaN where unscored); an objective silent on the whole global
        batch raises :class:`~moalign.errors.ObjectiveError`."""
        rewards = self.objectives.score(rollout.prompts, rollout.completions, **rollout.columns)
        values = rewards.values.to(self.accelerator.device)
        check_scored(self.accelerator.gather(values), self.names)
        return values

    def _forward(self, rollout: Rollout, policy: bool = True, critic: bool = False, model=None):
        """``(logits, values)`` of ``model`` (default: the prepared policy and critic) before
        each response token: the raw logits ``[B, T, V]`` predicting it, the values ``[B, T, C]``."""
        T, L = rollout.response_ids.shape[1], rollout.input_ids.shape[1]
        keep = torch.arange(L - T - 1, L - 1, device=rollout.response_ids.device)
        with self.accelerator.autocast():  # the reference too, which is not prepared
            logits, values = (model or self.model)(rollout.input_ids, rollout.attention_mask, keep,
                                                   policy=policy, critic=critic)
        return logits, None if values is None else values[:, -T - 1:-1].float()

    def _logprobs(self, logits: torch.Tensor, tokens: torch.Tensor, entropy: bool = False):
        """Log-probs ``[B, T]`` at the sampling temperature (and entropies, no gradient), chunk
        by chunk of rows: no copy of the full-vocabulary logits (ppo_core.selective_logprobs)."""
        if entropy:
            return core.selective_logprobs_and_entropy(logits, tokens, self.args.temperature)
        return core.selective_logprobs(logits, tokens, self.args.temperature)

    def values(self, rollout: Rollout) -> torch.Tensor:
        """The critic's values before each response token, one column per head: ``[B, T, C]``."""
        return self._forward(rollout, policy=False, critic=True)[1]

    @torch.no_grad()
    def _ref_logprobs(self, rollout: Rollout) -> torch.Tensor:
        if self._reference is not None:
            logits, _ = self._forward(rollout, model=self._reference)
        else:
            with self.policy.disable_adapter():
                logits, _ = self._forward(rollout)
        return self._logprobs(logits, rollout.response_ids)

    @torch.no_grad()
    def make_batch(self, rollout: Rollout, rewards: torch.Tensor) -> dict[str, Any]:
        """Log-probs, values, per-objective GAE and the combined advantages of a rollout."""
        a, K = self.args, len(self.names)
        mask = rollout.response_mask
        old_logp, entropy = self._logprobs(self._forward(rollout)[0], rollout.response_ids, True)
        entropy = ddp.global_token_mean(self.accelerator, entropy, mask)
        if a.kl_coef > 0:
            kl = core.kl_estimate(old_logp, self._ref_logprobs(rollout), a.kl_estimator) * mask
        else:
            kl = torch.zeros_like(old_logp)
        if a.kl_penalty == "sequence":
            kl_stream = core.place_at_last_token(kl.sum(-1, keepdim=True), mask).squeeze(-1)
        else:
            kl_stream = kl
        scored = ~torch.isnan(rewards)
        channel_rewards = torch.cat(
            [core.place_at_last_token(torch.nan_to_num(rewards), mask), kl_stream.unsqueeze(-1)], -1)
        old_values = self.values(rollout)
        adv, returns = core.gae(channel_rewards, old_values, mask, a.gamma, a.lam)

        tokens = mask.bool()
        objective_adv = adv[..., :K].masked_fill(~scored.unsqueeze(1), float("nan"))
        signal = torch.zeros_like(old_logp)
        if a.conditioning is not None:  # per token: its prompt's weights (conditioned_rl)
            coef = torch.as_tensor(rl.row_weights(rollout.columns[rl.WEIGHTS_COLUMN]),
                                   device=mask.device)
            self.tradeoff.set_weights(self.accelerator.gather(coef).mean(0).cpu().numpy())  # global
            signal[tokens] = core.weighted_channels(objective_adv[tokens], coef.unsqueeze(1).expand(
                *mask.shape, K)[tokens]).float()
        elif self.tradeoff.is_linear:  # per token, normalizers on the global batch's tokens
            groups = rollout.groups.to(mask.device) + self.accelerator.process_index * a.batch_size
            groups = groups.unsqueeze(1).expand_as(mask)[tokens]
            signal[tokens] = combine_globally(self.tradeoff, self.accelerator,
                                              objective_adv[tokens], groups).float()
        else:  # S(J) linearized at the global batch's mean rewards
            coef = torch.as_tensor(self.tradeoff.gradient_weights(self.accelerator.gather(rewards)),
                                   device=mask.device)
            signal[tokens] = core.weighted_channels(objective_adv[tokens], coef).float()
        advantages = torch.nan_to_num(signal) - a.kl_coef * adv[..., K]
        if a.whiten_advantages:  # with the statistics of the global batch
            moments = self.accelerator.reduce(core.masked_moments(advantages, mask), "sum")
            advantages = core.masked_whiten(advantages, mask, moments=moments)
        channel_scored = torch.cat([scored, torch.ones_like(scored[:, :1])], -1)  # KL always
        value_mask = channel_scored.unsqueeze(1) & tokens.unsqueeze(-1)
        ev = [core.explained_variance(old_values[..., c], returns[..., c], value_mask[..., c])
              for c in range(K + 1)]
        return {"rollout": rollout, "old_logp": old_logp, "old_values": old_values,
                "advantages": advantages, "returns": returns, "value_mask": value_mask,
                "rewards": rewards, "kl": kl.sum(-1), "entropy": entropy,
                "explained_variance": ev}

    # ------------------------------------------------------------------ optimization

    def _step(self) -> None:
        """Each part's gradient clipped on its own, one step (a group per part)."""
        if self.args.max_grad_norm is not None:
            for group in self.optimizer.param_groups:
                self.accelerator.clip_grad_norm_(group["params"], self.args.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def _minibatch(self, batch: dict[str, Any], idx: torch.Tensor, apart: bool
                   ) -> dict[str, torch.Tensor]:
        """One gradient step on the rows ``idx`` of ``batch``, forward and backward in chunks of
        ``micro_batch_size`` rows; returns the detached loss statistics of the minibatch.

        Each chunk's token means are weighted by its share of the minibatch's tokens (per value
        head for the critic), so the added-up gradients are those of the minibatch's token means
        (one chunk: a weight of exactly 1). Under DDP only the last chunk's backward
        synchronizes the gradients."""
        import contextlib

        a, r = self.args, batch["rollout"]
        mb = r.select(idx)
        idx = idx.to(r.response_ids.device)
        value_mask = batch["value_mask"][idx]
        # token means over every process's minibatch tokens (ppo_distributed.token_mean_scale)
        pg_scale = ddp.token_mean_scale(self.accelerator, mb.response_mask)
        vf_scale = ddp.token_mean_scale(self.accelerator, value_mask, (0, 1))
        pg_tokens = mb.response_mask.float().sum().clamp(min=1.0)
        vf_tokens = value_mask.float().sum((0, 1)).clamp(min=1.0)
        chunks = torch.arange(len(idx)).split(a.micro_batch_size or len(idx))
        totals: dict[str, torch.Tensor] = {}
        for i, rows in enumerate(chunks):
            part, at = (mb, idx) if len(chunks) == 1 else (mb.select(rows), idx[rows.to(idx.device)])
            part_values = value_mask if len(chunks) == 1 else value_mask[rows.to(idx.device)]
            pg_share = part.response_mask.float().sum().clamp(min=1.0) / pg_tokens
            vf_share = part_values.float().sum((0, 1)).clamp(min=1.0) / vf_tokens
            last = i == len(chunks) - 1
            sync = (contextlib.nullcontext() if last or apart
                    else self.accelerator.no_sync(self.model))
            with sync:
                logits, values = self._forward(part, critic=not apart)
                logp = self._logprobs(logits, part.response_ids)
                del logits
                pg_loss, stats = core.clipped_policy_loss(
                    logp, batch["old_logp"][at], batch["advantages"][at], part.response_mask,
                    a.cliprange)
                weight = pg_scale * pg_share
                pg_loss, stats = pg_loss * weight, {k: v * weight for k, v in stats.items()}
                if apart:  # the same gradients as the joint backward, one graph alive at a time
                    self.accelerator.backward(pg_loss)
                    values = self.values(part)
                _, per_head = core.clipped_value_loss(
                    values, batch["old_values"][at], batch["returns"][at], part_values,
                    a.cliprange_value)
                per_head = per_head * vf_scale * vf_share
                vf_loss = per_head.mean()
                self.accelerator.backward(vf_loss if apart else pg_loss + vf_loss)  # disjoint
            items = {"loss/policy": pg_loss, "loss/value": vf_loss, **stats,
                     **{f"value/{h}/loss": v for h, v in zip((*self.names, "kl"), per_head)}}
            for key, value in items.items():
                totals[key] = totals.get(key, 0.0) + value.detach().float()
        self._step()
        return totals

    def update(self, batch: dict[str, Any]) -> dict[str, float]:
        """PPO epochs over a batch from :meth:`make_batch`; returns averaged loss statistics.
        Token means (losses, clipfrac, approx_kl) are over every process's minibatch tokens.
        The statistics add up on the device; the host reads them once, at the end."""
        a = self.args
        n = batch["rollout"].response_ids.shape[0]
        apart = self.accelerator.distributed_type == "NO"  # a backward per part: one graph alive
        sums: dict[str, torch.Tensor] = {}
        count = 0
        for _ in range(a.ppo_epochs):
            for idx in torch.randperm(n, generator=self.generator).split(a.mini_batch_size):
                for key, value in self._minibatch(batch, idx, apart).items():
                    sums[key] = sums.get(key, 0.0) + value
                count += 1
        means = self.accelerator.reduce(torch.stack(list(sums.values())) / count, "mean").tolist()
        return {k if "/" in k else f"policy/{k}": v for k, v in zip(sums, means)}

    def _metrics(self, batch: dict[str, Any], losses: dict[str, float], seconds: float) -> dict:
        acc = self.accelerator
        rewards = acc.gather(batch["rewards"])
        means = torch.nanmean(rewards, dim=0).tolist()
        # rewards/<k>/mean, weights/<k>, lagrange/<k>, constraint/<k>/slack
        m: dict[str, float] = {"step": self.step, **self.tradeoff.metrics(means)}
        for h, ev in zip((*self.names, "kl"), batch["explained_variance"]):
            m[f"value/{h}/explained_variance"] = float(ev)
        tokens = acc.gather(batch["rollout"].response_mask.sum()).sum().item()
        m.update({"kl": acc.gather(batch["kl"]).mean().item(), "entropy": float(batch["entropy"]),
                  **losses, "tokens": tokens,
                  "learning_rate": self.scheduler.get_last_lr()[0],
                  "time/iteration": seconds, "tokens_per_second": tokens / max(seconds, 1e-9)})
        return m

    def train_step(self) -> dict[str, float]:
        """One iteration: ask the weights, roll out, score, step the multipliers, make the
        batch, update policy and critic, tell the schedule."""
        start = time.perf_counter()
        weights = self.tradeoff.ask()
        rollout = self.rollout()
        rewards = self.score(rollout)
        self.tradeoff.update_multipliers(self.accelerator.gather(rewards))  # dual ascent
        batch = self.make_batch(rollout, rewards)
        losses = self.update(batch)
        self.scheduler.step()
        self.step += 1
        metrics = self._metrics(batch, losses, time.perf_counter() - start)
        self.tradeoff.tell({"step": self.step, "weights": weights,
                            "rewards": np.array([metrics[f"rewards/{n}/mean"] for n in self.names])})
        return metrics

    def train(self, resume_from_checkpoint: str | os.PathLike | bool | None = None) -> list[dict]:
        """Run iterations until ``max_steps``; returns the metrics log."""
        if resume_from_checkpoint:
            path = resume_from_checkpoint
            if path is True:
                path = latest_checkpoint(self.args.output_dir)
                if path is None:
                    raise CheckpointError(f"no checkpoint to resume in '{self.args.output_dir}'")
            self.load_checkpoint(path)
        while self.step < self.args.max_steps:
            metrics = self.train_step()
            if self.step % self.args.logging_steps == 0 or self.step == self.args.max_steps:
                self.log(metrics)
            for callback in self.callbacks:
                callback(self, metrics)
            if self.args.save_steps and self.step % self.args.save_steps == 0:
                self.save_checkpoint()
        if self.args.save_final and not (self.args.save_steps and self.step % self.args.save_steps == 0):
            self.save_checkpoint()
        return self.log_history

    def log(self, metrics: dict[str, float]) -> None:
        self.log_history.append(metrics)
        if self.accelerator.is_main_process:
            shown = {k: round(v, 4) for k, v in metrics.items() if k.startswith(("rewards/", "kl", "lagrange/"))}
            logger.info("step %d: %s", self.step, shown)

    # ------------------------------------------------------------------ checkpoints

    def _gathered(self) -> tuple[dict | None, dict | None]:
        """The policy's and the critic's whole states where the weights are sharded (ZeRO-3,
        FSDP; collective, the main process gets them), else ``(None, None)``: their own
        ``state_dict()`` is whole. A LoRA policy's frozen base is left out."""
        state = engine.gathered_state(self.accelerator, self.model,
                                      trainable_only=is_peft_model(self.policy))
        return engine.part_state(state, "policy"), engine.part_state(state, "critic")

    def save_policy(self, path: str | os.PathLike) -> None:
        """Save the policy (the adapter under LoRA) with ``save_pretrained``, gathered from
        every process's partitions: call it on every process; the main one writes."""
        policy_state, _ = self._gathered()
        if self.accelerator.is_main_process:
            self.policy.save_pretrained(str(path), state_dict=policy_state)
        self.accelerator.wait_for_everyone()

    def save_checkpoint(self, path: str | os.PathLike | None = None) -> Path:
        """Save policy (or adapter) + tokenizer, critic, optimizer and LR schedule, RNG
        states, prompt order, weights and multipliers (default ``output_dir/checkpoint-<step>``).
        Call it on every process. Weights are gathered whole; under DeepSpeed the engine
        writes the partitioned optimizer state into ``global_step<step>/``."""
        acc = self.accelerator
        path = Path(path or Path(self.args.output_dir) / f"checkpoint-{self.step}")
        acc.wait_for_everyone()
        from accelerate.utils import broadcast_object_list, gather_object

        # every process's RNG goes into the folder before it is renamed into place
        rng_states = gather_object([rng_state(self.generator)])
        policy_state, critic_state = self._gathered()
        main = acc.is_main_process
        with atomic_directory(path, overwrite=True) if main else contextlib.nullcontext() as tmp:
            tmp = Path(broadcast_object_list([str(tmp) if main else None])[0])  # one folder
            optimizer: dict[str, Any] = {"scheduler": self.scheduler.state_dict()}
            if engine.is_deepspeed(acc):
                optimizer["engine"] = engine.save_engine_state(self.model, tmp, self.step)
            elif main:
                optimizer["optimizer"] = self.optimizer.state_dict()
            acc.wait_for_everyone()  # every process's files are written
            if main:
                for index, state in enumerate(rng_states):
                    save_state(tmp, f"rng_state_{index}.pt", state)
                self.policy.save_pretrained(tmp, state_dict=policy_state)
                self.tokenizer.save_pretrained(tmp)
                self.critic.save(tmp, state=critic_state)
                save_state(tmp, "optimizer.pt", optimizer)
                save_state(tmp, _STATE, {
                    "step": self.step, "sampler": self.sampler.state_dict(),
                    "tradeoff": self.tradeoff.state_dict(), "objectives": list(self.names),
                    "config": dataclasses.asdict(self.args),
                    "log_history": [jsonable(m) for m in self.log_history]})
        acc.wait_for_everyone()
        return path

    def load_checkpoint(self, path: str | os.PathLike) -> None:
        """Restore everything :meth:`save_checkpoint` wrote; the objectives must match, and a
        checkpoint written under DeepSpeed resumes under DeepSpeed (and only there)."""
        path = Path(path)
        state = load_state(path, _STATE, objectives=self.names, what="MO-PPO trainer state",
                           required=("objectives", "step", "sampler", "tradeoff", "log_history"))
        saved = load_state(path, "optimizer.pt", what="optimizer state")
        if ("engine" in saved) != engine.is_deepspeed(self.accelerator):
            where = "with" if "engine" in saved else "without"
            raise CheckpointError(f"checkpoint '{path}' was written {where} DeepSpeed; resume it "
                                  f"{where} DeepSpeed (its optimizer state is kept that way)")
        if "engine" in saved:  # the engine restores the trainable weights and optimizer state
            engine.load_engine_state(self.model, path, saved["engine"])
        else:
            saved = parts.joint_optimizer_state(saved)
            load_policy_weights(self.policy, path)
            self.critic.load(path)
            self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        restore_rng(load_state(path, f"rng_state_{self.accelerator.process_index}.pt",
                               what="RNG state"), self.generator)
        self.step = int(state["step"])
        self.sampler.load_state_dict(state["sampler"])
        self.tradeoff.load_state_dict(state["tradeoff"])
        self.log_history = list(state["log_history"])
