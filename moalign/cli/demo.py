"""``moalign demo``: trace a helpfulness / harmlessness front end to end, offline.

Two presets, each a complete :class:`moalign.fronts.trace.FrontConfig` mapping:

- :data:`DEFAULT_PRESET`: the embedded SmolLM2-135M-Instruct SFT checkpoint with LoRA, the
  bundled HH-RLHF helpful-base / harmless-base pairs, one DPO run per objective then Rewarded
  Soups (Ramé et al. 2023) at 3 weight vectors, each point and the starting policy scored by
  held-out implicit-reward accuracy per objective (generation-free) on the same pairs;
- :data:`TINY_PRESET` (``--tiny``): the same pipeline on a random tiny model, in seconds (the
  tests run it).

After the front, the demo prints, for one held-out harmlessness prompt, the replies of the
starting policy and of the two end points (all weight on one objective), how long each phase
took (conversion of the embedded checkpoint, training, evaluation, replies, the rest) and the
precision it ran in (``precision: auto``: bfloat16 on a CPU with AMX-BF16 / AVX512-BF16 units
or a CUDA GPU, float32 elsewhere).

``--config FILE.yaml`` and ``--key value`` override any preset key (``--grid 10``,
``--train.max_steps 4``); ``--model`` puts any checkpoint in place of the preset's;
``--output DIR`` chooses where the runs, points, ``front.json`` and ``front.png`` go. Rerunning
the same command resumes: finished runs and points are reused.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from moalign.cli._output import format_table, quiet_library_output
from moalign.cli.trace import precision_header
from moalign.config.checking import read_config
from moalign.config.loading import merge
from moalign.fronts.config import resolve_front_config

HELP = "trace a helpfulness/harmlessness Pareto front end to end, offline (--tiny: in seconds)"

#: ``--tiny``: a random 2-layer model, so the whole pipeline runs in seconds (used by the tests).
#: 16 training pairs per objective, 2 DPO steps of 4 pairs per run (a high learning rate so
#: that 2 steps move the policy), 16 held-out pairs per objective for each point.
TINY_PRESET: dict[str, Any] = {
    "method": "soup",
    "model": "tiny",
    "dataset": "hh-rlhf",
    "objectives": ["helpfulness", "harmlessness"],
    "metric": "implicit",
    "grid": 4,
    "train_pairs": 16,
    "eval_pairs": 16,
    "max_length": 96,
    "train": {"max_steps": 2, "per_device_train_batch_size": 4, "learning_rate": 1e-2,
              "max_length": 96, "max_prompt_tokens": 48},
    # all-linear without dropout: the adapters the tiny demo has always traced
    "lora": {"r": 4, "lora_alpha": 8, "target_modules": "all-linear", "lora_dropout": 0.0},
}

#: The default demo. Every number that sets its run time is here, so it can be tuned by
#: measurement on the target machine. Cost model on a 2-core CPU (float32): one LoRA DPO step of
#: 4 pairs at 128 tokens takes ~8 s, so the two runs cost ~2 x 16 x 8 s; evaluation is 5
#: log-probability passes over the 2 x ``eval_pairs`` held-out pairs (chosen and rejected, ~86
#: tokens each): the shared reference, the starting policy and the 3 points, at ~370 tokens/s.
#: See the README for the measured times and intervals.
DEFAULT_PRESET: dict[str, Any] = {
    "method": "soup",
    "model": "smollm2",
    "dataset": "hh-rlhf",
    "objectives": ["helpfulness", "harmlessness"],
    "metric": "implicit",
    "grid": 2,  # the two end points and the middle
    "train_pairs": 64,  # = max_steps x per_device_train_batch_size: each pair seen once
    "eval_pairs": 200,  # per objective; the same pairs for every point, so comparisons are paired
    "max_length": 128,  # tokens of prompt + reply in evaluation
    "train": {"max_steps": 16, "per_device_train_batch_size": 4, "learning_rate": 1e-3,
              "beta": 0.1, "max_length": 128, "max_prompt_tokens": 48},
    "lora": {"r": 16, "lora_alpha": 32, "lora_dropout": 0.0,
             "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]},
}

#: Where the default preset runs in bfloat16 (a CPU with bfloat16 units, a CUDA GPU), its speed
#: (about 2x float32 on such a CPU) buys more training pairs and more held-out pairs, so that both
#: spans stand clear of noise in either precision at a similar wall time (see the README). Keys
#: given in ``--config`` or on the command line still decide.
BFLOAT16_BUDGET: dict[str, Any] = {
    "train_pairs": 96,
    "eval_pairs": 250,
    "train": {"max_steps": 24},
}

PRESETS: dict[str, dict[str, Any]] = {"default": DEFAULT_PRESET, "tiny": TINY_PRESET}
#: Where each preset writes by default (relative to the working directory).
DEFAULT_OUTPUT: dict[str, str] = {"default": "moalign-demo", "tiny": "moalign-demo-tiny"}
#: CPU threads of torch per preset (None: torch's default; ``"idle"``: :func:`idle_cores`); the
#: ``--threads N`` flag overrides it. A tiny model runs many times faster on one thread: with
#: more, thread synchronization costs more than the arithmetic. SmolLM2 uses the cores that are
#: idle when the demo starts: on a 2-core CPU that another job keeps busy, 2 threads ran a
#: forward pass 2x and greedy generation 5x slower than 1 (each waits for the other to be
#: scheduled), while niced work yields its core and is not counted.
TORCH_THREADS: dict[str, int | str | None] = {"default": "idle", "tiny": 1}
#: Seconds over which :func:`idle_cores` watches the cores.
IDLE_WINDOW = 0.3
#: A core busier than this (share of the window, niced work not counted) is not idle.
BUSY_SHARE = 0.5


def _cpu_times(stat: str = "/proc/stat") -> dict[str, tuple[int, int]]:
    """Per core: (ticks of work that competes with ours, total ticks), from ``/proc/stat``.
    Niced work (``nice``), idle and I/O wait do not compete; user, system, interrupts and steal
    do."""
    times = {}
    with open(stat) as f:
        for line in f:
            name, *fields = line.split()
            if not (name.startswith("cpu") and name != "cpu"):
                continue
            user, nice, system, idle, iowait, irq, softirq, steal = (
                [int(x) for x in fields[:8]] + [0] * 8)[:8]
            times[name] = (user + system + irq + softirq + steal,
                           user + nice + system + idle + iowait + irq + softirq + steal)
    return times


def idle_cores(window: float = IDLE_WINDOW, stat: str = "/proc/stat") -> tuple[int, int, str]:
    """``(idle, usable, how)``: how many of the cores this process may run on were idle over
    ``window`` seconds, measured from the kernel's per-core times (a core counts as busy when
    non-niced work took more than :data:`BUSY_SHARE` of it), at least 1; ``how`` says how it
    was decided. Where the times cannot be read, every usable core counts as idle.

    Niced work yields to ours only within one scheduling group: where the kernel groups
    processes by session (``/proc/sys/kernel/sched_autogroup_enabled``), a niced job started
    from another terminal competes as an equal unless its group is niced too (``echo 19 >
    /proc/<pid>/autogroup``); ``--threads N`` then decides."""
    import os

    try:
        allowed = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        allowed = list(range(os.cpu_count() or 1))
    usable = len(allowed)
    try:
        before = _cpu_times(stat)
        time.sleep(window)
        after = _cpu_times(stat)
    except (OSError, ValueError):
        return usable, usable, "every core: the per-core times could not be read"
    busy = 0
    for core in allowed:
        name = f"cpu{core}"
        if name not in before or name not in after:
            continue
        work = after[name][0] - before[name][0]
        total = after[name][1] - before[name][1]
        if total > 0 and work / total > BUSY_SHARE:
            busy += 1
    idle = max(1, usable - busy)
    return idle, usable, (f"{usable - busy} idle over {window:.1f} s, niced work not counted"
                          if busy < usable else f"all {usable} busy over {window:.1f} s: 1")


@contextlib.contextmanager
def torch_threads(n: int | str | None) -> Iterator[None]:
    """Run the body with ``n`` torch CPU threads (unchanged when None; ``"idle"``:
    :func:`idle_cores`), then restore."""
    if n is None:
        yield
        return
    import torch

    if n == "idle":
        n, usable, how = idle_cores()
        print(f"torch threads: {n} of {usable} cores ({how}; --threads N chooses)", flush=True)
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


#: Tokens of each reply the demo shows for the held-out prompt.
REPLY_TOKENS = 64


def _reply_prompt(cfg: Any, tokenizer: Any) -> Any:
    """A held-out prompt labelled for the last objective (harmlessness in the presets: where the
    end points part most visibly): the first that is one whole user turn fitting the prompt
    budget (so the reply answers what is shown), else the first, cut as in training."""
    from moalign.data import truncate_prompt
    from moalign.data.selection import labelled_indices
    from moalign.fronts.context import load_preference_splits
    from moalign.fronts.evaluate import _max_prompt_tokens

    _, test = load_preference_splits(cfg)
    budget = _max_prompt_tokens(cfg)
    rows = [int(i) for i in labelled_indices(test, list(cfg.objectives)[-1])[:50]] or [0]
    for row in rows:
        prompt = test[row]["prompt"]
        one_turn = not isinstance(prompt, str) and len(prompt) == 1 and prompt[0]["role"] == "user"
        if one_turn and truncate_prompt(prompt, tokenizer, budget) == prompt:
            return prompt
    return truncate_prompt(test[rows[0]]["prompt"], tokenizer, budget)


def end_point_replies(front: Any, cfg: Any) -> list[tuple[str, str]] | None:
    """``[(who, reply)]`` for one held-out prompt: the starting policy and each end point of the
    front (all weight on one objective), greedy, in the trace's precision; ``None`` when the
    end points have no saved adapter."""
    from peft import PeftModel

    from moalign.evaluation.generation import generate_completions
    from moalign.models.inference import inference_weights
    from moalign.models.specs import load_model_spec

    out = Path(cfg.output_dir)
    ends = []
    for k, name in enumerate(cfg.objectives):
        for point in front.points:
            if point.weights is not None and point.weights[k] == 1.0 and point.checkpoint:
                ends.append((f"all weight on {name} ({point.id})", out / point.checkpoint))
                break
    if cfg.method in ("conditioned", "decoding") or len(ends) != len(cfg.objectives) or not all(
            (p / "adapter_config.json").is_file() for _, p in ends):
        return None  # a conditioned or mixed policy, or a full fine-tune: not an adapter alone
    base, tokenizer = load_model_spec(cfg.model, seed=cfg.seed)
    prompt = _reply_prompt(cfg, tokenizer)
    model = PeftModel.from_pretrained(base, str(ends[0][1]), adapter_name="end0")
    for i, (_, path) in enumerate(ends[1:], start=1):
        model.load_adapter(str(path), adapter_name=f"end{i}")
    precision = front.metadata.get("precision", "float32")
    settings = dict(max_new_tokens=REPLY_TOKENS, seed=cfg.seed)
    replies = []
    with model.disable_adapter(), inference_weights(model, precision):
        replies.append(("starting policy", generate_completions(model, tokenizer, [prompt],
                                                                  **settings)[0]))
    for i, (who, _) in enumerate(ends):
        model.set_adapter(f"end{i}")
        with inference_weights(model, precision):
            replies.append((who, generate_completions(model, tokenizer, [prompt], **settings)[0]))
    if isinstance(prompt, str):
        text = prompt
    else:
        text = "\n".join(f"{m['role']}: {m['content']}" for m in prompt)
    return [("prompt", text), *replies]


def replies_text(replies: list[tuple[str, str]] | None) -> str:
    """The replies block of the demo's output."""
    if replies is None:
        return "replies: not shown (the end points are not LoRA adapters of their own)"
    (_, prompt), rest = replies[0], replies[1:]
    lines = [f"one held-out prompt (cut as in evaluation) and greedy replies of at most "
             f"{REPLY_TOKENS} tokens:", "  prompt: "
             + prompt.strip().replace("\n", "\n          ")]
    for who, reply in rest:
        lines.append(f"  {who}: " + (reply.strip().replace("\n", " ") or "(empty)"))
    return "\n".join(lines)


