"""The checks of ``benchmarks/gpu_check.sh`` beyond the DPO / GRPO pairs, each printing one line
with its figure:

- ``placement``: where MO-PPO's policy, reference and critic, a reward-model objective and a
  front's evaluated policies are (all on the run's device, :func:`moalign.models.placement.run_device`);
- ``mo-ppo``: seconds per MO-PPO iteration and peak memory (LoRA policy and critic, two
  objectives, one of them a reward model);
- ``soup front``: a soup front traced end to end (two runs, the grid's points, baseline), with
  the device of every trained and evaluated model;
- ``zero-2``, ``zero-3``, ``fsdp2``: MO-DPO with LoRA under DeepSpeed ZeRO-2 / ZeRO-3 and FSDP2,
  one process each (``accelerate launch`` of :mod:`gpu_check_dist`): train, save, reload the
  saved adapter, resume from the checkpoint with the trade-off state. Skipped, with a line
  saying why, without ``deepspeed`` (ZeRO) or without CUDA (FSDP2: accelerate does not
  distribute on a CPU).
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _device_of(module: Any) -> str:
    return str(next(module.parameters()).device)


def _peak_reset(cuda: bool) -> None:
    import torch

    if cuda:
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak(cuda: bool) -> float | None:
    import torch

    return torch.cuda.max_memory_allocated() / 2**30 if cuda else None


def reward_checkpoint(folder: Path) -> Path:
    """A tiny random reward model saved as a checkpoint (the objective's weights do not change
    what is measured: where it runs and what it costs)."""
    from moalign.models import tiny_reward_model

    model, tok = tiny_reward_model(seed=0)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def ppo_check(args, base, tok, prompts, tmp: Path) -> dict[str, Any]:
    """MO-PPO for ``args.steps`` iterations: placement of its parts and of a reward-model
    objective, seconds per iteration (after ``args.warmup``) and peak memory."""
    import torch
    from peft import LoraConfig

    from moalign.models.placement import run_device
    from moalign.objective import load_objective
    from moalign.rewards import RewardModelObjective
    from moalign.trainers import MultiObjectivePPOConfig, MultiObjectivePPOTrainer

    cuda = not args.cpu
    _peak_reset(cuda)
    reward = RewardModelObjective(str(reward_checkpoint(tmp / "reward-model")), name="rm")
    objs = [reward, load_objective("length", target=args.max_completion_length // 2)]
    cfg = MultiObjectivePPOConfig(
        output_dir=str(tmp / "mo-ppo"), max_steps=args.steps, save_final=False, use_cpu=args.cpu,
        bf16=not args.cpu, batch_size=args.batch_size, mini_batch_size=args.batch_size,
        ppo_epochs=1, max_new_tokens=args.max_completion_length, learning_rate=1e-5,
        kl_coef=0.05, seed=0, weights=[0.5, 0.5])
    lora = LoraConfig(task_type="CAUSAL_LM", r=args.lora_r, lora_alpha=2 * args.lora_r,
                      lora_dropout=0.0, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
    trainer = MultiObjectivePPOTrainer(copy.deepcopy(base), objs, args=cfg, train_dataset=prompts,
                                       processing_class=tok, peft_config=lora)
    durations = []
    for _ in range(args.steps):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        trainer.train_step()
        if cuda:
            torch.cuda.synchronize()
        durations.append(time.perf_counter() - start)
    ref = trainer.ref_model if trainer.ref_model is not None else trainer.policy  # LoRA: base
    where = {"policy": _device_of(trainer.policy), "reference": _device_of(ref),
             "critic": _device_of(trainer.critic), "reward model": _device_of(reward.load()[0])}
    timed = durations[args.warmup:]
    result = {"trainer": "mo-ppo", "steps": len(durations),
              "seconds_per_step": sum(timed) / len(timed), "peak_memory_gib": _peak(cuda),
              "placement": where, "run_device": str(run_device(use_cpu=args.cpu))}
    del trainer
    return result


def soup_check(args, base, tok, tmp: Path) -> dict[str, Any]:
    """A soup front (MO-DPO, LoRA) traced end to end: the devices of the trained model and of
    every evaluated policy, its points and seconds."""
    import moalign.trainers.runs as trainer_runs
    from moalign.fronts import trace

    if args.tiny:
        spec = "tiny"
    else:  # the starting policy as a folder, which a front's ``model`` names
        spec = str(tmp / "base")
        base.save_pretrained(spec)
        tok.save_pretrained(spec)
    seen: dict[str, set[str]] = {"trained": set(), "evaluated": set()}
    train, evaluate = trainer_runs.train_and_save, trace.evaluate_front_policy

    def spy_train(spec_, targs, model, *a, **k):
        seen["trained"].add(_device_of(model))
        return train(spec_, targs, model, *a, **k)

    def spy_evaluate(cfg, ctx, policy):
        seen["evaluated"].add(_device_of(policy.model))
        return evaluate(cfg, ctx, policy)

    trainer_runs.train_and_save, trace.evaluate_front_policy = spy_train, spy_evaluate
    start = time.perf_counter()
    try:
        front = trace.trace_front({
            "method": "soup", "model": spec, "train_pairs": 4 * args.batch_size,
            "eval_pairs": 8, "grid": 2, "max_length": args.max_length, "progress": False,
            "train": {"max_steps": max(2, args.steps // 2),
                      "per_device_train_batch_size": args.batch_size,
                      "max_length": args.max_length},
            "lora": {"r": args.lora_r, "lora_alpha": 2 * args.lora_r},
            "precision": "float32" if args.cpu else "bfloat16",
            "output_dir": str(tmp / "soup-front")})
    finally:
        trainer_runs.train_and_save, trace.evaluate_front_policy = train, evaluate
    return {"points": len(front.points), "trained_on": sorted(seen["trained"]),
            "evaluated_on": sorted(seen["evaluated"]), "dtype": front.metadata.get("dtype"),
            "precision": front.metadata.get("precision"),
            "seconds": time.perf_counter() - start}


# --------------------------------------------------------------------------------------------
# DeepSpeed ZeRO-2 / ZeRO-3 and FSDP2, one process each
# --------------------------------------------------------------------------------------------

CONFIGS = {"zero-2": "deepspeed_zero2.yaml", "zero-3": "deepspeed_zero3.yaml",
           "fsdp2": "fsdp.yaml"}


def skip_reason(mode: str, cpu: bool) -> str | None:
    if mode.startswith("zero") and importlib.util.find_spec("deepspeed") is None:
        return "deepspeed is not installed (pip install deepspeed)"
    if mode == "fsdp2" and cpu:
        return "FSDP2 needs CUDA (accelerate runs FSDP undistributed on a CPU)"
    return None


def distributed_check(mode: str, args, tmp: Path, timeout: float = 240) -> dict[str, Any]:
    """``accelerate launch`` (one process) of :mod:`gpu_check_dist` under ``mode``; its report."""
    reason = skip_reason(mode, args.cpu)
    if reason is not None:
        return {"mode": mode, "skipped": reason}
    out = tmp / mode
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    if args.cpu:
        env["DS_ACCELERATOR"] = "cpu"
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
              str(ROOT / "examples" / "accelerate" / CONFIGS[mode]), "--num_processes", "1",
              "--mixed_precision", "no" if args.cpu else "bf16",
              str(ROOT / "benchmarks" / "gpu_check_dist.py"), "--out", str(out),
              "--model", "tiny" if args.tiny else str(tmp / "base"),
              "--max-length", str(args.max_length), *(["--cpu"] if args.cpu else [])]
    start = time.perf_counter()
    report: dict[str, Any] = {"mode": mode}
    try:
        proc = subprocess.run(launch, env=env, cwd=ROOT, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        report["error"] = f"no result within {timeout} s"
        return report
    report["seconds"] = time.perf_counter() - start
    if proc.returncode != 0 or not (out / "report.json").is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        report["error"] = f"exit {proc.returncode}: {' | '.join(tail)}"
        return report
    report.update(json.loads((out / "report.json").read_text()))
    return report


def ok_distributed(r: dict[str, Any]) -> bool:
    return ("skipped" in r) or ("error" not in r and r.get("empty_adapter_tensors") == 0
                               and r.get("adapter_tensors", 0) > 0 and r.get("reloaded")
                               and r.get("resumed_schedule_t") == r.get("saved_step"))


def lines(results: dict[str, Any]) -> list[str]:
    """One line per check, with its figure."""
    out = []
    ppo, soup = results.get("mo-ppo"), results.get("soup-front")
    if ppo is not None:
        if "error" in ppo:
            out.append(f"placement: failed: {ppo['error']}")
            out.append(f"mo-ppo: failed: {ppo['error']}")
        else:
            where = dict(ppo["placement"])
            if soup is not None and "error" not in soup:
                where["front evaluation"] = ",".join(soup["evaluated_on"])
            want = ppo["run_device"]
            same = all(w.split(",") == [want] or w == want for w in where.values())
            out.append("placement: " + ", ".join(f"{k} {v}" for k, v in where.items())
                       + f" -> {'all on ' + want if same else 'NOT all on ' + want}")
            mem = ppo["peak_memory_gib"]
            out.append(f"mo-ppo: {ppo['seconds_per_step']:.3f} s/step over {ppo['steps']} steps, "
                       f"peak memory {'-' if mem is None else format(mem, '.2f') + ' GiB'}")
    if soup is not None:
        if "error" in soup:
            out.append(f"soup front: failed: {soup['error']}")
        else:
            out.append(f"soup front: {soup['points']} points in {soup['seconds']:.1f} s, trained "
                       f"on {','.join(soup['trained_on'])}, evaluated on "
                       f"{','.join(soup['evaluated_on'])}, weights {soup['dtype']}, precision "
                       f"{soup['precision']}")
    for r in results.get("distributed", []):
        if "skipped" in r:
            out.append(f"{r['mode']} (1 process): skipped: {r['skipped']}")
        elif "error" in r:
            out.append(f"{r['mode']} (1 process): failed: {r['error']}")
        else:
            out.append(
                f"{r['mode']} (1 process): {r['distributed_type']}, trained {r['steps']} steps, "
                f"saved {r['adapter_tensors']} adapter tensors ({r['empty_adapter_tensors']} "
                f"empty), reloaded {'ok' if r['reloaded'] else 'NOT equal'}, checkpoint "
                f"{r['checkpoint']}, resumed at schedule step {r['resumed_schedule_t']} "
                f"(saved at {r['saved_step']}) -> {'ok' if ok_distributed(r) else 'FAILED'} "
                f"({r['seconds']:.1f} s)")
    return out
