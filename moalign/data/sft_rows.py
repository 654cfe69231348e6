"""The rows of a supervised fine-tuning set, checked before any model loads.

``moalign sft`` trains on one of three formats (the first whose columns are all there):
``prompt`` + ``completion``, ``messages`` or ``text``. TRL's ``SFTTrainer`` takes each row as it
is, so a malformed one otherwise ends in a traceback from inside TRL after the model loaded.
:func:`validate_sft_dataset` reads every row first and names the first bad one with its row
number and column:

- ``text``: a non-empty string;
- ``messages``: a non-empty list of chat messages, each a mapping with a ``role`` (``system``,
  ``user``, ``assistant``, ``tool``) and a string ``content``;
- ``prompt`` + ``completion``: both strings, or both lists of chat messages (the completion's
  from the ``assistant``); a completion that is a list of strings, or a prompt and a completion
  of different kinds, are refused.

Other keys of a message are allowed (a ``datasets`` table gives every message the union of
the keys of all messages, missing ones ``None``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from moalign.data.schema import PROMPT_ROLES
from moalign.errors import DataError

__all__ = ["validate_sft_dataset"]


def _kind(value: Any) -> str:
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Sequence) and value and all(isinstance(m, Mapping) for m in value):
        return "a list of chat messages"
    if isinstance(value, Sequence) and value:
        inner = sorted({type(m).__name__ for m in value})
        return f"a list of {', '.join(inner)}"
    return "an empty list" if isinstance(value, Sequence) else f"a {type(value).__name__}"


def _message_problem(value: Any, roles: frozenset[str]) -> str | None:
    """What is wrong with a list of chat messages (None: nothing)."""
    for j, message in enumerate(value):
        role, content = message.get("role"), message.get("content")
        if role is None or content is None:
            keys = sorted(k for k, v in message.items() if v is not None)
            return (f"message {j} must have 'role' and 'content' keys, got the keys "
                    f"{keys} ({dict(message)!r:.80})")
        if role not in roles:
            return f"message {j} has role {role!r}; expected one of {sorted(roles)}"
        if not isinstance(content, str):
            return f"message {j} content must be a string, got {type(content).__name__}"
    return None


def _check(value: Any, column: str, row: int, *, roles: frozenset[str],
           text: bool = True) -> str:
    """The kind of ``value`` (``"a string"`` or ``"a list of chat messages"``), or a
    :class:`DataError` naming the row and the column."""
    kind = _kind(value)
    if kind == "a string" and text:
        if not value.strip():
            raise DataError(f"row {row}, column '{column}': empty text")
        return kind
    if kind == "a list of chat messages":
        problem = _message_problem(value, roles)
        if problem is not None:
            raise DataError(f"row {row}, column '{column}': {problem}")
        return kind
    expected = "a string or a list of chat messages" if text else "a list of chat messages"
    raise DataError(f"row {row}, column '{column}': expected {expected} ({{'role': ..., "
                    f"'content': ...}}), got {kind}")


def validate_sft_dataset(ds: Any, name: str = "dataset") -> str:
    """Check every row of an SFT dataset (see the module docstring); return its format
    (``"prompt-completion"``, ``"messages"`` or ``"text"``). A bad row is a
    :class:`DataError` naming ``name``, the row and the column."""
    columns = set(ds.column_names)
    try:
        if {"prompt", "completion"} <= columns:
            for i, (prompt, completion) in enumerate(zip(ds["prompt"], ds["completion"],
                                                         strict=True)):
                a = _check(prompt, "prompt", i, roles=PROMPT_ROLES)
                b = _check(completion, "completion", i, roles=frozenset({"assistant"}))
                if a != b:
                    raise DataError(f"row {i}: the prompt is {a} but the completion is {b}; "
                                    "give both as strings or both as chat messages")
            return "prompt-completion"
        if "messages" in columns:
            for i, messages in enumerate(ds["messages"]):
                _check(messages, "messages", i, roles=PROMPT_ROLES, text=False)
            return "messages"
        if "text" in columns:
            for i, value in enumerate(ds["text"]):
                if not isinstance(value, str):
                    raise DataError(f"row {i}, column 'text': expected a string, got "
                                    f"{_kind(value)}")
                _check(value, "text", i, roles=PROMPT_ROLES)
            return "text"
    except DataError as exc:
        raise DataError(f"SFT dataset '{name}': {exc}") from None
    raise DataError(f"SFT dataset '{name}' has none of the SFT formats ('prompt' + "
                    f"'completion', 'messages', 'text'); its columns: "
                    f"{', '.join(sorted(columns)) or 'none'}")
