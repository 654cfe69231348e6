"""reasoning_accuracy: answer extraction, normalization, equivalence, and real GSM8K / MATH-500."""

from __future__ import annotations

import json
import re
import time
from fractions import Fraction

import pytest
from moalign_objectives.reasoning_accuracy import ReasoningAccuracy

import moalign
from moalign.data.bundled import bundled_path
from moalign.errors import ObjectiveError
from moalign.verify.answers import (
    answers_match,
    extract_answer,
    extract_boxed,
    is_correct,
    normalize_answer,
    parse_number,
    parse_reference,
)
from moalign.verify.latex_math import latex_to_expression, to_sympy


def _rows(name: str) -> list[dict]:
    with open(bundled_path(name), encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope="module")
def gsm8k() -> list[dict]:
    return _rows("gsm8k")


@pytest.fixture(scope="module")
def math500() -> list[dict]:
    return _rows("math500")


# --------------------------------------------------------------------------------------------
# Extraction
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("so $\\boxed{\\frac{1}{\\sqrt{2}}}$.", "\\frac{1}{\\sqrt{2}}"),
        ("\\boxed{1} then \\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),
        ("first \\boxed{3}, final \\fbox{4}", "4"),
        ("\\fbox{x} and later \\boxed{y}", "y"),
        ("the result is \\boxed 7 clearly", "7"),
        ("unclosed \\boxed{1 + ", None),
        ("no box here", None),
    ],
)
def test_extract_boxed(text, expected):
    assert extract_boxed(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("She has 3 + 4 = <<3+4=7>>7 apples.\n#### 7", "7"),
        ("Work... #### 1,250\n", "1,250"),
        ("So the answer is 42.", "42"),
        ("The final answer is: **3.5**. Next question", "3.5"),
        ("Therefore the answer is $\\frac{1}{2}$. Done.", "\\frac{1}{2}"),
        ("Answer: $18", "$18"),
        ("We get 12 then 15 and finally 20.5 apples", "20.5"),
        ("Costs 1,000 dollars, not 999", "999"),
        ("the answer is 5 and \\boxed{6}", "6"),
        ("nothing numeric", None),
    ],
)
def test_extract_answer_auto(text, expected):
    assert extract_answer(text) == expected


def test_gsm8k_format_prefers_marker_over_box():
    text = "\\boxed{3} was a guess; the computation gives\n#### 4"
    assert extract_answer(text, "gsm8k") == "4"
    assert extract_answer(text, "auto") == "3"


def test_unknown_format_is_rejected():
    with pytest.raises(ValueError, match="answer_format"):
        extract_answer("1", "latex")


@pytest.mark.parametrize(
    "reference, expected",
    [
        ("Two steps.\n#### 72", "72"),
        ("so $\\boxed{\\dfrac{3}{4}}$", "\\dfrac{3}{4}"),
        ("\\frac{1}{2}", "\\frac{1}{2}"),
        (72, "72"),
        (0.5, "0.5"),
        (None, None),
        ("   ", None),
        (float("nan"), None),
    ],
)
def test_parse_reference(reference, expected):
    assert parse_reference(reference) == expected


# --------------------------------------------------------------------------------------------
# Normalization and numbers
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("$1,000.", "1000"),
        ("\\$32,\\!348", "32348"),
        ("11,\\! 111,\\! 111,\\! 100", "11111111100"),
        ("90^\\circ", "90"),
        ("90^{\\circ}", "90"),
        ("864 \\mbox{ inches}^2", "864"),
        ("5.4 \\text{ cents}", "5.4"),
        ("\\text{(B)}", "B"),
        ("\\text{Evelyn}", "Evelyn"),
        ("\\left( 3, \\dfrac{\\pi}{2} \\right)", "( 3, \\frac{\\pi}{2} )"),
        ("x \\in [-2,7]", "[-2,7]"),
        ("(1,234)", "(1,234)"),  # a tuple, not a thousands separator
        ("3, 5, 7", "3, 5, 7"),
    ],
)
def test_normalize_answer(raw, expected):
    assert normalize_answer(raw) == expected


