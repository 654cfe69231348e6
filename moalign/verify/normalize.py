"""Canonical text and plain numbers of final answers.

- :func:`normalize_answer` removes what does not change an answer's meaning: ``$``, ``\\left`` /
  ``\\right``, spacing commands, thousands separators (``1,000``, ``2{,}220``, ``10,\\!080``),
  bold and display wrappers (``\\mathbf{9}``, ``{\\bf 9}``, ``\\boldsymbol``), units in ``\\text{}``,
  degree signs, trailing periods; ``\\dfrac`` / ``\\tfrac`` / ``\\cfrac`` become ``\\frac``,
  ``\\text{and}`` a plain `` and `` (a list separator), ``0.\\overline{3}`` a fraction, and
  ``\\varnothing`` / ``\\{\\}`` ``\\emptyset``.
- :func:`parse_number` reads a plain number (also ``a/b``, ``\\frac{a}{b}``, ``45%``);
  :func:`decimal_comma` reads ``1000,99`` / ``0,5`` / ``1.234,5`` where the comma cannot be a
  thousands separator (the caller decides when a decimal comma is meant: against a single
  numeric reference).
"""

from __future__ import annotations

import functools
import re
from fractions import Fraction

__all__ = ["decimal_comma", "loose_number", "normalize_answer", "parse_number", "strip_wrappers"]

