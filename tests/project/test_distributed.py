"""Two processes (gloo, CPU) give the same training as one process with the same global batch.

``scripts/dist_check.py`` trains MO-DPO (with and without precomputed reference log-probs of an
in-memory dataset, on partially labelled pairs with ``label_normalization="batch"``, and on
half-labelled pairs -- each labelled for one objective only -- with the default ``"objective"``
normalization, with and without gradient accumulation), MODPO, MO-GRPO and MO-PPO for a few
steps on a tiny Llama with LoRA, once in one process and once under ``torchrun
--nproc_per_node 2``, and compares the logged losses (rewards for the online trainers) and the
trained parameters. A negative control doubles the global batch of the two-process run and
must be caught. (Before the labelled-pair counts covered the whole optimizer step, the
half-labelled runs differed between 1 and 2 processes by ~1e-2 in the parameters.)

MO-GRPO also runs with one group spanning both processes (``mo-grpo-span``), MO-PPO also with
whitened advantages (``mo-ppo-whiten``), a batch normalizer of the per-token objective
advantages (``mo-ppo-normalize``) and a running normalizer with a constraint
(``mo-ppo-running``). Before the scalarizer combined the gathered global batch, the last two
differed by 2.5e-2 and 2.2e-2 in the parameters (whitening with per-process moments: 2.2e-2).
``mo-ppo-ragged`` gives the responses different lengths, so the two processes hold different
numbers of response tokens; with the policy and value losses averaged over each process's own
tokens (before they were normalized by the global token count) it differed by 2.65e-2 in the
parameters (MO-PPO's compared parameters include the vector critic's).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.scripts import load_script

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "dist_check.py"


def _run(tmp_path: Path, *args: str) -> tuple[int, dict, str]:
    out = tmp_path / "report.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--json", str(out), *args], env=env,
                          capture_output=True, text=True, timeout=900)
    report = json.loads(out.read_text()) if out.is_file() else {}
    return proc.returncode, report, proc.stdout + proc.stderr[-3000:]


def test_seeded_sampling_does_not_depend_on_the_split():
    """The sampler the online trainers use in the check: a response is the same whether it
    is drawn in one batch or in another process's half of it."""
    from moalign.models import tiny_causal_lm

    dc = load_script("dist_check")
    model, tok = tiny_causal_lm(0)
    prompts = [tok(f"p{i}:")["input_ids"] for i in range(4)]
    seeds = [dc._row_seed(p, j, 0) for p, j in zip(prompts, dc._occurrences(prompts))]
    suppress = [tok.eos_token_id, tok.pad_token_id]
    whole = dc.seeded_sample(model, prompts, seeds, 5, suppress)
    halves = (dc.seeded_sample(model, prompts[:2], seeds[:2], 5, suppress)
              + dc.seeded_sample(model, prompts[2:], seeds[2:], 5, suppress))
    assert whole == halves
    assert all(len(c) == 5 and not set(c) & set(suppress) for c in whole)
    assert len({tuple(c) for c in whole}) == 4  # really sampled: distinct responses
    # two samples of the same prompt in a group get distinct seeds
    assert dc._occurrences(["a", "b", "a", "a"]) == [0, 0, 1, 2]


EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "accelerate"


@pytest.mark.parametrize("name, kind, extra", [
    ("cpu_2proc.yaml", "MULTI_GPU", {}),
    ("ddp.yaml", "MULTI_GPU", {}),
    ("deepspeed_zero2.yaml", "DEEPSPEED", {"zero_stage": 2}),
    ("deepspeed_zero3.yaml", "DEEPSPEED", {"zero_stage": 3}),
    ("fsdp.yaml", "FSDP", {"fsdp_version": 2}),
])
def test_example_accelerate_configs_load(name, kind, extra):
    from accelerate.commands.config.config_args import load_config_from_file

    cfg = load_config_from_file(str(EXAMPLES / name))
    assert cfg.distributed_type.value == kind
    assert cfg.num_processes >= 2
    # `use_cpu: true` (like `--cpu`) makes accelerate start ONE process whatever num_processes says
    assert cfg.use_cpu is False
    section = {**(cfg.deepspeed_config or {}), **(cfg.fsdp_config or {})}
    for key, value in extra.items():
        assert section[key] == value


@pytest.mark.slow
def test_two_processes_match_one_process(tmp_path):
    rc, report, log = _run(tmp_path)
    assert set(report) == {"mo-dpo", "mo-dpo-precompute", "mo-dpo-partial", "mo-dpo-half",
                           "mo-dpo-half-accumulate", "modpo", "mo-grpo", "mo-grpo-span",
                           "mo-ppo", "mo-ppo-whiten", "mo-ppo-normalize", "mo-ppo-running",
                           "mo-ppo-ragged"}, log
    for name, r in report.items():
        assert "error" not in r, (name, r.get("error"), log)
        assert r["ok"], (name, r, log)
        # the parameters moved far more than the two runs differ
        assert r["param_change"] > 1e3 * max(r["max_param_diff"], 1e-9), (name, r)
        assert len(r["losses_1"]) >= 3
    assert rc == 0, log
    # precomputing reference log-probs changes nothing (same losses as computing them live)
    assert report["mo-dpo-precompute"]["losses_2"] == pytest.approx(
        report["mo-dpo"]["losses_2"], abs=1e-6)
    # half-labelled data: a step of 8 pairs as 1 x 8, 2 x 4 (accumulated) or 2 processes x 2 x 2
    # gives the same losses (the labelled-pair counts are those of the whole optimizer step)
    for runs in ("losses_1", "losses_2"):
        assert report["mo-dpo-half-accumulate"][runs] == pytest.approx(
            report["mo-dpo-half"]["losses_1"], abs=1e-5)


@pytest.mark.slow
def test_a_different_global_batch_is_caught(tmp_path):
    rc, report, log = _run(tmp_path, "--trainers", "mo-dpo", "--steps", "2", "--mismatch")
    assert rc == 1, log
    assert report["mo-dpo"]["ok"] is False
    assert report["mo-dpo"]["max_param_diff"] > 1e-4
