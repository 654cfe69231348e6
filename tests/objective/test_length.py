"""The ``length`` objective (brevity with a target length)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from moalign_objectives.length import Length

import moalign
from moalign.errors import ObjectiveError


def _words(n: int) -> str:
    return " ".join(["w"] * n)


@pytest.mark.parametrize(
    "n_words, expected",
    [(0, 1.0), (1, 1.0), (4, 1.0), (5, 0.75), (6, 0.5), (7, 0.25), (8, 0.0), (30, 0.0)],
)
def test_ramp_in_words(n_words, expected):
    # 1 up to the target (4 words), then 2 - n / 4 down to 0 at twice the target
    assert Length(target=4)(None, [_words(n_words)]) == [pytest.approx(expected)]


def test_words_are_whitespace_separated():
    obj = Length(target=2)
    assert obj.measure("  one\ttwo\n\nthree  ") == 3
    assert obj(None, ["one\ttwo\n\nthree"]) == [pytest.approx(0.5)]


def test_ramp_in_chars():
    obj = Length(target=4, unit="chars")
    assert obj(None, ["abcd", "abcdef", "abcdefgh", ""]) == pytest.approx([1.0, 0.5, 0.0, 1.0])


def test_negative_mode_is_unbounded():
    obj = Length(target=10, mode="negative")
    assert obj(None, [_words(5), _words(40), ""]) == pytest.approx([-0.5, -4.0, 0.0])


def test_chat_messages_are_scored_by_their_assistant_text():
    obj = Length(target=2)
    convo = [
        {"role": "user", "content": "a long question with many many words"},
        {"role": "assistant", "content": "one two three"},
    ]
    assert obj([[convo[0]]], [convo]) == obj(["x"], ["one two three"]) == [pytest.approx(0.5)]


@given(
    st.lists(st.text(alphabet="ab \n", max_size=60), min_size=1, max_size=8),
    st.integers(1, 20),
)
def test_ramp_is_bounded_and_non_increasing_in_length(texts, target):
    obj = Length(target=target)
    scores = obj(None, texts)
    assert all(0.0 <= s <= 1.0 for s in scores)
    pairs = sorted(zip((obj.measure(t) for t in texts), scores, strict=True))
    assert all(a[1] >= b[1] for a, b in zip(pairs, pairs[1:], strict=False))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"target": 0}, "target"),
        ({"target": -3}, "target"),
        ({"target": 2.5}, "target"),
        ({"target": True}, "target"),
        ({"unit": "tokens"}, "unit"),
        ({"mode": "log"}, "mode"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=f"length: '{match}'"):
        Length(**kwargs)
    with pytest.raises(ObjectiveError, match=f"objective 'length': bad arguments.*{match}"):
        moalign.load_objective({"name": "length", **kwargs})


def test_loaded_by_spec():
    obj = moalign.load_objective("length:target=3,unit=chars")
    assert isinstance(obj, Length) and obj.__name__ == "length"
    assert obj(None, ["abcdef"]) == [0.0]
    assert obj.description
