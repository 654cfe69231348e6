"""Overhead of MultiObjectiveDPOTrainer (K objectives) over trl.DPOTrainer, side by side.

Both trainers train the same model (same seed, an identical frozen reference copy) on the same
pairs, batch size and sequence length; the data carry K label columns (``pref_o0`` ...) with
mixed +1 / -1 / 0 / NaN labels, which TRL drops and MO-DPO uses.

- **time per step**: both trainers are built in this process and their optimizer steps
  (``training_step``: collated batch -> loss with all metrics -> backward, then the optimizer
  step) alternate on identical batches, ``--steps`` times each after ``--warmup``. On CPU a
  step is timed in process CPU time (``time.process_time``, all threads), so other processes
  competing for the cores do not inflate it; on CUDA in wall time with the device
  synchronized. The median per trainer is reported.
- **peak memory**: each trainer runs ``train()`` for ``--warmup + --steps`` steps in a fresh
  worker process (alternating TRL and MO-DPO, ``--repeats`` rounds), so neither inherits the
  other's allocator state. On CPU: the peak resident set size during ``train()`` (sampled from
  ``/proc/self/statm`` every millisecond by a thread) minus the RSS just before it, i.e. what
  training allocates (optimizer state, activations, batches, metrics); on CUDA:
  ``torch.cuda.max_memory_allocated`` during ``train()`` minus what was allocated before. The
  median over rounds is reported.

Ratios are MO-DPO / TRL (goal: <= 1.05 for both).

    python benchmarks/dpo_overhead.py                      # tiny random Llama on CPU
    python benchmarks/dpo_overhead.py --model PATH         # a local causal-LM checkpoint
    python benchmarks/dpo_overhead.py --objectives 3 --batch 8 --seq-len 128 --steps 30
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
warnings.filterwarnings("ignore", category=FutureWarning)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="local causal-LM checkpoint (default: tiny random Llama)")
    p.add_argument("--objectives", type=int, default=3, help="K, the number of objectives")
    p.add_argument("--batch", type=int, default=8, help="pairs per step")
    p.add_argument("--seq-len", type=int, default=128, help="tokens of prompt + reply (approx.)")
    p.add_argument("--steps", type=int, default=30, help="timed steps per trainer")
    p.add_argument("--warmup", type=int, default=3, help="untimed first steps")
    p.add_argument("--repeats", type=int, default=3, help="memory runs per trainer")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--hidden-size", type=int, default=256, help="tiny model width")
    p.add_argument("--layers", type=int, default=4, help="tiny model depth")
    p.add_argument("--lora", action="store_true", help="train a LoRA adapter (r=16, q/v) instead")
    p.add_argument("--worker", choices=["trl", "mo"], help=argparse.SUPPRESS)
    return p.parse_args(argv)


# ------------------------------------------------------------------------------ worker


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    """Peak resident set size while the context is open, sampled every millisecond."""

    def __enter__(self):
        self.base = self.peak = _rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_bytes())
            time.sleep(0.001)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_bytes())


def _data(tokenizer, n: int, k: int, seq_len: int, seed: int = 0):
    import numpy as np
    from datasets import Dataset

    rng = np.random.default_rng(seed)
    letters = list("abcdefghijklmnopqrstuvwxyz ")
    prompt_len, reply_len = seq_len // 2, seq_len - seq_len // 2 - 1
    # byte-level tiny tokenizer: one token per character; real tokenizers: fewer tokens
    rows = {"prompt": [], "chosen": [], "rejected": []}
    for _ in range(n):
        rows["prompt"].append("".join(rng.choice(letters, prompt_len)))
        rows["chosen"].append("".join(rng.choice(letters, reply_len)))
        rows["rejected"].append("".join(rng.choice(letters, reply_len)))
    choices = np.array([1.0, -1.0, 0.0, np.nan])
    for j in range(k):
        rows[f"pref_o{j}"] = rng.choice(choices, size=n, p=[0.4, 0.3, 0.1, 0.2]).tolist()
    return Dataset.from_dict(rows)


def _model(args):
    import torch

    if args.model:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
        tok = AutoTokenizer.from_pretrained(args.model)
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        return model, tok
    from moalign.models import tiny_causal_lm

    heads = max(1, args.hidden_size // 32)
    return tiny_causal_lm(0, hidden_size=args.hidden_size, intermediate_size=2 * args.hidden_size,
                          num_hidden_layers=args.layers, num_attention_heads=heads,
                          num_key_value_heads=max(1, heads // 2))


def build(kind: str, args):
    """A TRL (``kind="trl"``) or MO-DPO trainer on the benchmark model and data."""
    import torch

    cuda = torch.cuda.is_available()
    model, tok = _model(args)
    ref = None if args.lora else copy.deepcopy(model)
    steps = args.warmup + args.steps
    data = _data(tok, args.batch * steps, args.objectives, args.seq_len)
    common = dict(
        output_dir=f"/tmp/dpo_overhead_{kind}", use_cpu=not cuda, bf16=False,
        gradient_checkpointing=False, report_to="none", per_device_train_batch_size=args.batch,
        max_steps=steps, logging_steps=10, save_strategy="no", seed=0, learning_rate=1e-5,
        max_length=args.seq_len + 8, disable_tqdm=True, dataloader_num_workers=0,
    )
    peft_config = None
    if args.lora:
        from peft import LoraConfig

        peft_config = LoraConfig(r=16, lora_alpha=32, target_modules=["q_proj", "v_proj"])
    if kind == "trl":
        from trl import DPOConfig, DPOTrainer

        return DPOTrainer(model, ref, args=DPOConfig(**common), train_dataset=data,
                          processing_class=tok, peft_config=peft_config)
    from moalign.trainers import MultiObjectiveDPOConfig, MultiObjectiveDPOTrainer

    k = args.objectives
    config = MultiObjectiveDPOConfig(**common, objectives=[f"o{j}" for j in range(k)],
                                     weights=[1.0 / k] * k)
    return MultiObjectiveDPOTrainer(model, ref, args=config, train_dataset=data,
                                    processing_class=tok, peft_config=peft_config)


def _clock():
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()
        return time.perf_counter()
    return time.process_time()


def step_times(args) -> dict[str, list[float]]:
    """Interleaved optimizer steps of both trainers on identical batches (this process)."""
    import torch

    torch.set_num_threads(args.threads)
    trainers = {kind: build(kind, args) for kind in ("trl", "mo")}
    for trainer in trainers.values():
        trainer.create_optimizer()
        trainer.current_gradient_accumulation_steps = 1  # set by train() otherwise
        trainer.model.train()
    times: dict[str, list[float]] = {"trl": [], "mo": []}
    for i in range(args.warmup + args.steps):
        rows = range(i * args.batch, (i + 1) * args.batch)
        for kind in (("trl", "mo") if i % 2 == 0 else ("mo", "trl")):
            trainer = trainers[kind]
            batch = trainer.data_collator([trainer.train_dataset[j] for j in rows])
            t0 = _clock()
            trainer.training_step(trainer.model, trainer._prepare_inputs(batch))
            trainer.optimizer.step()
            trainer.optimizer.zero_grad()
            if i >= args.warmup:
                times[kind].append(_clock() - t0)
    return times


def run_worker(args) -> dict:
    """Peak memory of ``train()`` for one trainer (run in a fresh process)."""
    import torch

    torch.set_num_threads(args.threads)
    cuda = torch.cuda.is_available()
    trainer = build(args.worker, args)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    with PeakRSS() as rss:
        trainer.train()
    if cuda:
        return {"peak_mb": (torch.cuda.max_memory_allocated() - base) / 2**20, "device": "cuda"}
    return {"peak_mb": (rss.peak - rss.base) / 2**20, "device": "cpu"}


# ------------------------------------------------------------------------------ driver


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(run_worker(args)))
        return 0
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    times = step_times(args)
    forwarded = list(argv if argv is not None else sys.argv[1:])
    memory: dict[str, list[float]] = {"trl": [], "mo": []}
    for r in range(args.repeats):
        for kind in (("trl", "mo") if r % 2 == 0 else ("mo", "trl")):
            proc = subprocess.run([sys.executable, __file__, *forwarded, "--worker", kind],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                sys.stderr.write(proc.stderr[-4000:])
                return proc.returncode
            memory[kind].append(json.loads(proc.stdout.strip().splitlines()[-1])["peak_mb"])
    step = {k: statistics.median(v) for k, v in times.items()}
    peak = {k: statistics.median(v) for k, v in memory.items()}
    what = args.model or f"tiny Llama (hidden {args.hidden_size}, {args.layers} layers)"
    print(f"{what}; K={args.objectives}, batch {args.batch}, ~{args.seq_len} tokens, "
          f"{'LoRA' if args.lora else 'full'} fine-tuning, {device}, {args.threads} thread(s); "
          f"{args.steps} timed steps each, memory over {args.repeats} runs each")
    timing = "CPU s/step" if device == "cpu" else "wall s/step"
    mem = "peak RSS delta MB" if device == "cpu" else "peak CUDA MB"
    print(f"{'':10}{timing:>14}{'(min)':>10}{mem:>20}{'(runs)':>26}")
    for kind, label in (("trl", "trl.DPO"), ("mo", "MO-DPO")):
        runs = ", ".join(f"{m:.0f}" for m in memory[kind])
        print(f"{label:10}{step[kind]:>14.4f}{min(times[kind]):>10.4f}{peak[kind]:>20.1f}{runs:>26}")
    t_ratio = step["mo"] / step["trl"]
    m_ratio = peak["mo"] / peak["trl"] if peak["trl"] > 0 else float("nan")
    print(f"{'ratio':10}{t_ratio:>14.3f}{min(times['mo']) / min(times['trl']):>10.3f}"
          f"{m_ratio:>20.3f}   (goal <= 1.05)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
