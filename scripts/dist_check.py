"""Check that moalign's trainers give the same result on 1 and on 2 processes.

Each trainer is trained for a few steps on a tiny random Llama (LoRA, CPU, gloo) twice: once in
a single process with the global batch on it, once under ``torchrun --nproc_per_node 2`` with
half of it on each process. The per-step losses both runs log and the trained parameters must
agree to a tolerance (floating-point sums are reordered, nothing else may differ).

Sampling is the one source of randomness that depends on how a batch is split (each process
draws from its own stream: TRL seeds process r with ``seed + r``, MO-PPO with
``moalign.trainers.ppo_distributed.sampling_seed(seed, r)``). The online trainers (MO-GRPO,
MO-PPO) therefore sample here with a generator seeded per response -- by its prompt, its place
among the global batch's samples of that prompt (or its row) and the step -- so a response is the
same whichever process draws it; the rest of their distributed path (gathered rewards, group and
batch normalization, whitening, Lagrange multipliers, token-count normalization, gradient
all-reduce) runs unchanged.
End-of-sequence is suppressed so every response has ``GEN_TOKENS`` tokens, except in
``mo-ppo-ragged``, where each response is cut to a length drawn from its own seed (and
right-padded as generation pads a response after its end of sequence), so the processes hold
different numbers of response tokens and the token means of the losses must be the global ones.

Usage::

    python scripts/dist_check.py                       # every trainer, prints a table
    python scripts/dist_check.py --trainers mo-dpo modpo --steps 3
    python scripts/dist_check.py --json results.json   # also write the comparison

Exit status 0 when every trainer agrees, 1 otherwise. ``--worker`` is the internal entry point
that ``torchrun`` starts.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling module below
from _dist_data import (  # noqa: E402
    _occurrences,
    _row_seed,
    pad_responses,
    preference_pairs,
    ragged_length,
    seeded_sample,
    text_objectives,
)

#: Trainers checked, in order. ``mo-dpo-precompute`` is MO-DPO with precomputed reference
#: log-probs of an in-memory dataset (the case where each process needs the others' results);
#: ``mo-dpo-partial`` has a third of the pairs labelled for objective b, with
#: ``label_normalization="batch"``; ``mo-dpo-half`` has half-labelled data (disjoint labels:
#: each pair labelled for one objective only, a or b) with the default
#: ``label_normalization="objective"``, whose counts cover the whole optimizer step on every
#: process; ``mo-dpo-half-accumulate`` is the same with 2 steps of gradient accumulation
#: (1 process: 2 x 4 pairs, 2 processes: 2 x 2 pairs each), which must also give the losses of
#: ``mo-dpo-half`` (one step, 8 pairs, however it is split).
#: ``mo-grpo-span`` puts the 8 completions of one prompt in one group that spans both
#: processes (TRL gathers the rewards before the group and batch normalization);
#: ``mo-ppo-whiten`` whitens the advantages (moments summed over processes),
#: ``mo-ppo-normalize`` adds a batch normalizer of the per-token objective advantages in front
#: of the linear scalarizer, and ``mo-ppo-running`` a running normalizer and a constraint (its
#: Lagrange multiplier steps on the gathered rewards): each statistic must be the global batch's.
#: ``mo-ppo-ragged`` (whitened) has responses of different lengths (1 to ``GEN_TOKENS`` tokens,
#: drawn from each response's seed): the two processes hold different numbers of response
#: tokens, and the policy and value losses must still be the token means of the global batch.
TRAINERS = ("mo-dpo", "mo-dpo-precompute", "mo-dpo-partial", "mo-dpo-half",
            "mo-dpo-half-accumulate", "modpo", "mo-grpo", "mo-grpo-span", "mo-ppo",
            "mo-ppo-whiten", "mo-ppo-normalize", "mo-ppo-running", "mo-ppo-ragged")
GLOBAL_BATCH = 8


# --------------------------------------------------------------------------------------------
# One trainer, run in this process (which may be one of several)
# --------------------------------------------------------------------------------------------


def _common(tmp: Path, per_process: int, steps: int) -> dict[str, Any]:
    return dict(output_dir=str(tmp), use_cpu=True, bf16=False, gradient_checkpointing=False,
                report_to="none", learning_rate=5e-3, max_steps=steps, logging_steps=1,
                save_strategy="no", seed=0, disable_tqdm=True, dataloader_num_workers=0,
                per_device_train_batch_size=per_process)


def _lora():
    from peft import LoraConfig

    return LoraConfig(task_type="CAUSAL_LM", r=4, lora_alpha=8, lora_dropout=0.0,
                      target_modules=["q_proj", "v_proj"])


def _run_dpo(tmp: Path, per_process: int, steps: int, precompute: bool = False,
             partial: str | None = None, half: bool = False, accumulate: int = 1):
    from moalign.models import tiny_causal_lm
    from moalign.trainers import MultiObjectiveDPOConfig, MultiObjectiveDPOTrainer

    model, tok = tiny_causal_lm(0)
    ds = preference_pairs().remove_columns("margin_b")
    extra = {}
    if partial is not None:  # objective b labels only the pairs whose index is a multiple of 3
        ds = ds.map(lambda row, i: {"pref_b": row["pref_b"] if i % 3 == 0 else float("nan")},
                    with_indices=True)
        extra["label_normalization"] = partial
    if half:  # disjoint labels: even pairs are labelled for a only, odd pairs for b only
        nan = float("nan")
        ds = ds.map(lambda row, i: {"pref_a": row["pref_a"] if i % 2 == 0 else nan,
                                    "pref_b": row["pref_b"] if i % 2 == 1 else nan},
                    with_indices=True)
    common = _common(tmp, per_process // accumulate, steps)
    common["gradient_accumulation_steps"] = accumulate
    args = MultiObjectiveDPOConfig(objectives=["a", "b"], weights=[0.7, 0.3], beta=0.5,
                                   max_length=64, precompute_ref_log_probs=precompute,
                                   **extra, **common)
    return MultiObjectiveDPOTrainer(model=model, args=args, train_dataset=ds, processing_class=tok,
                                    peft_config=_lora())


def _run_modpo(tmp: Path, per_process: int, steps: int):
    from moalign.models import tiny_causal_lm
    from moalign.trainers import MODPOConfig, MODPOTrainer

    model, tok = tiny_causal_lm(0)
    args = MODPOConfig(objectives=["a", "b"], weights=[0.6, 0.4], beta=0.5, max_length=64,
                       **_common(tmp, per_process, steps))
    return MODPOTrainer(model=model, args=args, train_dataset=preference_pairs(),
                        processing_class=tok, peft_config=_lora())


GEN_TOKENS = 6
NUM_GENERATIONS = 4


def _run_grpo(tmp: Path, per_process: int, steps: int, num_generations: int = NUM_GENERATIONS,
              **extra: Any):
    from accelerate.utils import gather_object
    from datasets import Dataset

    from moalign.models import tiny_causal_lm
    from moalign.trainers import MultiObjectiveGRPOConfig, MultiObjectiveGRPOTrainer

    model, tok = tiny_causal_lm(0)
    suppress = [tok.eos_token_id, tok.pad_token_id]

    def rollout(prompts, trainer):
        ids = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
        step = trainer.state.global_step
        # a completion's place among the global batch's completions of its prompt (a group
        # may span processes)
        start = trainer.accelerator.process_index * len(prompts)
        places = _occurrences(gather_object(list(prompts)))[start:start + len(prompts)]
        seeds = [_row_seed(i, j, step) for i, j in zip(ids, places)]
        policy = trainer.accelerator.unwrap_model(trainer.model)
        completions = seeded_sample(policy, ids, seeds, GEN_TOKENS, suppress)
        return {"prompt_ids": ids, "completion_ids": completions, "logprobs": None}

    prompts = Dataset.from_dict({"prompt": [f"Say something {i}:" for i in range(16)]})
    common = _common(tmp, per_process, steps)
    extra.setdefault("multi_objective_aggregation", "normalize_then_sum")
    args = MultiObjectiveGRPOConfig(
        num_generations=num_generations, max_completion_length=GEN_TOKENS, weights=[0.7, 0.3],
        beta=0.0, temperature=1.0, **extra, **common)
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    return MultiObjectiveGRPOTrainer(
        model=model, objectives=text_objectives(), args=args,
        train_dataset=prompts, processing_class=tok, peft_config=_lora(), rollout_func=rollout)


def _run_ppo(tmp: Path, per_process: int, steps: int, whiten: bool = False,
             scalarizer: str | dict = "linear", constraints: dict | None = None,
             ragged: bool = False):
    import torch
    from accelerate import PartialState

    import moalign.trainers.ppo as ppo
    from moalign.models import tiny_causal_lm
    from moalign.trainers import MultiObjectivePPOConfig, MultiObjectivePPOTrainer

    model, tok = tiny_causal_lm(0)
    suppress = [tok.eos_token_id, tok.pad_token_id]
    calls = {"n": 0}

    def sample(model, tokenizer, query_ids, query_mask, generation_kwargs):
        rank = PartialState().process_index
        rows = [q[m.bool()].tolist() for q, m in zip(query_ids, query_mask)]
        seeds = [_row_seed([], rank * per_process + i, calls["n"]) for i in range(len(rows))]
        calls["n"] += 1
        responses = seeded_sample(model, rows, seeds, GEN_TOKENS, suppress)
        if ragged:  # each response cut to its own length, padded after it
            responses = [r[:ragged_length(s, GEN_TOKENS)] for r, s in zip(responses, seeds)]
        ids, masks = pad_responses(responses, tok.pad_token_id)
        device = query_ids.device
        return torch.tensor(ids, device=device), torch.tensor(masks, device=device)

    ppo.sample_responses = sample
    args = MultiObjectivePPOConfig(
        output_dir=str(tmp), max_steps=steps, use_cpu=True, seed=0, batch_size=per_process,
        num_samples_per_prompt=1, max_new_tokens=GEN_TOKENS, mini_batch_size=per_process,
        ppo_epochs=1, learning_rate=5e-3, whiten_advantages=whiten, kl_coef=0.1,
        weights=[0.7, 0.3], save_final=False, scalarizer=scalarizer, constraints=constraints,
        lagrangian_lr=0.5)
    prompts = [{"prompt": f"Say something {i}:"} for i in range(16)]
    return MultiObjectivePPOTrainer(
        model, text_objectives(), args,
        train_dataset=prompts, processing_class=tok, peft_config=_lora())


BUILDERS = {
    "mo-dpo": _run_dpo,
    "mo-dpo-precompute": lambda tmp, per_process, steps: _run_dpo(tmp, per_process, steps,
                                                                  precompute=True),
    "mo-dpo-partial": lambda tmp, per_process, steps: _run_dpo(tmp, per_process, steps,
                                                               partial="batch"),
    "mo-dpo-half": lambda tmp, per_process, steps: _run_dpo(tmp, per_process, steps, half=True),
    "mo-dpo-half-accumulate": lambda tmp, per_process, steps: _run_dpo(
        tmp, per_process, steps, half=True, accumulate=2),
    "modpo": _run_modpo,
    "mo-grpo": _run_grpo,
    "mo-grpo-span": lambda tmp, per_process, steps: _run_grpo(
        tmp, per_process, steps, num_generations=GLOBAL_BATCH,
        multi_objective_aggregation="sum_then_normalize", scale_rewards="batch"),
    "mo-ppo": _run_ppo,
    "mo-ppo-whiten": lambda tmp, per_process, steps: _run_ppo(tmp, per_process, steps,
                                                              whiten=True),
    "mo-ppo-normalize": lambda tmp, per_process, steps: _run_ppo(
        tmp, per_process, steps, whiten=True, scalarizer="batch_normalized_linear"),
    "mo-ppo-running": lambda tmp, per_process, steps: _run_ppo(
        tmp, per_process, steps, whiten=True, constraints={"ascii": 0.99},
        scalarizer={"name": "linear", "normalize": {"method": "running", "momentum": 0.5}}),
    "mo-ppo-ragged": lambda tmp, per_process, steps: _run_ppo(tmp, per_process, steps,
                                                              whiten=True, ragged=True),
}


def _trainable_vector(module) -> list[float]:
    import torch

    params = [p.detach().float().reshape(-1) for n, p in sorted(module.named_parameters())
              if p.requires_grad]
    return torch.cat(params).tolist() if params else []


def _trained_parameters(trainer) -> list[float]:
    """The trainable parameters of the policy, and for MO-PPO of its vector critic too."""
    unwrap = trainer.accelerator.unwrap_model
    if hasattr(trainer, "policy"):
        return _trainable_vector(unwrap(trainer.policy)) + _trainable_vector(unwrap(trainer.critic))
    return _trainable_vector(unwrap(trainer.model))


def _losses(trainer) -> list[float]:
    """What each step logged, as one list: the loss (DPO family); the mean rewards, which
    depend on every earlier update, and the loss (GRPO: ~0 on-policy, so rewards carry the
    signal); the gathered mean rewards and multipliers (MO-PPO logs the policy loss of one process
    only)."""
    if hasattr(trainer, "policy"):  # and the Lagrange multipliers of constrained objectives
        return [m[k] for m in trainer.log_history for k in
                ("rewards/ascii/mean", "rewards/high/mean", "lagrange/ascii") if k in m]
    keys = ["loss"]
    if "grpo" in type(trainer).__name__.lower():
        keys = ["rewards/ascii/mean", "rewards/high/mean", "loss"]
    return [entry[k] for entry in trainer.state.log_history if "loss" in entry for k in keys]


def worker(trainers: list[str], steps: int, out: str, per_process: int | None = None) -> None:
    """Train each trainer; the main process writes ``{trainer: {losses, params}}`` to ``out``
    after each one. In a distributed run an error ends every process (the launcher stops the
    others), since the processes would otherwise wait on each other forever."""
    import torch

    from moalign.storage.files import atomic_write_json

    torch.set_num_threads(1)
    nproc = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    per_process = per_process or GLOBAL_BATCH // nproc
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="moalign-dist-") as tmp:
        for name in trainers:
            start = time.perf_counter()
            try:
                trainer = BUILDERS[name](Path(tmp) / name, per_process, steps)
                if trainer.accelerator.num_processes != nproc:
                    raise RuntimeError(f"the trainer sees {trainer.accelerator.num_processes} "
                                       f"process(es), the launcher started {nproc}")
                before = torch.tensor(_trained_parameters(trainer))
                trainer.train()
                after = _trained_parameters(trainer)
                change = float((torch.tensor(after) - before).abs().max()) if after else 0.0
                results[name] = {"losses": _losses(trainer), "params": after, "change": change,
                                 "distributed_type": str(trainer.accelerator.distributed_type)}
            except Exception as exc:
                results[name] = {"error": f"{type(exc).__name__}: {exc}"}
                if nproc > 1:
                    print(f"[rank {rank}] {name}: {results[name]['error']}", flush=True)
                    raise
            results[name]["seconds"] = round(time.perf_counter() - start, 2)
            print(f"[rank {rank}] {name}: {results[name].get('error', 'ok')} "
                  f"({results[name]['seconds']} s, "
                  f"{results[name].get('distributed_type', '?')})", flush=True)
            if rank == 0:
                atomic_write_json(out, {"world_size": nproc, "results": results})


# --------------------------------------------------------------------------------------------
# Driver: run 1 and 2 processes, compare
# --------------------------------------------------------------------------------------------


def _launch(nproc: int, trainers: list[str], steps: int, out: Path, timeout: float,
            per_process: int | None = None) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "TOKENIZERS_PARALLELISM": "false", "TQDM_DISABLE": "1"}
    script = [str(Path(__file__).resolve()), "--worker", "--out", str(out), "--steps", str(steps),
              "--trainers", *trainers] + (["--per-process", str(per_process)] if per_process else [])
    if nproc == 1:
        cmd = [sys.executable, *script]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={nproc}", *script]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    data = json.loads(out.read_text()) if out.is_file() else {"world_size": nproc, "results": {}}
    if proc.returncode != 0:  # the trainers that did not finish are reported with the log
        errors = [line for line in proc.stdout.splitlines() if line.startswith("[rank")]
        for name in trainers:
            if name not in data["results"] or "error" in data["results"][name]:
                data["results"][name] = {"error": f"{nproc} process(es) failed: "
                                         f"{'; '.join(errors[-2:]) or proc.stderr[-2000:]}"}
                break
        for name in trainers:
            data["results"].setdefault(name, {"error": "not run (an earlier trainer failed)"})
    return data


def compare(single: dict, double: dict, rtol: float = 1e-4, atol: float = 1e-5) -> dict[str, Any]:
    """Per trainer: largest loss and parameter differences, and whether they are within
    ``atol + rtol * |single|``."""
    import numpy as np

    report = {}
    for name, a in single["results"].items():
        b = double["results"].get(name, {"error": "not run"})
        if "error" in a or "error" in b:
            report[name] = {"ok": False, "error": a.get("error") or b.get("error")}
            continue
        la, lb = np.asarray(a["losses"]), np.asarray(b["losses"])
        pa, pb = np.asarray(a["params"]), np.asarray(b["params"])
        same_shape = la.shape == lb.shape and pa.shape == pb.shape and len(la) > 0
        loss_diff = float(np.max(np.abs(la - lb))) if same_shape else float("inf")
        param_diff = float(np.max(np.abs(pa - pb))) if same_shape else float("inf")
        # the parameters must have moved well beyond the tolerance, or agreement proves nothing
        ok = same_shape and a["change"] > 100 * atol and bool(
            np.allclose(lb, la, rtol=rtol, atol=atol) and np.allclose(pb, pa, rtol=rtol, atol=atol))
        report[name] = {"ok": ok, "losses_1": la.tolist(), "losses_2": lb.tolist(),
                        "max_loss_diff": loss_diff, "max_param_diff": param_diff,
                        "param_change": a["change"], "seconds_1": a["seconds"], "seconds_2": b["seconds"]}
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trainers", nargs="+", default=list(TRAINERS), choices=list(BUILDERS),
                        help=f"default: {' '.join(TRAINERS)}")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--nproc", type=int, default=2, help="processes of the distributed run")
    parser.add_argument("--rtol", type=float, default=1e-4)
    parser.add_argument("--atol", type=float, default=1e-5)
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--json", help="write the comparison to this file")
    parser.add_argument("--mismatch", action="store_true",
                        help="negative control: give each process the whole global batch in the "
                             "distributed run (twice the batch), which must NOT agree")
    parser.add_argument("--per-process", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.worker:
        worker(args.trainers, args.steps, args.out, args.per_process)
        return 0

    with tempfile.TemporaryDirectory(prefix="moalign-dist-check-") as tmp:
        start = time.perf_counter()
        single = _launch(1, args.trainers, args.steps, Path(tmp) / "single.json", args.timeout)
        double = _launch(args.nproc, args.trainers, args.steps, Path(tmp) / "double.json",
                         args.timeout, GLOBAL_BATCH if args.mismatch else None)
        elapsed = time.perf_counter() - start
    report = compare(single, double, args.rtol, args.atol)
    print(f"{'trainer':<24} {'ok':<4} {'losses (1 process)':<30} {'max|loss diff|':>14} "
          f"{'max|param diff|':>15} {'max|param change|':>17}")
    for name, r in report.items():
        if "error" in r:
            print(f"{name:<24} {'NO':<4} {r['error']}")
            continue
        losses = ", ".join(f"{x:.5f}" for x in r["losses_1"][:3]) + \
            (", ..." if len(r["losses_1"]) > 3 else "")
        print(f"{name:<24} {'yes' if r['ok'] else 'NO':<4} {losses:<30} "
              f"{r['max_loss_diff']:>14.2e} {r['max_param_diff']:>15.2e} {r['param_change']:>17.2e}")
    print(f"world sizes: {single['world_size']} and {double['world_size']}; "
          f"global batch {GLOBAL_BATCH}; {args.steps} steps; {elapsed:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0 if all(r["ok"] for r in report.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
