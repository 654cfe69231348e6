"""Peak CPU memory of MO-DPO and MO-GRPO next to TRL's DPOTrainer and GRPOTrainer, one run.

SmolLM2-135M-Instruct (embedded, converted and cached on first use), float32, the same LoRA
adapter on every trainer (r 16, q/k/v/o projections), the same seed, data, batch size and
lengths, hence the same batches. The trainers, data and objectives are those of
``benchmarks/gpu_check.py`` (imported from it):

- DPO pair: ``trl.DPOTrainer`` vs ``MultiObjectiveDPOTrainer`` with K=2 objectives
  (helpfulness and harmlessness labels, weights 0.5 / 0.5) on the bundled HH-RLHF test pairs
  (prompts cut to ``--max-length / 2`` tokens), ``--dpo-batch`` pairs per step;
- GRPO pair: ``trl.GRPOTrainer`` with the two objectives as reward functions
  (``reward_weights`` 0.5 / 0.5) vs ``MultiObjectiveGRPOTrainer`` with the same two objectives
  (``reasoning_accuracy`` and ``length``, weights 0.5 / 0.5) on bundled GSM8K prompts,
  ``--grpo-batch`` completions per step (``--num-generations`` per prompt), at most
  ``--max-completion-length`` new tokens, ``beta`` 0 (no reference model).

Each variant runs ``train()`` for ``--steps`` optimizer steps in a fresh worker process;
``--repeats`` rounds alternate the order (TRL first, then moalign first, ...).

Memory, per worker: glibc's malloc gets a fixed mmap threshold (64 KiB) and a trim threshold
of 0 (as in ``ppo_memory.py``), so freed tensors go back to the kernel and the resident set
follows the live allocations. After the imports, model loading and the trainer's construction
(TRL tokenizes the data there), the worker reads every weight once (they are mapped from the
safetensors file and become resident only when first read: ~510 MB that would otherwise count
as training memory), resets the kernel's high-water mark of its resident set
(``/proc/self/clear_refs``) and runs ``train()``; the **training peak** is the high-water mark
(``VmHWM``) minus the resident set just before (``VmRSS``): what training adds (LoRA gradients
and AdamW state, activations, logits, generations, batches, metrics). The kernel keeps the mark
exactly, so no short spike is missed (a sampling thread, as in ``dpo_overhead.py``, can miss
one). torch has no peak counter for its CPU allocator outside the profiler
(``profile_memory=True`` records every allocation and sees tensors only), so the resident set
is the measure: it counts tensors and everything else training keeps (Python objects, Arrow
tables, logs), which the process pays for too. The resident set after the imports, after
loading the model (weights mapped, not yet read), after building the trainer and just before
training (the **loading baseline**: Python, torch, TRL, moalign, the float32 weights, the LoRA
adapter, the trainer and its tokenized data) and the peak of setting up are printed too.

Ratios are moalign / TRL: per round (the two workers of one round paired), and the ratio of the
medians; the interval is the min-max of the per-round ratios. Every run also prints its token
count and first loss, which must agree within a pair (same batches).

The defaults take 3.5 to 6.5 minutes on 2 CPU cores (12 workers of 15-30 s, about half of it
start-up; several times longer when other jobs share the cores). Larger batches
(``--dpo-batch 4 --max-length 256 --grpo-batch 8 --max-completion-length 32``, DPO peak
~4.3 GB) take about 2 minutes per DPO worker.

    python benchmarks/trainer_memory.py                       # both pairs, 3 rounds
    python benchmarks/trainer_memory.py --pairs dpo --repeats 5 --steps 4
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TQDM_DISABLE", "1")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

PAIRS = {"dpo": ("trl-dpo", "mo-dpo"), "grpo": ("trl-grpo", "mo-grpo")}
GOAL = 1.1


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pairs", nargs="*", choices=list(PAIRS), default=list(PAIRS))
    p.add_argument("--repeats", type=int, default=3, help="rounds (one worker per variant each)")
    p.add_argument("--steps", type=int, default=2, help="optimizer steps per worker")
    p.add_argument("--dpo-batch", type=int, default=2, help="DPO pairs per step")
    p.add_argument("--max-length", type=int, default=128, help="DPO prompt + completion tokens")
    p.add_argument("--grpo-batch", type=int, default=4, help="GRPO completions per step")
    p.add_argument("--num-generations", type=int, default=4, help="GRPO completions per prompt")
    p.add_argument("--max-completion-length", type=int, default=16, help="GRPO new tokens")
    p.add_argument("--lora-r", type=int, default=16)
    p.add_argument("--threads", type=int, default=2, help="torch threads per worker")
    p.add_argument("--worker", choices=[k for pair in PAIRS.values() for k in pair],
                   help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.grpo_batch % args.num_generations:
        p.error("--grpo-batch must be a multiple of --num-generations")
    return args


# ------------------------------------------------------------------------------ worker


def _check_args(args) -> argparse.Namespace:
    """The settings of ``gpu_check.build`` for this worker's pair, on the CPU in float32."""
    import gpu_check

    grpo = args.worker.endswith("grpo")
    return gpu_check.parse_args([
        "--cpu", "--steps", str(args.steps), "--warmup", "0",
        "--batch-size", str(args.grpo_batch if grpo else args.dpo_batch),
        "--max-length", str(args.max_length),
        "--num-generations", str(args.num_generations if grpo else 1),
        "--max-completion-length", str(args.max_completion_length),
        "--lora-r", str(args.lora_r)])


