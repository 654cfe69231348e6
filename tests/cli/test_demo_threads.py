"""The demo's torch threads: the cores idle at start, measured from the kernel's per-core times
(niced work yields its core and is not counted), or ``--threads N``."""

from __future__ import annotations

import os

import pytest

from moalign.cli import demo


def _stat(tmp_path, name, rows):
    """A /proc/stat with one ``cpu`` total line and ``rows`` of (user, nice, system, idle)."""
    lines = ["cpu  0 0 0 0 0 0 0 0 0 0"]
    lines += [f"cpu{i} {u} {n} {s} {d} 0 0 0 0 0 0" for i, (u, n, s, d) in enumerate(rows)]
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\nintr 0\n")
    return str(path)


def _watch(tmp_path, monkeypatch, before, after, cores=(0, 1)):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(cores))
    files = iter([_stat(tmp_path, "a", before), _stat(tmp_path, "b", after)])
    real = demo._cpu_times
    monkeypatch.setattr(demo, "_cpu_times", lambda stat="/proc/stat": real(next(files)))
    monkeypatch.setattr(demo.time, "sleep", lambda s: None)
    return demo.idle_cores()


def test_niced_work_does_not_count_but_normal_work_does(tmp_path, monkeypatch):
    # core 0: 90 of 100 ticks niced (a background job); core 1: 90 of 100 ticks of user work
    idle, usable, how = _watch(tmp_path, monkeypatch, [(0, 0, 0, 0), (0, 0, 0, 0)],
                               [(5, 90, 0, 5), (80, 0, 10, 10)])
    assert (idle, usable) == (1, 2)
    assert "1 idle" in how and "niced work not counted" in how


def test_an_idle_machine_gets_every_core(tmp_path, monkeypatch):
    assert _watch(tmp_path, monkeypatch, [(0, 0, 0, 0)] * 2, [(2, 0, 1, 97)] * 2)[:2] == (2, 2)


def test_all_busy_still_gets_one_thread(tmp_path, monkeypatch):
    assert _watch(tmp_path, monkeypatch, [(0, 0, 0, 0)] * 2, [(99, 0, 1, 0)] * 2)[:2] == (1, 2)


def test_only_the_cores_this_process_may_use_count(tmp_path, monkeypatch):
    # the process may run on core 1 only; core 0 is idle but not ours
    assert _watch(tmp_path, monkeypatch, [(0, 0, 0, 0)] * 2, [(0, 0, 0, 100), (0, 0, 0, 100)],
                  cores=(1,))[:2] == (1, 1)


def test_unreadable_times_mean_every_core(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2})
    monkeypatch.setattr(demo, "_cpu_times", lambda stat="/proc/stat": open("/nonexistent"))
    assert demo.idle_cores()[:2] == (3, 3)


def test_the_real_proc_stat_is_read():
    if not os.path.exists("/proc/stat"):
        pytest.skip("no /proc/stat on this system")
    idle, usable, _ = demo.idle_cores(window=0.05)
    assert 1 <= idle <= usable == len(os.sched_getaffinity(0))


@pytest.mark.parametrize("bad", ["0", "-2", "two"])
def test_threads_flag_is_checked(bad):
    import argparse

    with pytest.raises(argparse.ArgumentTypeError, match="thread"):
        demo._positive_int(bad)


def test_bfloat16_buys_the_default_demo_more_pairs(monkeypatch):
    """Where the default preset runs in bfloat16 it trains and evaluates on more pairs; in
    float32 it keeps the preset; what the user gives still decides."""
    monkeypatch.setenv("MOALIGN_CPU_BF16", "1")
    data, _ = demo.demo_config("default", None, {})
    assert (data["train_pairs"], data["eval_pairs"], data["train"]["max_steps"]) == (96, 250, 24)
    assert data["train"]["learning_rate"] == demo.DEFAULT_PRESET["train"]["learning_rate"]
    forced, _ = demo.demo_config("default", None, {"precision": "float32"})
    assert (forced["train_pairs"], forced["eval_pairs"], forced["train"]["max_steps"]) == (
        demo.DEFAULT_PRESET["train_pairs"], demo.DEFAULT_PRESET["eval_pairs"], 16)
    mine, _ = demo.demo_config("default", None, {"eval_pairs": 40, "train": {"max_steps": 2}})
    assert (mine["eval_pairs"], mine["train"]["max_steps"], mine["train_pairs"]) == (40, 2, 96)
    monkeypatch.setenv("MOALIGN_CPU_BF16", "0")
    plain, _ = demo.demo_config("default", None, {})
    assert plain["eval_pairs"] == demo.DEFAULT_PRESET["eval_pairs"]
    monkeypatch.setenv("MOALIGN_CPU_BF16", "1")
    tiny, _ = demo.demo_config("tiny", None, {})
    assert tiny["eval_pairs"] == demo.TINY_PRESET["eval_pairs"]  # the tiny preset is fixed
