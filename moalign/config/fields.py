"""Config dataclasses documented once: each field's ``help`` metadata also builds the docstring."""

from __future__ import annotations

import dataclasses
import textwrap
from typing import Any

__all__ = ["document_fields", "doc"]


def doc(default: Any = dataclasses.MISSING, help: str = "", *, factory: Any = None) -> Any:
    """A dataclass field with its documentation (``help``) attached as metadata."""
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata={"help": help})
    return dataclasses.field(default=default, metadata={"help": help})


def _type_name(tp: Any) -> str:
    return tp if isinstance(tp, str) else getattr(tp, "__name__", str(tp))


def document_fields(cls: type, *, only_own: bool = False) -> type:
    """Append a ``Parameters:`` section to ``cls.__doc__`` from the fields' ``help`` metadata.

    With ``only_own``, only the fields the class itself declares are listed (for a subclass of
    a documented config).
    """
    own = set(cls.__dict__.get("__annotations__", {}))
    lines = ["", "Parameters:"]
    for f in dataclasses.fields(cls):
        help_text = f.metadata.get("help")
        if not help_text or (only_own and f.name not in own):
            continue
        default = f.default if f.default is not dataclasses.MISSING else None
        lines.append(f"    {f.name} (`{_type_name(f.type)}`, defaults to `{default!r}`):")
        lines.extend(textwrap.wrap(help_text, 92, initial_indent=" " * 8,
                                   subsequent_indent=" " * 8))
    cls.__doc__ = (cls.__doc__ or "").rstrip() + "\n" + "\n".join(lines) + "\n"
    return cls