@pytest.mark.parametrize(
    "raw, value",
    [
        ("1,250", 1250.0),
        ("-10", -10.0),
        (".35625", 0.35625),
        ("$18.00", 18.0),
        ("45%", 45.0),
        ("\\frac{3}{4}", 0.75),
        ("-7/2", -3.5),
        ("x+1", None),
        ("1/0", None),
    ],
)
def test_parse_number(raw, value):
    assert parse_number(raw) == value


def test_numeric_tolerance_is_relative_and_whole_numbers_exact():
    assert answers_match("0.3333333", "1/3", tolerance=1e-6)
    assert not answers_match("0.3333333", "1/3", tolerance=1e-9)
    assert answers_match("0.0000672", ".0000672")
    assert not answers_match("0.0000673", ".0000672")
    # 1e-6 relative would accept 1450001 for 1450000; whole numbers must be equal
    assert not answers_match("1450001", "1,450,000")
    assert answers_match("1450000.0", "1,450,000")
    big = "123456789012345678901234567890"
    assert answers_match(big, big)
    assert not answers_match(big[:-1] + "1", big)  # beyond float precision
    assert not answers_match(big[:-1] + "1", big, answer_format="gsm8k")


def test_percent_and_units():
    assert is_correct("The answer is 50%.", "#### 50")
    assert is_correct("So she earns $18 every day.\n#### $18.00", "#### 18")
    assert is_correct("The answer is 18 dollars.", "#### 18")
    assert is_correct("The answer is 25%.", "0.25")
    assert not is_correct("The answer is 2k.", "2")  # a variable is not a unit


# --------------------------------------------------------------------------------------------
# Symbolic equivalence (MATH-style)
# --------------------------------------------------------------------------------------------

EQUIVALENT = [
    ("\\frac{1}{2}", "0.5"),
    ("\\frac{1}{2}", "1/2"),
    ("\\dfrac{1}{2}", "\\tfrac12"),
    ("\\frac 34", "0.75"),
    ("\\frac9{19}", "9/19"),
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3, \\pi/2)"),
    ("2\\sqrt{5}", "\\sqrt{20}"),
    ("11\\sqrt2", "11 \\sqrt{2}"),
    ("\\frac{\\sqrt{3}}{3}", "\\frac{1}{\\sqrt{3}}"),
    ("\\sqrt[3]{8}", "2"),
    ("x^3+3x-6", "-6 + 3x + x^{3}"),
    ("(a+5)(b+2)", "ab + 2a + 5b + 10"),
    ("\\cot x", "\\frac{\\cos x}{\\sin x}"),
    ("-2 + 7i", "7i - 2"),
    ("1\\frac{4}{5}", "9/5"),
    ("137 \\frac{1}{2}", "137.5"),
    ("3 \\pm 2 \\sqrt{2}", "3 - 2\\sqrt{2}, 3 + 2\\sqrt{2}"),
    ("\\{1\\pm\\sqrt{5},-2\\}", "\\{-2, 1-\\sqrt5, 1+\\sqrt5\\}"),
    ("-2,1", "1, -2"),
    ("(-\\infty, 2) \\cup (3, \\infty)", "(3,\\infty)\\cup(-\\infty,2)"),
    ("\\left(\\frac{3}{5},\\frac{8}{3}\\right]", "(0.6, 8/3]"),
    ("\\begin{pmatrix} -1/3 \\\\ 2/3 \\\\ 5/3 \\end{pmatrix}", "(-\\frac13, \\frac23, \\frac53)"),
    (
        "\\begin{pmatrix} -1 & 0 \\\\ 0 & -1 \\end{pmatrix}",
        "\\begin{pmatrix}-1&0\\\\0&-1\\end{pmatrix}",
    ),
    ("5x - 7y + 11z + 4 = 0", "-10x + 14y - 22z = 8"),
    ("x=5", "5"),
    ("y = 2x + 3", "y = 3 + 2x"),
    ("\\frac{20000}{\\pi}", "20000/\\pi"),
    ("\\text{(C)}", "C"),
    ("\\text{Navin}", "navin"),
    ("204_5", "204_{5}"),
    ("30^\\circ", "30"),
]

