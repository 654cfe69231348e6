"""``moalign demo``: trace a helpfulness / harmlessness front end to end, offline.

Two presets, each a complete :class:`moalign.front.FrontConfig` mapping:

- :data:`DEFAULT_PRESET`: the embedded SmolLM2-135M-Instruct SFT checkpoint with LoRA, the
  bundled HH-RLHF helpful-base / harmless-base pairs, one DPO run per objective then Rewarded
  Soups (Ramé et al. 2023) at 5 weight vectors, each point scored by held-out implicit-reward
  accuracy per objective (generation-free), with GSM8K ``reasoning_accuracy`` reported
  alongside;
- :data:`TINY_PRESET` (``--tiny``): the same pipeline on a random tiny model, in seconds (the
  tests run it).

``--config FILE.yaml`` and ``--key value`` override any preset key (``--grid 10``,
``--train.max_steps 4``); ``--model`` puts any checkpoint in place of the preset's;
``--output DIR`` chooses where the runs, points, ``front.json`` and ``front.png`` go. Rerunning
the same command resumes: finished runs and points are reused.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from moalign.runconfig import format_table, quiet_library_output, read_config, resolve_front_config

HELP = "trace a helpfulness/harmlessness Pareto front end to end, offline (--tiny: in seconds)"

#: ``--tiny``: a random 2-layer model, so the whole pipeline runs in seconds (used by the tests).
#: 16 training pairs per objective, 2 DPO steps of 4 pairs per run (a high learning rate so
#: that 2 steps move the policy), 16 held-out pairs per objective for each point.
TINY_PRESET: dict[str, Any] = {
    "method": "soup",
    "model": "tiny",
    "dataset": "hh-rlhf",
    "objectives": ["helpfulness", "harmlessness"],
    "metric": "implicit",
    "grid": 4,
    "train_pairs": 16,
    "eval_pairs": 16,
    "max_length": 96,
    "train": {"max_steps": 2, "per_device_train_batch_size": 4, "learning_rate": 1e-2,
              "max_length": 96, "max_prompt_tokens": 48},
    "lora": {"r": 4, "lora_alpha": 8},
}

#: The default demo. Every number that sets its run time is here, so it can be tuned by
#: measurement on the target machine. Cost model on a 2-core CPU: one LoRA DPO step of 4 pairs
#: at 128 tokens takes ~12 s, so the two runs cost ~2 x 10 x 12 s = 4 min; every point then
#: scores ``eval_pairs`` held-out pairs per objective (2 log-probability passes of 2 x 64
#: sequences; the reference pass is shared by all points) and generates ``report.*.n`` GSM8K
#: answers of up to ``generation.max_new_tokens`` tokens; the starting policy is evaluated once
#: more. See the README for the measured times.
DEFAULT_PRESET: dict[str, Any] = {
    "method": "soup",
    "model": "smollm2",
    "dataset": "hh-rlhf",
    "objectives": ["helpfulness", "harmlessness"],
    "metric": "implicit",
    "grid": 4,
    "train_pairs": 40,  # = max_steps x per_device_train_batch_size: each pair seen once
    "eval_pairs": 32,  # per objective; the same pairs for every point, so comparisons are paired
    "max_length": 128,  # tokens of prompt + reply in evaluation
    "train": {"max_steps": 10, "per_device_train_batch_size": 4, "learning_rate": 1e-3,
              "beta": 0.1, "max_length": 128, "max_prompt_tokens": 48},
    "lora": {"r": 16, "lora_alpha": 32, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]},
    "report": {"reasoning_accuracy": {"spec": "reasoning_accuracy", "dataset": "gsm8k", "n": 8}},
    "generation": {"max_new_tokens": 96, "batch_size": 8},
}

PRESETS: dict[str, dict[str, Any]] = {"default": DEFAULT_PRESET, "tiny": TINY_PRESET}
#: Where each preset writes by default (relative to the working directory).
DEFAULT_OUTPUT: dict[str, str] = {"default": "moalign-demo", "tiny": "moalign-demo-tiny"}
#: CPU threads of torch per preset (None: torch's default). A tiny model runs many times faster
#: on one thread: with more, thread synchronization costs more than the arithmetic.
TORCH_THREADS: dict[str, int | None] = {"default": None, "tiny": 1}


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the body with ``n`` torch CPU threads (unchanged when None), then restore."""
    if n is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _finished(output_dir: str) -> tuple[int, int]:
    out = Path(output_dir)
    return len(list(out.glob("runs/*/run.json"))), len(list(out.glob("points/*/point.json")))


