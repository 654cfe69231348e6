"""Reward-model objectives on tiny random sequence classifiers saved to disk (no hub).

The oracle throughout is the model itself run on one unpadded sequence at a time, with the
token ids built independently of moalign (the tokenizer's own ``apply_chat_template``).
"""

from __future__ import annotations

import math

import pytest
import torch
from moalign_objectives.harmlessness import Harmlessness
from moalign_objectives.helpfulness import Helpfulness

import moalign
from moalign.errors import ModelError, ObjectiveError
from moalign.models import tiny_reward_model
from moalign.rewards.model import RewardModelObjective

PROMPTS = [
    "Hi",
    "What is the capital of France?",
    "Write a haiku about the sea, please. Make it gentle.",
    "2+2?",
    "Tell me a long story about a dragon who learned to bake bread in a small village.",
    "ok",
    "Explain recursion.",
]
COMPLETIONS = [
    "Hello! How can I help?",
    "Paris.",
    "Waves fold into foam / the moon pulls the tide softly / salt on quiet sand",
    "4",
    "Once upon a time there was a dragon.",
    "Sure, anything else?",
    "A function that calls itself on a smaller input until a base case.",
]


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _save(path, num_labels=1, seed=0, id2label=None, chat=True, **config):
    model, tok = tiny_reward_model(seed=seed, num_labels=num_labels, **config)
    if id2label is not None:
        model.config.id2label = dict(enumerate(id2label))
        model.config.label2id = {v: k for k, v in enumerate(id2label)}
    if not chat:
        tok.chat_template = None
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return model.eval(), tok


@pytest.fixture(scope="module")
def rm(tmp_path_factory):
    path = tmp_path_factory.mktemp("rm1")
    model, tok = _save(path, seed=1)
    return path, model, tok


@pytest.fixture(scope="module")
def rm3(tmp_path_factory):
    path = tmp_path_factory.mktemp("rm3")
    model, tok = _save(path, num_labels=3, seed=2, id2label=["helpful", "harmless", "honest"])
    return path, model, tok


