"""Where a completion states its final answer.

:func:`extract_answer` tries, in an order that depends on the answer format:

- the last ``\\boxed{...}`` / ``\\fbox{...}`` (nested braces allowed), together with the boxes
  right before it when only separators stand between them (``\\boxed{-2} \\text{ and }
  \\boxed{1}`` gives ``-2, 1``);
- a GSM8K ``#### n`` line;
- "the answer is ...", "Final Answer: The final answer is $x$. I hope it is correct." (the
  text after the last such phrase, up to the end of its sentence; a box inside it wins);
- the last math segment (``$...$``, ``\\(...\\)``, ``\\[...\\]``) when no number follows it, else
  the last number (GSM8K answers: the last number only, ``$`` being a currency there).

:func:`parse_reference` reduces a reference (a GSM8K solution, a MATH solution, a bare answer,
a number) to its final answer.
"""

from __future__ import annotations

import math
import re
from collections import deque
from typing import Any

from moalign.verify.normalize import NUMBER_RE

__all__ = [
    "ANSWER_FORMATS",
    "check_format",
    "extract_answer",
    "extract_boxed",
    "final_boxes",
    "parse_reference",
]

#: Values of ``answer_format``: how references are parsed and answers compared.
ANSWER_FORMATS = ("auto", "gsm8k", "math", "plain")

_BOX_COMMANDS = ("\\boxed", "\\fbox")
_ANSWER_PHRASE_RE = re.compile(
    r"(?:final\s+answer|the\s+answer|answer)\s*(?:is|:|=)\s*:?", re.IGNORECASE
)
_GSM8K_RE = re.compile(r"####\s*(.+)")
_BETWEEN_BOXES_RE = re.compile(
    r"(?:\s|\$|\\[()\[\]]|[,;&]|\\\\|\\q?quad\b|\\[,;:! ]|~|\band\b|\bor\b|"
    r"\b[A-Za-z](?:_\{?\w+\}?)?\s*=|"  # the label of the next box: "x = \boxed{-3}"
    r"\\(?:text|mbox|textrm|mathrm)\s*\{\s*(?:and|or|,)?\s*\})*",
    re.IGNORECASE,
)
_SEGMENT_RE = re.compile(
    r"\$\$(.+?)\$\$|\\\[(.+?)\\\]|\\\((.+?)\\\)|(?<![\\$])\$(?!\$)(.+?)(?<!\\)\$", re.DOTALL
)
_DELIMITER_RE = re.compile(r"\\\[|\\\]|\\\(|\\\)|\$\$|(?<!\\)\$")
_CLOSING = {"\\[": "\\]", "\\(": "\\)", "$$": "$$", "$": "$"}
_BRACE_RE = re.compile(r"[{}]")
_HOPE_RE = re.compile(r"\s*I hope it is correct.*$", re.IGNORECASE | re.DOTALL)
_MAX_SEGMENT = 2000  # characters of a math segment taken as an answer


def check_format(answer_format: str) -> None:
    if answer_format not in ANSWER_FORMATS:
        raise ValueError(
            f"unknown answer_format {answer_format!r}; expected one of {', '.join(ANSWER_FORMATS)}"
        )


# --------------------------------------------------------------------------------------------
# Boxes
# --------------------------------------------------------------------------------------------


def _brace_pairs(text: str) -> dict[int, int]:
    """Index of each ``{`` -> index of the ``}`` closing it (one pass; unclosed ones absent)."""
    pairs: dict[int, int] = {}
    stack: list[int] = []
    for match in _BRACE_RE.finditer(text):
        if match.group(0) == "{":
            stack.append(match.start())
        elif stack:
            pairs[stack.pop()] = match.start()
    return pairs


def _next_box(text: str, start: int) -> tuple[int, str] | None:
    found = [(p, c) for c in _BOX_COMMANDS if (p := text.find(c, start)) != -1]
    return min(found) if found else None


def _boxes(text: str) -> list[tuple[int, int, str]]:
    """Every outermost box of ``text`` as ``(start, end, content)``, in order."""
    out: list[tuple[int, int, str]] = []
    pairs: dict[int, int] | None = None
    i = 0
    while (hit := _next_box(text, i)) is not None:
        pos, command = hit
        rest = pos + len(command)
        j = rest
        while j < len(text) and text[j] == " ":
            j += 1
        if j < len(text) and text[j] == "{":
            pairs = _brace_pairs(text) if pairs is None else pairs
            if j not in pairs:  # unclosed: look further on
                i = rest
                continue
            content, end = text[j + 1 : pairs[j]], pairs[j] + 1
        elif rest < j < len(text):  # "\boxed 5": up to whitespace or '$'
            content = re.match(r"[^\s$]*", text[j:]).group(0)
            end = j + len(content)
        else:
            i = rest
            continue
        content = content.strip()
        if content.startswith(_BOX_COMMANDS):  # \boxed{\boxed{3}}
            inner = _boxes(content)
            if len(inner) == 1 and inner[0][0] == 0 and inner[0][1] == len(content):
                content = inner[0][2]
        out.append((pos, end, content))
        i = end
    return out


