"""Model cards (``README.md``) of exported points: what the policy is and what it scored.

A card names the objectives, the weights, the method and trainer, the starting policy and the
form (merged model or adapter); a traced point's card gives its measured scores with their
paired-bootstrap intervals and the difference to the start, any other point says "not
measured" and gives the ``moalign eval`` command that measures it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from moalign.data.split import TEST_SIZE

__all__ = ["eval_command", "grid_card", "point_card", "scores_table"]

METHODS = {
    "sweep": "one training run at these weights (sweep)",
    "soup": "Rewarded Soup: the exact interpolation of per-objective runs (Ramé et al. 2023)",
    "conditioned": "one conditioned run; the weights are shown in the prompt (Rewards-in-Context)",
    "decoding": "MOD: per-objective policies mixed token by token",
}


def _weights_text(objectives: list[str], w: Any) -> str:
    return ", ".join(f"{o} {float(x):.4g}" for o, x in zip(objectives, w))


def _iv(v: Any) -> str:
    return f"[{v[0]:+.4f}, {v[1]:+.4f}]" if v else "n/a"


def scores_table(tf: Any, point: Any) -> str:
    """The measured scores of a traced point, with intervals and the difference to the start."""
    base = (tf.front.metadata or {}).get("baseline") or {}
    heldout = (tf.front.metadata or {}).get("heldout") or {}
    level = int(round(100 * float((tf.front.bootstrap or {}).get("level", 0.95))))
    lines = [f"Measured by the trace (point `{point.id}`), metric `{tf.config.get('metric')}` "
             f"on {heldout.get('examples', '?')} held-out examples, in {tf.precision}; "
             f"{level}% paired-bootstrap intervals:", "",
             "| objective | score | interval | start | difference to start (interval) |",
             "|---|---|---|---|---|"]
    for o in tf.objectives:
        s = point.scores[o]
        start = (base.get("scores") or {}).get(o)
        lines.append(f"| {o} | {s:.4f} | {_iv(point.ci.get(o))} | "
                     f"{'n/a' if start is None else f'{start:.4f}'} | "
                     f"{'n/a' if start is None else f'{s - start:+.4f}'} "
                     f"{_iv(point.delta_ci.get(o))} |")
    return "\n".join(lines)


def eval_command(tf: Any, folder: str | Path) -> str:
    """The ``moalign eval`` command that measures an exported folder as the trace measured
    its points (same objectives, data, split, metric and sizes)."""
    cfg = tf.config
    metric = cfg.get("metric", "implicit")
    parts = ["moalign eval", f"--model {folder}",
             f"--objectives '{json.dumps(tf.objectives)}'", f"--metric {metric}"]
    if isinstance(cfg.get("dataset"), str):
        parts.append(f"--dataset {cfg['dataset']}")
    parts += [f"--test_size {cfg.get('test_size', TEST_SIZE)}", f"--seed {cfg.get('seed', 0)}"]
    if metric == "implicit":
        parts += [f"--n {cfg.get('eval_pairs', 32)}", f"--max_length {cfg.get('max_length', 256)}"]
        if not (Path(folder) / "adapter_config.json").is_file():
            parts.append(f"--reference {cfg['model']}")
    else:
        parts.append(f"--n {cfg.get('eval_prompts', 32)}")
    if not isinstance(cfg.get("dataset"), str):
        parts.append("--config <a YAML with the trace's dataset mapping, see its config.json>")
    return " ".join(parts)


def _header(tf: Any) -> list[str]:
    names = ", ".join(tf.objectives)
    return [f"- objectives: {names} (all maximized)",
            f"- method: {tf.method} - {METHODS.get(tf.method, tf.method)}; trainer "
            f"`{tf.config.get('trainer', 'mo_dpo')}`",
            f"- start (SFT policy): `{tf.config['model']}` (seed {tf.config.get('seed', 0)})",
            f"- front: `{(tf.folder / 'front.json').resolve()}`"]


def point_card(tf: Any, w: np.ndarray, point: Any, form: dict[str, Any], output: Path,
               *, mod_soup: bool = False) -> str:
    """The card of one exported point."""
    method = "soup of a MOD front's runs (not the MOD point)" if mod_soup else tf.method
    title = f"# {' / '.join(tf.objectives)} trade-off at weights ({_weights_text(tf.objectives, w)})"
    lines = [title, "", "Exported with `moalign export` from a traced Pareto front.", "",
             f"- weights: {_weights_text(tf.objectives, w)}", *_header(tf)]
    if mod_soup:
        lines.append(f"- exported as: {method}")
    if form["kind"] == "adapter":
        lines.append(f"- form: LoRA adapter (rank {form['rank']}) over `{form['base']}`")
    else:
        lines.append("- form: merged model (load with `AutoModelForCausalLM.from_pretrained`)")
    if tf.method == "conditioned":
        from moalign.tradeoff.conditioning import format_condition

        cond = format_condition(w, tf.objectives, form=tf.condition_format)
        lines += ["", "## Condition", "",
                  f"This policy reads its weights in the prompt. The tokenizer's chat template "
                  f"adds the line `{cond}` ({tf.condition_style} style), so chat requests need "
                  "nothing else; a plain-text prompt must start with that line and a newline."]
        if form["kind"] == "adapter":
            lines.append("A server that applies the base model's template must be given this "
                         "folder's (`chat_template.jinja`, e.g. vLLM `--chat-template`).")
    lines += ["", "## Scores", ""]
    if point is not None:
        lines.append(scores_table(tf, point))
    else:
        lines += ["Not measured: the trace did not evaluate these weights. Measure them with",
                  "", "```bash", eval_command(tf, output), "```"]
    return "\n".join(lines) + "\n"


def grid_card(tf: Any, entries: dict[str, tuple[np.ndarray, Any]], base: str,
              command: str) -> str:
    """The card of a ``--grid`` export: one row per adapter, and the serving command."""
    lines = [f"# {' / '.join(tf.objectives)}: one LoRA adapter per trade-off", "",
             "Exported with `moalign export --grid`.", "", *_header(tf),
             f"- base model of every adapter: `{base}`", "", "## Adapters", "",
             "| adapter | weights | scores (traced points; interval) |", "|---|---|---|"]
    for name, (w, point) in entries.items():
        if point is None:
            scores = "not measured"
        else:
            scores = "; ".join(f"{o} {point.scores[o]:.4f} {_iv(point.ci.get(o))}"
                               for o in tf.objectives)
        lines.append(f"| `adapters/{name}` | {_weights_text(tf.objectives, w)} | {scores} |")
    lines += ["", "## Serve every trade-off from one server", "", "```bash", command, "```", "",
              "Then ask for a trade-off by name: `\"model\": \"<adapter>\"` in an OpenAI-style "
              "request. An adapter that is not measured is measured by `moalign eval --model "
              "adapters/<adapter> ...` (see `moalign eval --help`)."]
    return "\n".join(lines) + "\n"
