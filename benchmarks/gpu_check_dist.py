"""Worker of the distributed checks of ``benchmarks/gpu_check.sh`` (launched by
:func:`gpu_check_more.distributed_check` under ``accelerate launch`` with a DeepSpeed or FSDP2
config): MO-DPO with LoRA and an annealed weight schedule trains 2 steps saving a checkpoint
at step 2 and its adapter (:func:`moalign.trainers.runs.train_and_save`, which gathers sharded
weights), the adapter is reloaded onto a fresh base and compared with the saved tensors, and
the run resumes from the checkpoint to step 3: the schedule must start where it was saved.
The main process writes ``<out>/report.json``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _config(out: Path, steps: int, cpu: bool, max_length: int):
    from moalign.trainers.dpo import MultiObjectiveDPOConfig

    anneal = {"name": "anneal", "start": [1.0, 0.0], "end": [0.0, 1.0], "steps": 10}
    return MultiObjectiveDPOConfig(
        output_dir=str(out / "trainer"), use_cpu=False, bf16=not cpu,
        ddp_backend="gloo" if cpu else None, gradient_checkpointing=False, report_to="none",
        per_device_train_batch_size=4, learning_rate=5e-2, max_steps=steps, logging_steps=1,
        save_strategy="steps", save_steps=2, seed=0, disable_tqdm=True, beta=0.5,
        max_length=max_length, objectives=["helpfulness", "harmlessness"], schedule=anneal)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--model", default="tiny")
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--cpu", action="store_true")
    opts = p.parse_args()
    out = Path(opts.out)
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import torch
    from accelerate import PartialState
    from gpu_check import dpo_pairs
    from peft import LoraConfig, PeftModel
    from safetensors.torch import load_file

    from moalign.models.specs import load_model_spec
    from moalign.storage.checkpoints import latest_checkpoint
    from moalign.trainers import runs
    from moalign.trainers.registry import TRAINERS

    state = PartialState()
    report: dict = {"distributed_type": str(state.distributed_type).split(".")[-1],
                    "num_processes": state.num_processes}
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    model, tok = load_model_spec(opts.model, seed=0)
    data = dpo_pairs(tok, 16, opts.max_length // 2)
    record = runs.train_and_save(TRAINERS["mo_dpo"], _config(out, 2, opts.cpu, opts.max_length),
                                 model, tok, data, out / "adapter", peft_config=lora,
                                 print_metrics=False)
    report["steps"] = record["steps"]
    checkpoint = latest_checkpoint(out / "trainer", ("moalign_state.json",))
    report["checkpoint"] = None if checkpoint is None else checkpoint.name
    report["saved_step"] = 2
    if state.is_main_process:
        saved = load_file(str(out / "adapter" / "adapter_model.safetensors"))
        report["adapter_tensors"] = len(saved)
        report["empty_adapter_tensors"] = sum(t.numel() == 0 for t in saved.values())
        fresh, _ = load_model_spec(opts.model, seed=0)
        reloaded = PeftModel.from_pretrained(fresh, str(out / "adapter"))
        mine = {k: v for k, v in reloaded.state_dict().items() if "lora_" in k}
        wanted = {k.replace(".weight", ".default.weight"): v for k, v in saved.items()}
        report["reloaded"] = set(mine) == set(wanted) and all(
            torch.equal(mine[k].cpu().float(), v.float()) for k, v in wanted.items())
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
    model, tok = load_model_spec(opts.model, seed=0)
    runs.train_and_save(TRAINERS["mo_dpo"], _config(out, 3, opts.cpu, opts.max_length), model,
                        tok, data, out / "adapter-resumed", peft_config=lora,
                        print_metrics=False,
                        resume_from=None if checkpoint is None else str(checkpoint))
    report["resumed_schedule_t"] = seen.get("t")
    report["resumed_global_step"] = seen["trainer"].state.global_step
    if state.is_main_process:
        (out / "report.json").write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
