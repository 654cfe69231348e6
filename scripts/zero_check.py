"""MO-DPO, MO-GRPO and MO-PPO under DeepSpeed ZeRO-2 and ZeRO-3 on 2 CPU processes: train,
checkpoint, resume with the trade-off state, save the policy, reload it in a fresh process.

Needs ``deepspeed`` (``pip install deepspeed``: it installs without building its ops; the test
extra has it). Run::

    python scripts/zero_check.py                     # ZeRO-2 and ZeRO-3, all three trainers
    python scripts/zero_check.py --stage 3 --trainers mo-ppo

For each stage the script writes a DeepSpeed config (``train_micro_batch_size_per_gpu``,
``gradient_accumulation_steps`` and ``gradient_clipping`` left ``auto`` as in
``examples/accelerate/deepspeed_zero*.yaml``; ZeRO-3 with
``stage3_param_persistence_threshold: 0``, so that even the tiny model's parameters are
partitioned, and without ``stage3_gather_16bit_weights_on_model_save``) and an accelerate config
(``distributed_type: DEEPSPEED``, 2 processes, ``use_cpu: false``; bf16 and fp16 off in the
DeepSpeed config, which is where accelerate then takes the precision from), and
runs ``DS_ACCELERATOR=cpu accelerate launch`` on ``--worker``. The trainers use ``use_cpu=False``
and ``ddp_backend="gloo"``. For each trainer the worker, with LoRA on the tiny random Llama
(:func:`moalign.models.tiny_causal_lm`), an annealed weight schedule and (MO-GRPO, MO-PPO) a
constraint with its Lagrange multiplier:

1. trains 3 steps, saving a checkpoint at step 2 (the *uninterrupted* run), records the
   trade-off state at step 2 and at the end and the trained adapter (gathered from the
   partitions), and saves the policy with :func:`moalign.trainers.runs.save_policy`;
2. builds a fresh trainer and resumes from the checkpoint of step 2 (checked first with
   :func:`moalign.storage.checkpoints.check_trainer_checkpoint`) to step 3 (the *resumed* run),
   recording the trade-off state it starts from and ends with, and saves its policy too.

This process then checks, for each (trainer, stage), and prints one line:

- ``saved``: both saved adapters reload (peft, onto a fresh base, in this process, which did
  not train) with every tensor non-empty and equal to the adapter the run trained;
- ``resumed``: the checkpoint of step 2 was found, the resumed run started at step 2 with the
  trade-off state the uninterrupted run had at step 2 (schedule position, multipliers,
  normalizers), which is not the state a fresh trainer starts from;
- ``same end``: the resumed run ended with the uninterrupted run's trade-off state; and the
  largest difference between the two runs' final adapters is shown (``|dA|``).

Exit status 0 when every check passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling module below
from _dist_data import preference_pairs, text_objectives  # noqa: E402

TRAINERS = ("mo-dpo", "mo-grpo", "mo-ppo")
STAGES = (2, 3)
STEPS, SAVE_AT = 3, 2

ACCELERATE_CONFIG = """compute_environment: LOCAL_MACHINE
distributed_type: DEEPSPEED
deepspeed_config:
  deepspeed_config_file: {ds}
  zero3_init_flag: false
