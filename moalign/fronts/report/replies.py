"""Replies behind a front's scores: the start's and every point's, to the same held-out prompts.

They are stored next to the scores, ``baseline/replies.jsonl`` and ``points/<id>/replies.jsonl``
(one ``{"prompt", "reply"}`` line per prompt), generated once with the trace's generation
settings and seed for every policy (:func:`moalign.fronts.export.traced.policy_replies`). The
trace records them for :data:`REPLY_PROMPTS` prompts as it scores each policy
(:mod:`moalign.fronts.trace`). The prompts are the first distinct prompts of the trace's
held-out split (the same seeded split its evaluation uses, the prompts chosen as the
``generation`` metric chooses them), cut as evaluation cuts them (:func:`reply_prompts`).
:func:`read_replies` reads what is there; :func:`ensure_replies` generates what is missing
(``moalign report --replies N``: a front traced before the trace recorded replies, or more
prompts).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from moalign.data.schema import prompt_key
from moalign.fronts.export.traced import TracedFront
from moalign.storage.files import atomic_write_text

__all__ = ["REPLIES_FILE", "REPLY_PROMPTS", "ensure_replies", "heldout_prompts",
           "max_prompt_tokens", "read_replies", "replies_jsonl", "reply_prompts"]

#: The file of a policy's replies, in ``baseline/`` and ``points/<id>/``.
REPLIES_FILE = "replies.jsonl"
#: Held-out prompts a trace records the replies of the start and of every point to.
REPLY_PROMPTS = 4


def max_prompt_tokens(train: dict[str, Any] | None) -> int:
    """The prompt budget in tokens of a front whose ``train`` settings are ``train`` (prompts
    longer than it keep their end, in training and in evaluation)."""
    from moalign.fronts.config import DEFAULT_MAX_PROMPT_TOKENS, DEFAULT_TRAIN

    return int({**DEFAULT_TRAIN, **(train or {})}.get("max_prompt_tokens",
                                                       DEFAULT_MAX_PROMPT_TOKENS))


def reply_prompts(test: Any, objectives: list[str], tokenizer: Any, n: int,
                  budget: int) -> list[Any]:
    """The first ``n`` distinct prompts of the held-out split ``test``, chosen as the
    ``generation`` metric chooses its prompts (in turn from each objective's pairs:
    :func:`moalign.data.selection.distinct_prompt_rows`, so they are the first of those) and
    cut to ``budget`` tokens as evaluation cuts them (their end kept)."""
    from moalign.data import truncate_prompt
    from moalign.data.selection import distinct_prompt_rows

    rows = distinct_prompt_rows(test, list(objectives), n)
    return [truncate_prompt(test[row]["prompt"], tokenizer, budget) for row in rows]


def replies_jsonl(prompts: list[Any], replies: list[str]) -> str:
    """The text of a ``replies.jsonl`` file: one ``{"prompt", "reply"}`` line per prompt."""
    return "".join(json.dumps({"prompt": p, "reply": r}, ensure_ascii=False) + "\n"
                   for p, r in zip(prompts, replies, strict=True))


def heldout_prompts(tf: TracedFront, n: int) -> list[Any]:
    """The first ``n`` distinct prompts of the trace's held-out split, as its evaluation
    chooses and cuts them: the prompts the trace recorded its replies to
    (:func:`reply_prompts`)."""
    from moalign.data import TEST_SIZE, catalog, heldout_split

    ds = catalog.load_dataset(tf.config["dataset"])
    test = heldout_split(ds, test_size=tf.config.get("test_size", TEST_SIZE),
                         seed=int(tf.config.get("seed", 0)))[1]
    return reply_prompts(test, tf.objectives, tf.base()[1], n,
                         max_prompt_tokens(tf.config.get("train")))


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


def _complete(have: dict[str, list[dict[str, Any]]], wanted: list[str], n: int) -> bool:
    """Whether every policy in ``wanted`` has replies to the same ``n`` prompts."""
    lists = [[prompt_key(r["prompt"]) for r in have.get(pid, [])] for pid in wanted]
    return all(len(x) == n and x == lists[0] for x in lists)


def ensure_replies(front: str | Path, n: int, *, progress: Any = None) -> dict[str, list]:
    """Generate the replies of the start and every point to ``n`` held-out prompts where the
    stored ones are missing or are for other prompts; return them all (:func:`read_replies`).
    Replies the trace recorded for ``n`` prompts are used as they are (no model is loaded)."""
    tf = TracedFront(front)
    have = read_replies(tf.folder)
    wanted = ["start"] + [p.id for p in tf.front.points if p.weights is not None]
    if _complete(have, wanted, n):
        return have
    prompts = heldout_prompts(tf, n)
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
        atomic_write_text(folder / REPLIES_FILE, replies_jsonl(prompts, replies))
    return read_replies(tf.folder)
