"""Held-out accuracy and cost of ``moalign reward`` on the bundled HH-RLHF data.

Reproduces the reward-model numbers of the README: for each objective it runs exactly what
``moalign reward --config examples/configs/reward_<objective>.yaml`` runs (held-out 20%, seed 0),
from a cold feature cache unless ``--warm``, and prints, in one table:

- the held-out pairwise accuracy, with its 95% interval (normal approximation);
- an anchor measured in the same run on the same held-out pairs: "the longer reply wins";
- the wall time, and the same time expressed in units of an anchor forward pass of the backbone
  measured at the start of the run (so a loaded machine shows up as a larger anchor, not as a
  slower method), and the machine's load average before and after.

Usage::

    python benchmarks/reward_accuracy.py                 # both objectives, output to a temp dir
    python benchmarks/reward_accuracy.py --install       # also install the models where the
                                                         # helpfulness/harmlessness objectives look
    python benchmarks/reward_accuracy.py --objectives helpfulness --set max_train_pairs=600
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _anchor_seconds(model_name: str, dtype: str, tokens: int = 2048) -> float:
    """Seconds of one frozen forward pass over ``tokens`` tokens (16 x tokens/16) of the backbone."""
    import torch
    from transformers import AutoModel

    from moalign.models import resolve_model

    model = AutoModel.from_pretrained(resolve_model(model_name), dtype=getattr(torch, dtype)).eval()
    x = torch.randint(100, 1000, (16, tokens // 16))
    with torch.inference_mode():
        model(input_ids=x[:, :16])  # warm-up
        start = time.perf_counter()
        model(input_ids=x)
        return time.perf_counter() - start


def _length_anchor(split) -> float:
    from moalign.objective import as_text
    from moalign.rewards.head import pairwise_accuracy

    test = split["test"]
    return pairwise_accuracy([len(as_text(c)) for c in test["chosen"]],
                             [len(as_text(r)) for r in test["rejected"]])


def float32_accuracy(folder: Path, dataset: str, objective: str, test_size: float, seed: int,
                     max_test_pairs: int | None = None) -> float:
    """Held-out accuracy of a saved checkpoint scored in float32, as the reward-model objectives
    load it by default (a head fitted on bfloat16 features may rank a few pairs differently)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from moalign.rewards.head import (
        RewardInputSpec,
        encode_reward_input,
        pairwise_accuracy,
        reward_scores,
    )
    from moalign.rewards.training import load_preference_pairs

    test = load_preference_pairs(dataset, objective, test_size=test_size, seed=seed)["test"]
    if max_test_pairs is not None and len(test) > max_test_pairs:
        test = test.shuffle(seed=seed).select(range(max_test_pairs))
    spec = RewardInputSpec.load(folder)
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder, dtype=torch.float32).eval()
    enc = [encode_reward_input(tok, p, c, spec) for p, c in zip(test["prompt"], test["chosen"])]
    enc += [encode_reward_input(tok, p, r, spec) for p, r in zip(test["prompt"], test["rejected"])]
    s = reward_scores(model, enc, spec.pooling)[:, 0]
    return pairwise_accuracy(s[: len(test)], s[len(test):])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objectives", nargs="+", default=["helpfulness", "harmlessness"])
    parser.add_argument("--warm", action="store_true", help="reuse the feature cache")
    parser.add_argument("--install", action="store_true",
                        help="save to the default reward-model folders ($MOALIGN_CACHE/reward-models)")
    parser.add_argument("--check-float32", action="store_true",
                        help="also score the held-out pairs with the saved float32 checkpoint")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="override configuration keys")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from moalign.config import load_command_config, parse_overrides
    from moalign.rewards.training import (
        RewardTrainingConfig,
        default_reward_model_dir,
        load_preference_pairs,
        train_reward_model,
    )

    overrides = parse_overrides([f"--{kv}" for kv in args.set])
    work = Path(tempfile.mkdtemp(prefix="moalign-reward-bench-"))
    rows = []
    anchor = None
    for objective in args.objectives:
        config = ROOT / "examples" / "configs" / f"reward_{objective}.yaml"
        extra = {"objective": objective}
        extra["output_dir"] = str(default_reward_model_dir(objective) if args.install else work / objective)
        if not args.warm:
            extra["feature_cache_dir"] = str(work / "features")
        cfg = load_command_config(RewardTrainingConfig, str(config), {**extra, **overrides})
        if anchor is None:
            anchor = _anchor_seconds(cfg.model, cfg.dtype)
        load_before = os.getloadavg()[0]
        result = train_reward_model(cfg, progress=True)
        load_after = os.getloadavg()[0]
        length = _length_anchor(load_preference_pairs(cfg.dataset, objective, test_size=cfg.test_size,
                                                      seed=cfg.seed))
        half = 1.96 * math.sqrt(result.test_accuracy * (1 - result.test_accuracy) / result.n_test)
        fp32 = (float32_accuracy(result.output_dir, cfg.dataset, objective, cfg.test_size, cfg.seed,
                                 cfg.max_test_pairs) if args.check_float32 else float("nan"))
        rows.append((objective, result, half, length, load_before, load_after, fp32))

    print(f"\nanchor: one forward of the backbone over 2048 tokens = {anchor:.2f} s "
          f"({2048 / anchor:.0f} tokens/s)")
    head = (f"{'objective':<13} {'held-out acc':>15} {'length anchor':>13} {'train/test':>10} "
            f"{'time':>7} {'time/anchor':>11} {'load before/after':>17} {'acc fp32':>8}")
    print(head)
    print("-" * len(head))
    for objective, r, half, length, lb, la, fp32 in rows:
        print(f"{objective:<13} {r.test_accuracy:>8.3f} ±{half:.3f} {length:>13.3f} "
              f"{r.n_train:>5}/{r.n_test:<4} {r.seconds / 60:>6.1f}m {r.seconds / anchor:>11.0f} "
              f"{lb:>8.1f}/{la:<8.1f} {fp32:>8.3f}")
    print(f"\ncheckpoints: {', '.join(str(r.output_dir) for _, r, *_ in rows)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
