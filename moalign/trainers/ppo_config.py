"""The configuration of MO-PPO (:class:`~moalign.trainers.ppo.MultiObjectivePPOTrainer`): every
field documented once, checked when the config is built."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from moalign.config.fields import doc, document_fields
from moalign.errors import ConfigError
from moalign.tradeoff.tradeoff import refuse_renamed_fields
from moalign.trainers import conditioned_rl as rl
from moalign.trainers import ppo_core as core
from moalign.trainers import ppo_models as parts
from moalign.trainers.ranges import PPO_RANGES, trainer_range_problems
from moalign.weights import as_weights

__all__ = ["MultiObjectivePPOConfig"]


@refuse_renamed_fields
@document_fields
@dataclass
class MultiObjectivePPOConfig(rl.ConditioningFields):
    """Configuration of :class:`MultiObjectivePPOTrainer` (one iteration = rollouts + PPO epochs)."""

    # run
    output_dir: str = doc("moalign-ppo", "Folder for checkpoints and the metrics log.")
    seed: int = doc(0, "Seed of the model init, prompt order, minibatch shuffles and sampling "
                    "(process r > 0 samples from ppo_distributed.sampling_seed(seed, r)).")
    max_steps: int = doc(100, "Number of PPO iterations to run.")
    logging_steps: int = doc(1, "Log metrics every this many iterations.")
    save_steps: int = doc(0, "Save a checkpoint every this many iterations (0: only at the end).")
    save_final: bool = doc(True, "Save a checkpoint after the last iteration.")
    use_cpu: bool = doc(False, "Train on the CPU even when an accelerator is available.")
    bf16: bool = doc(False, "bfloat16 autocast over float32 weights, as TRL's field (`moalign "
                     "train` / `trace` set it from `precision`).")
    ddp_backend: str | None = doc(
        None, "Backend of the process group ('nccl', 'gloo', ...; None: accelerate's choice), as "
        "TRL's field: 'gloo' for several CPU processes under DeepSpeed.")
    # rollouts
    batch_size: int = doc(16, "Prompts per iteration on each process.")
    num_samples_per_prompt: int = doc(
        1, "Responses sampled per prompt (they form one group for group-wise scalarizers).")
    max_prompt_length: int | None = doc(512, "Keep at most this many last tokens of a prompt "
                                        "(a weight condition is always kept).")
    max_new_tokens: int = doc(64, "Maximum length of a sampled response.")
    temperature: float = doc(1.0, "Sampling temperature (log-probs are computed at it too).")
    top_k: int = doc(0, "Top-k sampling (0: off).")
    top_p: float = doc(1.0, "Nucleus sampling threshold (1.0: off).")
    generation_kwargs: dict | None = doc(
        None, "Extra arguments for transformers' GenerationConfig (e.g. suppress_tokens).")
    # optimization
    learning_rate: float = doc(1e-5, "AdamW learning rate of the policy.")
    critic_learning_rate: float | None = doc(None, "Learning rate of the critic (default: learning_rate).")
    critic: Literal["auto", "lora", "full"] = doc("auto", "The vector critic: 'lora' (its own adapter "
        "over a LoRA policy's frozen base, plus the heads), 'full' (a trainable copy of the backbone) "
        "or 'auto' (lora for a LoRA policy).")
    weight_decay: float = doc(0.0, "AdamW weight decay (policy and critic).")
    lr_scheduler_type: str = doc(
        "constant", "Learning-rate schedule over max_steps iterations (transformers' "
        "get_scheduler names: constant, linear, cosine, ...).")
    warmup_steps: int = doc(0, "Iterations of linear learning-rate warmup.")
    max_grad_norm: float | None = doc(1.0, "Gradient-norm clip per update (None: no clipping).")
    ppo_epochs: int = doc(4, "Passes over each batch of rollouts.")
    mini_batch_size: int = doc(8, "Responses per gradient step.")
    micro_batch_size: int | None = doc(
        None, "Responses per forward and backward within a minibatch, their gradients added up "
        "before the one step (None: the whole minibatch at once). The step follows the same "
        "token-mean loss; activation memory falls with it. Not under DeepSpeed, whose engine "
        "steps at every backward (use its gradient accumulation).")
    # PPO
    gamma: float = doc(1.0, "Discount per token.")
    lam: float = doc(0.95, "GAE lambda (1.0: Monte-Carlo returns).")
    cliprange: float = doc(0.2, "PPO ratio clip epsilon.")
    cliprange_value: float | None = doc(0.2, "Value clip around the rollout values (None: off).")
    kl_coef: float = doc(0.05, "Coefficient beta of the KL penalty to the reference policy.")
    kl_estimator: Literal["k1", "k2", "k3"] = doc("k1", "Per-token KL estimator (see ppo_core).")
    kl_penalty: Literal["token", "sequence"] = doc(
        "token", "'token': penalize each token's KL where it occurs; 'sequence': the summed KL "
        "once, at the last token.")
    whiten_advantages: bool = doc(True, "Normalize the combined advantages of each global batch.")
    # trade-off
    weights: list[float] | None = doc(None, "Fixed objective weights on the simplex (default uniform).")
    schedule: str | dict | None = doc(None, "Weight schedule spec for moalign.tradeoff.schedule.get_schedule.")
    scalarizer: str | dict = doc("linear", "Scalarizer spec for moalign.tradeoff.scalarize.get_scalarizer.")
    constraints: dict | None = doc(None, "Constraints objective name -> threshold (PPO-Lagrangian).")
    lagrangian_lr: float = doc(0.05, "Dual-ascent step size of the multipliers.")
    lagrangian_init: float = doc(0.0, "Initial value of every multiplier.")
    lagrangian_max: float | None = doc(None, "Upper bound of the multipliers (None: unbounded).")

    def __post_init__(self) -> None:
        problems = trainer_range_problems(self, PPO_RANGES)
        if self.kl_estimator not in core.KL_ESTIMATORS:
            problems.append(f"'kl_estimator' must be one of {list(core.KL_ESTIMATORS)}")
        if self.critic not in parts.CRITIC_KINDS:
            problems.append(f"'critic' must be one of {list(parts.CRITIC_KINDS)}, got {self.critic!r}")
        if self.kl_penalty not in ("token", "sequence"):
            problems.append(f"'kl_penalty' must be 'token' or 'sequence', got {self.kl_penalty!r}")
        if self.weights is not None and self.schedule is not None:
            problems.append("give either 'weights' or 'schedule', not both")
        problems += rl.conditioning_problems(self)
        if problems:
            raise ConfigError(problems)
        if self.weights is not None:
            as_weights(self.weights)  # off the simplex: WeightsError naming the vector
