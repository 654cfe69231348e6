"""Speed and agreement of moalign's answer verifier and Hugging Face's math-verify.

Both grade the same completions against the same references, one call per completion, on one
thread (the main one, where math-verify's ``signal.alarm`` time limits work), through the same
entry point the ``reasoning_accuracy`` objective uses (``check_answer(verifier=...)``):

- ``MATH-500 solutions``: the 500 bundled reference solutions against their answers (accepts);
- ``MATH-500 wrong``: each solution against the next row's answer (rejects, mostly);
- ``GSM8K solutions``: the first 500 bundled GSM8K solutions against their ``#### n`` answers.

Each cell is the best of ``--repeats`` passes of CPU time; the passes of the two verifiers are
interleaved so that machine noise hits both alike, and moalign's caches (normalized answers,
parsed expressions and structures) are emptied before each of its passes, so that no pass
profits from an earlier one.
``ratio`` is moalign's calls per second over math-verify's; ``agree`` the share of the same
verdicts. Needs the extra: ``pip install 'moalign[math]'``.

``--forms`` adds the acceptance table of issue 15: every bundled MATH-500 and GSM8K answer
rewritten into each answer form that applies to it (the generator of the tests,
``tests/support/answer_forms.py``), and the same rewrites of a perturbed (wrong) answer: the
share accepted per form, and how many wrong answers each verifier accepts.

    python benchmarks/answer_check.py [--repeats 3] [--limit 500] [--forms]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from moalign.data.bundled import bundled_path
from moalign.verify import latex_math, normalize, structures
from moalign.verify.second_opinion import MissingExtraError, check_answer, math_verify_module


def _rows(name: str) -> list[dict]:
    with open(bundled_path(name), encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _sets(limit: int) -> dict[str, list[tuple[str, str]]]:
    math500 = _rows("math500")[:limit]
    gsm8k = _rows("gsm8k")[:limit]
    return {
        "MATH-500 solutions": [(r["solution"], r["answer"]) for r in math500],
        "MATH-500 wrong": [
            (r["solution"], math500[(i + 1) % len(math500)]["answer"]) for i, r in enumerate(math500)
        ],
        "GSM8K solutions": [(r["answer"], r["answer"]) for r in gsm8k],
    }


def _cold() -> None:
    latex_math.to_sympy.cache_clear()
    structures.parse.cache_clear()
    normalize._normalize.cache_clear()


def _timed(verifier: str, cases: list[tuple[str, str]], before: Callable[[], None]):
    before()
    start = time.process_time()
    verdicts = [bool(check_answer(c, r, verifier=verifier)) for c, r in cases]
    return time.process_time() - start, verdicts


def _form_cases() -> dict[tuple[str, str], tuple[list, list]]:
    """(dataset, form) -> (right cases, wrong cases), each a list of (completion, reference)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root
    from tests.support.answer_forms import gsm8k_rewrites, math_rewrites, perturb

    out: dict[tuple[str, str], tuple[list, list]] = {}
    for row in _rows("math500"):
        ref, wrong = row["answer"], perturb(row["answer"])
        for form, completions in math_rewrites(ref, row["problem"]).items():
            out.setdefault(("MATH-500", form), ([], []))[0].extend((c, ref) for c in completions)
        for form, completions in (math_rewrites(wrong, row["problem"]) if wrong else {}).items():
            out.setdefault(("MATH-500", form), ([], []))[1].extend((c, ref) for c in completions)
    for row in _rows("gsm8k"):
        solution, final = row["answer"], row["answer"].split("####")[-1].strip()
        off = str(int(final.replace(",", "")) + 1)
        for form, completions in gsm8k_rewrites(solution, final).items():
            out.setdefault(("GSM8K", form), ([], []))[0].extend((c, solution) for c in completions)
        for form, completions in gsm8k_rewrites(solution, off).items():
            out.setdefault(("GSM8K", form), ([], []))[1].extend((c, solution) for c in completions)
    return out


def _forms(verifiers: tuple[str, ...]) -> None:
    head = f"{'set':<9} {'form':<18} {'n':>6} " + " ".join(
        f"{v + ' acc':>16}" for v in verifiers) + f" {'wrong n':>8} " + " ".join(
        f"{v + ' wrong ok':>20}" for v in verifiers)
    print("\n" + head + "\n" + "-" * len(head))
    totals: dict[str, list[int]] = {}
    for (name, form), (right, wrong) in _form_cases().items():
        cells, wrong_cells = [], []
        for v in verifiers:
            ok = sum(bool(check_answer(c, r, verifier=v)) for c, r in right)
            bad = sum(bool(check_answer(c, r, verifier=v)) for c, r in wrong)
            t = totals.setdefault(f"{name}/{v}", [0, 0, 0, 0])
            t[0], t[1], t[2], t[3] = t[0] + ok, t[1] + len(right), t[2] + bad, t[3] + len(wrong)
            cells.append(f"{ok / len(right):>16.2%}")
            wrong_cells.append(f"{bad:>20}")
        print(f"{name:<9} {form:<18} {len(right):>6} {' '.join(cells)} {len(wrong):>8} "
              f"{' '.join(wrong_cells)}")
    for key, (ok, n, bad, n_wrong) in totals.items():
        print(f"{key:<28} accepted {ok}/{n} = {ok / n:.2%}; wrong accepted {bad}/{n_wrong}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3, help="passes per verifier (best kept)")
    parser.add_argument("--limit", type=int, default=500, help="completions per set")
    parser.add_argument("--forms", action="store_true", help="also the acceptance table")
    args = parser.parse_args()
    try:
        module = math_verify_module()
    except MissingExtraError as exc:
        print(exc)
        return 2
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    version = getattr(module, "__version__", None)
    if version is None:
        from importlib.metadata import version as _version

        version = _version("math-verify")

    # warm both up once (imports, sympy's own caches), outside the timings
    for c, r in _sets(3)["MATH-500 solutions"]:
        check_answer(c, r, verifier="moalign")
        check_answer(c, r, verifier="math-verify")

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"math-verify {version}; {args.repeats} passes each, CPU time, one thread; "
          f"load average {load:.2f}\n")
    head = (f"{'set':<20} {'n':>4} {'moalign/s':>10} {'ms':>7} {'math-verify/s':>14} {'ms':>7} "
            f"{'ratio':>7} {'moalign acc':>11} {'mv acc':>7} {'agree':>7}")
    print(head)
    print("-" * len(head))
    for name, cases in _sets(args.limit).items():
        best = {"moalign": float("inf"), "math-verify": float("inf")}
        verdicts: dict[str, list[bool]] = {}
        for _ in range(args.repeats):
            for verifier, before in (("moalign", _cold), ("math-verify", lambda: None)):
                seconds, verdicts[verifier] = _timed(verifier, cases, before)
                best[verifier] = min(best[verifier], seconds)
        n = len(cases)
        ours, theirs = (n / max(best[v], 1e-9) for v in ("moalign", "math-verify"))
        same = sum(a == b for a, b in zip(verdicts["moalign"], verdicts["math-verify"], strict=True))
        print(f"{name:<20} {n:>4} {ours:>10.0f} {1e3 / ours:>7.3f} {theirs:>14.0f} "
              f"{1e3 / theirs:>7.3f} {ours / theirs:>6.1f}x {sum(verdicts['moalign']) / n:>11.1%} "
              f"{sum(verdicts['math-verify']) / n:>7.1%} {same / n:>7.1%}")
    if args.forms:
        _forms(("moalign", "math-verify"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
