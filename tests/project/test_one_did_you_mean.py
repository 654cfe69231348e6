"""One "did you mean": every unknown name moalign reports gets its hint from
:func:`moalign.errors.did_you_mean`, and no other module computes close matches."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import moalign
from moalign import errors

PACKAGE = Path(moalign.__file__).parent


def close_match_modules(sources: dict[str, str]) -> list[str]:
    """Modules (of ``{name: source}``) that import ``difflib`` or one of its functions."""
    found = []
    for name, source in sources.items():
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import) and any(a.name == "difflib" for a in node.names):
                found.append(name)
            elif isinstance(node, ast.ImportFrom) and node.module == "difflib":
                found.append(name)
    return sorted(set(found))


def test_only_the_errors_module_computes_close_matches():
    sources = {str(p.relative_to(PACKAGE)): p.read_text(encoding="utf-8")
               for p in PACKAGE.rglob("*.py")}
    assert close_match_modules(sources) == ["errors.py"]


def test_the_scan_finds_a_second_helper():  # negative control of the test above
    helper = ("import difflib\n\ndef _close(name, choices):\n"
              "    return difflib.get_close_matches(name, choices, n=1)\n")
    other = "from difflib import get_close_matches\n"
    assert close_match_modules({"a.py": helper, "b.py": other, "c.py": "import re\n"}) == [
        "a.py", "b.py"]


def test_every_public_name_is_the_one_function():
    from moalign import _plugins, config
    from moalign.config import checking

    assert checking.did_you_mean is errors.did_you_mean  # imported by other code: kept
    assert config.did_you_mean is errors.did_you_mean
    assert _plugins.did_you_mean is errors.did_you_mean


@pytest.mark.parametrize("message", [
    pytest.param(lambda: _loader_problem(), id="config-loader"),
    pytest.param(lambda: _lora_target_problem(), id="lora-targets"),
    pytest.param(lambda: _lora_option_problem(), id="lora-options"),
])
def test_each_former_helper_writes_the_one_shape(message):
    assert "; did you mean '" in message()


def _loader_problem() -> str:
    import dataclasses

    from moalign.config.loading import build_config
    from moalign.errors import ConfigError

    @dataclasses.dataclass
    class Small:
        learning_rate: float = 0.1

    with pytest.raises(ConfigError) as info:
        build_config(Small, {"lerning_rate": 0.2})
    assert "unknown key 'lerning_rate'" in str(info.value)
    return str(info.value)


def _lora_target_problem() -> str:
    from moalign.models.lora import target_module_problems

    modules = {"model.layers.0.self_attn.q_proj": "Linear", "model.layers.0.mlp": "LlamaMLP"}
    problems = target_module_problems({"target_modules": ["q_porj"]}, modules, "tiny")
    assert problems and "did you mean 'q_proj'?" in problems[0], problems
    return problems[0]


def _lora_option_problem() -> str:
    from moalign.models.lora import lora_problems

    problems = lora_problems({"lora_alpah": 8})
    assert problems and "did you mean 'lora_alpha'?" in problems[0], problems
    return problems[0]
