"""Peak CPU memory of one MO-PPO iteration (make_batch + update), old path vs new path, one run.

SmolLM2-135M-Instruct (embedded, offline) with a LoRA policy (moalign's default adapter),
``--rollouts`` responses of exactly ``--tokens`` tokens (end-of-sequence suppressed), one PPO
epoch over the whole batch as one minibatch by default (the logits of the whole rollout batch
at once, the case issue 23 describes). Each variant runs in a fresh worker process:

- ``full-vocab``: the log-probs and entropies of the full-vocabulary path MO-PPO used before
  (``logits.float() / temperature``, then ``log_softmax`` and ``gather``, and the entropy from
  a second ``log_softmax``, its ``exp`` and their product: full ``[B, T, V]`` float32 copies),
  kept here as a reference implementation; full critic (a trainable copy of the backbone);
- ``chunked``: the same trainer with MO-PPO's chunked log-probs (``ppo_core.selective_logprobs``:
  a logsumexp per chunk of rows, the taken token's logit gathered, no log-softmax copy) and the
  same full critic, so its losses must equal ``full-vocab``'s;
- ``lora-critic``: chunked log-probs and the default critic of a LoRA policy (its own adapter
  over the shared frozen base plus the value heads);
- ``micro-batch``: ``lora-critic`` with the minibatch's forward and backward in chunks of
  ``--micro-batch`` rows (``micro_batch_size``), whose losses must equal ``lora-critic``'s.

``--baseline-file PATH`` adds a variant running another ``ppo.py`` (e.g. the trainer before
these changes: ``git show <rev>:moalign/trainers/ppo.py > /tmp/ppo_old.py``) with its own
defaults.

Memory: the worker builds the trainer and samples the rollouts first, then resets the kernel's
high-water mark of its resident set (``/proc/self/clear_refs``) and runs ``make_batch`` +
``update``; the **step peak** is the high-water mark minus the resident set just before
(``make_batch`` and ``update`` are also measured alone, the mark reset between them; the
update's peak includes the gradients and the AdamW state its first step creates). The
process peak (``getrusage`` maxrss: model, critic, optimizer state and the step) is printed
too. glibc's malloc is given a fixed mmap threshold in every worker, so freed tensors go back
to the kernel and the resident set follows the live tensors.

    python benchmarks/ppo_memory.py
    python benchmarks/ppo_memory.py --rollouts 16 --tokens 64 --mini-batch 8
    git worktree add /tmp/ppo-before 0911160~1
    python benchmarks/ppo_memory.py --baseline-tree /tmp/ppo-before --variants lora-critic,micro-batch
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

VARIANTS = ("full-vocab", "chunked", "lora-critic", "micro-batch")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rollouts", type=int, default=16, help="responses per iteration")
    p.add_argument("--tokens", type=int, default=64, help="tokens per response (exactly)")
    p.add_argument("--mini-batch", type=int, default=0, help="minibatch size (0: all rollouts)")
    p.add_argument("--micro-batch", type=int, default=4,
                   help="rows per forward and backward of the micro-batch variant")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature")
    p.add_argument("--threads", type=int, default=2, help="torch threads per worker")
    p.add_argument("--baseline-file", help="another ppo.py to measure as a variant 'baseline'")
    p.add_argument("--baseline-tree", help="a checkout of moalign (e.g. `git worktree add DIR REV`) "
                   "whose MO-PPO trainer, with its own defaults, is the variant 'baseline'")
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated variants")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _full_vocab_trainer(base):
    """A trainer whose log-probs and entropies take the full-vocabulary path (reference)."""
    import torch

    class FullVocab(base):
        def _logprobs(self, logits, tokens, entropy=False):
            scaled = logits.float() / self.args.temperature
            logps = torch.log_softmax(scaled, dim=-1)
            taken = torch.gather(logps, -1, tokens.unsqueeze(-1)).squeeze(-1)
            del logps
            if not entropy:
                return taken
            logps = torch.log_softmax(scaled.float(), dim=-1)
            return taken, -(logps.exp() * logps).sum(-1)

    return FullVocab


def worker(args) -> dict:
    import gc

    import torch

    torch.set_num_threads(args.threads)
    from moalign.models import load_policy
    from moalign.objective import load_objective

    variant = args.worker
    if variant == "baseline" and not args.baseline_file:  # --baseline-tree: on the path
        from moalign.trainers import ppo as module
    elif variant == "baseline":
        spec = importlib.util.spec_from_file_location("ppo_baseline", args.baseline_file)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up
        spec.loader.exec_module(module)
    else:
        from moalign.trainers import ppo as module
    trainer_class = module.MultiObjectivePPOTrainer
    if variant == "full-vocab":
        trainer_class = _full_vocab_trainer(trainer_class)
    settings = dict(output_dir="/tmp/ppo-memory-unused", max_steps=1, batch_size=args.rollouts,
                    max_new_tokens=args.tokens, mini_batch_size=args.mini_batch or args.rollouts,
                    ppo_epochs=1, use_cpu=True, kl_coef=0.05, save_final=False,
                    temperature=args.temperature, seed=0,
                    generation_kwargs={"min_new_tokens": args.tokens})
    fields = module.MultiObjectivePPOConfig.__dataclass_fields__
    if "critic" in fields:
        settings["critic"] = "auto" if variant in ("lora-critic", "micro-batch") else "full"
    if variant == "micro-batch":
        settings["micro_batch_size"] = args.micro_batch
    policy, tok = load_policy("smollm2", lora=True)
    prompts = [{"prompt": f"Write one sentence about the number {i}."} for i in range(args.rollouts)]
    trainer = trainer_class(policy, [load_objective("length", target=20)],
                            module.MultiObjectivePPOConfig(**settings), train_dataset=prompts,
                            processing_class=tok)
    trainer.tradeoff.ask()
    rollout = trainer.rollout()
    rewards = trainer.score(rollout)
    assert rollout.response_mask.sum().item() == args.rollouts * args.tokens, "short responses"
    def reset() -> int:
        gc.collect()
        with open("/proc/self/clear_refs", "w") as f:  # VmHWM back to the current resident set
            f.write("5")
        return _status_kib("VmRSS")

    before = reset()
    start = time.perf_counter()
    batch = trainer.make_batch(rollout, rewards)
    batch_peak = _status_kib("VmHWM") - before
    batch_hwm = _status_kib("VmHWM")
    update_before = reset()
    losses = trainer.update(batch)
    seconds = time.perf_counter() - start
    update_peak = _status_kib("VmHWM") - update_before
    peak = max(batch_hwm, _status_kib("VmHWM"))
    vocab = trainer.tokenizer.vocab_size if hasattr(trainer.tokenizer, "vocab_size") else None
    return {"variant": variant, "step_peak_mb": (peak - before) / 1024,
            "make_batch_peak_mb": batch_peak / 1024, "update_peak_mb": update_peak / 1024,
            "rss_before_mb": before / 1024,
            "process_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "seconds": seconds, "losses": losses, "vocab": vocab,
            "entropy": float(batch["entropy"]), "old_logp_sum": float(batch["old_logp"].sum())}


def run(variant: str, args) -> dict:
    cmd = [sys.executable, __file__, "--worker", variant, "--rollouts", str(args.rollouts),
           "--tokens", str(args.tokens), "--mini-batch", str(args.mini_batch),
           "--micro-batch", str(args.micro_batch),
           "--temperature", str(args.temperature), "--threads", str(args.threads)]
    if args.baseline_file:
        cmd += ["--baseline-file", args.baseline_file]
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}
    if variant == "baseline" and args.baseline_tree:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.path.abspath(args.baseline_tree),
                                                          env.get("PYTHONPATH")]))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"worker {variant} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return 0
    variants = [v for v in args.variants.split(",") if v]
    if args.baseline_file or args.baseline_tree:
        variants = ["baseline", *variants]
    results = {}
    for v in variants:
        results[v] = run(v, args)
        print(f"{v}: {json.dumps(results[v])}", flush=True)
    mb = args.mini_batch or args.rollouts
    print(f"MO-PPO make_batch + update, SmolLM2-135M LoRA policy, {args.rollouts} rollouts x "
          f"{args.tokens} tokens, minibatch {mb}, 1 epoch, vocabulary {results[variants[0]]['vocab']}")
    print(f"{'variant':<12} {'step peak MB':>13} {'make_batch MB':>14} {'update MB':>10} "
          f"{'process peak MB':>16} {'seconds':>8} {'loss/policy':>12} {'loss/value':>11}")
    for v, r in results.items():
        print(f"{v:<12} {r['step_peak_mb']:>13.0f} {r['make_batch_peak_mb']:>14.0f} "
              f"{r['update_peak_mb']:>10.0f} {r['process_peak_mb']:>16.0f} "
              f"{r['seconds']:>8.1f} {r['losses']['loss/policy']:>12.6f} "
              f"{r['losses']['loss/value']:>11.6f}")
    ok = True
    if "full-vocab" in results and "chunked" in results:
        old, new = results["full-vocab"], results["chunked"]
        diff = max(abs(old["losses"][k] - new["losses"][k]) for k in old["losses"])
        same = diff <= 1e-5 * max(1.0, max(abs(v) for v in old["losses"].values()))
        ok &= same
        print(f"chunked vs full-vocab (same critic): step peak {old['step_peak_mb'] / new['step_peak_mb']:.2f}x "
              f"lower, make_batch peak {old['make_batch_peak_mb'] / new['make_batch_peak_mb']:.2f}x, "
              f"update peak {old['update_peak_mb'] / new['update_peak_mb']:.2f}x; losses equal: {same} (max |diff| {diff:.2e} over {len(old['losses'])} "
              f"statistics; entropy {old['entropy']:.6f} vs {new['entropy']:.6f})")
    reference = "baseline" if "baseline" in results else "full-vocab"
    if reference in results and "lora-critic" in results:
        old, new = results[reference], results["lora-critic"]
        print(f"lora-critic vs {reference}: step peak {old['step_peak_mb'] / new['step_peak_mb']:.2f}x "
              f"lower, process peak {old['process_peak_mb'] / new['process_peak_mb']:.2f}x lower")
    if "micro-batch" in results:
        new = results["micro-batch"]
        if "lora-critic" in results:
            same_critic = results["lora-critic"]
            diff = max(abs(same_critic["losses"][k] - new["losses"][k]) for k in new["losses"])
            same = diff <= 1e-5 * max(1.0, max(abs(v) for v in new["losses"].values()))
            ok &= same
            print(f"micro-batch ({args.micro_batch} rows) vs lora-critic: losses equal: {same} "
                  f"(max |diff| {diff:.2e})")
        if reference in results:
            old = results[reference]
            print(f"micro-batch vs {reference}: step peak {old['step_peak_mb'] / new['step_peak_mb']:.2f}x "
                  f"lower, process peak {old['process_peak_mb'] / new['process_peak_mb']:.2f}x lower")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