def phases_text(front: Any, wall: float, convert: float, replies: float, resumed: bool) -> str:
    """How long each phase took (training and evaluation as stored with the runs and points)."""
    cost = front.cost
    rest = max(wall - convert - cost["train_seconds"] - cost["eval_seconds"] - replies, 0.0)
    reused = " (stored by the earlier run)" if resumed else ""
    parts = [f"conversion {convert:.0f} s" if convert >= 0.5 else None,
             f"training {cost['train_seconds']:.0f} s ({cost['train_steps']} steps){reused}",
             f"evaluation {cost['eval_seconds']:.0f} s{reused}",
             f"replies {replies:.0f} s",
             f"loading, plots and the rest {rest:.0f} s"]
    return "time:    " + ", ".join(p for p in parts if p) + f"; {wall:.0f} s in all"


def _finished(output_dir: str) -> tuple[int, int]:
    out = Path(output_dir)
    return len(list(out.glob("runs/*/run.json"))), len(list(out.glob("points/*/point.json")))


def report(front: Any, output_dir: str, wall: float, finished_before: tuple[int, int],
           extra_lines: tuple[str, ...] = ()) -> str:
    """What ``moalign demo`` prints after the front: the table with every interval, in words
    what is and is not beyond noise (:meth:`ParetoFront.to_table`), reported objectives,
    ``extra_lines`` (replies, phases), paths, time."""
    from moalign.cli.trace import describe_outputs

    meta = front.metadata
    lines = [front.to_table(), ""]
    baseline = meta.get("baseline")
    if baseline and meta.get("metric") == "implicit":
        lines.append(f"baseline: the starting SFT policy ({meta.get('model')}), scored through the "
                     "same path as every point against the shared reference pass; it is its own "
                     "reference, so every pair ties and it scores 0.5 per pair")
    extra = sorted({name for p in front.points for name in p.metadata.get("report", {})})
    for name in extra:
        rows = []
        if baseline and name in baseline.get("report", {}):
            r = baseline["report"][name]
            rows.append(["baseline", r["score"], r["stderr"], r["n"]])
        for p in front.points:
            r = p.metadata.get("report", {}).get(name)
            if r is not None:
                rows.append([p.id, r["score"], r["stderr"], r["n"]])
        lines += ["", f"{name}, reported alongside (not an objective of the front):",
                  format_table(["point", name, "± stderr", "n"], rows)]
    lines += ["", *extra_lines, describe_outputs(front, output_dir)]
    runs, points = finished_before
    if runs or points:
        lines.append(f"resumed:  {runs} finished run(s) and {points} finished point(s) reused")
    lines.append(f"wall time: {wall:.1f} s")
    return "\n".join(lines)