NOT_EQUIVALENT = [
    ("\\frac{1}{2}", "0.51"),
    ("p - q", "q - p"),
    ("(3,4]", "(3,4)"),
    ("(8,-2)", "(-2,8)"),  # tuples are ordered
    ("2", "2k"),
    ("\\sqrt{2}", "1.41"),
    ("x^2", "x^3"),
    ("3 \\pm 2\\sqrt2", "3 + 2\\sqrt2"),
    ("5x - 7y + 11z + 4 = 0", "5x - 7y + 11z = 4"),
    ("\\text{(B)}", "C"),
    ("204_5", "204_6"),
    ("(1,-16,-4,43)", "(1,-16,-4)"),
]


@pytest.mark.parametrize("a, b", EQUIVALENT)
def test_equivalent_forms(a, b):
    assert answers_match(a, b), (a, b)
    assert answers_match(b, a), (b, a)


@pytest.mark.parametrize("a, b", NOT_EQUIVALENT)
def test_different_answers(a, b):
    assert not answers_match(a, b), (a, b)
    assert not answers_match(b, a), (b, a)


def test_plain_format_does_not_use_symbolic_comparison():
    assert answers_match("x + 1", "1 + x", answer_format="math")
    assert not answers_match("x + 1", "1 + x", answer_format="plain")
    assert answers_match("\\frac{1}{2}", "0.5", answer_format="plain")  # still numeric


def test_gsm8k_format_compares_numbers_only():
    assert answers_match("18", "18.0", answer_format="gsm8k")
    assert not answers_match("x", "x", answer_format="gsm8k")


# --------------------------------------------------------------------------------------------
# Safety: untrusted text is never evaluated, expensive expressions are refused
# --------------------------------------------------------------------------------------------


def test_code_in_an_answer_is_not_evaluated(tmp_path):
    marker = tmp_path / "pwned"
    payloads = [
        f"__import__('os').system('touch {marker}')",
        f'\\boxed{{__import__("os").system("touch {marker}")}}',
        "().__class__.__bases__[0].__subclasses__()",
        "lambda x: x",
        "exec(1)",
    ]
    for payload in payloads:
        text = latex_to_expression(payload)
        # either refused, or only arithmetic over one-letter symbols ("exec" -> e*x*e*c)
        assert text is None or re.fullmatch(r"[0-9A-Za-z+\-*/(). ]*", text), text
        assert text is None or not re.search(r"[A-Za-z]{2}", text), text
        assert not is_correct(payload, "123456", answer_format="math")
        assert not is_correct(f"\\boxed{{{payload}}}", "1")
        assert not answers_match(payload, "1")
    assert not marker.exists()


def test_huge_expressions_are_refused_quickly():
    start = time.perf_counter()
    assert to_sympy("2^{2^{2^{100}}}") is None
    assert to_sympy("10^{100000}") is None
    assert to_sympy("9" * 500) is None
    assert not is_correct("\\boxed{2^{2^{2^{2^{2^{100}}}}}}", "\\frac{1}{2}")
    assert not is_correct("\\boxed{" + "(" * 300 + "1" + ")" * 300 + "}", "\\frac{1}{3}")
    assert not is_correct("\\boxed{" + ", ".join(["x"] * 400) + "}", "\\{y\\}")
    nested = "((10^{60})^{1000})^{1000}"  # every exponent small, the value beyond floats
    assert answers_match(nested, nested.replace("60", "{60}"))
    assert not answers_match(nested, nested + "+1")
    big = "word " * 200_000 + "the answer is 7."
    assert is_correct(big, "7")
    assert time.perf_counter() - start < 5.0


def test_small_powers_are_still_compared():
    assert to_sympy("2^{10}") is not None
    assert answers_match("2^{10}", "1024")
    assert answers_match("1^{100000}", "1")


# --------------------------------------------------------------------------------------------
# The objective
# --------------------------------------------------------------------------------------------


