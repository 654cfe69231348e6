"""Bridge to the Hugging Face ``evaluate`` library, fully offline.

``evaluate.load("accuracy")`` fetches a script from the hub; moalign objectives instead become
in-code :class:`evaluate.Metric` subclasses, so ``evaluate.combine`` and ``evaluate.save`` work
with them without any network access::

    import evaluate
    from moalign.evaluation.hf_evaluate import objective_metric

    metrics = evaluate.combine([objective_metric("length"), objective_metric("reasoning_accuracy")])
    metrics.compute(predictions=completions, prompts=prompts, references=answers)

Inputs: ``predictions`` (completion strings), ``prompts`` (prompt strings) and, for an objective
that needs a reference column (``reasoning_accuracy`` reads ``answer``), ``references``. The
result holds ``<objective>`` (mean), ``<objective>_stderr`` and ``<objective>_n``.
"""

from __future__ import annotations

from typing import Any

from moalign.objective import Objective, load_objective

__all__ = ["ObjectiveMetric", "objective_metric"]


def objective_metric(objective: str | dict | Objective, **kwargs: Any):
    """An ``evaluate`` metric that scores completions with a moalign objective."""
    built = load_objective(objective, **kwargs)
    return ObjectiveMetric(built)


class _Lazy(type):
    """Resolve the ``evaluate.Metric`` base only when the bridge is first used."""

    _cls = None

    def __call__(cls, objective: Objective, **kwargs: Any):
        if _Lazy._cls is None:
            _Lazy._cls = _build_class()
        return _Lazy._cls(objective, **kwargs)


class ObjectiveMetric(metaclass=_Lazy):
    """``evaluate.Metric`` wrapping one :class:`~moalign.objective.Objective` (see module doc)."""


def _build_class():
    import datasets
    import evaluate

    from moalign.evaluation.core import mean_and_stderr

    class _ObjectiveMetric(evaluate.Metric):
        def __init__(self, objective: Objective, **kwargs: Any):
            self.objective = objective
            self.reference_column = (objective.required_columns or (None,))[0]
            if len(objective.required_columns) > 1:
                raise ValueError(
                    f"objective '{objective.__name__}' needs several columns "
                    f"{list(objective.required_columns)}; the evaluate bridge passes one as "
                    "'references'"
                )
            kwargs.setdefault("experiment_id", f"moalign-{objective.__name__}-{id(self)}")
            super().__init__(**kwargs)

        def _info(self) -> evaluate.MetricInfo:
            features = {"predictions": datasets.Value("string"), "prompts": datasets.Value("string")}
            if self.reference_column:
                features["references"] = datasets.Value("string")
            return evaluate.MetricInfo(
                description=self.objective.description or f"moalign objective {self.objective.__name__}",
                citation="",
                inputs_description="predictions: completions; prompts: prompts; "
                "references: the objective's reference column, if it needs one",
                features=datasets.Features(features),
                module_type="metric",
            )

        @property
        def name(self) -> str:  # evaluate.combine names results by module name
            return self.objective.__name__

        def _compute(self, predictions=None, prompts=None, references=None):
            columns = {self.reference_column: list(references)} if self.reference_column else {}
            scores = self.objective(list(prompts), list(predictions), **columns)
            values = [float("nan") if s is None else s for s in scores]
            mean, se, n = mean_and_stderr(values)
            name = self.objective.__name__
            return {name: mean, f"{name}_stderr": se, f"{name}_n": n}

    _ObjectiveMetric.__name__ = "ObjectiveMetric"
    return _ObjectiveMetric
