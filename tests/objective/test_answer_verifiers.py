"""reasoning_accuracy:verifier=moalign|math-verify|both, with and without the extra installed.

The plumbing (which verifier runs when, time limits on and off the main thread, the error
without the extra) is tested with a stand-in ``math_verify`` module, so it runs everywhere;
the real math-verify is tested where the ``moalign[math]`` extra is installed.
"""

from __future__ import annotations

import sys
import threading
import time
import types
from concurrent.futures import ThreadPoolExecutor

import pytest
from moalign_objectives.reasoning_accuracy import ReasoningAccuracy

import moalign
from moalign.errors import MoalignError, ObjectiveError
from moalign.verify import second_opinion
from moalign.verify.second_opinion import (
    MissingExtraError,
    check_answer,
    math_verify_available,
    math_verify_correct,
)


class FakeMathVerify(types.ModuleType):
    """Stands in for ``math_verify``: accepts when the completion contains the gold text,
    records the time limits it was given, and can be made slow."""

    def __init__(self, delay_s: float = 0.0):
        super().__init__("math_verify")
        self.delay_s = delay_s
        self.calls: list[dict] = []

    def parse(self, text, extraction_mode="any_match", parsing_timeout=5):
        self.calls.append({"parsing_timeout": parsing_timeout, "thread": threading.current_thread()})
        return [text.strip("$")]

    def verify(self, gold, target, timeout_seconds=5):
        self.calls.append({"timeout_seconds": timeout_seconds})
        time.sleep(self.delay_s)
        return gold[0] in target[0]


@pytest.fixture
def fake(monkeypatch) -> FakeMathVerify:
    module = FakeMathVerify()
    monkeypatch.setitem(sys.modules, "math_verify", module)
    return module


@pytest.fixture
def without_extra(monkeypatch):
    """``import math_verify`` fails, as where the extra is not installed."""
    monkeypatch.setitem(sys.modules, "math_verify", None)


# --------------------------------------------------------------------------------------------
# Without the extra
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("verifier", ["math-verify", "both"])
def test_without_the_extra_the_error_names_it(without_extra, verifier):
    assert not math_verify_available()
    with pytest.raises(ObjectiveError, match=r"moalign\[math\]") as info:
        moalign.load_objective(f"reasoning_accuracy:verifier={verifier}")
    assert info.value.objective == "reasoning_accuracy"
    with pytest.raises(MissingExtraError, match=r"pip install 'moalign\[math\]'") as err:
        math_verify_correct("\\boxed{1}", "1")
    assert isinstance(err.value, ImportError) and isinstance(err.value, MoalignError)


def test_without_the_extra_moalign_still_grades(without_extra):
    obj = ReasoningAccuracy()
    assert obj.verifier == "moalign"
    assert obj(None, ["\\boxed{2{,}220}", "\\boxed{3}"], answer=["2220", "4"]) == [1.0, 0.0]
    assert check_answer("\\boxed{x \\geq 5}", "[5, \\infty)") is True


def test_unknown_verifier_is_rejected():
    with pytest.raises(ObjectiveError, match="'verifier' must be one of moalign, math-verify, both"):
        ReasoningAccuracy(verifier="sympy")
    with pytest.raises(ValueError, match="unknown verifier"):
        check_answer("1", "1", verifier="sympy")


# --------------------------------------------------------------------------------------------
# The plumbing, with a stand-in math_verify
# --------------------------------------------------------------------------------------------


def test_both_asks_math_verify_only_on_a_reject(fake):
    obj = ReasoningAccuracy(verifier="both")
    assert repr(obj).endswith("verifier='both')")
    assert obj(None, ["\\boxed{\\frac{1}{2}}"], answer=["0.5"]) == [1.0]
    assert fake.calls == []  # moalign accepted: no second opinion
    # moalign does not read sums; the stand-in accepts text containing the gold answer
    assert obj(None, ["\\boxed{\\sum_{k=1}^{4} k} = 10"], answer=["10"]) == [1.0]
    assert fake.calls
    assert obj(None, ["\\boxed{1}"], answer=[None]) == [None]


def test_math_verify_alone(fake):
    obj = moalign.load_objective("reasoning_accuracy:verifier=math-verify")
    assert obj(None, ["so 42", "so 41"], answer=["#### 42", "#### 42"]) == [1.0, 0.0]


def test_time_limits_on_the_main_thread_use_math_verify_alarm(fake):
    assert threading.current_thread() is threading.main_thread()
    assert math_verify_correct("\\boxed{7}", "7", budget_s=2.5) is True
    limits = [c.get("parsing_timeout", c.get("timeout_seconds")) for c in fake.calls]
    assert limits and all(limit == 3 for limit in limits)  # whole seconds, rounded up


def test_off_the_main_thread_alarms_are_off_and_moalign_keeps_the_budget(fake):
    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(math_verify_correct, "\\boxed{7}", "7").result() is True
    assert all(c.get("parsing_timeout", c.get("timeout_seconds", 0)) is None for c in fake.calls)
    fake.delay_s = 3.0
    start = time.perf_counter()
    with ThreadPoolExecutor(1) as pool:
        late = pool.submit(math_verify_correct, "\\boxed{7}", "7", budget_s=0.2).result()
    assert late is False and time.perf_counter() - start < 2.0


def test_objective_runs_in_worker_threads(fake):
    obj = ReasoningAccuracy(verifier="both")
    with ThreadPoolExecutor(2) as pool:
        scores = list(pool.map(lambda c: obj(None, [c], answer=["10"])[0],
                               ["\\boxed{10}", "\\boxed{\\sum_{k=1}^{4} k} 10", "\\boxed{9}"]))
    assert scores == [1.0, 1.0, 0.0]


def test_errors_inside_math_verify_are_rejects(fake, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("parser exploded")

    monkeypatch.setattr(fake, "verify", broken)
    assert math_verify_correct("\\boxed{7}", "7") is False
    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(math_verify_correct, "\\boxed{7}", "7").result() is False


# --------------------------------------------------------------------------------------------
# The real math-verify (extra installed)
# --------------------------------------------------------------------------------------------


@pytest.fixture
def real_math_verify():
    return pytest.importorskip("math_verify", reason="the moalign[math] extra is not installed")


@pytest.mark.parametrize(
    "completion, reference, verdict",
    [
        ("The answer is $\\boxed{\\frac{1}{2}}$.", "0.5", True),
        ("\\boxed{\\binom{5}{2}}", "10", True),
        ("\\boxed{\\gcd(12, 18)}", "6", True),
        ("She sells 9 eggs.\n#### 18", "Work.\n#### 18", True),
        ("\\boxed{3}", "\\frac{1}{2}", False),
    ],
)
def test_real_math_verify(real_math_verify, completion, reference, verdict):
    assert math_verify_correct(completion, reference) is verdict


def test_real_both_extends_moalign(real_math_verify):
    moalign_only = ReasoningAccuracy()
    both = ReasoningAccuracy(verifier="both")
    completions = ["\\boxed{\\sum_{k=1}^{4} k}", "\\boxed{10}", "\\boxed{11}"]
    assert moalign_only(None, completions, answer=["10"] * 3) == [0.0, 1.0, 0.0]
    assert both(None, completions, answer=["10"] * 3) == [1.0, 1.0, 0.0]


def test_real_math_verify_off_the_main_thread(real_math_verify):
    with ThreadPoolExecutor(1) as pool:
        result = pool.submit(math_verify_correct, "\\boxed{\\frac{1}{2}}", "0.5").result()
    assert result is True


def test_module_names_the_extra():
    assert second_opinion.INSTALL_MATH == "pip install 'moalign[math]'"
