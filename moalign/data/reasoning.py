"""Prompt-only math sets with reference answers, for online training and for scoring
``reasoning_accuracy``.

- **GSM8K** (Cobbe et al. 2021), source schema ``{"question", "answer"}``; the answer is a worked
  solution whose last line is ``#### <number>``. Output: ``prompt``, ``answer`` (the final
  number, thousands separators removed: ``"1,450,000"`` -> ``"1450000"``), ``solution`` (the
  original answer text).
- **MATH-500** (Lightman et al. 2023, a subset of MATH, Hendrycks et al. 2021), source schema
  ``{"problem", "solution", "answer", "subject", "level"}``. Output: ``prompt``, ``answer``,
  ``solution``, ``subject``, ``level`` (int). A MATH file without an ``answer`` column gets the
  last ``\\boxed{...}`` of the solution; ``level`` may be ``3`` or ``"Level 3"``.

Both default to the bundled test files; ``path`` may be any local file or folder, or a hub id
(``"openai/gsm8k"``, ``"HuggingFaceH4/MATH-500"``) when online. ``template`` formats the prompt
from the source's question text (``{question}`` / ``{problem}``); ``as_chat`` wraps it in one
user message. Malformed rows raise :class:`DataError` naming the row and column.
"""

from __future__ import annotations

import os
import re
from typing import Any

from datasets import Dataset, Features, Value

from moalign.data.schema import AdapterReport, AdapterResult, chat_feature
from moalign.data.sources import get_columns, read_records
from moalign.errors import DataError

__all__ = ["gsm8k_final_answer", "load_gsm8k", "load_math500"]

_GSM8K_FINAL = re.compile(r"####\s*(.*?)\s*$", re.DOTALL)
_LEVEL = re.compile(r"^(?:level\s*)?(\d+)$", re.IGNORECASE)


def gsm8k_final_answer(solution: str) -> str:
    """The final answer after the last ``####`` of a GSM8K solution, without thousands commas."""
    if "####" not in solution:
        raise ValueError("no '####' final-answer line")
    final = _GSM8K_FINAL.search(solution[solution.rindex("####"):]).group(1)
    final = re.sub(r"(?<=\d),(?=\d{3}\b)", "", final)
    if not final:
        raise ValueError("empty final answer after '####'")
    return final


def _source(path: str | os.PathLike | None, bundled: str):
    if path is not None:
        return path
    from moalign.data.bundled import bundled_path

    return bundled_path(bundled)


def _prompt(text: Any, template: str, key: str, row: int, column: str, as_chat: bool, name: str):
    if not isinstance(text, str) or not text.strip():
        got = "empty prompt" if isinstance(text, str) else f"expected a string, got {type(text).__name__}"
        raise DataError(f"{name}: row {row}, column '{column}': {got}")
    prompt = template.format(**{key: text})
    return [{"role": "user", "content": prompt}] if as_chat else prompt


def _check_template(template: str, key: str) -> None:
    try:
        template.format(**{key: ""})
    except (KeyError, IndexError, ValueError) as exc:
        raise DataError(f"template {template!r} must use only the field '{{{key}}}': {exc}") from None


def load_gsm8k(
    path: str | os.PathLike | None = None,
    *,
    split: str = "test",
    config: str = "main",
    template: str = "{question}",
    as_chat: bool = True,
) -> AdapterResult:
    """GSM8K as ``prompt``, ``answer``, ``solution`` (bundled test split: 1319 rows).

    ``config`` is the hub configuration (``"main"`` or ``"socratic"``), used for hub ids only.
    Returns ``(dataset, report)``.
    """
    _check_template(template, "question")
    name = "gsm8k"
    records = read_records(_source(path, "gsm8k"), split=split, config=config)
    cols = get_columns(records, ["question", "answer"], source=name)
    report = AdapterReport(source=name, records_in=len(cols["question"]))
    out: dict[str, list[Any]] = {"prompt": [], "answer": [], "solution": []}
    for i, (question, solution) in enumerate(zip(cols["question"], cols["answer"], strict=True)):
        out["prompt"].append(_prompt(question, template, "question", i, "question", as_chat, name))
        if not isinstance(solution, str):
            raise DataError(f"{name}: row {i}, column 'answer': expected a string")
        try:
            out["answer"].append(gsm8k_final_answer(solution))
        except ValueError as exc:
            raise DataError(f"{name}: row {i}, column 'answer': {exc}") from None
        out["solution"].append(solution)
    report.records_kept = report.rows_out = len(out["prompt"])
    features = Features({"prompt": chat_feature() if as_chat else Value("string"),
                         "answer": Value("string"), "solution": Value("string")})
    return AdapterResult(Dataset.from_dict(out, features=features), report)


def _level(value: Any, row: int, name: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    match = _LEVEL.match(str(value).strip()) if isinstance(value, str) else None
    if not match:
        raise DataError(f"{name}: row {row}, column 'level': expected 1-5 or 'Level N', got {value!r}")
    return int(match.group(1))


def load_math500(
    path: str | os.PathLike | None = None,
    *,
    split: str = "test",
    template: str = "{problem}",
    as_chat: bool = True,
) -> AdapterResult:
    """MATH-500 as ``prompt``, ``answer``, ``solution``, ``subject``, ``level`` (500 rows).

    Returns ``(dataset, report)``.
    """
    _check_template(template, "problem")
    name = "math500"
    records = read_records(_source(path, "math500"), split=split)
    cols = get_columns(records, ["problem", "solution", "subject", "level"], source=name,
                       optional=["answer"])
    n = len(cols["problem"])
    report = AdapterReport(source=name, records_in=n)
    out: dict[str, list[Any]] = {k: [] for k in ("prompt", "answer", "solution", "subject", "level")}
    for i in range(n):
        out["prompt"].append(_prompt(cols["problem"][i], template, "problem", i, "problem",
                                     as_chat, name))
        solution = cols["solution"][i]
        if not isinstance(solution, str):
            raise DataError(f"{name}: row {i}, column 'solution': expected a string")
        if "answer" in cols:
            answer = cols["answer"][i]
        else:
            from moalign.verify.answers import extract_boxed

            answer = extract_boxed(solution)
            if answer is None:
                raise DataError(f"{name}: row {i}, column 'solution': no \\boxed{{...}} answer "
                                "(and no 'answer' column)")
            report.note("answer taken from the solution's last \\boxed{}")
        if not isinstance(answer, str) or not answer.strip():
            raise DataError(f"{name}: row {i}, column 'answer': expected a non-empty string")
        out["answer"].append(answer)
        out["solution"].append(solution)
        out["subject"].append(str(cols["subject"][i]))
        out["level"].append(_level(cols["level"][i], i, name))
    report.records_kept = report.rows_out = n
    features = Features({"prompt": chat_feature() if as_chat else Value("string"),
                         "answer": Value("string"), "solution": Value("string"),
                         "subject": Value("string"), "level": Value("int64")})
    return AdapterResult(Dataset.from_dict(out, features=features), report)