def report(front: Any, output_dir: str, wall: float, finished_before: tuple[int, int]) -> str:
    """What ``moalign demo`` prints after the front: baseline, hypervolumes, paths, time."""
    from moalign.commands.trace import describe_outputs
    from moalign.pareto import hypervolume

    meta = front.metadata
    lines = [front.to_table(), ""]
    baseline = meta.get("baseline")
    ref = np.asarray(front.reference_point, dtype=float)
    if baseline:
        scores = [baseline["scores"][o] for o in front.objectives]
        shown = ", ".join(f"{o} {baseline['scores'][o]:.4g} ± {baseline['stderr'][o]:.2g}"
                          for o in front.objectives)
        lines.append(f"baseline (the starting SFT policy, {meta.get('model')}): {shown}")
        if meta.get("metric") == "implicit":
            lines.append("  (implicit-reward accuracy: the starting policy is its own reference, "
                         "so it scores 0.5 by construction)")
        hv_base = hypervolume(np.asarray([scores], dtype=float), ref)
        hv_front = front.hypervolume()
        ratio = f" ({hv_front / hv_base:.3g}x)" if hv_base > 0 else ""
        lines.append(f"hypervolume (reference point {ref.tolist()}): front {hv_front:.6g} vs "
                     f"baseline alone {hv_base:.6g}{ratio}")
    extra = sorted({name for p in front.points for name in p.metadata.get("report", {})})
    for name in extra:
        rows = []
        if baseline and name in baseline.get("report", {}):
            r = baseline["report"][name]
            rows.append(["baseline", r["score"], r["stderr"], r["n"]])
        for p in front.points:
            r = p.metadata.get("report", {}).get(name)
            if r is not None:
                rows.append([p.id, r["score"], r["stderr"], r["n"]])
        lines += ["", f"{name}, reported alongside (not an objective of the front):",
                  format_table(["point", name, "± stderr", "n"], rows)]
    lines += ["", describe_outputs(front, output_dir)]
    runs, points = finished_before
    if runs or points:
        lines.append(f"resumed:  {runs} finished run(s) and {points} finished point(s) reused")
    lines.append(f"wall time: {wall:.1f} s")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.allow_abbrev = False
    parser.add_argument("--tiny", action="store_true",
                        help="a tiny random model: the whole pipeline in seconds")
    parser.add_argument("--output", "-o", metavar="DIR",
                        help="folder of runs, points, front.json and front.png (default "
                             f"./{DEFAULT_OUTPUT['default']} or ./{DEFAULT_OUTPUT['tiny']})")
    parser.add_argument("--model", help="start from this checkpoint instead (folder, GGUF, hub id)")
    parser.add_argument("--config", metavar="FILE.yaml", help="FrontConfig keys overriding the preset")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace, overrides: dict[str, Any]) -> int:
    from moalign.front import trace_front

    mode = "tiny" if args.tiny else "default"
    base = {**PRESETS[mode], "output_dir": DEFAULT_OUTPUT[mode]}
    data, source = read_config(args.config, overrides, base=base)
    declared = {"output_dir": args.output, "model": args.model,
                "progress": False if args.quiet else None}
    data.update({k: v for k, v in declared.items() if v is not None})
    source = f"the '{mode}' demo preset + {source}"
    start = time.perf_counter()
    progress = data.get("progress", True) is not False
    with quiet_library_output(args.debug, progress=progress), torch_threads(TORCH_THREADS[mode]):
        cfg = resolve_front_config(data, source=source)
        before = _finished(cfg.output_dir)
        front = trace_front(cfg)
    print(report(front, cfg.output_dir, time.perf_counter() - start, before))
    return 0
