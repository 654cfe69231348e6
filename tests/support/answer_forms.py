"""Rewrites of real GSM8K / MATH-500 answers into the answer forms of issue 15.

Each function returns ``{category: [completion, ...]}``: the same answer stated the way models
and evaluation harnesses state it (boxed final statements, "Final Answer:" lines, number
formats, several boxes, labels, inequalities, chains, sets and lists, prose). Only the categories
that apply to an answer are filled. :func:`perturb` changes an answer's value (a number + 1, the
next choice letter), so that the same rewrites of it must all be rejected.
"""

from __future__ import annotations

import re
from decimal import Decimal

CATEGORIES = (
    "boxed statement",
    "final answer line",
    "number format",
    "several boxes",
    "labelled",
    "inequality",
    "chain",
    "set or list",
    "prose",
)

_NUMBER = re.compile(r"(?<![_\d.])(?<!_\{)(\d*\.\d+|\d+)")


def _top_split(s: str, sep: str = ",") -> list[str]:
    """``s`` split at ``sep`` outside (), [], {} and \\{ \\}."""
    parts, depth, start, i = [], 0, 0, 0
    while i < len(s):
        if s.startswith(("\\{", "\\}"), i):
            depth += 1 if s[i + 1] == "{" else -1
            i += 2
            continue
        if s[i] in "([{":
            depth += 1
        elif s[i] in ")]}":
            depth -= 1
        elif depth == 0 and s.startswith(sep, i):
            parts.append(s[start:i].strip())
            start = i + len(sep)
        i += 1
    parts.append(s[start:].strip())
    return parts


def _plain(answer: str) -> str:
    return answer.replace("\\left", "").replace("\\right", "").strip()


def _is_number_with_commas(answer: str) -> bool:
    return bool(re.fullmatch(r"(?:\\\$)?\d{1,3}(?:,(?:\\!)?\s*\d{3})+", answer))


def _list_items(answer: str) -> list[str] | None:
    """Items of a bare comma list ("1,-2", "3, 5, 7") or of a set ``\\{...\\}``."""
    s = _plain(answer)
    if s.startswith("\\{") and s.endswith("\\}"):
        s = s[2:-2]
    elif s[:1] in "([" or "\\begin" in s or _is_number_with_commas(answer):
        return None
    items = _top_split(s)
    return items if len(items) > 1 else None


def _expand_pm(item: str) -> list[str]:
    parts = item.split("\\pm")
    if len(parts) != 2:
        return [item]
    head, tail = parts[0].strip(), parts[1].strip()
    return [f"{head}+{tail}", f"{head}-{tail}"]


def _interval(answer: str, problem: str) -> list[tuple[str, str, str, str]] | None:
    """``[(open, lo, hi, close), ...]`` of an interval answer or a union of intervals."""
    s = re.sub(r"^[a-z]\s*\\in\s*", "", _plain(answer))
    pieces = [p.strip() for p in s.split("\\cup")]
    out = []
    for piece in pieces:
        match = re.fullmatch(r"([(\[])(.+)([)\]])", piece)
        items = _top_split(match.group(2)) if match else []
        if len(items) != 2:
            return None
        out.append((match.group(1), items[0], items[1], match.group(3)))
    explicit = "interval" in problem.lower() or "\\infty" in s or "\\cup" in s or "[" in s + "]"
    return out if explicit else None


def _inequality(opening: str, lo: str, hi: str, closing: str, var: str = "x") -> str:
    low = None if lo.replace(" ", "") == "-\\infty" else ("\\le" if opening == "[" else "<")
    high = None if hi.replace(" ", "") in ("\\infty", "+\\infty") else (
        "\\le" if closing == "]" else "<"
    )
    if low and high:
        return f"{lo} {low} {var} {high} {hi}"
    geq, leq = "\\geq", "\\leq"
    if low:
        return f"{var} {geq if low != '<' else '>'} {lo}"
    return f"{var} {leq if high != '<' else '<'} {hi}"


def _scalar(answer: str) -> bool:
    s = _plain(answer)
    return not (
        _list_items(answer)
        or s[:1] in "([\\{"
        or any(t in s for t in ("=", "\\in", "\\pm", "\\cup", "\\begin", "\\text", "\\mbox"))
    )


