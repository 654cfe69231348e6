"""reasoning_accuracy on the answer forms of issue 15: hand-written cases per category, and every
bundled MATH-500 / GSM8K answer rewritten into each form that applies (see answer_forms.py),
with the same rewrites of a perturbed (wrong) answer, which must all be rejected."""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest
from moalign_objectives.reasoning_accuracy import ReasoningAccuracy

from moalign.data.bundled import bundled_path
from moalign.verify.answers import extract_answer, final_boxes, is_correct, normalize_answer
from moalign.verify.normalize import decimal_comma
from moalign.verify.structures import Relation, Seq, names_answer, parse
from tests.support.answer_forms import CATEGORIES, gsm8k_rewrites, math_rewrites, perturb

# (completion, reference, verdict) per category of the issue
CASES: dict[str, list[tuple[str, str, bool]]] = {
    "boxed statement": [
        ("The answer is \\boxed{18}.", "#### 18", True),
        ("$\\boxed{18}$", "#### 18", True),
        ("She sells 9 eggs.\nThe answer is $\\boxed{18}$.", "She sells 9.\n#### 18", True),
        ("So she makes \\boxed{1,250} dollars.", "#### 1,250", True),
        ("She sells 9.\n#### 18", "The answer is \\boxed{18}.", True),  # as the reference
        ("The answer is \\boxed{19}.", "#### 18", False),
    ],
    "final answer line": [
        ("Final Answer: The final answer is $\\frac{10\\sqrt{10.5}}{27}$. I hope it is correct.",
         "\\frac{10\\sqrt{10.5}}{27}", True),
        ("Final Answer: The final answer is $\\frac{10\\sqrt{10.5}}{27}$. I hope it is correct.",
         "\\frac{5\\sqrt{42}}{27}", True),
        ("Final Answer: The final answer is $(3, 2)$. I hope it is correct.", "(3,2)", True),
        ("Final Answer: The final answer is $\\text{(B)}$. I hope it is correct.", "\\text{(B)}",
         True),
        ("Final Answer: The final answer is $18$. I hope it is correct.", "#### 18", True),
        ("Final Answer: The final answer is $x^2+1$. I hope it is correct.", "x^2+2", False),
        ("Final Answer: The final answer is $17$. I hope it is correct.", "#### 18", False),
    ],
    "number format": [
        ("\\boxed{2{,}220}", "2220", True),
        ("The answer is $2{,}220$.", "#### 2,220", True),
        ("The answer is 1000,99.", "1000.99", True),
        ("\\boxed{0,5}", "\\frac12", True),
        ("\\boxed{1.234,5}", "1234.5", True),
        ("\\boxed{\\mathbf{9}}", "9", True),
        ("\\boxed{\\bf 9}", "9", True),
        ("The answer is {\\bf 9}.", "9", True),
        ("\\boxed{\\boldsymbol{9}}", "9", True),
        ("\\boxed{\\cfrac{3}{4}}", "0.75", True),
        ("\\boxed{\\cfrac{1}{1+\\cfrac{1}{2}}}", "\\frac23", True),
        ("\\boxed{1,250}", "1.25", False),  # three digits after the comma: thousands
        ("\\boxed{2,0}", "2", False),  # a list as much as a decimal
        ("\\boxed{\\mathbf{10}}", "9", False),
    ],
    "several boxes": [
        ("\\boxed{-2} \\quad\\text{and}\\quad \\boxed{1}", "1,-2", True),
        ("\\boxed{1}\\boxed{2}", "\\boxed{1,2}", True),
        ("$\\boxed{3}$ or $\\boxed{-3}$", "\\pm 3", True),
        ("$x = \\boxed{3}$ or $x = \\boxed{-3}$", "\\pm 3", True),
        ("The roots are $\\boxed{2}$, $\\boxed{5}$ and $\\boxed{7}$.", "2, 5, 7", True),
        ("$\\boxed{15\\frac{39}{40}},$ or $\\boxed{\\frac{639}{40}}$ inches", "\\frac{639}{40}",
         True),
        ("First \\boxed{5}. Then the analysis goes on and we find \\boxed{7}", "7", True),
        ("\\boxed{1} and \\boxed{3}", "1", False),
        ("\\boxed{-2} \\quad\\text{and}\\quad \\boxed{2}", "1,-2", False),
    ],
    "labelled": [
        ("\\boxed{(p,q)=(3,2)}", "(3,2)", True),
        ("\\boxed{f(x)=1}", "1", True),
        ("\\boxed{S_{MBCN}:S=7:32}", "7:32", True),
        ("\\boxed{AB = 5}", "5", True),
        ("\\boxed{m\\angle ABC = 30^\\circ}", "30", True),
        ("\\boxed{f^{-1}(4) = 2}", "2", True),
        ("\\boxed{2x = 10}", "x = 5", True),  # the same equation
        ("\\boxed{(p,q)=(2,3)}", "(3,2)", False),
        ("\\boxed{S_{MBCN}:S=7:31}", "7:32", False),
        ("\\boxed{2x = 10}", "10", False),  # an equation in x, not the value 10
    ],
    "inequality": [
        ("\\boxed{x \\geq 5}", "x >= 5", True),
        ("\\boxed{5 \\geq x}", "x \\leq 5", True),
        ("\\boxed{-x > -1}", "x < 1", True),
        ("\\boxed{x \\in [-2,7]}", "-2 \\le x \\le 7", True),
        ("\\boxed{(-793, 10)}", "-793 < a < 10", True),
        ("\\boxed{[5, \\infty)}", "x \\ge 5", True),
        ("\\boxed{x \\le -2 \\text{ or } x \\ge 3}", "(-\\infty,-2] \\cup [3, \\infty)", True),
        ("\\boxed{2x + 1 < 7}", "(-\\infty, 3)", True),
        ("\\boxed{x \u2265 5}", "[5,\\infty)", True),
        ("\\boxed{x > 5}", "x \\geq 5", False),
        ("\\boxed{x < 1}", "x > 1", False),
        ("\\boxed{-x > 1}", "x < 1", False),
        ("\\boxed{(-793, 11)}", "-793 < a < 10", False),
        ("\\boxed{x^2 < 4}", "(-2, 2)", False),  # not linear: not read as an interval
    ],
    "chain": [
        ("\\boxed{x = 5+5+1 = 11}", "11", True),
        ("\\boxed{x \\approx 11}", "11", True),
        ("The answer is $x = \\frac{14}{3} \\approx 4.67$.", "\\frac{14}{3}", True),
        ("So $A = \\pi r^2 = 9\\pi$.", "9\\pi", True),
        ("\\boxed{x = 5+5+1 = 12}", "11", False),
        ("\\boxed{2x = 11}", "11", False),
        ("\\boxed{x \\approx 4.67}", "\\frac{14}{3}", False),  # relative tolerance, no rounding
    ],
    "set or list": [
        ("\\boxed{{1,3}}", "\\{1,3\\}", True),
        ("\\boxed{-12;-11;-10}", "\\{-12,-11,-10\\}", True),
        ("\\boxed{\\pm 2021}", "{-2021, 2021}", True),
        ("The answer is 19, 46, and 82.", "19, 46, 82", True),
        ("\\boxed{x = 2 \\text{ or } x = 3}", "2, 3", True),
        ("\\boxed{3, 1}", "\\{1,3\\}", True),
        ("\\boxed{\\{5\\}}", "5", True),
        ("\\boxed{\\{1,3\\}}", "\\{1,4\\}", False),
        ("\\boxed{\\pm 2021}", "2021", False),
        ("\\boxed{1, 2, 3}", "1, 2", False),
        ("The answer is 19, 46, and 83.", "19, 46, 82", False),
    ],
    "prose": [
        ("The identity matrix is $\\begin{pmatrix}1&0\\\\0&1\\end{pmatrix}$.",
         "\\begin{pmatrix}1&0\\\\0&1\\end{pmatrix}", True),
        ("After 2 steps we reach $\\frac{\\sqrt{3}}{2}$.", "\\frac{\\sqrt3}2", True),
        ("We get $x=3$ and so the total is 8.", "8", True),  # a number after the math
        ("In 3 steps the distance becomes \\[5\\sqrt{2}.\\]", "\\sqrt{50}", True),
        ("It costs $5 and then $6 more.", "6", True),  # dollars, not math
        ("The identity matrix is $\\begin{pmatrix}1&0\\\\0&1\\end{pmatrix}$.", "1", False),
        ("After 2 steps we reach $\\frac{\\sqrt{3}}{3}$.", "\\frac{\\sqrt3}2", False),
    ],
    # beyond the issue: forms math-verify reads that moalign now reads too
    "more notation": [
        ("\\boxed{e^{i\\pi}}", "-1", True),  # e is Euler's number
        ("\\boxed{\\ln(e^2)}", "2", True),
        ("\\boxed{\\binom{6}{2}}", "15", True),
        ("\\boxed{\\log_2 8}", "3", True),
        ("\\boxed{5!}", "120", True),
        ("\\boxed{\\left|-3\\right|}", "3", True),
        ("\\boxed{\\varnothing}", "\\emptyset", True),
        ("\\boxed{0.1\\overline{6}}", "\\frac16", True),
        ("\\boxed{0.5}", "50\\%", True),
        ("\\boxed{\\sin^2 x + \\cos^2 x}", "1", True),
        ("\\boxed{\\{1,3\\} \\cup \\{2,4\\}}", "\\{1,2,3,4\\}", True),  # a union of sets
        ("\\boxed{\\{1,1,2\\}}", "\\{1,2\\}", True),
        ("\\boxed{\u221a12}", "2\\sqrt3", True),  # Unicode
        ("\\boxed{2\u03c0}", "2\\pi", True),
        ("#### \\boxed{18}", "#### 18", True),
        ("The answer is **18** eggs.", "#### 18", True),  # Markdown bold
        ("\\boxed{\\binom{6}{3}}", "15", False),
        ("\\boxed{\\log_2 8}", "4", False),
        ("\\boxed{6!}", "120", False),
        ("\\boxed{|-3|}", "-3", False),
        ("\\boxed{0.\\overline{6}}", "\\frac16", False),
        ("\\boxed{\\sin^2 x}", "\\sin x^2", False),
        ("\\boxed{\\{1,3\\} \\cup \\{2,4\\}}", "\\{1,2,3\\}", False),
        ("\\boxed{\u221a12}", "12", False),
    ],
    # where moalign is right and math-verify 0.9.0 is not: kept
    "moalign's own": [
        ("\\boxed{90\u00b0}", "90", True),
        ("\\boxed{7 \\cdot i}", "7i", True),
        ("\\boxed{0.3333333}", "\\frac13", True),
        ("\\boxed{0.0000001}", "0", False),  # relative tolerance, not rounding to 6 places
        ("\\boxed{1234567.6}", "1234567.5", False),  # same decimal places: exactly
        ("\\boxed{2.71828183}", "2.7182818", True),  # more places: relative tolerance
        ("\\boxed{1 + \\frac{1}{e}}", "1 - \\frac{1}{e}", False),
    ],
}


