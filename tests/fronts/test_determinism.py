"""Same configuration and seed, same front: bit-identical on CPU.

Two traces of the tiny demo run one after the other in this process, each in a fresh output
folder (so nothing is resumed), and everything they produce is compared exactly: the scores and
standard errors in ``front.json``, the training losses, and every tensor of every trained and
interpolated adapter. Running both in one process also shows that a trace does not depend on
global random state left behind by an earlier one.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

TRACE = dict(method="soup", model="tiny", train_pairs=16, eval_pairs=8, grid=2,
             train={"max_steps": 2, "per_device_train_batch_size": 2, "max_length": 64},
             lora={"r": 4, "lora_alpha": 8}, max_length=64, progress=False)


def _front(out: Path) -> dict:
    front = json.loads((out / "front.json").read_text())
    front.pop("cost")  # wall-clock seconds
    return front


def _tensors(out: Path) -> dict[str, dict]:
    from safetensors.torch import load_file

    return {str(p.relative_to(out)): load_file(str(p))
            for p in sorted(out.rglob("adapter_model.safetensors"))}


@pytest.mark.slow
def test_same_config_and_seed_give_a_bit_identical_front(tmp_path):
    import torch

    from moalign.fronts.trace import trace_front

    outs = [tmp_path / "first", tmp_path / "second"]
    for out in outs:
        trace_front({**TRACE, "output_dir": str(out)})
    first, second = (_front(o) for o in outs)
    assert [p["scores"] for p in first["points"]] == [p["scores"] for p in second["points"]]
    assert first == second  # stderr, reference point, hypervolume, baseline: all exact

    losses = [[json.loads(p.read_text())["final_loss"] for p in sorted(o.glob("runs/*/run.json"))]
              for o in outs]
    assert len(losses[0]) == 2 and losses[0] == losses[1]

    a, b = (_tensors(o) for o in outs)
    assert sorted(a) == sorted(b) and len(a) == 5  # 2 runs + 3 soup points
    for name in a:
        assert a[name].keys() == b[name].keys()
        for key in a[name]:
            assert torch.equal(a[name][key], b[name][key]), (name, key)
    # the comparison can fail: the two objectives' runs trained different adapters
    helpful = a["runs/only_helpfulness/adapter/adapter_model.safetensors"]
    harmless = a["runs/only_harmlessness/adapter/adapter_model.safetensors"]
    assert any(not torch.equal(helpful[k], harmless[k]) for k in helpful)