num_machines: 1
machine_rank: 0
num_processes: {nproc}
use_cpu: false
main_training_function: main
rdzv_backend: static
same_network: true
"""


def deepspeed_config(stage: int) -> dict[str, Any]:
    zero: dict[str, Any] = {"stage": stage}
    if stage == 3:
        zero.update(stage3_param_persistence_threshold=0,
                    stage3_gather_16bit_weights_on_model_save=False)
    return {"zero_optimization": zero, "train_micro_batch_size_per_gpu": "auto",
            "gradient_accumulation_steps": "auto", "gradient_clipping": "auto",
            "bf16": {"enabled": False}, "fp16": {"enabled": False}}


# --------------------------------------------------------------------------------------------
# Worker: one of the launched processes
# --------------------------------------------------------------------------------------------

ANNEAL = {"name": "anneal", "start": [0.9, 0.1], "end": [0.1, 0.9], "steps": 6}
PER_PROCESS = 4


def _lora():
    from peft import LoraConfig

    return LoraConfig(task_type="CAUSAL_LM", r=4, lora_alpha=8, lora_dropout=0.0,
                      target_modules=["q_proj", "v_proj"])


def _config(name: str, out: Path) -> Any:
    """The trainer config of ``name``: 3 steps, a checkpoint at step 2."""
    if name == "mo-ppo":
        from moalign.trainers.ppo import MultiObjectivePPOConfig

        return MultiObjectivePPOConfig(
            output_dir=str(out), max_steps=STEPS, save_steps=SAVE_AT, save_final=False,
            use_cpu=False, ddp_backend="gloo", seed=0, batch_size=PER_PROCESS,
            mini_batch_size=PER_PROCESS, ppo_epochs=1, max_new_tokens=6, learning_rate=2e-2,
            kl_coef=0.1, schedule=ANNEAL, constraints={"ascii": 0.99}, lagrangian_lr=0.5)
    common = dict(output_dir=str(out), use_cpu=False, ddp_backend="gloo", bf16=False,
                  gradient_checkpointing=False, report_to="none",
                  per_device_train_batch_size=PER_PROCESS, learning_rate=2e-2, max_steps=STEPS,
                  logging_steps=1, save_strategy="steps", save_steps=SAVE_AT, seed=0,
                  disable_tqdm=True, dataloader_num_workers=0, schedule=ANNEAL)
    if name == "mo-dpo":
        from moalign.trainers.dpo import MultiObjectiveDPOConfig

        return MultiObjectiveDPOConfig(objectives=["a", "b"], beta=0.5, max_length=64, **common)
    from moalign.trainers.grpo import MultiObjectiveGRPOConfig

    return MultiObjectiveGRPOConfig(num_generations=4, max_completion_length=6, beta=0.0,
                                    temperature=1.0, constraints={"ascii": 0.99},
                                    lagrangian_lr=0.5, **common)


def _build(name: str, out: Path) -> Any:
    from moalign.models import tiny_causal_lm
    from moalign.trainers import runs
    from moalign.trainers.registry import TRAINERS as SPECS

    model, tok = tiny_causal_lm(0)
    if name == "mo-dpo":
        data = preference_pairs(32).remove_columns("margin_b")
    else:
        from datasets import Dataset

        data = Dataset.from_dict({"prompt": [f"Say something {i}:" for i in range(32)]})
    spec = SPECS[{"mo-dpo": "mo_dpo", "mo-grpo": "grpo", "mo-ppo": "ppo"}[name]]
    return runs.build_trainer(spec, _config(name, out), model, tok, data,
                              objectives=text_objectives() if name != "mo-dpo" else None,
                              peft_config=_lora())


def _adapter(trainer) -> dict[str, Any]:
    """The trained LoRA tensors of the policy, whole (ZeRO-3 partitions gathered): collective."""
    import deepspeed

    from moalign.trainers import runs

    policy = runs.trained_policy(trainer)
    named = [(n, p) for n, p in policy.named_parameters() if "lora_" in n]
    with deepspeed.zero.GatheredParameters([p for _, p in named]):
        return {n: p.detach().clone().cpu() for n, p in named}


def _step(trainer) -> int:
    return int(getattr(getattr(trainer, "state", None), "global_step", None)
               or getattr(trainer, "step", 0))


def _record(trainer, seen: dict[str, Any]) -> None:
    """Record the trade-off state at the first step the trainer runs (``start``) and at the
    end of step ``SAVE_AT`` (``at_save``)."""
    from moalign.storage.files import jsonable

    def state() -> Any:
        return jsonable(trainer.tradeoff.state_dict())

    if hasattr(trainer, "train_step"):  # MO-PPO: its own loop
        original = trainer.train_step

        def train_step():
            seen.setdefault("start", state())
            seen.setdefault("start_step", trainer.step)
            metrics = original()
            if trainer.step == SAVE_AT:
                seen["at_save"] = state()
            return metrics

        trainer.train_step = train_step
        return
    from transformers import TrainerCallback

    class Record(TrainerCallback):
        def on_step_begin(self, args, st, control, **kw):
            seen.setdefault("start", state())
            seen.setdefault("start_step", st.global_step)

        def on_step_end(self, args, st, control, **kw):
            if st.global_step == SAVE_AT:
                seen["at_save"] = state()

    trainer.add_callback(Record())


def _run_one(name: str, out: Path) -> dict[str, Any]:
    import torch
    from accelerate import PartialState

    from moalign.storage.checkpoints import check_trainer_checkpoint
    from moalign.storage.files import jsonable
    from moalign.trainers import runs

    state = PartialState()
    report: dict[str, Any] = {}
    for run in ("uninterrupted", "resumed"):
        start = time.perf_counter()
        trainer = _build(name, out / "trainer" if run == "uninterrupted" else out / "trainer-b")
        report.setdefault("fresh_state", jsonable(trainer.tradeoff.state_dict()))
        seen: dict[str, Any] = {}
        _record(trainer, seen)
        if run == "uninterrupted":
            trainer.train()
            # the checkpoint of step SAVE_AT, checked as a resume checks it (the run also
            # saved one at its last step)
            required = getattr(trainer, "resume_required", None) or ("trainer_state.json",)
            checkpoint = out / "trainer" / f"checkpoint-{SAVE_AT}"
            check_trainer_checkpoint(checkpoint, required)
            report["checkpoint"] = checkpoint.name
        else:
            trainer.train(str(checkpoint))
        seen["end"] = jsonable(trainer.tradeoff.state_dict())
        seen["steps"] = _step(trainer)
        seen["processes"] = trainer.accelerator.num_processes
        seen["distributed_type"] = str(trainer.accelerator.distributed_type).split(".")[-1]
        # under ZeRO-3 each process holds a slice of each parameter: the module's tensors
        # are empty outside a forward
        lora = [p for n, p in runs.trained_policy(trainer).named_parameters() if "lora_" in n]
        seen["partitioned"] = sum(p.numel() == 0 for p in lora)
        adapter = _adapter(trainer)
        seen["lora_B_max"] = max(float(v.abs().max()) for k, v in adapter.items()
                                 if "lora_B" in k)  # 0 when it starts: it trained
        runs.save_policy(trainer, out / run)  # every process: gathers, the main one writes
        if state.is_main_process:
            torch.save(adapter, out / f"{run}-trained.pt")
        seen["seconds"] = round(time.perf_counter() - start, 1)
        report[run] = seen
        del trainer
    return report


def worker(trainers: list[str], out: Path) -> None:
    """Run every trainer; the main process writes ``<out>/<trainer>/report.json``. An error
    ends every process (the launcher stops the others) after the main process wrote it down."""
    import torch
    from accelerate import PartialState

    torch.set_num_threads(1)
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    main = PartialState().is_main_process
    for name in trainers:
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        try:
            report = _run_one(name, folder)
        except Exception as exc:
            if main:
                (folder / "report.json").write_text(json.dumps(
                    {"error": f"{type(exc).__name__}: {exc}"}))
            raise
        if main:
            (folder / "report.json").write_text(json.dumps(report, indent=1))


# --------------------------------------------------------------------------------------------
# Driver: launch each stage, then check what was saved in this (fresh) process
# --------------------------------------------------------------------------------------------


def _reload(folder: Path) -> dict[str, Any]:
    """The LoRA tensors of the adapter saved in ``folder``, loaded by peft onto a fresh base."""
    from peft import PeftModel

    from moalign.models import tiny_causal_lm

    base, _ = tiny_causal_lm(0)
    with warnings.catch_warnings():  # transformers' deprecation notices, not findings
        warnings.simplefilter("ignore", FutureWarning)
        model = PeftModel.from_pretrained(base, str(folder))
    return {n: p.detach() for n, p in model.named_parameters() if "lora_" in n}


def check(name: str, folder: Path, stage: int) -> dict[str, Any]:
    """The figures and verdicts of one (trainer, stage) from the worker's files."""
    import torch

    report_file = folder / "report.json"
    if not report_file.is_file():
        return {"ok": False, "error": "no report (the run did not get this far)"}
    report = json.loads(report_file.read_text())
    if "error" in report:
        return {"ok": False, "error": report["error"]}
    a, b = report["uninterrupted"], report["resumed"]
    result: dict[str, Any] = {
        "processes": a["processes"], "distributed_type": a["distributed_type"],
        "checkpoint": report["checkpoint"], "resumed_from_step": b.get("start_step"),
        "steps": (a["steps"], b["steps"]), "seconds": a["seconds"] + b["seconds"],
        "multiplier": (a.get("at_save") or {}).get("constraints"),
        "schedule": (a.get("at_save") or {}).get("schedule"),
        "partitioned": a["partitioned"], "lora_B_max": a["lora_B_max"]}
    problems = []
    if a["lora_B_max"] == 0:
        problems.append("the adapter did not train (lora_B still 0)")
    trained = {}
    for run in ("uninterrupted", "resumed"):
        try:
            loaded = _reload(folder / run)
        except Exception as exc:  # a missing or unloadable adapter is a finding, not a crash
            problems.append(f"{run} policy does not reload: {type(exc).__name__}: {exc}")
            continue
        trained[run] = torch.load(folder / f"{run}-trained.pt", weights_only=True)
        result["tensors"] = len(loaded)
        empty = [k for k, v in loaded.items() if v.numel() == 0]
        if empty or not loaded:
            problems.append(f"{run} policy: {len(empty)} empty of {len(loaded)} tensors")
        elif set(loaded) != set(trained[run]) or not all(
                torch.equal(loaded[k], trained[run][k]) for k in loaded):
            problems.append(f"{run} policy reloads other tensors than it trained")
    result["saved"] = not problems
    if (a["partitioned"] == result.get("tensors")) != (stage == 3):
        problems.append(f"{a['partitioned']} of {result.get('tensors')} adapter tensors were "
                        f"partitioned under ZeRO-{stage}")
    if len(trained) == 2:
        result["adapter_diff"] = max(float((trained["uninterrupted"][k] - v).abs().max())
                                     for k, v in trained["resumed"].items())
    resumed = (report["checkpoint"] == f"checkpoint-{SAVE_AT}" and b.get("start_step") == SAVE_AT
               and b.get("start") == a.get("at_save") and a.get("at_save") is not None
               and a["at_save"] != report["fresh_state"] and a["steps"] == b["steps"] == STEPS
               and a["processes"] == 2 and a["distributed_type"] == "DEEPSPEED")
    if not resumed:
        problems.append("the resumed run did not start from the saved step and trade-off state")
    result["resumed"] = resumed
    result["same_end"] = a["end"] == b["end"]
    if not result["same_end"]:
        problems.append("the resumed run ended with another trade-off state")
    result["problems"] = problems
    result["ok"] = not problems
    return result