@pytest.mark.parametrize(
    "category, completion, reference, verdict",
    [(cat, *case) for cat, cases in CASES.items() for case in cases],
    ids=lambda v: v[:40] if isinstance(v, str) else str(v),
)
def test_hand_written_forms(category, completion, reference, verdict):
    assert is_correct(completion, reference) is verdict, (category, extract_answer(completion))


def test_every_category_has_right_and_wrong_cases():
    for category in (*CATEGORIES, "more notation", "moalign's own"):
        verdicts = {v for _, _, v in CASES[category]}
        assert verdicts == {True, False}, category


# --------------------------------------------------------------------------------------------
# The pieces: extraction, number formats, structures
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("\\boxed{-2} \\quad\\text{and}\\quad \\boxed{1}", "-2, 1"),
        ("\\boxed{4}\n\n\\boxed{4}", "4"),  # a box repeated counts once
        ("\\boxed{1}. Later, in another step, \\boxed{2}", "2"),
        ("\\boxed{\\boxed{3}}", "3"),
        ("no box", None),
    ],
)
def test_final_boxes(text, expected):
    assert final_boxes(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Final Answer: The final answer is $\\frac{1}{3}$. I hope it is correct.", "\\frac{1}{3}"),
        ("Final Answer: The final answer is 12. I hope it is correct.", "12"),
        ("The answer is \\boxed{18}.", "18"),
        ("We find $x = 4$ in 2 steps, so $y = 3$.", "y = 3"),
        ("Take 2 and 3: the sum is 5.", "5"),
    ],
)
def test_extraction_of_phrases_and_math(text, expected):
    assert extract_answer(text) == expected


