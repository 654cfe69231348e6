"""Cost of a front: ``soup`` and ``conditioned`` against ``sweep``, measured in one run.

Each method traces the same front (same model, data, points, steps per run, evaluation) and the
script prints the ratio of total training time and of hypervolume against ``sweep``, the
anchor (one run per weight vector). All fronts share one reference point (the worst score any
of them reached, minus 0.05), so their hypervolumes are comparable.

    python benchmarks/front_cost.py                       # tiny random model, 11 points
    python benchmarks/front_cost.py --model smollm2 --points 5 --steps 12

Goal: soup / conditioned at most 0.3x the train time of sweep at 11 points, with at least
0.95x its hypervolume.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny", help="model spec: tiny, smollm2 or a folder")
    parser.add_argument("--points", type=int, default=11, help="weight vectors on the front")
    parser.add_argument("--steps", type=int, default=20, help="optimizer steps per run")
    parser.add_argument("--pairs", type=int, default=64, help="training pairs per objective")
    parser.add_argument("--eval-pairs", type=int, default=32)
    parser.add_argument("--methods", default="sweep,soup,conditioned")
    parser.add_argument("--output", default=None, help="keep the traces here (default: temp)")
    args = parser.parse_args()

    from moalign.fronts.trace import FrontConfig, trace_front
    from moalign.pareto import hypervolume

    tiny = args.model == "tiny"
    out = Path(args.output or tempfile.mkdtemp(prefix="front-cost-"))
    common = dict(
        model=args.model, objectives=["helpfulness", "harmlessness"], grid=args.points - 1,
        train_pairs=args.pairs, eval_pairs=args.eval_pairs, progress=False,
        max_length=160, metric="implicit", include_baseline=False,
        train={"max_steps": args.steps, "per_device_train_batch_size": 4,
               "max_length": 160, "learning_rate": 5e-3 if tiny else 1e-3,
               "max_prompt_tokens": 48 if tiny else 64},
        lora={"r": 8, "lora_alpha": 16} if tiny else {"r": 16, "lora_alpha": 32},
    )
    fronts, wall = {}, {}
    for method in args.methods.split(","):
        start = time.perf_counter()
        fronts[method] = trace_front(FrontConfig(method=method, output_dir=str(out / method),
                                                 **common))
        wall[method] = time.perf_counter() - start
        print(f"{method:12s} traced in {wall[method]:.1f} s", flush=True)

    every = np.vstack([f.scores_array for f in fronts.values()])
    ref = every.min(axis=0) - 0.05
    anchor = fronts.get("sweep")
    print(f"\nmodel={args.model} points={args.points} steps/run={args.steps} "
          f"reference point={np.round(ref, 3).tolist()}")
    print(f"{'method':12s} {'runs':>4s} {'train s':>9s} {'eval s':>8s} {'HV':>8s} "
          f"{'train/sweep':>12s} {'HV/sweep':>9s}")
    for method, front in fronts.items():
        hv = hypervolume(front.scores_array, ref)
        runs = len(list((out / method / "runs").iterdir()))
        train_s, eval_s = front.cost["train_seconds"], front.cost["eval_seconds"]
        if anchor is not None:
            t_ratio = train_s / anchor.cost["train_seconds"]
            hv_ratio = hv / hypervolume(anchor.scores_array, ref)
            ratios = f"{t_ratio:12.3f} {hv_ratio:9.3f}"
        else:
            ratios = f"{'-':>12s} {'-':>9s}"
        print(f"{method:12s} {runs:4d} {train_s:9.1f} {eval_s:8.1f} {hv:8.4f} {ratios}")
    print(f"\ntraces kept in {out}")


if __name__ == "__main__":
    main()