def _tradeoff_figures(r: dict[str, Any]) -> str:
    """The saved trade-off state in words: the schedule's position and the multipliers of the
    constrained objectives."""
    parts = []
    schedule = r.get("schedule") or {}
    if "t" in schedule:
        parts.append(f"schedule t={schedule['t']}")
    constraints = r.get("multiplier") or {}
    for name, threshold, value in zip(constraints.get("names") or [],
                                      constraints.get("thresholds") or [],
                                      constraints.get("multipliers") or []):
        if threshold is not None:
            parts.append(f"lambda_{name}={value:.4f}")
    return ", ".join(parts)


def launch(stage: int, trainers: list[str], tmp: Path, nproc: int, timeout: float
           ) -> tuple[int, float, str]:
    """``DS_ACCELERATOR=cpu accelerate launch`` of the worker under ZeRO-``stage``."""
    (tmp / "ds.json").write_text(json.dumps(deepspeed_config(stage)))
    (tmp / "accelerate.yaml").write_text(ACCELERATE_CONFIG.format(ds=tmp / "ds.json", nproc=nproc))
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "TOKENIZERS_PARALLELISM": "false", "TQDM_DISABLE": "1", "TRL_EXPERIMENTAL_SILENCE": "1"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
           str(tmp / "accelerate.yaml"), str(Path(__file__).resolve()), "--worker",
           str(tmp / "out"), "--trainers", *trainers]
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True,
                              timeout=timeout)
        code, log = proc.returncode, proc.stdout[-3000:] + proc.stderr[-6000:]
    except subprocess.TimeoutExpired as exc:
        code, log = -1, f"timed out after {timeout:.0f} s: {exc}"
    return code, time.perf_counter() - start, log


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", type=int, nargs="+", choices=STAGES, default=list(STAGES))
    parser.add_argument("--trainers", nargs="+", choices=TRAINERS, default=list(TRAINERS))
    parser.add_argument("--timeout", type=float, default=600, help="seconds per stage")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--keep", metavar="DIR", help="keep each stage's files in DIR/zero-<stage>")
    parser.add_argument("--worker", metavar="OUT", help=argparse.SUPPRESS)
    opts = parser.parse_args(argv)
    if opts.worker:
        worker(opts.trainers, Path(opts.worker))
        return 0
    import importlib.metadata as md
    import importlib.util

    if importlib.util.find_spec("deepspeed") is None:
        print("zero_check: deepspeed is not installed (pip install deepspeed)")
        return 2

    print("versions: " + ", ".join(f"{p} {md.version(p)}" for p in (
        "deepspeed", "torch", "transformers", "trl", "accelerate", "peft")))
    results: dict[str, Any] = {}
    start = time.perf_counter()
    for stage in opts.stage:
        with tempfile.TemporaryDirectory(prefix=f"moalign-zero{stage}-") as tmp:
            if opts.keep:
                tmp = Path(opts.keep) / f"zero-{stage}"
                tmp.mkdir(parents=True, exist_ok=True)
            code, seconds, log = launch(stage, opts.trainers, Path(tmp), 2, opts.timeout)
            for name in opts.trainers:
                r = check(name, Path(tmp) / "out" / name, stage)
                results[f"{name} zero-{stage}"] = r
                if r["ok"]:
                    print(f"{name:<8} ZeRO-{stage}  PASS  2 processes; resumed checkpoint-{SAVE_AT} "
                          f"from {_tradeoff_figures(r)} (= uninterrupted at step {SAVE_AT}), same "
                          f"end state; adapter {r['partitioned']}/{r['tensors']} tensors "
                          f"partitioned, saved and reloaded == trained (max|B| "
                          f"{r['lora_B_max']:.3f}); |resumed - uninterrupted| "
                          f"{r['adapter_diff']:.1e}; {r['seconds']:.1f} s")
                else:
                    what = r.get("error") or "; ".join(r["problems"])
                    print(f"{name:<8} ZeRO-{stage}  FAIL  {what}")
            if code != 0:
                print(f"ZeRO-{stage} launch exited {code} after {seconds:.0f} s; its log:\n{log}")
            print(f"ZeRO-{stage}: {seconds:.0f} s for {len(opts.trainers)} trainer(s)")
    print(f"total {time.perf_counter() - start:.0f} s")
    if opts.json:
        Path(opts.json).write_text(json.dumps(results, indent=2, default=str) + "\n")
    return 0 if results and all(r["ok"] for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