def test_gsm8k_completions_read_dollar_signs_as_currency():
    assert extract_answer("She earns $5 per hour, $40 in all.", "gsm8k") == "40"
    assert is_correct("She earns $5 per hour, so $40 in all.", "#### 40")


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("2{,}220", "2220"),
        ("\\mathbf{9}", "9"),
        ("{\\bf 9}", "9"),
        ("\\boldsymbol{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("\\cfrac{3}{4}", "\\frac{3}{4}"),
        ("{\\bf 10,\\!080}", "10080"),
        ("1 000 000", "1000000"),
        ("{1,3}", "{1,3}"),  # a set with bare braces stays one
        ("-2 \\text{ and } 1", "-2 and 1"),  # "and" is a separator, not a unit
    ],
)
def test_normalize_number_formats(raw, expected):
    assert normalize_answer(raw) == expected


@pytest.mark.parametrize(
    "raw, value",
    [("1000,99", 1000.99), ("0,5", 0.5), ("1.234,5", 1234.5), ("-3,25", -3.25),
     ("1,250", None), ("2,0", None), ("1,2,3", None), ("x,5", None)],
)
def test_decimal_comma(raw, value):
    assert decimal_comma(raw) == value


@pytest.mark.parametrize(
    "lhs, names",
    [("x", True), ("x_1", True), ("f(x)", True), ("(p,q)", True), ("S_{MBCN}:S", True),
     ("\\angle ABC", True), ("\\theta", True), ("AB", True), ("2x", False), ("x+y", False),
     ("x^2", False), ("\\sin x", False), ("5x - 7y + 11z + 4", False)],
)
def test_labels(lhs, names):
    assert names_answer(lhs) is names


