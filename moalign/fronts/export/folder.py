"""Writing a point of a traced front as a standard transformers folder, or a grid of adapters.

:func:`export_point` writes one policy (:class:`~moalign.fronts.export.traced.TracedFront`)
as a merged model (``config.json``, safetensors weights, tokenizer, generation config) that
``AutoModelForCausalLM.from_pretrained``, vLLM and TGI load without moalign, or with
``adapter=True`` as one LoRA adapter over its start. A conditioned point's tokenizer gets a chat
template that shows its weights exactly as training and evaluation did
(:func:`condition_chat_template`). :func:`export_grid` writes one adapter per weight vector of a
simplex grid plus the vLLM command that serves them all from one server. Each folder carries a
model card (:mod:`moalign.fronts.export.card`).

A MOD (``decoding``) point is a mixture of K models, decoded together token by token: no one
set of weights behaves like it, so it is refused, with what to do instead.
"""

from __future__ import annotations

import copy
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from moalign.errors import ConfigError
from moalign.fronts.export import card
from moalign.fronts.export.traced import TracedFront
from moalign.storage.files import atomic_directory, atomic_write_text
from moalign.weights import format_weights

__all__ = ["ExportResult", "condition_chat_template", "export_grid", "export_point",
           "vllm_command"]

#: ``--max-lora-rank`` values vLLM accepts
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
#: the generation prompt of prompts rendered without a chat template
#: (:func:`moalign.evaluation.prompts.render_prompt`), as a Jinja template
PLAIN_TEMPLATE = ("{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '\n' }}"
                  "{% endfor %}{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}")


@dataclass
class ExportResult:
    """What an export wrote: the folder, the weights, the traced point (if any), the vLLM
    command (grids) and the adapters (grids)."""

    output: Path
    weights: list[list[float]]
    point: str | None = None
    command: str | None = None
    adapters: dict[str, Path] = field(default_factory=dict)


def mod_refusal(tf: TracedFront, weights: Any = None) -> ConfigError:
    where = f" --weights {','.join(f'{x:g}' for x in weights)}" if weights is not None else ""
    return ConfigError(
        f"'{tf.folder}' is a MOD (decoding) front: each of its points mixes the "
        f"{tf.k} per-objective policies token by token at generation time (the sum of their "
        "weighted log-probabilities), and a mixture of models is not one model, so no folder "
        "of weights reproduces it. Instead: get its replies with `moalign generate --front "
        f"{tf.folder}{where}`, or export the Rewarded Soup of the same runs at these weights "
        "with `moalign export ... --soup` (one model, a different policy: measure it with "
        "`moalign eval`)")


def condition_chat_template(template: str | None, condition: str, style: str) -> str:
    """A chat template that adds ``condition`` to the conversation as
    :func:`moalign.tradeoff.conditioning.apply_condition` does (``system``: a system message in
    front, or the first line of the existing one; ``prefix``: the first line of the first user
    message), then renders it with ``template`` (``None``: moalign's plain ``role: content``
    rendering)."""
    c = json.dumps(condition)  # an ASCII Jinja string literal
    if style == "system":
        head = ("{% if messages and messages[0]['role'] == 'system' %}"
                "{% set messages = [dict(messages[0], content=" + c + " ~ '\\n' ~ "
                "messages[0]['content'])] + messages[1:] %}"
                "{% else %}{% set messages = [{'role': 'system', 'content': " + c + "}] + "
                "messages %}{% endif %}")
    elif style == "prefix":
        head = ("{% set ns = namespace(done=false, out=[]) %}{% for m in messages %}"
                "{% if m['role'] == 'user' and not ns.done %}"
                "{% set ns.out = ns.out + [dict(m, content=" + c + " ~ '\\n' ~ m['content'])] %}"
                "{% set ns.done = true %}{% else %}{% set ns.out = ns.out + [m] %}{% endif %}"
                "{% endfor %}{% set messages = ns.out %}")
    else:
        raise ConfigError(f"unknown condition style {style!r}")
    return head + (template or PLAIN_TEMPLATE)


