"""Replies behind a front's scores: the start's and every point's, to the same held-out prompts.

They are stored next to the scores, ``baseline/replies.jsonl`` and ``points/<id>/replies.jsonl``
(one ``{"prompt", "reply"}`` line per prompt), generated once with the trace's generation
settings and seed for every policy (:meth:`moalign.fronts.export.traced.TracedFront.replies`).
The prompts are the first distinct prompts of the trace's held-out split (the same seeded split
its evaluation uses). :func:`read_replies` reads what is there; :func:`ensure_replies` generates
what is missing (``moalign report --replies N``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from moalign.fronts.export.traced import TracedFront
from moalign.storage.files import atomic_write_text

__all__ = ["REPLIES_FILE", "ensure_replies", "heldout_prompts", "read_replies"]

REPLIES_FILE = "replies.jsonl"


def heldout_prompts(tf: TracedFront, n: int) -> list[Any]:
    """The first ``n`` distinct prompts of the trace's held-out split."""
    from moalign.data import catalog, train_test_split_pairs

    ds = catalog.load_dataset(tf.config["dataset"])
    test = train_test_split_pairs(ds, test_size=tf.config.get("test_size", 0.2),
                                  seed=int(tf.config.get("seed", 0)))["test"]
    seen, out = set(), []
    for prompt in test["prompt"]:
        if repr(prompt) not in seen:
            seen.add(repr(prompt))
            out.append(prompt)
        if len(out) >= n:
            break
    return out


def _folder(tf: TracedFront, pid: str) -> Path:
    return tf.folder / "baseline" if pid == "start" else tf.folder / "points" / pid


def read_replies(folder: str | Path) -> dict[str, list[dict[str, Any]]]:
    """``{"start" or point id: [{"prompt", "reply"}, ...]}`` of what a trace folder holds."""
    folder = Path(folder)
    if folder.is_file():
        folder = folder.parent
    out = {}
    candidates = [("start", folder / "baseline" / REPLIES_FILE)]
    candidates += [(p.name, p / REPLIES_FILE) for p in sorted((folder / "points").glob("*"))]
    for pid, path in candidates:
        if path.is_file():
            out[pid] = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
                        if line.strip()]
    return out


def ensure_replies(front: str | Path, n: int, *, progress: Any = None) -> dict[str, list]:
    """Generate the replies of the start and every point to ``n`` held-out prompts where the
    stored ones are missing or are for other prompts; return them all (:func:`read_replies`)."""
    tf = TracedFront(front)
    prompts = heldout_prompts(tf, n)
    have = read_replies(tf.folder)
    wanted = ["start"] + [p.id for p in tf.front.points if p.weights is not None]
    for pid in wanted:
        if [r["prompt"] for r in have.get(pid, [])] == prompts:
            continue
        if progress:
            progress(f"generating {len(prompts)} replies of {pid} ({tf.folder})")
        if pid == "start":
            policy = tf.start_policy()
        else:
            policy, _ = tf.policy(point=pid)
        replies = tf.replies(policy, prompts)
        folder = _folder(tf, pid)
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / REPLIES_FILE, "".join(
            json.dumps({"prompt": p, "reply": r}, ensure_ascii=False) + "\n"
            for p, r in zip(prompts, replies)))
    return read_replies(tf.folder)
