"""Final answers of math problems: extraction, normalization and equivalence.

Used by the ``reasoning_accuracy`` objective to grade verifiable answers in the styles of
GSM8K (Cobbe et al. 2021, a solution ending in ``#### n``) and MATH (Hendrycks et al. 2021,
an answer in ``\\boxed{...}``).

- :func:`extract_answer` finds the final answer in a completion: the last ``\\boxed{...}`` /
  ``\\fbox{...}`` (nested braces allowed), a ``#### n`` line, "the answer is ...", or, as a
  fallback, the last number.
- :func:`normalize_answer` removes what does not change an answer's meaning: ``$``, thousands
  separators, units in ``\\text{}``, degree signs, trailing periods, ``\\left``/``\\right``.
- :func:`answers_match` compares two answers: as normalized strings, as numbers with a relative
  tolerance, element-wise for tuples, intervals, sets and ``\\pm``, and symbolically (through
  :mod:`moalign.verify.latex_math`, which parses LaTeX without evaluating untrusted text).
"""

from __future__ import annotations

import math
import re
from typing import Any

__all__ = [
    "ANSWER_FORMATS",
    "answers_match",
    "extract_answer",
    "extract_boxed",
    "is_correct",
    "normalize_answer",
    "parse_number",
    "parse_reference",
]

#: Values of ``answer_format``: how references are parsed and answers compared.
ANSWER_FORMATS = ("auto", "gsm8k", "math", "plain")

_NUMBER = r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?!\d)|-?\.\d+"
_NUMBER_RE = re.compile(rf"(?<![\w.])(?:{_NUMBER})")
_PLAIN_NUMBER_RE = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:e[-+]?\d+)?")
_THOUSANDS_RE = re.compile(r"[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_ANSWER_IS_RE = re.compile(
    r"(?:final\s+answer|the\s+answer|answer)\s*(?:is|:|=)\s*:?\s*(.+)", re.IGNORECASE
)
_GSM8K_RE = re.compile(r"####\s*(.+)")
_BOX_COMMANDS = ("\\boxed", "\\fbox")


# --------------------------------------------------------------------------------------------
# Extraction
# --------------------------------------------------------------------------------------------


def _braced(text: str, start: int) -> tuple[str, int] | None:
    """Content of the ``{...}`` group opening at ``text[start]`` and the index after it."""
    depth = 0
    for i in range(start, len(text)):
        ch = text[i]
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i], i + 1
    return None