def _chat_ids(tok, prompt, completion):
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    messages.append({"role": "assistant", "content": completion})
    return list(tok.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"])


def _direct(model, ids_list):
    """Logits of each sequence run alone, unpadded: ``[N, num_labels]``."""
    with torch.no_grad():
        return torch.cat([model(input_ids=torch.tensor([ids])).logits for ids in ids_list]).double()


def test_scores_match_the_model_on_unpadded_sequences(rm):
    path, model, tok = rm
    objective = RewardModelObjective(path, batch_size=3)
    expected = _direct(model, [_chat_ids(tok, p, c) for p, c in zip(PROMPTS, COMPLETIONS, strict=True)])[:, 0]
    assert objective(PROMPTS, COMPLETIONS) == pytest.approx(expected.tolist(), abs=1e-5)
    assert len(set(len(objective.encode(p, c)) for p, c in zip(PROMPTS, COMPLETIONS, strict=True))) > 3


def test_batching_gives_the_same_scores_as_one_by_one(rm):
    path, _, _ = rm
    batched = RewardModelObjective(path, batch_size=16)(PROMPTS, COMPLETIONS)
    by_three = RewardModelObjective(path, batch_size=3)(PROMPTS, COMPLETIONS)
    single = RewardModelObjective(path, batch_size=1)
    one_by_one = [single([p], [c])[0] for p, c in zip(PROMPTS, COMPLETIONS, strict=True)]
    assert batched == pytest.approx(one_by_one, abs=1e-5)
    assert by_three == pytest.approx(one_by_one, abs=1e-5)
    assert len(set(one_by_one)) == len(one_by_one)  # the scores really differ per example


def test_padding_side_does_not_change_scores(rm):
    path, model, _ = rm
    scores = {}
    for side in ("left", "right"):
        _, tok = tiny_reward_model(seed=1)
        tok.padding_side = side
        scores[side] = RewardModelObjective(model, tok, batch_size=4)(PROMPTS, COMPLETIONS)
    assert scores["left"] == pytest.approx(scores["right"], abs=1e-5)


def test_model_pad_id_is_used_for_padding(tmp_path):
    """The classifier pools at the rightmost token that is not ``config.pad_token_id``; padding
    with the tokenizer's (different) pad id would make it read a pad position."""
    model, tok = tiny_reward_model(seed=4)
    model.config.pad_token_id = tok.convert_tokens_to_ids("~")  # a byte the texts never use
    assert model.config.pad_token_id != tok.pad_token_id
    objective = RewardModelObjective(model, tok, batch_size=8)
    expected = _direct(model, [_chat_ids(tok, p, c) for p, c in zip(PROMPTS, COMPLETIONS, strict=True)])[:, 0]
    assert objective(PROMPTS, COMPLETIONS) == pytest.approx(expected.tolist(), abs=1e-5)


def test_classifier_without_pad_id_in_config_can_batch():
    """GPT-2 classifiers refuse batches without ``config.pad_token_id``; the tokenizer's pad
    token fills in and scores equal the unpadded ones."""
    from transformers import GPT2Config, GPT2ForSequenceClassification

    _, tok = tiny_reward_model()
    config = GPT2Config(vocab_size=len(tok), n_positions=256, n_embd=32, n_layer=1, n_head=2,
                        num_labels=1, pad_token_id=None, bos_token_id=tok.eos_token_id,
                        eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    model = GPT2ForSequenceClassification(config).eval()
    ids = [_chat_ids(tok, p, c) for p, c in zip(PROMPTS, COMPLETIONS, strict=True)]
    with pytest.raises(ValueError, match="no padding token"):
        model(input_ids=torch.tensor([ids[3][:4], ids[3][:4]]))
    scores = RewardModelObjective(model, tok, batch_size=8)(PROMPTS, COMPLETIONS)
    config.pad_token_id = None  # the oracle: unpadded, one at a time, last token
    assert scores == pytest.approx(_direct(model, ids)[:, 0].tolist(), abs=1e-5)


def test_left_truncation_keeps_the_completion(rm):
    path, model, tok = rm
    completion = "Paris, of course."
    short = RewardModelObjective(path, max_length=64)
    full_ids = _chat_ids(tok, "Q?", completion)
    completion_ids = tok(completion, add_special_tokens=False)["input_ids"]
    # Two long prompts differing only in their first half: once the beginning is cut away,
    # both leave the same last 64 tokens, so the same score; cutting from the right (or not
    # at all) would tell them apart, or lose the completion.
    tail = " and then some more words about the weather" * 6
    long_a, long_b = "A" * 200 + tail, "B" * 200 + tail
    ids_a = short.encode(long_a, completion)
    assert len(ids_a) == 64 and len(_chat_ids(tok, long_a, completion)) > 250
    assert ids_a == _chat_ids(tok, long_a, completion)[-64:]
    assert ids_a[-len(completion_ids) - 2:-2] == completion_ids  # before "<|im_end|>\n"
    score_a, score_b = short([long_a, long_b], [completion, completion])
    assert score_a == pytest.approx(score_b, abs=1e-6)
    assert score_a == pytest.approx(_direct(model, [ids_a])[0, 0].item(), abs=1e-5)
    untruncated = RewardModelObjective(path, max_length=512)([long_a, long_b], [completion] * 2)
    assert untruncated[0] != pytest.approx(untruncated[1], abs=1e-6)
    # A short example is not truncated at all.
    assert short.encode("Q?", completion) == full_ids


def test_truncation_keeps_a_leading_bos(rm):
    objective = RewardModelObjective(rm[0], max_length=4)
    assert objective._truncate([99, 1, 2, 3, 4, 5], bos_id=99) == [99, 3, 4, 5]
    assert objective._truncate([7, 1, 2, 3, 4, 5], bos_id=99) == [2, 3, 4, 5]
    assert objective._truncate([1, 2, 3], bos_id=None) == [1, 2, 3]


def test_chat_message_inputs(rm):
    path, model, tok = rm
    objective = RewardModelObjective(path)
    prompts = [
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"},
         {"role": "user", "content": "and 3+3?"}],
    ]
    completions = ["Hello.", "6"]
    as_messages = [[{"role": "assistant", "content": c}] for c in completions]  # TRL's form
    expected = _direct(model, [_chat_ids(tok, p, c) for p, c in zip(prompts, completions, strict=True)])
    assert objective(prompts, completions) == pytest.approx(expected[:, 0].tolist(), abs=1e-5)
    assert objective(prompts, as_messages) == pytest.approx(expected[:, 0].tolist(), abs=1e-5)
    # The history matters: dropping the earlier turns changes the score.
    assert objective([prompts[1][-1:]], ["6"])[0] != pytest.approx(expected[1, 0].item(), abs=1e-6)


def test_plain_text_without_chat_template(tmp_path):
    model, tok = _save(tmp_path, seed=5, chat=False)
    objective = RewardModelObjective(tmp_path)
    expected_ids = [tok(p + c + tok.eos_token)["input_ids"] for p, c in zip(PROMPTS, COMPLETIONS, strict=True)]
    expected = _direct(model, expected_ids)[:, 0].tolist()
    assert objective(PROMPTS, COMPLETIONS) == pytest.approx(expected, abs=1e-5)
    no_eos = RewardModelObjective(tmp_path, append_eos=False)
    assert no_eos.encode("a", "b") == tok("ab")["input_ids"]

def test_use_chat_template_false_forces_plain_text(rm):
    path, _, tok = rm
    assert tok.chat_template
    forced_plain = RewardModelObjective(path, use_chat_template=False)
    assert forced_plain.encode("a", "b") == tok("ab" + tok.eos_token)["input_ids"]
    assert RewardModelObjective(path).encode("a", "b") == _chat_ids(tok, "a", "b")


def test_multi_head_selection_by_index_and_label(rm3):
    path, model, tok = rm3
    expected = _direct(model, [_chat_ids(tok, p, c) for p, c in zip(PROMPTS, COMPLETIONS, strict=True)])
    for head in range(3):
        by_index = RewardModelObjective(path, head=head)(PROMPTS, COMPLETIONS)
        assert by_index == pytest.approx(expected[:, head].tolist(), abs=1e-5)
    by_label = RewardModelObjective(path, head="honest")(PROMPTS, COMPLETIONS)
    assert by_label == pytest.approx(expected[:, 2].tolist(), abs=1e-5)
    assert RewardModelObjective(path, label="harmless").head == 1


def test_each_head_is_an_objective_sharing_one_model(rm3, monkeypatch):
    import transformers

    path, model, tok = rm3
    loads = []
    original = transformers.AutoModelForSequenceClassification.from_pretrained
    monkeypatch.setattr(
        transformers.AutoModelForSequenceClassification, "from_pretrained",
        lambda *a, **k: loads.append(a) or original(*a, **k),
    )
    heads = RewardModelObjective.each_head(path, prefix="rm")
    assert [h.__name__ for h in heads] == ["rm_helpful", "rm_harmless", "rm_honest"]
    assert loads == []  # nothing loaded before the first call
    rewards = moalign.ObjectiveSet(heads).score(PROMPTS, COMPLETIONS)
    assert len(loads) == 1
    expected = _direct(model, [_chat_ids(tok, p, c) for p, c in zip(PROMPTS, COMPLETIONS, strict=True)])
    torch.testing.assert_close(rewards.values, expected.float(), atol=1e-5, rtol=0)


def _logit_of(model, tok, prompt, completion):
    return _direct(model, [_chat_ids(tok, prompt, completion)])[0].tolist()


def test_harmlessness_two_label_classifier(tmp_path):
    model, tok = _save(tmp_path, num_labels=2, seed=6, id2label=["unsafe", "safe"])
    (z_unsafe, z_safe) = _logit_of(model, tok, PROMPTS[1], COMPLETIONS[1])
    p_unsafe = math.exp(z_unsafe) / (math.exp(z_unsafe) + math.exp(z_safe))

    def one(**kwargs):
        return Harmlessness(tmp_path, **kwargs)([PROMPTS[1]], [COMPLETIONS[1]])[0]

    default = Harmlessness(tmp_path)
    assert (default.head, default.transform) == (0, "one_minus_softmax_label")  # found "unsafe"
    assert one() == pytest.approx(1 - p_unsafe, abs=1e-6)
    assert one(label="safe", transform="softmax_label") == pytest.approx(1 - p_unsafe, abs=1e-6)
    assert one(label=1) == pytest.approx(p_unsafe, abs=1e-6)  # 1 - P(safe)
    assert one(label="unsafe", transform="negate") == pytest.approx(-z_unsafe, abs=1e-5)


def test_harmlessness_default_label_of_an_unnamed_two_label_model(tmp_path):
    model, tok = _save(tmp_path, num_labels=2, seed=7)  # labels LABEL_0 / LABEL_1
    z0, z1 = _logit_of(model, tok, "x", "y")
    objective = Harmlessness(tmp_path)
    assert objective.head == 1
    assert objective(["x"], ["y"])[0] == pytest.approx(1 / (1 + math.exp(z1 - z0)), abs=1e-6)


def test_harmlessness_single_output_transforms(rm):
    path, model, tok = rm
    (z,) = _logit_of(model, tok, PROMPTS[0], COMPLETIONS[0])
    expected = {
        None: z,  # default: a harmlessness reward model's raw score
        "identity": z,
        "negate": -z,  # a cost model
        "sigmoid": 1 / (1 + math.exp(-z)),
        "one_minus_sigmoid": 1 - 1 / (1 + math.exp(-z)),  # a one-logit harm classifier
    }
    for transform, value in expected.items():
        score = Harmlessness(path, transform=transform)([PROMPTS[0]], [COMPLETIONS[0]])[0]
        assert score == pytest.approx(value, abs=1e-6), transform
    normalized = Harmlessness(path, normalize={"mean": 0.5, "std": 2.0})
    assert normalized([PROMPTS[0]], [COMPLETIONS[0]])[0] == pytest.approx((z - 0.5) / 2, abs=1e-6)


def test_errors_name_the_objective(rm, rm3, tmp_path):
    path3 = rm3[0]
    with pytest.raises(ModelError, match=r"objective 'helpfulness'.*'.*nowhere' does not exist"):
        Helpfulness(tmp_path / "nowhere")
    with pytest.raises(ObjectiveError, match=r"objective 'helpfulness'.*head 3 is out of range"):
        Helpfulness(path3, head=3)
    with pytest.raises(ObjectiveError, match=r"'harmlessness'.*no head named 'kind'.*1=harmless"):
        Harmlessness(path3, head="kind")
    with pytest.raises(ObjectiveError, match=r"'harmlessness'.*unknown transform 'exp'.*negate"):
        Harmlessness(path3, transform="exp")
    with pytest.raises(ObjectiveError, match=r"'harmlessness'.*means harmful.*label="):
        Harmlessness(path3)  # 3 labels, none named harmful
    with pytest.raises(ObjectiveError, match=r"'helpfulness'.*'softmax_label' needs .* 2 labels"):
        Helpfulness(rm[0], transform="softmax_label")
    with pytest.raises(ObjectiveError, match=r"'reward_model'.*head= or label=, not both"):
        RewardModelObjective(path3, head=0, label="honest")
    with pytest.raises(ObjectiveError, match=r"'helpfulness'.*normalize.*std > 0"):
        Helpfulness(rm[0], normalize={"mean": 0.0, "std": 0.0})
    with pytest.raises(ObjectiveError, match=r"'helpfulness'.*batch_size"):
        Helpfulness(rm[0], batch_size=0)
    with pytest.raises(ObjectiveError, match=r"'reward_model'.*pass tokenizer="):
        RewardModelObjective(tiny_reward_model()[0])
    with pytest.raises(ObjectiveError, match="unknown transform"):
        moalign.load_objective("harmlessness:transform=exp", model=str(path3))


def test_default_model_comes_from_the_cache(rm, tmp_path, monkeypatch):
    monkeypatch.setenv("MOALIGN_CACHE", str(tmp_path))
    with pytest.raises(ObjectiveError, match=r"objective 'helpfulness'.*model=PATH.*moalign reward"):
        moalign.load_objective("helpfulness")
    with pytest.raises(ObjectiveError, match=r"objective 'harmlessness'.*moalign reward"):
        moalign.load_objective("harmlessness")
    model, _ = _save(tmp_path / "reward-models" / "helpfulness", seed=1)
    default = moalign.load_objective("helpfulness")
    explicit = Helpfulness(rm[0])  # the same weights (seed 1), given explicitly
    assert default(PROMPTS[:3], COMPLETIONS[:3]) == explicit(PROMPTS[:3], COMPLETIONS[:3])


def test_weights_load_lazily_but_paths_are_checked_at_once(rm, monkeypatch):
    import transformers

    def forbidden(*a, **k):
        raise AssertionError("loaded at construction")

    monkeypatch.setattr(transformers.AutoModelForSequenceClassification, "from_pretrained",
                        forbidden)
    objective = Helpfulness(rm[0])
    assert objective.__name__ == "helpfulness"
    with pytest.raises(ObjectiveError, match="objective 'helpfulness' raised AssertionError"):
        objective(["a"], ["b"])


def test_works_as_a_trl_reward_function(rm):
    """GRPOTrainer calls ``f(prompts=..., completions=..., completion_ids=..., trainer_state=...,
    log_extra=..., log_metric=..., **dataset_columns)`` and names it by ``__name__``."""
    objective = Helpfulness(rm[0])
    assert not isinstance(objective, torch.nn.Module)  # called as a function, not as a model
    assert objective.__name__ == "helpfulness"
    conversational = [[{"role": "user", "content": p}] for p in PROMPTS[:3]]
    completions = [[{"role": "assistant", "content": c}] for c in COMPLETIONS[:3]]
    scores = objective(
        prompts=conversational, completions=completions, completion_ids=[[1, 2], [3], [4, 5]],
        trainer_state=object(), log_extra=lambda *a: None, log_metric=lambda *a: None,
        answer=["x", "y", "z"], pref_helpfulness=[1.0, -1.0, float("nan")],
    )
    assert scores == pytest.approx(objective(PROMPTS[:3], COMPLETIONS[:3]), abs=1e-6)
    assert all(isinstance(s, float) for s in scores)
    assert objective([], []) == []


def test_checkpoint_input_spec_is_honoured(tmp_path):
    """A ``moalign reward`` checkpoint says how it reads inputs (``moalign_reward.json``): the
    last N prompt tokens, and the score head applied to the mean of the completion's states."""
    import json

    model, tok = _save(tmp_path, seed=8)
    (tmp_path / "moalign_reward.json").write_text(json.dumps(
        {"max_prompt_tokens": 8, "max_completion_tokens": None, "pooling": "mean_completion"}))
    objective = Helpfulness(tmp_path, batch_size=4)
    expected = []
    for prompt, completion in zip(PROMPTS, COMPLETIONS, strict=True):
        head = tok.apply_chat_template([{"role": "user", "content": prompt}],
                                       add_generation_prompt=True, tokenize=True,
                                       return_dict=True)["input_ids"]
        full = _chat_ids(tok, prompt, completion)
        assert full[:len(head)] == list(head)  # the byte tokenizer splits cleanly there
        ids = full[len(head) - 8:] if len(head) > 8 else full
        start = min(len(head), 8)
        with torch.no_grad():
            states = model.model(input_ids=torch.tensor([ids])).last_hidden_state[0]
            expected.append(model.score(states[start:].mean(0)).item())
    assert objective(PROMPTS, COMPLETIONS) == pytest.approx(expected, abs=1e-5)
    plain = RewardModelObjective(model, tok)  # the same weights without the spec: last token
    assert plain(PROMPTS, COMPLETIONS) != pytest.approx(expected, abs=1e-3)