def math_rewrites(answer: str, problem: str = "") -> dict[str, list[str]]:
    """Completions stating the MATH answer ``answer`` in every form that applies to it."""
    a = answer
    out: dict[str, list[str]] = {c: [] for c in CATEGORIES}
    out["boxed statement"] += [f"The answer is \\boxed{{{a}}}.", f"So the answer is $\\boxed{{{a}}}$."]
    out["final answer line"].append(
        f"We simplify.\nFinal Answer: The final answer is ${a}$. I hope it is correct."
    )
    out["prose"] += [
        f"Adding the 2 cases and the 3 terms, we obtain ${a}$.",
        f"Collecting both results gives\n\\[{a}.\\]",
    ]
    # number formats
    fmt = out["number format"]
    digits = re.fullmatch(r"(\\\$)?(\d[\d,\\! ]*)", a)
    if digits and len(re.sub(r"\D", "", digits.group(2))) >= 4:
        d = re.sub(r"\D", "", digits.group(2))
        groups = [d[max(i - 3, 0) : i] for i in range(len(d), 0, -3)][::-1]
        fmt.append(f"The answer is $\\boxed{{{(digits.group(1) or '')}{'{,}'.join(groups)}}}$.")
    decimal = re.fullmatch(r"(-?)(\d*)\.(\d+)", a)
    if decimal and len(decimal.group(3)) != 3:
        fmt.append(f"\\boxed{{{decimal.group(1)}{decimal.group(2) or '0'},{decimal.group(3)}}}")
    if "\\begin" not in a:
        fmt += [f"\\boxed{{\\mathbf{{{a}}}}}", f"\\boxed{{{{\\bf {a}}}}}",
                f"\\boxed{{\\boldsymbol{{{a}}}}}"]
    if "\\frac" in a:
        cfrac = a.replace("\\frac", "\\cfrac")
        fmt.append(f"\\boxed{{{cfrac}}}")
    # several boxes, sets and lists
    items = _list_items(a)
    if items:
        values = [v for item in items for v in _expand_pm(item)]
        boxes = [f"\\boxed{{{v}}}" for v in values]
        out["several boxes"] += [
            " \\quad\\text{and}\\quad ".join(boxes),
            "The solutions are " + ", ".join(f"${b}$" for b in boxes) + ".",
            "".join(boxes),
        ]
        spoken = ", ".join(values[:-1]) + (", and " if len(values) > 2 else " and ") + values[-1]
        out["several boxes"].append(f"The answer is {spoken}.")
        out["set or list"] += [
            f"\\boxed{{\\{{{', '.join(values)}\\}}}}",
            f"\\boxed{{{{{', '.join(values[::-1])}}}}}",
            f"\\boxed{{{'; '.join(values)}}}",
            f"\\boxed{{{', '.join(items[::-1])}}}",
        ]
    elif "\\pm" in a and _scalar(a.replace("\\pm", "+")):
        plus, minus = _expand_pm(a)
        out["several boxes"].append(f"\\boxed{{{plus}}} \\text{{ and }} \\boxed{{{minus}}}")
        out["set or list"] += [f"\\boxed{{\\{{{minus}, {plus}\\}}}}", f"\\boxed{{{minus}; {plus}}}"]
    # labels
    tuple_items = _top_split(_plain(a)[1:-1]) if re.fullmatch(r"\(.*\)", _plain(a)) else []
    if _scalar(a):
        out["labelled"] += [f"The answer is $f(x) = {a}$.", f"\\boxed{{S_{{ABC}} = {a}}}"]
    elif len(tuple_items) > 1 and not _interval(a, problem):
        names = ", ".join("pqrstuvw"[: len(tuple_items)])
        out["labelled"].append(f"\\boxed{{({names}) = {a}}}")
    elif "\\begin{pmatrix}" in a:
        out["labelled"].append(f"\\boxed{{\\mathbf{{v}} = {a}}}")
    ratio = re.fullmatch(r"\\frac\{(\d+)\}\{(\d+)\}", a)
    if ratio:
        out["labelled"].append(f"\\boxed{{S_{{MBCN}}:S = {ratio.group(1)}:{ratio.group(2)}}}")
    # inequalities and intervals
    intervals = _interval(a, problem)
    if intervals:
        forms = [_inequality(*iv) for iv in intervals]
        joined = " \\text{ or } ".join(forms)
        out["inequality"] += [
            f"\\boxed{{{joined}}}",
            f"\\boxed{{x \\in {_plain(a)}}}" if "\\in" not in a else f"\\boxed{{{a}}}",
        ]
        if len(intervals) == 1:
            opening, lo, hi, closing = intervals[0]
            if "\\infty" not in lo and "\\infty" not in hi:  # reversed: hi > x > lo
                rev = {"(": ">", "[": "\\geq"}[opening], {")": ">", "]": "\\geq"}[closing]
                out["inequality"].append(f"\\boxed{{{hi} {rev[1]} x {rev[0]} {lo}}}")
            elif "\\infty" in lo:
                op = "\\geq" if closing == "]" else ">"
                out["inequality"].append(f"\\boxed{{-x {op} -\\left({hi}\\right)}}")
            else:
                op = "\\leq" if opening == "[" else "<"
                out["inequality"].append(f"\\boxed{{{lo} {op} x}}")
    # chains and approximations
    if _scalar(a):
        out["chain"].append(f"The answer is $x = \\frac{{2\\left({a}\\right)}}{{2}} = {a}$.")
        if re.fullmatch(r"-?(?:\d+\.?\d*|\.\d+)", a):
            out["chain"].append(f"\\boxed{{x \\approx {a}}}")
        frac = re.fullmatch(r"(-?)\\frac\{(\d+)\}\{(\d+)\}", a)
        if frac:
            approx = round(int(frac.group(2)) / int(frac.group(3)), 3)
            out["chain"].append(f"\\boxed{{x = {a} \\approx {frac.group(1)}{approx}}}")
    return {k: v for k, v in out.items() if v}