def _plain_model(tf: TracedFront, policy: Any) -> Any:
    """The point as one plain transformers model: the active adapter merged into a copy."""
    model = policy.model
    if policy.adapter is not None:
        model.set_adapter(policy.adapter)
        model = model.merge_and_unload()
        tf._soup_model = None  # merged in place: a later soup loads the adapters again
    return model


def _tokenizer(tf: TracedFront, w: np.ndarray) -> Any:
    tokenizer = copy.deepcopy(tf.base()[1])
    if tf.method == "conditioned":
        from moalign.tradeoff.conditioning import format_condition

        tokenizer.chat_template = condition_chat_template(
            getattr(tokenizer, "chat_template", None),
            format_condition(w, tf.objectives, form=tf.condition_format),
            tf.condition_style)
    return tokenizer


def _save_model(model: Any, tokenizer: Any, folder: Path) -> None:
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = (tokenizer.pad_token_id
                                            if tokenizer.pad_token_id is not None
                                            else tokenizer.eos_token_id)
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))


def base_reference(tf: TracedFront, output: Path, tmp: Path) -> str:
    """Where an adapter's base model is: the trace's model folder or hub id, or (for a
    ``tiny`` or GGUF start, which no server loads as it is) a copy saved under ``base/``."""
    spec = str(tf.config["model"])
    from moalign.models import specs

    if specs.is_embedded(spec):
        from moalign.models.loading import embedded_sft_checkpoint

        return str(Path(embedded_sft_checkpoint()).resolve())
    if spec != "tiny":
        from moalign.models.loading import resolve_model_source

        source, gguf = resolve_model_source(spec)
        if gguf is None:
            return str(Path(source).resolve()) if Path(source).is_dir() else source
    base, tokenizer = tf.base()
    _save_model(copy.deepcopy(base), copy.deepcopy(tokenizer), tmp / "base")
    return str((output / "base").resolve())


def _save_adapter(model: Any, name: str, folder: Path, base: str) -> int:
    """Save adapter ``name`` of a peft model as a flat adapter folder whose config names
    ``base``; returns its rank."""
    scratch = folder.parent / f".{folder.name}.adapter"
    model.save_pretrained(str(scratch), selected_adapters=[name])
    src = scratch / name if (scratch / name).is_dir() else scratch
    folder.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.is_file():
            shutil.move(str(f), str(folder / f.name))
    shutil.rmtree(scratch)
    config_file = folder / "adapter_config.json"
    config = json.loads(config_file.read_text())
    config["base_model_name_or_path"] = base
    config_file.write_text(json.dumps(config, indent=2) + "\n")
    return int(config.get("r", 0))


def export_point(front: str | Path, output: str | Path, *, weights: Any = None,
                 point: str | None = None, adapter: bool = False, soup: bool = False,
                 overwrite: bool = False) -> ExportResult:
    """Write the policy at ``weights`` (or of the traced point ``point``) to ``output``.

    ``adapter``: one LoRA adapter (LoRA fronts) instead of a merged model. ``soup``: for a MOD
    front, the soup of its per-objective runs instead (a different policy, not measured)."""
    tf = TracedFront(front)
    if tf.method == "decoding":
        if not soup:
            raise mod_refusal(tf, None if weights is None else _weights_for_message(weights))
        tf.method = "soup"
    elif soup:
        raise ConfigError(f"--soup is for MOD (decoding) fronts; '{tf.folder}' is a "
                          f"{tf.method} front")
    if adapter and tf.lora is None:
        raise ConfigError("--adapter needs a LoRA front; this front fine-tuned full weights "
                          "(lora: null), so its points export as merged models only")
    output = Path(output)
    w, found = tf.resolve(weights, point)
    measured = None if soup else found
    policy, w = tf.policy(w.tolist())
    tokenizer = _tokenizer(tf, w)
    with atomic_directory(output, overwrite=overwrite) as tmp:
        if adapter:
            base = base_reference(tf, output, tmp)
            rank = _save_adapter(policy.model, policy.adapter, tmp, base)
            tokenizer.save_pretrained(str(tmp))
            form = {"kind": "adapter", "base": base, "rank": rank}
        else:
            _save_model(_plain_model(tf, policy), tokenizer, tmp)
            form = {"kind": "merged"}
        atomic_write_text(tmp / "README.md", card.point_card(
            tf, w, measured, form, output, mod_soup=soup))
    return ExportResult(output, [w.tolist()], point=measured.id if measured else None)