def extract_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` or ``\\fbox{...}`` in ``text`` (braces may nest).

    ``\\boxed 5`` (no braces) gives ``"5"``. Returns ``None`` when there is no box.
    """
    boxes = _boxes(text)
    return boxes[-1][2] if boxes else None


def final_boxes(text: str) -> str | None:
    """The last box of ``text`` and the boxes right before it that only separators (spaces,
    commas, "and", ``\\quad``, ``$``) divide from it, joined by ``", "``; a box repeated
    unchanged counts once. ``None`` when there is no box."""
    boxes = _boxes(text)
    if not boxes:
        return None
    group = [boxes[-1]]
    for prev in reversed(boxes[:-1]):
        if not _BETWEEN_BOXES_RE.fullmatch(text[prev[1] : group[0][0]]):
            break
        group.insert(0, prev)
    contents: list[str] = []
    for _, _, content in group:
        if content and content not in contents:
            contents.append(content)
    return ", ".join(contents)


# --------------------------------------------------------------------------------------------
# Phrases, markers, math segments, numbers
# --------------------------------------------------------------------------------------------


def _cut_sentence(text: str) -> str:
    """The first line of ``text``, cut at the end of its sentence (a period, then a space)."""
    line = _HOPE_RE.sub("", text.strip().split("\n", 1)[0]).replace("**", "")
    inside = False
    for match in re.finditer(r"\$|\.(?=\s|$)", line):
        if match.group(0) == "$":
            inside = not inside
        elif not inside:  # a period outside $...$
            line = line[: match.start()]
            break
    return line.strip().strip("*").strip()


def _looks_like_math(content: str) -> bool:
    """Math, not prose set between dollar signs ("costs $5 and $6")."""
    bare = re.sub(r"\\(?:text|mbox|textrm|mathrm|textbf|operatorname)\s*\{[^{}]*\}", " ", content)
    bare = re.sub(r"\\(?:begin|end)\{\w+\}|\\[A-Za-z]+", " ", bare)
    return bool(content.strip()) and not re.search(r"[A-Za-z]{3,}", bare)


def _answer_is(text: str) -> str | None:
    for match in reversed(list(_ANSWER_PHRASE_RE.finditer(text))):
        candidate = _cut_sentence(text[match.end() :])
        if not candidate:
            continue
        boxed = final_boxes(candidate)
        if boxed:
            return boxed
        lead = _SEGMENT_RE.match(candidate)
        if lead:
            content = next(g for g in lead.groups() if g is not None)
            if _looks_like_math(content) and not candidate[lead.end() :].strip(" .,;:"):
                return content.strip()
        return candidate
    return None


def _gsm8k_marker(text: str) -> str | None:
    matches = _GSM8K_RE.findall(text)
    if not matches:
        return None
    found = _cut_sentence(matches[-1])
    return final_boxes(found) or found  # "#### \boxed{18}"


def _last_number_match(text: str) -> re.Match | None:
    last = deque(NUMBER_RE.finditer(text.replace("$", " ").replace("\u2212", "-")), maxlen=1)
    return last[0] if last else None


def _last_number(text: str) -> str | None:
    found = _last_number_match(text)
    return found.group(0) if found else None


def _segments(text: str) -> list[tuple[int, int, int]]:
    """``(start, end, after)`` of each math segment's content, in one pass over delimiters."""
    out: list[tuple[int, int, int]] = []
    opened: str | None = None
    start = 0
    for match in _DELIMITER_RE.finditer(text):
        token = match.group(0)
        if opened is None:
            if token in _CLOSING:
                opened, start = token, match.end()
        elif token == _CLOSING[opened]:
            out.append((start, match.start(), match.end()))
            opened = None
    return out


def _last_math_or_number(text: str) -> str | None:
    """The last math segment unless a number comes after it, else the last number."""
    segment = None
    for start, end, after in reversed(_segments(text)):
        content = text[start:end]
        if end - start <= _MAX_SEGMENT and _looks_like_math(content):
            segment = (after, content.strip().rstrip(".,;").strip())
            break
    number = _last_number_match(text)
    if segment and segment[1] and (number is None or number.start() < segment[0]):
        return segment[1]
    return number.group(0) if number else None


_EXTRACTORS = {
    "boxed": final_boxes,
    "gsm8k": _gsm8k_marker,
    "answer_is": _answer_is,
    "last_number": _last_number,
    "last_math": _last_math_or_number,
}

#: per format, the extractors tried in order on a completion
_EXTRACTION_ORDER = {
    "auto": ("boxed", "gsm8k", "answer_is", "last_math"),
    "math": ("boxed", "answer_is", "gsm8k", "last_math"),
    "plain": ("boxed", "gsm8k", "answer_is", "last_math"),
    "gsm8k": ("gsm8k", "answer_is", "boxed", "last_number"),
}


def extract_answer(text: str, answer_format: str = "auto") -> str | None:
    """The final answer stated in ``text``, or ``None`` if it states none (see the module
    docstring). ``gsm8k`` tries the ``####`` marker first and falls back on the last number."""
    check_format(answer_format)
    for key in _EXTRACTION_ORDER[answer_format]:
        found = _EXTRACTORS[key](text)
        if found:
            return found
    return None


def parse_reference(reference: Any, answer_format: str = "auto") -> str | None:
    """The final answer of a reference: the number after ``####`` of a GSM8K solution, the
    content of the final ``\\boxed{}`` (or boxes), or the reference itself. ``None`` for a
    missing or empty one."""
    check_format(answer_format)
    if reference is None:
        return None
    if isinstance(reference, bool):
        reference = str(reference)
    if isinstance(reference, (int, float)):
        if isinstance(reference, float) and not math.isfinite(reference):
            return None
        return repr(float(reference)) if isinstance(reference, float) else str(reference)
    text = str(reference).strip()
    if not text:
        return None
    if "####" in text:
        return _gsm8k_marker(text) or None
    if answer_format != "plain" and any(c in text for c in _BOX_COMMANDS):
        return final_boxes(text) or text
    return text