NUMBER = r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?!\d)|-?\.\d+"
NUMBER_RE = re.compile(rf"(?<![\w.])(?:{NUMBER})")
_PLAIN_NUMBER_RE = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:e[-+]?\d+)?")
_THOUSANDS_RE = re.compile(r"[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_SPACE_GROUPS_RE = re.compile(r"[-+]?\d{1,3}(?: \d{3})+(?:\.\d+)?")

_UNIT_TEXT_RE = re.compile(
    r"\\(?:text|textbf|mbox|mathrm|textrm)\s*\{[^{}]*\}(?:\s*\^\s*\{?\d\}?)?"
)
_TEXT_ONLY_RE = re.compile(r"^\\(?:text|textbf|mbox|mathrm|textrm)\s*\{([^{}]*)\}$")
_CONNECTIVE_RE = re.compile(r"\\(?:text|mbox|textrm|mathrm)\s*\{\s*(and|or)\s*\}")
_SPACING = re.compile(r"(?<!\\)\\(?:[!,;: ]|q?quad\b|displaystyle\b|textstyle\b)|~")
_UNIT_WORDS = re.compile(
    r"\s*(?:degrees?|dollars?|cents?|units?|square\s+\w+|sq\s+\w+|inches|inch|feet|foot|ft|"
    r"meters?|cm|km|mm|m|miles?|hours?|minutes?|seconds?|days?|weeks?|years?)\s*$"
)
#: commands whose one argument is the answer itself (bold, display styles)
_WRAPPERS = ("\\mathbf", "\\boldsymbol", "\\bm", "\\mathbfit", "\\pmb")
_SWITCHES_RE = re.compile(r"\\(?:bf|bfseries|boldmath|displaystyle|textstyle|rm)(?![A-Za-z])\s*")
_REPLACEMENTS = (
    ("\\dfrac", "\\frac"),
    ("\\tfrac", "\\frac"),
    ("\\cfrac", "\\frac"),
    ("\\left", ""),
    ("\\right", ""),
    ("\\$", ""),
    ("$", ""),
    ("\u00b0", ""),
    ("\u2212", "-"),
    ("\u2264", "\\le "),
    ("\u2265", "\\ge "),
    ("\u00b1", "\\pm "),
    ("\\leqslant", "\\le"),
    ("\\geqslant", "\\ge"),
    ("\\leq", "\\le"),
    ("\\geq", "\\ge"),
    ("<=", "\\le "),
    (">=", "\\ge "),
    ("\\lt", "<"),
    ("\\gt", ">"),
    ("\\varnothing", "\\emptyset"),
    ("\u03c0", "\\pi "),
    ("\u221e", "\\infty "),
    ("\u00d7", "\\times "),
    ("\u00b7", "\\cdot "),
    ("\u22c5", "\\cdot "),
    ("\u2260", "\\neq "),
    ("\u2208", "\\in "),
    ("\u222a", "\\cup "),
    ("\\{\\}", "\\emptyset"),
    ("\\{ \\}", "\\emptyset"),
)
_REPEATING_RE = re.compile(r"(-?)(\d*)\.(\d{0,12})\\overline\{(\d{1,12})\}")


def _repeating(match: re.Match) -> str:
    """``0.1\\overline{6}`` -> ``\\frac{1}{6}``: a repeating decimal as a fraction."""
    sign, whole, fixed, period = match.groups()
    value = Fraction(int(whole or "0")) + Fraction(int(fixed or "0"), 10 ** len(fixed))
    value += Fraction(int(period), (10 ** len(period) - 1) * 10 ** len(fixed))
    return f"{sign}\\frac{{{value.numerator}}}{{{value.denominator}}}"


def _matching_brace(s: str, start: int) -> int:
    """Index of the ``}`` closing the ``{`` at ``s[start]``, or -1."""
    depth = 0
    for i in range(start, len(s)):
        if s[i] == "{":
            depth += 1
        elif s[i] == "}":
            depth -= 1
            if depth == 0:
                return i
    return -1


def strip_wrappers(s: str) -> str:
    """``\\mathbf{9}`` -> ``9``, ``{\\bf 9}`` -> ``9``: bold and style markup around an answer."""
    for command in _WRAPPERS:
        pos = s.find(command + "{")
        while pos != -1:
            open_at = pos + len(command)
            close = _matching_brace(s, open_at)
            if close == -1:
                break
            s = s[:pos] + s[open_at + 1 : close] + s[close + 1 :]
            pos = s.find(command + "{", pos)
    s = _SWITCHES_RE.sub("", s)
    while len(s) > 1 and s[0] == "{" and _matching_brace(s, 0) == len(s) - 1:
        inner = s[1:-1]
        if re.search(r"[,;]", _top_level(inner)) and not _THOUSANDS_RE.fullmatch(inner.strip()):
            break  # "{1, 3}": a set written with bare braces
        s = inner.strip()
    return s


def _top_level(s: str) -> str:
    """``s`` with every bracketed group blanked out (to look for top-level separators)."""
    out, depth = [], 0
    for ch in s:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        out.append(ch if depth == 0 and ch not in ")]}" else " ")
    return "".join(out)


def normalize_answer(answer: str) -> str:
    """Canonical text of an answer (see the module docstring for what is removed)."""
    return _normalize(str(answer))


@functools.lru_cache(maxsize=8192)
def _normalize(answer: str) -> str:
    s = answer.strip()
    for old, new in _REPLACEMENTS:
        s = s.replace(old, new)
    s = re.sub(r"(?<=\d)\{([.,])\}(?=\d)", r"\1", s)  # 2{,}220 -> 2,220
    s = _REPEATING_RE.sub(_repeating, s)
    s = re.sub(r"\u221a\s*(\d+(?:\.\d+)?|[A-Za-z])", r"\\sqrt{\1}", s).replace("\u221a", "\\sqrt")
    s = re.sub(r",\\!\s*(?=\d{3})", ",", s)  # 10,\!080 -> 10,080
    s = _CONNECTIVE_RE.sub(r" \1 ", s)  # "-2 \text{and} 1": a list, not a unit
    s = strip_wrappers(s.strip())
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
    if _THOUSANDS_RE.fullmatch(s) and "," in s:
        s = s.replace(",", "")
    elif _SPACE_GROUPS_RE.fullmatch(s):
        s = s.replace(" ", "")  # 1 000 000
    s = _UNIT_WORDS.sub("", s) if re.match(r"^[-\d.,/ ]+\s*[a-z]", s) else s
    match = re.fullmatch(r"\(?\s*([A-Za-z])\s*\)?", s)  # multiple choice "(B)" -> "B"
    if match:
        s = match.group(1)
    return s.strip()


def _compact(answer: str) -> str:
    """The normalized answer without spaces, except a space between two digits ("3 5")."""
    s = normalize_answer(answer)
    return re.sub(r"(?<!\d) | (?!\d)", "", s).rstrip("%")


def parse_number(answer: str) -> float | None:
    """The number an answer states, or ``None``: plain numbers, thousands separators, ``$``,
    units, ``%`` (kept as the number before the sign), ``a/b`` and ``\\frac{a}{b}``."""
    s = _compact(answer)
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


_DECIMAL_COMMA_RE = re.compile(
    r"([-+]?)(\d{1,3}(?:\.\d{3})+|\d+),(\d+)"  # 1.234,5 / 1000,99 / 0,5
)


def decimal_comma(answer: str) -> float | None:
    """``1000,99`` -> 1000.99 where the comma cannot separate thousands (not exactly three
    digits after it, or four or more ungrouped digits before it); ``None`` otherwise."""
    s = _compact(answer)
    match = _DECIMAL_COMMA_RE.fullmatch(s)
    if not match:
        return None
    sign, whole, frac = match.groups()
    if not frac.strip("0"):
        return None  # "2,0" reads as a list as well
    grouped = "." in whole
    if not grouped and len(frac) == 3 and len(whole) <= 3:
        return None  # 1,250: thousands
    return float(f"{sign}{whole.replace('.', '')}.{frac}")


def loose_number(answer: str) -> float | None:
    """Like :func:`parse_number`, but also a number stated with words around it ("18 eggs")
    or as the last side of an equation ("x = 18")."""
    value = parse_number(answer)
    if value is not None:
        return value
    tail = re.split(r"=|\\approx", normalize_answer(answer))[-1]
    found = NUMBER_RE.findall(tail)
    if len(found) != 1:
        return None
    rest = NUMBER_RE.sub(" ", tail)  # only words of two letters or more may remain ("eggs")
    if re.fullmatch(r"(?:\s|[A-Za-z]{2,}|[.,:;!?$%])*", rest):
        return float(found[0].replace(",", ""))
    return None