def test_inequalities_become_intervals():
    ge = parse(normalize_answer("x \\geq 5"))
    assert isinstance(ge, Seq) and ge.kind == "ordered" and ge.brackets == "[)"
    flipped = parse(normalize_answer("-2x > 4"))
    assert flipped.brackets == "()" and float(flipped.items[1].expr) == -2.0
    assert parse(normalize_answer("x^2 > 4")) == "x^2 > 4"  # not linear: left as text
    chain = parse(normalize_answer("x = 5+5+1 = 11"))
    assert isinstance(chain, Relation) and chain.names_answer and chain.values == ("11",)


def test_forms_stay_fast():
    cases = [case for cases in CASES.values() for case in cases]
    start = time.perf_counter()
    for completion, reference, _ in cases * 3:
        is_correct(completion, reference)
    assert (time.perf_counter() - start) / (3 * len(cases)) < 0.05


# --------------------------------------------------------------------------------------------
# Real rows: every bundled MATH-500 and GSM8K answer in every form that applies
# --------------------------------------------------------------------------------------------


def _rows(name: str) -> list[dict]:
    with open(bundled_path(name), encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _score(cases: list[tuple[str, str, str]]) -> tuple[Counter, dict[str, list]]:
    """``cases``: (category, completion, reference) -> cases per category, and the accepted
    and rejected ones."""
    obj = ReasoningAccuracy()
    scores = obj(None, [c for _, c, _ in cases], answer=[r for _, _, r in cases])
    totals: Counter = Counter()
    verdicts: dict[str, list] = {"accepted": [], "rejected": []}
    for (category, completion, reference), score in zip(cases, scores, strict=True):
        totals[category] += 1
        key = "accepted" if score == 1.0 else "rejected"
        verdicts[key].append((category, reference[-60:], completion[-120:]))
    return totals, verdicts


def _check(label: str, right: list, wrong: list, categories) -> None:
    totals, verdicts = _score(right)
    assert set(totals) == set(categories), f"{label}: categories exercised {sorted(totals)}"
    misses = verdicts["rejected"]
    rate = 1 - len(misses) / len(right)
    assert rate >= 0.99, f"{label}: {rate:.2%} accepted; misses {misses[:10]}"
    for category in totals:  # and no category is left behind
        missed = [m for m in misses if m[0] == category]
        assert len(missed) <= 0.05 * totals[category], (category, missed[:10])
    wrong_totals, wrong_verdicts = _score(wrong)
    false_accepts = wrong_verdicts["accepted"]
    assert not false_accepts, f"{label}: {len(false_accepts)} wrong answers accepted: " + repr(
        false_accepts[:10]
    )
    assert set(wrong_totals) == set(categories)


def test_math500_every_form_of_every_answer():
    right, wrong = [], []
    for row in _rows("math500"):
        ref = row["answer"]
        for category, completions in math_rewrites(ref, row["problem"]).items():
            right += [(category, c, ref) for c in completions]
        other = perturb(ref)
        if other is not None:
            for category, completions in math_rewrites(other, row["problem"]).items():
                wrong += [(category, c, ref) for c in completions]
    _check("MATH-500", right, wrong, CATEGORIES)


def test_gsm8k_every_form_of_every_answer():
    right, wrong = [], []
    for row in _rows("gsm8k"):
        solution = row["answer"]
        final = solution.split("####")[-1].strip()
        off = str(int(final.replace(",", "")) + 1)
        for category, completions in gsm8k_rewrites(solution, final).items():
            right += [(category, c, solution) for c in completions]
        for category, completions in gsm8k_rewrites(solution, off).items():
            wrong += [(category, c, solution) for c in completions]
    applicable = ("boxed statement", "final answer line", "number format", "labelled", "chain",
                  "prose")
    _check("GSM8K", right, wrong, applicable)


def test_generator_perturbs_values():
    assert perturb("\\frac{14}{3}") == "\\frac{15}{3}"
    assert perturb("4210_{5}") == "4211_{5}"  # the number, not its base
    assert perturb(".0000672") == "1.0000672"
    assert perturb("\\text{(C)}") == "\\text{(D)}"
    assert perturb("\\text{Evelyn}") is None


# --------------------------------------------------------------------------------------------
# Robustness: token soup never raises, stays fast, and code is never run
# --------------------------------------------------------------------------------------------

_TOKENS = [
    "x", "y", "=", "<", ">", "\\le", "\\geq", "\\approx", "1", "2", "-", "+", "(", ")", "[", "]",
    "\\{", "\\}", "{", "}", ",", ";", "\\pm", "\\cup", "\\frac{1}{2}", "\\sqrt{3}", "\\infty",
    "and", "\\text{ and }", "\\boxed{", "$", ":", "f(x)", "\\mathbf{", "\\bf", "2{,}220", "1,5",
    "^", "_", "\\begin{pmatrix}", "\\end{pmatrix}", "&", "\\\\", "i", "\\pi", "\\cdot", "!",
    "\\%", "\\$", "10^{100}", "\\log", "\\sin", "\\", "####", "The answer is", "Final Answer:",
    "\\neq", "\\in", "\\cfrac", "{,}", "\\!", "\\quad", "\\text{", "\\left", ".", "3.5", "-x",
    "2x", "\\theta", "\\angle", "\u00b0", "\u2264", "|", "\\binom{5}{2}", "\\binom", "5!", "!",
    "\\log_2", "\\log_", "0.\\overline{3}", "\\overline{", "\\varnothing", "e", "\\lvert",
    "\\sin^2",
]


def test_token_soup_never_raises_and_stays_fast():
    import random

    rng = random.Random(15)
    worst = 0.0
    for _ in range(1500):
        a = "".join(rng.choice(_TOKENS) + rng.choice(["", " "]) for _ in range(rng.randint(1, 14)))
        b = "".join(rng.choice(_TOKENS) + rng.choice(["", " "]) for _ in range(rng.randint(1, 8)))
        start = time.perf_counter()
        for completion, reference in ((a, b), (f"\\boxed{{{a}}}", b), (a, f"#### {b}")):
            assert is_correct(completion, reference) in (True, False, None)
        worst = max(worst, time.perf_counter() - start)
    assert worst < 2.0


def test_relations_do_not_run_code(tmp_path):
    marker = tmp_path / "pwned"
    for payload in (f"__import__('os').system('touch {marker}') > 1",
                    f"x = exec('open(\"{marker}\", \"w\")')",
                    "(lambda: 1)() < x < 2"):
        assert not is_correct(f"\\boxed{{{payload}}}", "(1, \\infty)")
        assert not is_correct(f"\\boxed{{{payload}}}", "1")
    assert not marker.exists()


def test_unbalanced_delimiters_stay_linear():
    start = time.perf_counter()
    for text in ("\\[ x " * 20000, "\\( " * 20000, "\\boxed{ " * 5000 + "1", "$" + ". a" * 50000,
                 "{" * 100000 + "\\boxed{1}", "\\boxed{" + "{" * 100000):
        is_correct(text, "1")
    assert time.perf_counter() - start < 3.0
    assert is_correct("{" * 1000 + "\\boxed{1}", "1")