def extract_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` or ``\\fbox{...}`` in ``text`` (braces may nest).

    ``\\boxed 5`` (no braces) gives ``"5"``. Returns ``None`` when there is no box.
    """
    best: tuple[int, str] | None = None
    for command in _BOX_COMMANDS:
        pos = text.rfind(command)
        while pos != -1:
            rest = pos + len(command)
            j = rest
            while j < len(text) and text[j] == " ":
                j += 1
            content: str | None = None
            if j < len(text) and text[j] == "{":
                group = _braced(text, j)
                content = group[0] if group else None
            elif j > rest and j < len(text):  # "\boxed 5": up to whitespace or '$'
                content = re.match(r"[^\s$]*", text[j:]).group(0)
            if content is not None:
                if best is None or pos > best[0]:
                    best = (pos, content)
                break
            pos = text.rfind(command, 0, pos)
    return None if best is None else best[1].strip()


def _cut_sentence(text: str) -> str:
    """The first line of ``text``, cut at the end of its sentence (a period, then a space)."""
    line = text.strip().split("\n", 1)[0]
    for match in re.finditer(r"\.(?:\s|$)", line):
        if line[: match.start()].count("$") % 2 == 0:  # not inside $...$
            line = line[: match.start()]
            break
    return line.strip().strip("*").strip()


def _answer_is(text: str) -> str | None:
    matches = list(_ANSWER_IS_RE.finditer(text))
    for match in reversed(matches):
        candidate = _cut_sentence(match.group(1))
        if candidate:
            return candidate
    return None


def _gsm8k_marker(text: str) -> str | None:
    matches = _GSM8K_RE.findall(text)
    return _cut_sentence(matches[-1]) if matches else None


def _last_number(text: str) -> str | None:
    found = _NUMBER_RE.findall(text.replace("$", " ").replace("\u2212", "-"))
    return found[-1] if found else None


_EXTRACTORS = {
    "boxed": extract_boxed,
    "gsm8k": _gsm8k_marker,
    "answer_is": _answer_is,
    "last_number": _last_number,
}

#: per format, the extractors tried in order on a completion
_EXTRACTION_ORDER = {
    "auto": ("boxed", "gsm8k", "answer_is", "last_number"),
    "math": ("boxed", "answer_is", "gsm8k", "last_number"),
    "plain": ("boxed", "gsm8k", "answer_is", "last_number"),
    "gsm8k": ("gsm8k", "answer_is", "boxed", "last_number"),
}


def extract_answer(text: str, answer_format: str = "auto") -> str | None:
    """The final answer stated in ``text``, or ``None`` if it states none.

    Tried in order (``auto``): the last ``\\boxed{}``/``\\fbox{}``, a ``#### n`` marker,
    "the answer is ...", the last number. ``gsm8k`` tries the ``####`` marker first.
    """
    _check_format(answer_format)
    for key in _EXTRACTION_ORDER[answer_format]:
        found = _EXTRACTORS[key](text)
        if found:
            return found
    return None


def parse_reference(reference: Any, answer_format: str = "auto") -> str | None:
    """The final answer of a reference: the number after ``####`` of a GSM8K solution, the
    content of a ``\\boxed{}``, or the reference itself. ``None`` for a missing or empty one."""
    _check_format(answer_format)
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
        return extract_boxed(text) or text
    return text


def _check_format(answer_format: str) -> None:
    if answer_format not in ANSWER_FORMATS:
        raise ValueError(
            f"unknown answer_format {answer_format!r}; expected one of {', '.join(ANSWER_FORMATS)}"
        )


# --------------------------------------------------------------------------------------------
# Normalization
# --------------------------------------------------------------------------------------------

_UNIT_TEXT_RE = re.compile(
    r"\\(?:text|textbf|mbox|mathrm|textrm)\s*\{[^{}]*\}(?:\s*\^\s*\{?\d\}?)?"
)
_TEXT_ONLY_RE = re.compile(r"^\\(?:text|textbf|mbox|mathrm|textrm)\s*\{([^{}]*)\}$")
_SPACING = re.compile(r"(?<!\\)\\(?:[!,;: ]|q?quad\b|displaystyle\b)|~")  # not a row break
_UNIT_WORDS = re.compile(
    r"\s*(?:degrees?|dollars?|cents?|units?|square\s+\w+|sq\s+\w+|inches|inch|feet|foot|ft|"
    r"meters?|cm|km|mm|m|miles?|hours?|minutes?|seconds?|days?|weeks?|years?)\s*$"
)


def normalize_answer(answer: str) -> str:
    """Canonical text of an answer (see the module docstring for what is removed)."""
    s = str(answer).strip()
    for old, new in (
        ("\\dfrac", "\\frac"),
        ("\\tfrac", "\\frac"),
        ("\\left", ""),
        ("\\right", ""),
        ("\\$", ""),
        ("$", ""),
        ("\u00b0", ""),
        ("\u2212", "-"),
    ):
        s = s.replace(old, new)
    s = re.sub(r",\\!\s*(?=\d{3})", ",", s)  # 10,\!080 -> 10,080
    s = _SPACING.sub(" ", s)
    s = re.sub(r"\^\s*\{?\s*\\circ\s*\}?", "", s)
    s = s.replace("\\%", "%")
    text_only = _TEXT_ONLY_RE.match(s.strip())
    if text_only:
        s = text_only.group(1)
    elif _UNIT_TEXT_RE.search(s) and _UNIT_TEXT_RE.sub("", s).strip():
        s = _UNIT_TEXT_RE.sub("", s)
    s = re.sub(r"^[a-zA-Z]\s*\\in\s*", "", s.strip())  # "x \in [-2, 7]"
    s = re.sub(r"_\{(\w+)\}", r"_\1", s)  # base subscripts: 4210_{5} -> 4210_5
    s = re.sub(r"\s+", " ", s).strip()
    s = s.rstrip(".").strip()
    if _THOUSANDS_RE.fullmatch(s.replace(" ", "")) and "," in s:
        s = s.replace(",", "").replace(" ", "")
    s = _UNIT_WORDS.sub("", s) if re.match(r"^[-\d.,/ ]+\s*[a-z]", s) else s
    match = re.fullmatch(r"\(?\s*([A-Za-z])\s*\)?", s)  # multiple choice "(B)" -> "B"
    if match:
        s = match.group(1)
    return s.strip()


def parse_number(answer: str) -> float | None:
    """The number an answer states, or ``None``: plain numbers, thousands separators, ``$``,
    units, ``%`` (kept as the number before the sign), ``a/b`` and ``\\frac{a}{b}``."""
    s = normalize_answer(answer).replace(" ", "").rstrip("%")
    if _PLAIN_NUMBER_RE.fullmatch(s):
        return float(s)
    arg = r"(?:\{(\d+)\}|(\d))"  # a braced number or one digit, as LaTeX reads \frac34
    match = re.fullmatch(rf"(-?)(?:\\frac{arg}{arg}|(\d+)/(\d+))", s)
    if match:
        sign, *parts = match.groups()
        num, den = (p for p in parts if p is not None)
        if int(den) != 0:
            return (-1.0 if sign else 1.0) * int(num) / int(den)
    return None


def _loose_number(answer: str) -> float | None:
    """Like :func:`parse_number`, but also a number stated with words around it ("18 eggs")."""
    value = parse_number(answer)
    if value is not None:
        return value
    tail = normalize_answer(answer).split("=")[-1]
    found = _NUMBER_RE.findall(tail)
    if len(found) != 1:
        return None
    rest = _NUMBER_RE.sub(" ", tail)  # only words of two letters or more may remain ("eggs")
    if re.fullmatch(r"(?:\s|[A-Za-z]{2,}|[.,:;!?$%])*", rest):
        return float(found[0].replace(",", ""))
    return None


# --------------------------------------------------------------------------------------------
# Equivalence
# --------------------------------------------------------------------------------------------


def _close(a: float, b: float, tolerance: float) -> bool:
    """Equal within ``tolerance`` (relative); two whole numbers must be equal exactly."""
    if a.is_integer() and b.is_integer():
        return a == b
    return math.isclose(a, b, rel_tol=tolerance, abs_tol=1e-12)


def _integer(answer: str) -> int | None:
    s = normalize_answer(answer).replace(" ", "")
    return int(s) if re.fullmatch(r"[-+]?\d+", s) else None


def _numbers_match(pred: str, reference: str, ref_value: float, tolerance: float) -> bool:
    exact = _integer(pred), _integer(reference)
    if None not in exact:  # whole numbers of any size compare exactly
        return exact[0] == exact[1]
    value = _loose_number(pred)
    if value is None:
        return False
    if _close(value, ref_value, tolerance):
        return True
    percent = "%" in pred
    return percent and _close(value / 100.0, ref_value, tolerance)


def answers_match(
    predicted: str, reference: str, *, answer_format: str = "math", tolerance: float = 1e-6
) -> bool:
    """Whether two extracted answers are equivalent.

    ``gsm8k`` compares numbers only; ``plain`` compares normalized strings and numbers;
    ``math`` and ``auto`` also compare structures (tuples, intervals, sets, ``\\pm``) and
    expressions symbolically. Numbers match within ``tolerance`` (relative).
    """
    _check_format(answer_format)
    ref_value = parse_number(reference)
    if ref_value is not None and _numbers_match(predicted, reference, ref_value, tolerance):
        return True
    if answer_format == "gsm8k":
        return False
    a, b = normalize_answer(predicted), normalize_answer(reference)
    if _same_text(a, b):
        return True
    if answer_format == "plain":
        return False
    from moalign.verify import latex_math

    return latex_math.equivalent(a, b, tolerance)


def _same_text(a: str, b: str) -> bool:
    if a.replace(" ", "") == b.replace(" ", ""):
        return True
    words = re.compile(r"[A-Za-z][A-Za-z ]+")
    return bool(words.fullmatch(a) and words.fullmatch(b) and a.lower() == b.lower())


def is_correct(
    completion: str, reference: Any, *, answer_format: str = "auto", tolerance: float = 1e-6
) -> bool | None:
    """Whether ``completion`` states the final answer of ``reference``.

    ``None`` when the reference is missing or empty; ``False`` when the completion states no
    answer.
    """
    ref = parse_reference(reference, answer_format)
    if ref is None:
        return None
    if answer_format == "auto" and isinstance(reference, str) and "####" in reference:
        answer_format = "gsm8k" if parse_number(ref) is not None else "auto"
    predicted = extract_answer(completion, answer_format)
    if predicted is None:
        return False
    return answers_match(predicted, ref, answer_format=answer_format, tolerance=tolerance)