def _touch(model) -> None:
    """Read every parameter and buffer once: the weights are mapped from the safetensors file and
    only become resident when first read, which would otherwise count in the training peak."""
    import torch

    with torch.no_grad():
        for t in [*model.parameters(), *model.buffers()]:
            t.sum()


def worker(args) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    import gpu_check
    import trl  # noqa: F401  (imported before the first mark, as both sides need it)
    from ppo_memory import _status_kib
    from transformers.trainer_callback import PrinterCallback

    import moalign.trainers  # noqa: F401

    check = _check_args(args)
    rss_imports = _status_kib("VmRSS")
    model, tok, what = gpu_check.load_base(check)
    rss_model = _status_kib("VmRSS")
    n = check.batch_size * check.steps
    if args.worker.endswith("dpo"):
        data = gpu_check.dpo_pairs(tok, n, check.max_length // 2)
    else:
        data = gpu_check.gsm8k_prompts(n)
    with tempfile.TemporaryDirectory(prefix="moalign-trainer-memory-") as out:
        trainer = gpu_check.build(args.worker, model, tok, check, data, Path(out) / args.worker)
        trainer.remove_callback(PrinterCallback)
        del model
        rss_built = _status_kib("VmRSS")
        _touch(trainer.model)
        gc.collect()
        setup_peak = _status_kib("VmHWM")
        with open("/proc/self/clear_refs", "w") as f:  # VmHWM back to the current resident set
            f.write("5")
        before = _status_kib("VmRSS")
        start, cpu = time.perf_counter(), time.process_time()
        trainer.train()
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        peak = _status_kib("VmHWM")
    logs = trainer.state.log_history
    losses = [e["loss"] for e in logs if "loss" in e]
    tokens = [e["num_tokens"] for e in logs if "num_tokens" in e]
    return {"kind": args.worker, "model": what, "steps": trainer.state.global_step,
            "peak_mb": (peak - before) / 1024, "rss_before_mb": before / 1024,
            "rss_imports_mb": rss_imports / 1024, "rss_model_mb": rss_model / 1024,
            "rss_built_mb": rss_built / 1024,
            "setup_peak_mb": setup_peak / 1024, "seconds": seconds, "cpu_seconds": cpu,
            "first_loss": losses[0] if losses else None,
            "tokens": tokens[-1] if tokens else None}


# ------------------------------------------------------------------------------ driver


def spawn(kind: str, args) -> dict:
    cmd = [sys.executable, __file__, "--worker", kind, "--steps", str(args.steps),
           "--dpo-batch", str(args.dpo_batch), "--max-length", str(args.max_length),
           "--grpo-batch", str(args.grpo_batch), "--num-generations", str(args.num_generations),
           "--max-completion-length", str(args.max_completion_length),
           "--lora-r", str(args.lora_r), "--threads", str(args.threads)]
    root = HERE.parent
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=root)
    if proc.returncode != 0:
        raise SystemExit(f"worker {kind} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def summary(trl_runs: list[dict], mo_runs: list[dict]) -> dict:
    """Medians, the ratio of the medians and the min-max of the per-round ratios."""
    trl = [r["peak_mb"] for r in trl_runs]
    mo = [r["peak_mb"] for r in mo_runs]
    rounds = [m / t for m, t in zip(mo, trl)]
    ratio = statistics.median(mo) / statistics.median(trl)
    low, high = min(rounds), max(rounds)
    verdict = "meets" if high <= GOAL else "misses" if low > GOAL else "inconclusive"
    return {"trl": statistics.median(trl), "mo": statistics.median(mo), "ratio": ratio,
            "low": low, "high": high, "rounds": rounds, "verdict": verdict}


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return 0
    started = time.perf_counter()
    results: dict[str, list[dict]] = {k: [] for p in args.pairs for k in PAIRS[p]}
    for r in range(args.repeats):
        for pair in args.pairs:
            kinds = PAIRS[pair] if r % 2 == 0 else tuple(reversed(PAIRS[pair]))
            for kind in kinds:
                res = spawn(kind, args)
                results[kind].append(res)
                print(f"round {r + 1}/{args.repeats} {kind:8s} peak {res['peak_mb']:7.0f} MB "
                      f"above {res['rss_before_mb']:.0f} MB; {res['steps']} steps in "
                      f"{res['seconds']:.0f} s ({res['cpu_seconds']:.0f} s CPU); "
                      f"first loss {res['first_loss']}; "
                      f"tokens {res['tokens']}", flush=True)
    first = next(iter(results.values()))[0]
    print(f"\nmodel: {first['model']}; float32, LoRA r {args.lora_r} (q/k/v/o), CPU, "
          f"{args.threads} thread(s); {args.steps} steps per worker, {args.repeats} rounds "
          f"(order alternating); DPO: {args.dpo_batch} pairs x max_length {args.max_length}; "
          f"GRPO: {args.grpo_batch} completions ({args.num_generations} per prompt) x "
          f"<= {args.max_completion_length} new tokens")
    print("training peak: peak RSS during train() above the RSS just before it (medians; MB); "
          "loading baseline: RSS after the imports, the model (mapped), the trainer, and just "
          "before train() (weights read)")
    print(f"{'trainer':<9} {'training peak':>14} {'runs':>20} {'imports':>8} {'+ model':>8} "
          f"{'+ trainer':>10} {'before train':>13} {'setup peak':>11}")

    def med(runs, key):
        return statistics.median(x[key] for x in runs)

    for kind, runs in results.items():
        peaks = ", ".join(f"{x['peak_mb']:.0f}" for x in runs)
        print(f"{kind:<9} {med(runs, 'peak_mb'):>14.0f} {peaks:>20} "
              f"{med(runs, 'rss_imports_mb'):>8.0f} {med(runs, 'rss_model_mb'):>8.0f} "
              f"{med(runs, 'rss_built_mb'):>10.0f} "
              f"{med(runs, 'rss_before_mb'):>13.0f} {med(runs, 'setup_peak_mb'):>11.0f}")
    for pair in args.pairs:
        trl, mo = PAIRS[pair]
        s = summary(results[trl], results[mo])
        rounds = ", ".join(f"{x:.3f}" for x in s["rounds"])
        seen = {(r["tokens"], r["first_loss"]) for r in results[trl] + results[mo]}
        same = "same" if len(seen) == 1 else "DIFFERENT"
        print(f"{mo} / {trl}: training peak {s['mo']:.0f} / {s['trl']:.0f} MB = {s['ratio']:.3f}x "
              f"(per-round ratios {rounds}; min-max {s['low']:.3f}-{s['high']:.3f}); "
              f"goal <= {GOAL}x: {s['verdict']}; {same} tokens and first loss on every run")
    print(f"total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