def demo_config(mode: str, path: str | None, overrides: dict[str, Any]
                ) -> tuple[dict[str, Any], str]:
    """The preset of ``mode`` (with :data:`BFLOAT16_BUDGET` where the default preset runs in
    bfloat16) <- the YAML file at ``path`` <- ``overrides``; returns (mapping, source name)."""
    base = {**PRESETS[mode], "output_dir": DEFAULT_OUTPUT[mode]}
    data, source = read_config(path, overrides, base=base)
    if mode == "default" and _runs_in_bfloat16(data):
        data, source = read_config(path, overrides, base=merge(base, BFLOAT16_BUDGET))
    return data, source


def _runs_in_bfloat16(data: dict[str, Any]) -> bool:
    """Whether a demo config resolves to bfloat16 on this machine (an invalid precision is
    left for the config check to report)."""
    from moalign.models.precision import PRECISIONS, resolve_precision

    precision = data.get("precision", "auto")
    bf16 = data.get("train", {}).get("bf16") if isinstance(data.get("train"), dict) else None
    if precision == "auto" and isinstance(bf16, bool):
        return bf16
    return precision in PRECISIONS and resolve_precision(precision) == "bfloat16"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.allow_abbrev = False
    parser.add_argument("--tiny", action="store_true",
                        help="a tiny random model: the whole pipeline in seconds")
    parser.add_argument("--output", "-o", metavar="DIR",
                        help="folder of runs, points, front.json and front.png (default "
                             f"./{DEFAULT_OUTPUT['default']} or ./{DEFAULT_OUTPUT['tiny']})")
    parser.add_argument("--model", help="start from this checkpoint instead (folder, GGUF, hub id)")
    parser.add_argument("--config", metavar="FILE.yaml", help="FrontConfig keys overriding the preset")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--threads", type=_positive_int, metavar="N",
                        help="torch CPU threads (default: the cores idle at start, measured over "
                             f"{IDLE_WINDOW:.1f} s with niced work not counted; --tiny: 1)")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of threads, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1 thread, got {value}")
    return value


