"""Overhead of MultiObjectiveGRPOTrainer over trl.GRPOTrainer, and MO-PPO throughput, side by side.

All three train the same seeded model on the same GSM8K prompts (bundled) with the same two
reward functions (``reasoning_accuracy`` and ``length`` from moalign's objectives) and the same
generation settings (``--generations`` samples per prompt, ``--new-tokens`` new tokens,
temperature 1):

- **trl**: ``trl.GRPOTrainer`` with fixed ``reward_weights`` (the anchor);
- **mo-grpo**: ``MultiObjectiveGRPOTrainer`` with everything it adds switched on: an annealed
  weight schedule and a Lagrangian constraint on ``length`` (weights and multipliers updated at
  every batch, per-objective metrics logged);
- **mo-ppo**: ``MultiObjectivePPOTrainer`` with the same prompts per iteration, one PPO epoch
  and one minibatch (one optimizer step per generation batch, as GRPO), a vector critic and a
  frozen reference (``kl_coef`` > 0), the same schedule and constraint.

Each measurement runs in a fresh worker process; rounds alternate the order of the workers. Per
step (GRPO: one optimizer step including its generation; PPO: one iteration) the script records
the process CPU time (all threads; robust to other processes competing for the cores) and the
wall time, and reports medians after ``--warmup`` steps. Throughput is generated (response)
tokens per second of CPU time and of wall time.

    python benchmarks/rl_overhead.py                  # tiny random Llama, CPU
    python benchmarks/rl_overhead.py --hidden 256 --steps 30 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

KINDS = ("trl", "mo-grpo", "mo-ppo")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hidden", type=int, default=128, help="hidden size of the random Llama")
    p.add_argument("--layers", type=int, default=2, help="layers of the random Llama")
    p.add_argument("--prompts", type=int, default=2, help="prompts per step")
    p.add_argument("--generations", type=int, default=4, help="samples per prompt")
    p.add_argument("--new-tokens", type=int, default=16, help="new tokens per sample")
    p.add_argument("--max-prompt-length", type=int, default=128, help="prompt tokens kept")
    p.add_argument("--steps", type=int, default=20, help="steps per worker (timed after warmup)")
    p.add_argument("--warmup", type=int, default=3, help="untimed first steps")
    p.add_argument("--repeats", type=int, default=3, help="rounds of the three workers")
    p.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    p.add_argument("--worker", choices=KINDS, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def setup(args):
    import torch

    from moalign import load_objective
    from moalign.data.reasoning import load_gsm8k
    from moalign.models import tiny_causal_lm

    torch.set_num_threads(args.threads)
    model, tok = tiny_causal_lm(0, hidden_size=args.hidden, intermediate_size=2 * args.hidden,
                                num_hidden_layers=args.layers)
    dataset, _ = load_gsm8k()
    dataset = dataset.select(range(200)).remove_columns(["solution"])
    objectives = [load_objective("reasoning_accuracy"),
                  load_objective("length", target=8, unit="chars")]
    return model, tok, dataset, objectives


class Clock:
    """CPU and wall time of each step, from one mark to the next."""

    def __init__(self):
        self.cpu, self.wall, self._last = [], [], None

    def mark(self):
        now = (time.process_time(), time.perf_counter())
        if self._last is not None:
            self.cpu.append(now[0] - self._last[0])
            self.wall.append(now[1] - self._last[1])
        self._last = now


def run_grpo(args, kind: str, folder: str) -> dict:
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from moalign.trainers.grpo import MultiObjectiveGRPOConfig, MultiObjectiveGRPOTrainer

    model, tok, dataset, objectives = setup(args)
    common = dict(
        output_dir=folder, max_steps=args.steps, per_device_train_batch_size=args.prompts * args.generations,
        num_generations=args.generations, max_completion_length=args.new_tokens,
        learning_rate=1e-5, beta=0.0, use_cpu=True, bf16=False, gradient_checkpointing=False,
        report_to=[], logging_steps=1, save_strategy="no", seed=0, disable_tqdm=True,
    )
    if kind == "trl":
        trainer = GRPOTrainer(model, objectives, GRPOConfig(reward_weights=[0.5, 0.5], **common),
                              train_dataset=dataset, processing_class=tok)
    else:
        schedule = {"name": "anneal", "start": [0.8, 0.2], "end": [0.2, 0.8], "steps": args.steps}
        config = MultiObjectiveGRPOConfig(schedule=schedule, constraints={"length": 0.5}, **common)
        trainer = MultiObjectiveGRPOTrainer(model, objectives, config, train_dataset=dataset,
                                            processing_class=tok)
    clock = Clock()

    class Mark(TrainerCallback):
        def on_step_begin(self, *a, **k):
            if clock._last is None:
                clock.mark()

        def on_step_end(self, *a, **k):
            clock.mark()

    trainer.add_callback(Mark())
    trainer.train()
    tokens = [h["num_tokens"] for h in trainer.state.log_history if "num_tokens" in h]
    # num_tokens counts prompt + completion tokens; completions are the generated ones
    lengths = [h["completions/mean_length"] for h in trainer.state.log_history
               if "completions/mean_length" in h]
    per_step = statistics.mean(lengths[args.warmup:]) * args.prompts * args.generations
    return {"cpu": clock.cpu, "wall": clock.wall, "tokens_per_step": per_step,
            "total_tokens": tokens[-1] if tokens else None}


def run_ppo(args, folder: str) -> dict:
    from moalign.trainers.ppo import MultiObjectivePPOConfig, MultiObjectivePPOTrainer

    model, tok, dataset, objectives = setup(args)
    schedule = {"name": "anneal", "start": [0.8, 0.2], "end": [0.2, 0.8], "steps": args.steps}
    config = MultiObjectivePPOConfig(
        output_dir=folder, max_steps=args.steps, batch_size=args.prompts,
        num_samples_per_prompt=args.generations, max_new_tokens=args.new_tokens,
        max_prompt_length=args.max_prompt_length, ppo_epochs=1,
        mini_batch_size=args.prompts * args.generations, learning_rate=1e-5, kl_coef=0.05,
        schedule=schedule, constraints={"length": 0.5}, use_cpu=True, save_final=False)
    clock = Clock()
    trainer = MultiObjectivePPOTrainer(model, objectives, config, train_dataset=dataset,
                                       processing_class=tok, callbacks=[lambda t, m: clock.mark()])
    clock.mark()
    trainer.train()
    tokens = [m["tokens"] for m in trainer.log_history]
    return {"cpu": clock.cpu, "wall": clock.wall,
            "tokens_per_step": statistics.mean(tokens[args.warmup:])}


def worker(args) -> None:
    with tempfile.TemporaryDirectory() as folder:
        out = run_ppo(args, folder) if args.worker == "mo-ppo" else run_grpo(args, args.worker, folder)
    cpu, wall = out["cpu"][args.warmup:], out["wall"][args.warmup:]
    print(json.dumps({"kind": args.worker, "cpu": statistics.median(cpu),
                      "wall": statistics.median(wall), "tokens_per_step": out["tokens_per_step"]}))


def spawn(kind: str, argv: list[str]) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), *argv, "--worker", kind]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=root)
    if done.returncode != 0:
        raise SystemExit(f"{kind} worker failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.worker:
        worker(args)
        return
    argv = [a for a in (argv if argv is not None else sys.argv[1:])]
    results: dict[str, list[dict]] = {k: [] for k in KINDS}
    for r in range(args.repeats):
        order = KINDS if r % 2 == 0 else tuple(reversed(KINDS))
        for kind in order:
            results[kind].append(spawn(kind, argv))
            print(f"round {r + 1}/{args.repeats}: {kind:8s} {results[kind][-1]}", flush=True)

    def med(kind, key):
        return statistics.median(x[key] for x in results[kind])

    print()
    print(f"model: random Llama, hidden {args.hidden}, {args.layers} layers; "
          f"{args.prompts} prompts x {args.generations} samples x {args.new_tokens} new tokens per step; "
          f"{args.threads} thread(s); medians over {args.repeats} rounds")
    print(f"{'trainer':10s} {'cpu s/step':>11s} {'wall s/step':>12s} {'tok/s (cpu)':>12s} {'tok/s (wall)':>13s}")
    for kind in KINDS:
        tokens = med(kind, "tokens_per_step")
        print(f"{kind:10s} {med(kind, 'cpu'):11.4f} {med(kind, 'wall'):12.4f} "
              f"{tokens / med(kind, 'cpu'):12.1f} {tokens / med(kind, 'wall'):13.1f}")
    ratio_cpu = med("mo-grpo", "cpu") / med("trl", "cpu")
    ratio_wall = med("mo-grpo", "wall") / med("trl", "wall")
    verdict = "meets" if ratio_cpu <= 1.05 else "misses"
    print(f"\nMO-GRPO / TRL GRPO step time: {ratio_cpu:.3f}x (CPU time), {ratio_wall:.3f}x (wall); "
          f"goal <= 1.05x: {verdict}")
    print(f"MO-PPO: {med('mo-ppo', 'tokens_per_step') / med('mo-ppo', 'wall'):.1f} generated tokens/s "
          f"(wall), {med('mo-ppo', 'cpu') / med('trl', 'cpu'):.2f}x TRL GRPO's CPU time per step")


if __name__ == "__main__":
    main()