def gsm8k_rewrites(solution: str, final: str) -> dict[str, list[str]]:
    """Completions: the GSM8K ``solution``'s work, then its final number ``final`` stated in
    every form that applies to a number."""
    body = solution.rsplit("####", 1)[0].strip()
    n = final.replace(",", "")
    out = {
        "boxed statement": [f"{body}\nThe answer is \\boxed{{{n}}}.", f"{body}\n$\\boxed{{{n}}}$",
                            f"{body}\nSo she has \\boxed{{{n}}} in total."],
        "final answer line": [
            f"{body}\nFinal Answer: The final answer is ${n}$. I hope it is correct."
        ],
        "number format": [f"{body}\nThe answer is $\\mathbf{{{n}}}$.",
                          f"{body}\n\\boxed{{{{\\bf {n}}}}}",
                          f"{body}\n\\boxed{{\\boldsymbol{{{n}}}}}",
                          f"{body}\nThe answer is \\${n}."],
        "labelled": [f"{body}\nThe answer is $T = {n}$.", f"{body}\n\\boxed{{f(x) = {n}}}"],
        "chain": [f"{body}\nSo the answer is $x = {n} - 1 + 1 = {n}$.",
                  f"{body}\nThe answer is $x \\approx {n}$."],
        "prose": [f"{body}\nIn total, that makes ${n}$ dollars.",
                  f"{body}\nIn total, she makes {n} dollars."],
    }
    digits = n.lstrip("-")
    if len(digits) >= 4:
        groups = [digits[max(i - 3, 0) : i] for i in range(len(digits), 0, -3)][::-1]
        sign = "-" if n.startswith("-") else ""
        out["number format"].append(f"{body}\nThe answer is $\\boxed{{{sign}{'{,}'.join(groups)}}}$.")
    return out


_CHOICES = {"A": "B", "B": "C", "C": "D", "D": "E", "E": "A"}


def perturb(answer: str) -> str | None:
    """``answer`` with its value changed (its first number + 1, or the next choice letter);
    ``None`` when it has neither."""
    choice = re.fullmatch(r"\\text\{\(([A-E])\)\}", answer)
    if choice:
        return f"\\text{{({_CHOICES[choice.group(1)]})}}"
    match = _NUMBER.search(answer)
    if not match:
        return None
    value = Decimal(match.group(1)) + 1
    return answer[: match.start()] + str(value) + answer[match.end() :]