def test_objective_scores_and_none_for_missing_reference():
    obj = ReasoningAccuracy()
    completions = [
        "so $\\boxed{\\frac{1}{2}}$",
        "The answer is 0.5.",
        "I think it is 3.",
        "\\boxed{7}",
        "\\boxed{7}",
    ]
    scores = obj(["q"] * 5, completions, answer=["0.5", "\\frac12", "4", None, ""])
    assert scores == [1.0, 1.0, 0.0, None, None]


def test_objective_accepts_chat_messages():
    obj = ReasoningAccuracy()
    prompts = [[{"role": "user", "content": "What is 6 * 7?"}]] * 2
    completions = [
        [{"role": "assistant", "content": "6 * 7 = 42, so the answer is 42."}],
        [{"role": "assistant", "content": "The answer is 41."}],
    ]
    assert obj(prompts, completions, answer=["#### 42", "#### 42"]) == [1.0, 0.0]


def test_reference_column_is_configurable():
    obj = moalign.load_objective("reasoning_accuracy:reference_column=solution")
    assert obj.required_columns == ("solution",)
    assert obj(None, ["\\boxed{3}"], solution=["$\\boxed{3}$"]) == [1.0]
    with pytest.raises(ObjectiveError, match="reasoning_accuracy.*'solution'") as info:
        obj(None, ["\\boxed{3}"], answer=["3"])
    assert info.value.objective == "reasoning_accuracy"
    # the class default is unchanged by an instance with another column
    assert ReasoningAccuracy().required_columns == ("answer",)


def test_missing_reference_column_names_the_objective():
    obj = ReasoningAccuracy()
    with pytest.raises(ObjectiveError, match="reasoning_accuracy.*'answer'"):
        obj(["q"], ["1"])
    with pytest.raises(ObjectiveError, match="column 'answer' has 2 values for 1"):
        obj(["q"], ["1"], answer=["1", "2"])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"answer_format": "latex"}, "answer_format"),
        ({"tolerance": -1}, "tolerance"),
        ({"tolerance": float("nan")}, "tolerance"),
        ({"tolerance": True}, "tolerance"),
        ({"reference_column": ""}, "reference_column"),
        ({"reference_column": 3}, "reference_column"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ObjectiveError, match=match) as info:
        ReasoningAccuracy(**kwargs)
    assert info.value.objective == "reasoning_accuracy"


def test_registered_under_its_name():
    assert "reasoning_accuracy" in moalign.available_objectives()
    obj = moalign.load_objective({"name": "reasoning_accuracy", "answer_format": "gsm8k"})
    assert isinstance(obj, ReasoningAccuracy) and obj.answer_format == "gsm8k"
    assert obj.__name__ == "reasoning_accuracy"


# --------------------------------------------------------------------------------------------
# Real data: every GSM8K test row, MATH-500 rows
# --------------------------------------------------------------------------------------------


def _final(answer: str) -> str:
    return answer.split("####")[-1].strip()


def test_gsm8k_every_row(gsm8k):
    assert len(gsm8k) == 1319
    obj = ReasoningAccuracy()
    refs = [row["answer"] for row in gsm8k]
    finals = [_final(r) for r in refs]
    wrong = [str(int(f.replace(",", "")) + 1) for f in finals]
    cases = {
        "reference solution": refs,
        "the answer is N": [f"The answer is {f}." for f in finals],
        "boxed N": [f"Putting it together, $\\boxed{{{f}}}$." for f in finals],
        "chat message": [
            [{"role": "assistant", "content": f"So the answer is {f}."}] for f in finals
        ],
    }
    for label, completions in cases.items():
        scores = obj(None, completions, answer=refs)
        bad = [i for i, s in enumerate(scores) if s != 1.0]
        assert not bad, f"{label}: rows {bad[:10]} scored wrong"
    perturbed = {
        "solution with N+1": [
            r.rsplit("####", 1)[0] + "#### " + w for r, w in zip(refs, wrong, strict=True)
        ],
        "the answer is N+1": [f"The answer is {w}." for w in wrong],
        "boxed N+1": [f"\\boxed{{{w}}}" for w in wrong],
    }
    for label, completions in perturbed.items():
        scores = obj(None, completions, answer=refs)
        bad = [i for i, s in enumerate(scores) if s != 0.0]
        assert not bad, f"{label}: rows {bad[:10]} scored right"


