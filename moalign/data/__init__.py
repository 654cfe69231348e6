"""Multi-objective preference data on Hugging Face ``datasets``.

The canonical schema (:mod:`moalign.data.schema`): ``prompt``, ``chosen``, ``rejected`` (plain
strings or TRL conversational message lists) and one float column per objective,
``pref_<objective>``: +1 chosen better, -1 rejected better, 0 tie, NaN unlabeled.

Adapters and loaders return an :class:`AdapterResult` ``(dataset, report)`` whose
:class:`AdapterReport` accounts for every input record:

- :func:`from_hh_rlhf` / :func:`load_hh_rlhf`: Anthropic HH-RLHF transcripts;
- :func:`from_pku_saferlhf`: PKU-SafeRLHF rows (helpfulness and harmlessness from one row);
- :func:`from_ratings`: HelpSteer / UltraFeedback-style attribute ratings;
- :func:`load_gsm8k` / :func:`load_math500`: prompt-only math sets with reference answers.

Datasets by name or spec: :data:`CATALOG`, :func:`load_dataset` (a bundled name, a path, or
``{source, adapter, split, config, columns, options}``); adapters are plugins of the
``moalign.datasets`` entry-point group (:func:`available_adapters`, :func:`register_adapter`).

Helpers: :func:`validate_preference_dataset`, :func:`mix_preference_datasets`,
:func:`label_counts`, :func:`pairs_for_objective`, :func:`heldout_split` (the one held-out
split, :data:`TEST_SIZE`), :func:`train_test_split_pairs`,
:func:`truncate_prompt`.
"""

from __future__ import annotations

from moalign.data.adapters import (
    ADAPTER_GROUP,
    DatasetAdapter,
    available_adapters,
    get_adapter,
    register_adapter,
)
from moalign.data.catalog import CATALOG, dataset_columns, dataset_problems, load_dataset
from moalign.data.hh_rlhf import (
    HH_SUBSETS,
    format_hh_dialogue,
    format_hh_transcript,
    from_hh_rlhf,
    load_hh_rlhf,
    parse_hh_dialogue,
    split_hh_pair,
)
from moalign.data.pku import PKU_COLUMNS, from_pku_saferlhf
from moalign.data.ratings import from_ratings
from moalign.data.reasoning import gsm8k_final_answer, load_gsm8k, load_math500
from moalign.data.schema import (
    CORE_COLUMNS,
    LABEL_VALUES,
    PREF_PREFIX,
    AdapterReport,
    AdapterResult,
    chat_feature,
    column_values,
    label_counts,
    mix_preference_datasets,
    objectives_in,
    pairs_for_objective,
    pref_column,
    validate_preference_dataset,
)
from moalign.data.sources import hub_offline, read_records
from moalign.data.split import (
    MAX_PROMPT_TOKENS,
    TEST_SIZE,
    heldout_split,
    train_test_split_pairs,
    truncate_prompt,
    truncate_prompts,
)

__all__ = [
    "ADAPTER_GROUP",
    "CATALOG",
    "DatasetAdapter",
    "available_adapters",
    "dataset_columns",
    "dataset_problems",
    "get_adapter",
    "load_dataset",
    "register_adapter",
    "CORE_COLUMNS",
    "MAX_PROMPT_TOKENS",
    "TEST_SIZE",
    "heldout_split",
    "HH_SUBSETS",
    "LABEL_VALUES",
    "PKU_COLUMNS",
    "PREF_PREFIX",
    "AdapterReport",
    "AdapterResult",
    "chat_feature",
    "column_values",
    "format_hh_dialogue",
    "format_hh_transcript",
    "from_hh_rlhf",
    "from_pku_saferlhf",
    "from_ratings",
    "gsm8k_final_answer",
    "hub_offline",
    "label_counts",
    "load_gsm8k",
    "load_hh_rlhf",
    "load_math500",
    "mix_preference_datasets",
    "objectives_in",
    "pairs_for_objective",
    "parse_hh_dialogue",
    "pref_column",
    "read_records",
    "split_hh_pair",
    "train_test_split_pairs",
    "truncate_prompt",
    "truncate_prompts",
    "validate_preference_dataset",
]