def _weights_for_message(weights: Any) -> list[float] | None:
    from moalign.fronts.export.traced import parse_weights

    try:
        return parse_weights(weights)
    except ConfigError:
        return None


def vllm_command(base: str, adapters: dict[str, Path], rank: int) -> str:
    """One ``vllm serve`` command line serving ``base`` with every adapter (``--lora-modules
    name=path``); requests pick a trade-off by ``"model": "<name>"``."""
    max_rank = next((r for r in VLLM_LORA_RANKS if r >= rank), rank)
    modules = " \\\n    ".join(f"{name}={path.resolve()}" for name, path in adapters.items())
    return (f"vllm serve {base} --enable-lora --max-lora-rank {max_rank} "
            f"--max-loras {len(adapters)} \\\n  --lora-modules \\\n    {modules}")


def export_grid(front: str | Path, output: str | Path, n: int, *,
                overwrite: bool = False) -> ExportResult:
    """One LoRA adapter per weight vector of the simplex grid with step ``1/n``, each named by
    its weights (``adapters/w0.25-0.75``), plus ``serve.sh``: the vLLM command that serves all
    of them from one server."""
    from moalign.pareto.indicators import simplex_grid

    tf = TracedFront(front)
    if tf.method == "decoding":
        raise mod_refusal(tf)
    if tf.method == "conditioned":
        raise ConfigError("--grid writes one adapter per weight vector, but a conditioned "
                          "front is one adapter for every weight vector (its weights are in the "
                          "prompt): export it once per weight vector with --weights, or serve its "
                          "run with the condition line of the weights in each request")
    if tf.lora is None:
        raise ConfigError("--grid writes LoRA adapters; this front fine-tuned full weights "
                          "(lora: null): export its points one by one with --weights")
    if int(n) < 1:
        raise ConfigError(f"--grid must be a positive integer, got {n}")
    grid = simplex_grid(tf.k, int(n))
    if tf.method == "sweep":
        missing = [format_weights(w) for w in grid if tf.traced_point(w) is None]
        if missing:
            raise ConfigError(f"the sweep front has no trained run at {', '.join(missing)}; a "
                              "sweep point exists only at its traced weights (points: "
                              f"{', '.join(p.id for p in tf.front.points)})")
    output = Path(output)
    adapters: dict[str, Path] = {}
    rank = 0
    with atomic_directory(output, overwrite=overwrite) as tmp:
        base = base_reference(tf, output, tmp)
        for w in grid:
            name = format_weights(w)
            policy, _ = tf.policy(w.tolist())
            rank = max(rank, _save_adapter(policy.model, policy.adapter,
                                           tmp / "adapters" / name, base))
            adapters[name] = output / "adapters" / name
        command = vllm_command(base, adapters, rank)
        atomic_write_text(tmp / "serve.sh", "#!/bin/sh\n" + command + "\n")
        (tmp / "serve.sh").chmod(0o755)
        tf.base()[1].save_pretrained(str(tmp / "tokenizer"))
        atomic_write_text(tmp / "README.md", card.grid_card(
            tf, {name: (w, tf.traced_point(w)) for name, w in
                 zip(adapters, grid)}, base, command))
    return ExportResult(output, grid.tolist(), command=command, adapters=adapters)
