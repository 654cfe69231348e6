"""MO-DPO with LoRA under DeepSpeed ZeRO-3 on 2 CPU processes: train, save, check, resume.

Needs ``deepspeed`` (not a moalign dependency; ``pip install deepspeed`` installs it without
building its ops). Run::

    python scripts/zero3_check.py            # launches itself with accelerate, prints a report

It writes a DeepSpeed accelerate config (ZeRO-3, 2 processes, ``mixed_precision: no``,
``use_cpu: false``, ``stage3_param_persistence_threshold: 0`` so that even the tiny model's
parameters are partitioned) and runs ``DS_ACCELERATOR=cpu accelerate launch`` on ``--worker``,
which trains MO-DPO (LoRA, anneal schedule, ``use_cpu=False``, ``ddp_backend="gloo"``) for 2
steps saving a checkpoint at step 2, saves the policy with
:func:`moalign.trainers.runs.train_and_save`, then resumes from the checkpoint to step 3.
The main process checks: the saved adapter has no empty tensor, the checkpoint is found by
:func:`moalign.storage.checkpoints.latest_checkpoint`, and the resumed run starts from the
saved trade-off state. Exit status 0 when every check passes.
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

ROOT = Path(__file__).resolve().parents[1]

ACCELERATE_CONFIG = """compute_environment: LOCAL_MACHINE
distributed_type: DEEPSPEED
deepspeed_config:
  deepspeed_config_file: {ds}
  zero3_init_flag: false
num_machines: 1
machine_rank: 0
num_processes: 2
use_cpu: false
main_training_function: main
rdzv_backend: static
same_network: true
"""

DEEPSPEED_CONFIG = {
    "zero_optimization": {"stage": 3, "stage3_param_persistence_threshold": 0,
                          "stage3_gather_16bit_weights_on_model_save": False},
    "train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": "auto",
    "gradient_clipping": "auto", "bf16": {"enabled": False}, "fp16": {"enabled": False},
}


def worker(out: Path) -> None:
    sys.path.insert(0, str(ROOT))  # the repository root: the tests' helpers are tests.support
    from accelerate import PartialState
    from peft import LoraConfig

    from moalign.models import tiny_causal_lm
    from moalign.storage.checkpoints import latest_checkpoint
    from moalign.trainers import runs
    from moalign.trainers.dpo import MultiObjectiveDPOConfig
    from moalign.trainers.registry import TRAINERS
    from tests.support.dpo_testkit import conflicting_pairs

    anneal = {"name": "anneal", "start": [1.0, 0.0], "end": [0.0, 1.0], "steps": 10}

    def config(steps: int) -> MultiObjectiveDPOConfig:
        return MultiObjectiveDPOConfig(
            output_dir=str(out / "trainer"), use_cpu=False, ddp_backend="gloo", bf16=False,
            gradient_checkpointing=False, report_to="none", per_device_train_batch_size=4,
            learning_rate=5e-2, max_steps=steps, logging_steps=1, save_strategy="steps",
            save_steps=2, seed=0, disable_tqdm=True, beta=0.5, max_length=64,
            objectives=["a", "b"], schedule=anneal)

    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    state = PartialState()
    report: dict = {"distributed_type": str(state.distributed_type),
                    "num_processes": state.num_processes}
    model, tok = tiny_causal_lm(0)
    record = runs.train_and_save(TRAINERS["mo_dpo"], config(2), model, tok, conflicting_pairs(16),
                                 out / "adapter", peft_config=lora, print_metrics=False)
    report["steps"] = record["steps"]
    checkpoint = latest_checkpoint(out / "trainer", ("moalign_state.json",))
    report["checkpoint"] = None if checkpoint is None else checkpoint.name
    if state.is_main_process:
        report["checkpoint_files"] = sorted(str(p.relative_to(out / "trainer"))
                                            for p in (out / "trainer").rglob("*") if p.is_file())
        from safetensors import safe_open

        with safe_open(str(out / "adapter" / "adapter_model.safetensors"), "pt") as f:
            shapes = {k: list(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
        report["adapter_tensors"] = len(shapes)
        report["empty_adapter_tensors"] = sum(0 in s for s in shapes.values())
    seen: dict = {}
    original = runs.build_trainer

    def build(*a, **k):
        trainer = original(*a, **k)
        from transformers import TrainerCallback

        class First(TrainerCallback):
            def on_step_begin(self, args, st, control, **kw):
                seen.setdefault("t", trainer.tradeoff.schedule.t)

        trainer.add_callback(First())
        seen["trainer"] = trainer
        return trainer

    runs.build_trainer = build
    model, tok = tiny_causal_lm(0)
    runs.train_and_save(TRAINERS["mo_dpo"], config(3), model, tok, conflicting_pairs(16),
                        out / "adapter-resumed", peft_config=lora, print_metrics=False,
                        resume_from=None if checkpoint is None else str(checkpoint))
    report["resumed_schedule_t_at_first_step"] = seen.get("t")
    report["resumed_global_step"] = seen["trainer"].state.global_step
    report["trainer_processes"] = seen["trainer"].accelerator.num_processes
    if state.is_main_process:
        (out / "report.json").write_text(json.dumps(report, indent=2))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", metavar="OUT")
    opts = parser.parse_args()
    if opts.worker:
        worker(Path(opts.worker))
        return 0
    with tempfile.TemporaryDirectory(prefix="moalign-zero3-") as tmp:
        tmp_path = Path(tmp)
        (tmp_path / "ds.json").write_text(json.dumps(DEEPSPEED_CONFIG))
        (tmp_path / "accelerate.yaml").write_text(ACCELERATE_CONFIG.format(ds=tmp_path / "ds.json"))
        env = {**os.environ, "DS_ACCELERATOR": "cpu", "HF_HUB_OFFLINE": "1",
               "TOKENIZERS_PARALLELISM": "false"}
        launcher = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                    str(tmp_path / "accelerate.yaml"), str(Path(__file__).resolve()),
                    "--worker", str(tmp_path / "out")]
        start = time.perf_counter()
        proc = subprocess.run(launcher, env=env, cwd=ROOT, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        report_file = tmp_path / "out" / "report.json"
        if proc.returncode != 0 or not report_file.is_file():
            print(proc.stdout[-4000:], proc.stderr[-8000:], sep="\n")
            print(f"FAILED (exit {proc.returncode}, {seconds:.0f} s)")
            return 1
        report = json.loads(report_file.read_text())
    report["seconds"] = round(seconds, 1)
    print(json.dumps(report, indent=2))
    ok = (report["empty_adapter_tensors"] == 0 and report["adapter_tensors"] > 0
          and report["checkpoint"] == "checkpoint-2"
          and report["resumed_schedule_t_at_first_step"] == 2
          and report["resumed_global_step"] == 3 and report["trainer_processes"] == 2)
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