def run(args: argparse.Namespace, overrides: dict[str, Any]) -> int:
    from moalign.fronts.trace import trace_front

    mode = "tiny" if args.tiny else "default"
    data, source = demo_config(mode, args.config, overrides)
    declared = {"output_dir": args.output, "model": args.model,
                "progress": False if args.quiet else None}
    data.update({k: v for k, v in declared.items() if v is not None})
    source = f"the '{mode}' demo preset + {source}"
    start = time.perf_counter()
    progress = data.get("progress", True) is not False
    with quiet_library_output(args.debug, progress=progress), torch_threads(
            args.threads or TORCH_THREADS[mode]):
        if args.threads:
            print(f"torch threads: {args.threads} (--threads)", flush=True)
        cfg = resolve_front_config(data, source=source)
        print(precision_header(cfg), flush=True)
        before = _finished(cfg.output_dir)
        convert = time.perf_counter()
        from moalign.models.specs import is_embedded

        if is_embedded(cfg.model):  # converted once (timed apart), then cached
            from moalign.models.loading import embedded_sft_checkpoint

            embedded_sft_checkpoint()
        convert = time.perf_counter() - convert
        front = trace_front(cfg)
        replied = time.perf_counter()
        replies = end_point_replies(front, cfg)
        replied = time.perf_counter() - replied
    wall = time.perf_counter() - start
    extra = (replies_text(replies), "",
             phases_text(front, wall, convert, replied, resumed=any(before)))
    print(report(front, cfg.output_dir, wall, before, extra))
    return 0
