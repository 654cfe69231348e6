"""Cost of a front: ``soup`` and ``conditioned`` against ``sweep``, and an adaptive sweep against a
uniform one, with any trainer, measured in one run.

Each method traces the same front (same model, data, points, steps per run, held-out examples)
and the script prints the ratio of total training time and of hypervolume against ``sweep``,
the anchor (one run per weight vector). All fronts are measured at one reference point (the
worst score any of them reached, minus 0.05), and every hypervolume and hypervolume ratio
gets a paired-bootstrap interval: the fronts are scored on the same held-out examples, so one
set of draws resamples them all (:mod:`moalign.pareto.bootstrap`).

    python benchmarks/front_cost.py                                  # MO-DPO, tiny model, 11 points
    python benchmarks/front_cost.py --model smollm2 --points 5 --steps 12
    python benchmarks/front_cost.py --trainer grpo --model smollm2 --points 5 --steps 8
    python benchmarks/front_cost.py --weights adaptive --points 5     # + an adaptive sweep

``--trainer grpo`` / ``ppo`` trace GSM8K (``reasoning_accuracy`` vs ``length:target=60``,
generation metric) unless ``--dataset`` / ``--objectives`` say otherwise. ``--weights
adaptive`` adds ``adaptive``: a sweep of the same number of points that starts from the two
vertices and places each further run where the measured front has its largest hypervolume
gap (measured at ``--reference``, default 0 per objective), to compare with the uniform grid.

Goal (Rewarded Soups' claim): a soup front with >= 0.95x the sweep's hypervolume (interval
included) at <= 0.3x its train time.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

RL = ("grpo", "ppo")


def _train_settings(args: argparse.Namespace, tiny: bool) -> dict:
    lr = 5e-3 if tiny else 1e-3
    if args.trainer == "grpo":
        return {"max_steps": args.steps, "per_device_train_batch_size": 8, "num_generations": 4,
                "max_completion_length": args.new_tokens, "learning_rate": lr if tiny else 1e-4,
                "beta": 0.0, "max_prompt_tokens": 64 if tiny else 160}
    if args.trainer == "ppo":
        return {"max_steps": args.steps, "batch_size": 4, "num_samples_per_prompt": 2,
                "max_new_tokens": args.new_tokens, "mini_batch_size": 8, "ppo_epochs": 1,
                "learning_rate": lr if tiny else 1e-4, "max_prompt_tokens": 64 if tiny else 160}
    return {"max_steps": args.steps, "per_device_train_batch_size": 4, "max_length": 160,
            "learning_rate": lr, "max_prompt_tokens": 48 if tiny else 64}


def _configs(args: argparse.Namespace, out: Path) -> dict[str, dict]:
    tiny = args.model == "tiny"
    rl = args.trainer in RL
    objectives = (args.objectives.split(",") if args.objectives else
                  ["reasoning_accuracy", "length:target=60"] if rl else
                  ["helpfulness", "harmlessness"])
    common = dict(
        model=args.model, trainer=args.trainer, objectives=objectives,
        dataset=args.dataset or ("gsm8k" if rl else "hh-rlhf"), grid=args.points - 1,
        train_pairs=args.pairs, eval_pairs=args.eval_pairs, eval_prompts=args.eval_prompts,
        progress=False, max_length=160, metric="generation" if rl else "implicit",
        include_baseline=False, reference_point=[args.reference] * len(objectives),
        train=_train_settings(args, tiny),
        generation={"max_new_tokens": args.new_tokens, "batch_size": 8},
        lora=None if args.full else ({"r": 8, "lora_alpha": 16} if tiny else
                                     {"r": 16, "lora_alpha": 32}),
    )
    methods = [m for m in args.methods.split(",") if m]
    if args.trainer == "modpo":
        methods = [m for m in methods if m == "sweep"]  # MODPO has no soup / conditioned form
        common["weights"] = [[1 - i / args.points, i / args.points] for i in range(args.points)]
        common.pop("grid")
    configs = {m: dict(common, method=m, output_dir=str(out / m)) for m in methods}
    if args.weights == "adaptive":
        configs["adaptive"] = dict(common, method="sweep", weights="adaptive", grid=1,
                                   points=args.points, output_dir=str(out / "adaptive"))
    return configs


def _hypervolumes(fronts: dict, ref: np.ndarray, resamples: int, seed: int = 0):
    """Each front's hypervolume and ratio to ``sweep``, with paired-bootstrap intervals (the
    same draws of held-out examples for every front)."""
    from moalign.pareto.bootstrap import (
        batched_hypervolume,
        bootstrap_settings,
        percentile_interval,
        resampled_means,
    )
    from moalign.pareto.intervals import front_per_example

    settings = bootstrap_settings({"resamples": resamples, "seed": seed})
    per = {m: front_per_example(f)[0] for m, f in fronts.items()}  # [P, N, K] each
    names = list(per)
    stacked = np.concatenate([per[m] for m in names], axis=0)
    est = np.nanmean(stacked, axis=1)  # [P_total, K]
    boot = resampled_means(stacked, settings)  # [R, P_total, K]
    out, start = {}, 0
    for m in names:
        n = len(per[m])
        hv = float(batched_hypervolume(est[None, start:start + n], ref)[0])
        draws = batched_hypervolume(boot[:, start:start + n], ref)
        out[m] = {"hv": hv, "draws": draws,
                  "ci": percentile_interval(draws, hv, settings["level"]).tolist()}
        start += n
    anchor = out.get("sweep")
    for row in out.values():
        if anchor is not None and anchor["hv"] > 0:
            ratio = row["hv"] / anchor["hv"]
            draws = row["draws"] / np.where(anchor["draws"] > 0, anchor["draws"], np.nan)
            row["ratio"] = ratio
            row["ratio_ci"] = percentile_interval(draws[np.isfinite(draws)], ratio,
                                                  settings["level"]).tolist()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny", help="model spec: tiny, smollm2 or a folder")
    parser.add_argument("--trainer", default="mo_dpo", choices=["mo_dpo", "modpo", *RL])
    parser.add_argument("--weights", default="grid", choices=["grid", "adaptive"],
                        help="adaptive: also trace an adaptive sweep of --points points")
    parser.add_argument("--points", type=int, default=11, help="weight vectors on the front")
    parser.add_argument("--steps", type=int, default=20, help="optimizer steps per run")
    parser.add_argument("--pairs", type=int, default=64,
                        help="training pairs per objective (RL: training prompts)")
    parser.add_argument("--eval-pairs", type=int, default=32)
    parser.add_argument("--eval-prompts", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=48, help="RL: tokens per reply")
    parser.add_argument("--objectives", default=None, help="comma-separated objective specs")
    parser.add_argument("--dataset", default=None)
    parser.add_argument("--full", action="store_true", help="full fine-tuning (lora: null)")
    parser.add_argument("--reference", type=float, default=0.0,
                        help="reference point of the traces (the adaptive gaps), per objective")
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--methods", default="sweep,soup,conditioned")
    parser.add_argument("--output", default=None, help="keep the traces here (default: temp)")
    args = parser.parse_args()

    from moalign.fronts.trace import trace_front

    out = Path(args.output or tempfile.mkdtemp(prefix="front-cost-"))
    fronts, wall = {}, {}
    for method, cfg in _configs(args, out).items():
        start = time.perf_counter()
        fronts[method] = trace_front(cfg)
        fronts[method].root = Path(cfg["output_dir"])
        wall[method] = time.perf_counter() - start
        print(f"{method:12s} traced in {wall[method]:.1f} s", flush=True)

    every = np.vstack([f.scores_array for f in fronts.values()])
    ref = every.min(axis=0) - 0.05
    hv = _hypervolumes(fronts, ref, args.resamples)
    anchor = fronts.get("sweep")
    print(f"\nmodel={args.model} trainer={args.trainer} points={args.points} "
          f"steps/run={args.steps} fine-tuning={'full' if args.full else 'lora'} "
          f"reference point={np.round(ref, 3).tolist()} (95% paired-bootstrap intervals)")
    print(f"{'method':12s} {'runs':>4s} {'train s':>9s} {'eval s':>8s} {'HV [interval]':>26s} "
          f"{'train/sweep':>12s} {'HV/sweep [interval]':>26s}")
    for method, front in fronts.items():
        row = hv[method]
        runs = len(list((out / method / "runs").iterdir()))
        train_s, eval_s = front.cost["train_seconds"], front.cost["eval_seconds"]
        cell = f"{row['hv']:.4f} [{row['ci'][0]:.4f}, {row['ci'][1]:.4f}]"
        if anchor is not None and "ratio" in row:
            t_ratio = train_s / max(anchor.cost["train_seconds"], 1e-9)
            ratio = f"{row['ratio']:.3f} [{row['ratio_ci'][0]:.3f}, {row['ratio_ci'][1]:.3f}]"
            ratios = f"{t_ratio:12.3f} {ratio:>26s}"
        else:
            ratios = f"{'-':>12s} {'-':>26s}"
        print(f"{method:12s} {runs:4d} {train_s:9.1f} {eval_s:8.1f} {cell:>26s} {ratios}")
    print(f"\ntraces kept in {out}")


if __name__ == "__main__":
    main()