def test_math500_boxed_reference_answer_scores_correct(math500):
    obj = ReasoningAccuracy()
    refs = [row["answer"] for row in math500]
    completions = [f"Therefore the final answer is $\\boxed{{{a}}}$." for a in refs]
    scores = obj(None, completions, answer=refs)
    bad = [refs[i] for i, s in enumerate(scores) if s != 1.0]
    assert not bad, f"{len(bad)}/500 boxed answers scored wrong: {bad[:10]}"


def test_math500_reference_solution_scores_correct(math500):
    obj = ReasoningAccuracy()
    scores = obj(None, [r["solution"] for r in math500], answer=[r["answer"] for r in math500])
    bad = [
        (r["answer"], extract_answer(r["solution"]))
        for r, s in zip(math500, scores, strict=True)
        if s != 1.0
    ]
    assert len(bad) <= 5, f"{len(bad)}/500 solutions scored wrong: {bad[:10]}"


def _rewrites(answer: str) -> dict[str, str]:
    """Equivalent spellings of a MATH answer."""
    out = {
        "dfrac": answer.replace("\\frac", "\\dfrac"),
        "no left/right": answer.replace("\\left", "").replace("\\right", ""),
        "no spaces": answer.replace(" ", ""),
    }
    if not re.match(r"^\d+\s*\\frac", answer):  # not a mixed number
        out["slash"] = re.sub(r"\\frac\{(-?\d+)\}\{(\d+)\}", r"\1/\2", answer)
    frac = re.fullmatch(r"(-?)\\[dt]?frac\{(\d+)\}\{(\d+)\}", answer)
    if frac:
        value = Fraction(int(frac[2]), int(frac[3]))
        den = value.denominator
        for p in (2, 5):
            while den % p == 0:
                den //= p
        if den == 1:
            out["decimal"] = frac[1] + str(float(value))
    return {k: v for k, v in out.items() if v != answer}


def test_math500_equivalent_forms_on_real_rows(math500):
    checked = {"dfrac": 0, "no left/right": 0, "slash": 0, "decimal": 0, "no spaces": 0}
    failures = []
    for row in math500:
        for kind, form in _rewrites(row["answer"]).items():
            checked[kind] += 1
            if not is_correct(f"The answer is $\\boxed{{{form}}}$.", row["answer"]):
                failures.append((kind, row["answer"], form))
    assert not failures, failures[:10]
    # the real rows exercise each kind of rewrite
    assert checked["decimal"] >= 5 and checked["slash"] >= 30 and checked["no left/right"] >= 4
    half = [r for r in math500 if r["answer"] == "\\frac{1}{2}"]
    assert half, "MATH-500 has a row whose answer is \\frac{1}{2}"
    for form in ("0.5", "1/2", "\\dfrac{1}{2}", "\\frac12", ".5"):
        assert is_correct(f"\\boxed{{{form}}}", half[0]["answer"]), form


def test_math500_other_rows_answers_are_wrong(math500):
    """A real answer from another row is wrong unless it is the same answer."""
    refs = [row["answer"] for row in math500]
    false_hits = []
    for i, ref in enumerate(refs):
        for shift in (1, 7, 131):
            other = refs[(i + shift) % len(refs)]
            same = normalize_answer(other).replace(" ", "") == normalize_answer(ref).replace(
                " ", ""
            )
            if not same and "=" not in other + ref and is_correct(f"\\boxed{{{other}}}", ref):
                false_hits.append((ref, other))
    assert not false_hits, false_hits[:10]


def test_math500_numeric_answers_perturbed_are_wrong(math500):
    numeric = [r["answer"] for r in math500 if re.fullmatch(r"-?\d+", r["answer"])]
    assert len(numeric) > 100
    for ref in numeric:
        assert not is_correct(f"\\boxed{{{int(ref) + 1}}}", ref), ref
