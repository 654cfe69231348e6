"""RL fronts survive SIGKILL: a trace killed in a child process right after its first point is
published resumes to a complete front, training and evaluating only what was not finished.

For each front (GRPO sweep, GRPO soup, PPO sweep, conditioned GRPO, adaptive GRPO sweep) the
child is killed once; the resume runs in this process with the trainer and the evaluation
watched, so a finished run or point that was computed again fails the test, and every record
finished before the kill must be byte-identical afterwards.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from moalign.storage.checkpoints import scan_trace
from tests.support import ascii_task

ROOT = Path(__file__).resolve().parents[2]
# the child imports tests.support.ascii_task: the repository root goes on its PYTHONPATH
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1",
       "TOKENIZERS_PARALLELISM": "false",
       "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
CHILD = textwrap.dedent("""
    import json, sys
    import torch
    torch.set_num_threads(1)
    from tests.support import ascii_task
    ascii_task.register()
    from moalign.fronts.trace import trace_front
    print("ready", flush=True)
    trace_front(json.loads(sys.argv[1]))
""")
SMALL = {"grpo": {**ascii_task.GRPO_TRAIN, "max_steps": 8},
         "ppo": {**ascii_task.PPO_TRAIN, "max_steps": 3}}
CASES = {
    "grpo-sweep": dict(trainer="grpo", method="sweep", grid=2),
    "grpo-soup": dict(trainer="grpo", method="soup", grid=2),
    "ppo-sweep": dict(trainer="ppo", method="sweep", grid=1),
    "conditioned-grpo": dict(trainer="grpo", method="conditioned", grid=2),
    "adaptive-grpo-sweep": dict(trainer="grpo", method="sweep", grid=1, weights="adaptive",
                                points=4, reference_point=[0.0, 0.0]),
}


def _records(out: Path) -> dict[str, str]:
    found = {}
    for pattern in ("runs/*/run.json", "points/*/point.json", "baseline/point.json",
                    "adaptive.json"):
        for path in out.glob(pattern):
            if not any(part.startswith(".") for part in path.relative_to(out).parts):
                found[str(path.relative_to(out))] = path.read_text()  # published, not temporary
    return found


def _kill_after_first_point(cfg: dict, out: Path, timeout: float = 900) -> dict[str, str]:
    """Run the trace in a child; SIGKILL it as soon as a point (not the baseline) is published
    (for an adaptive front: its first adaptive point). Returns the records finished by then."""
    need = 3 if cfg.get("weights") == "adaptive" else 1
    proc = subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(cfg)], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready", proc.stderr.read()[-3000:]
    start = time.perf_counter()
    while sum(k.startswith("points/") for k in _records(out)) < need:
        assert proc.poll() is None, f"the trace ended before it was killed: {proc.stderr.read()[-3000:]}"
        assert time.perf_counter() - start < timeout
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    return _records(out)


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_rl_front_killed_after_its_first_point_resumes_without_recomputing(case, tmp_path,
                                                                           monkeypatch):
    import moalign.fronts.runs
    import moalign.fronts.trace
    from moalign.fronts.trace import trace_front

    ascii_task.register()
    out = tmp_path / "front"
    changes = dict(CASES[case])
    cfg = ascii_task.front_config(out, train=SMALL[changes["trainer"]], **changes)
    kept = _kill_after_first_point(cfg, out)
    finished_runs = {Path(k).parent.name for k in kept if k.startswith("runs/")}
    finished_points = {Path(k).parent.name for k in kept if k.startswith("points/")}
    assert finished_points

    trained, evaluated = [], []
    train_run, evaluate = moalign.fronts.runs.train_run, moalign.fronts.trace.evaluate_front_policy

    def watched_train(ctx, out_dir, *, run_id, **kw):
        trained.append(run_id)
        return train_run(ctx, out_dir, run_id=run_id, **kw)

    def watched_evaluate(cfg, ctx, policy):
        evaluated.append(policy)
        return evaluate(cfg, ctx, policy)

    monkeypatch.setattr(moalign.fronts.runs, "train_run", watched_train)
    monkeypatch.setattr(moalign.fronts.trace, "evaluate_front_policy", watched_evaluate)
    front = trace_front(cfg)

    assert not set(trained) & finished_runs, (trained, finished_runs)
    expected = cfg["points"] if case.startswith("adaptive") else (3 if cfg["grid"] == 2 else 2)
    assert len(front.points) == expected
    assert len(evaluated) == expected - len(finished_points)  # the baseline was finished too
    final = _records(out)
    for name, content in kept.items():
        if name == "adaptive.json":  # choices are only ever appended
            before, after = json.loads(content)["chosen"], json.loads(final[name])["chosen"]
            assert after[: len(before)] == before
        else:
            assert final[name] == content, name
    status = scan_trace(out)
    assert status.ok, status.problems
    assert json.loads((out / "front.json").read_text())["metadata"]["trainer"] == cfg["trainer"]
