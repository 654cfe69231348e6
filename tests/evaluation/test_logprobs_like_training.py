"""Evaluation log-probs use the token sequences DPO training uses (TRL's own tokenization is the
oracle): EOS appended to plain-text completions, prompt and completion tokenized as one text."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from moalign.evaluation import pair_logprobs, sequence_logprobs
from moalign.models import tiny_causal_lm

ROWS = [
    {"prompt": "Q: x ", "chosen": "yes, surely", "rejected": "no"},
    {"prompt": "Tell me a story.", "chosen": " Once upon a time", "rejected": " No."},
    {"prompt": "2+2=", "chosen": "4", "rejected": "5, I think"},
]


def _bos_merging_causal_lm():
    """A byte-level tokenizer that adds a BOS and merges ``" y"`` into one token (so a reply
    starting with ``y`` merges with a prompt ending in a space), and a tiny Llama for it."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {c: i for i, c in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    vocab["Ġy"] = len(vocab)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[("Ġ", "y")]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>",
                                  pad_token="<pad>")
    bos = tok.convert_tokens_to_ids("<s>")
    tok._tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", bos)])
    assert tok("a")["input_ids"][0] == bos
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                         bos_token_id=bos, tie_word_embeddings=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = LlamaForCausalLM(config)
    return model, tok


MODELS = {"tiny": lambda: tiny_causal_lm(seed=0), "bos_and_merges": _bos_merging_causal_lm}


def _trl_tokenized(model, tok, rows, tmp_path):
    """The prepared rows of TRL's own DPOTrainer for ``rows``."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    args = DPOConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none", max_length=512,
                     per_device_train_batch_size=2, save_strategy="no", disable_tqdm=True,
                     dataloader_num_workers=0, gradient_checkpointing=False, bf16=False)
    trainer = DPOTrainer(model=model, ref_model=copy.deepcopy(model), args=args,
                         processing_class=tok, train_dataset=Dataset.from_list(rows))
    return [trainer.train_dataset[i] for i in range(len(rows))]


def _logprob(model, prompt_ids, completion_ids) -> float:
    ids = torch.tensor([list(prompt_ids) + list(completion_ids)])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].double(), -1)
    n = len(prompt_ids)
    return float(sum(logp[n - 1 + j, t] for j, t in enumerate(completion_ids)))


@pytest.mark.parametrize("which", sorted(MODELS))
def test_pair_logprobs_equal_those_of_trl_tokenization(which, tmp_path):
    model, tok = MODELS[which]()
    prepared = _trl_tokenized(model, tok, ROWS, tmp_path)
    model.eval()
    oracle_c = np.array([_logprob(model, r["prompt_ids"], r["chosen_ids"]) for r in prepared])
    oracle_r = np.array([_logprob(model, r["prompt_ids"], r["rejected_ids"]) for r in prepared])
    assert all(r["chosen_ids"][-1] == tok.eos_token_id for r in prepared)  # TRL appends EOS

    got_c, got_r = pair_logprobs(model, tok, ROWS, batch_size=2)
    np.testing.assert_allclose(got_c, oracle_c, atol=1e-4)
    np.testing.assert_allclose(got_r, oracle_r, atol=1e-4)
    if which == "tiny":  # no merge across the boundary: one completion alone is the same
        single = sequence_logprobs(model, tok, [r["prompt"] for r in ROWS],
                                   [r["chosen"] for r in ROWS], batch_size=2)
        np.testing.assert_allclose(single, oracle_c, atol=1e-4)


@pytest.mark.parametrize("which", sorted(MODELS))
def test_negative_control_tokenizing_apart_without_eos_differs_from_training(which, tmp_path):
    """What evaluation did before: prompt and completion tokenized apart, no special tokens,
    no EOS. The oracle check above tells it from training's sequences by far."""
    model, tok = MODELS[which]()
    prepared = _trl_tokenized(model, tok, ROWS, tmp_path)
    model.eval()
    for row, r in zip(ROWS, prepared):
        oracle = _logprob(model, r["prompt_ids"], r["chosen_ids"])
        old = _logprob(model, tok(row["prompt"], add_special_tokens=False)["input_ids"],
                       tok(row["chosen"], add_special_tokens=False)["input_ids"])
        assert abs(old - oracle) > 1e-2


def test_the_bos_and_merge_tokenizer_exercises_both_cases():
    """The second oracle model is there for two things the byte-level tokenizer cannot show."""
    _, tok = _bos_merging_causal_lm()
    from moalign.evaluation.logprobs import _completion_ids

    p, (c, j) = _completion_ids(tok, "Q: x ", ["yes", "no"])
    assert p[0] == tok.bos_token_id
    assert tok.decode(p) == "<s>Q: x"  # the last space merged into the chosen reply's " y"
    assert tok.decode(c) == " yes</s>" and tok.decode(j) == " no</s>"
    p, (c,) = _completion_ids(tok, "Q: x ", ["no</s>"])  # an EOS already there is not doubled
    assert tok.decode(p) == "<s>Q: x " and tok.decode(c) == "no</s>"


def test_chat_pairs_are_tokenized_as_before():
    model, tok = tiny_causal_lm(seed=0)
    from moalign.evaluation.logprobs import _tokenize_pair

    prompt = [{"role": "user", "content": "hi"}]
    p, c = _tokenize_pair(tok, prompt, [{"role": "assistant", "content": "hello"}], 512)
    assert tok.decode(p) == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert tok.decode(c) == "hello<|im_end|>\n"
    p, c = _tokenize_pair(tok, prompt, "hello", 512)  # a plain reply to a chat prompt: as it is
    assert tok.decode(c) == "hello"
