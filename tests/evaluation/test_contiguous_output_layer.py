"""Log-probs hand the output layer a contiguous input (a sliced, non-contiguous one makes torch
copy the vocabulary-sized weight once per row), with the same results."""

from __future__ import annotations

import copy

import pytest
import torch

from moalign.evaluation.logprobs import _logprobs_of_ids, contiguous_output_layer
from moalign.models import tiny_causal_lm


def _peft_model():
    peft = pytest.importorskip("peft")
    model, tok = tiny_causal_lm(seed=0)
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                             init_lora_weights=False, task_type="CAUSAL_LM")
    return peft.get_peft_model(copy.deepcopy(model), config).eval(), tok


def test_the_output_layer_sees_a_contiguous_input_and_results_do_not_change():
    model, tok = _peft_model()
    seen = []
    layer = model.get_output_embeddings()
    handle = layer.register_forward_hook(lambda m, args, out: seen.append(args[0].is_contiguous()))
    pairs = [([5, 6, 7, 8, 9, 10], [11, 12]), ([5, 6], [13, 14, 15, 16])]
    pad = tok.pad_token_id
    ours = _logprobs_of_ids(model, pairs, pad, batch_size=2)
    assert seen and all(seen)
    # the same batch without the hook: the output layer gets the non-contiguous slice
    seen.clear()
    ids = torch.tensor([[5, 6, 7, 8, 9, 10, 11, 12], [9, 8, 7, 6, 5, 4, 3, 2]])
    with torch.no_grad():
        sliced = model(input_ids=ids, logits_to_keep=3).logits
        assert seen == [False]  # the case the hook exists for
        with contiguous_output_layer(model):
            whole = model(input_ids=ids, logits_to_keep=3).logits
    handle.remove()
    assert seen[-1] is True
    torch.testing.assert_close(sliced, whole)
    # and the summed log-probs equal a plain full-logits computation
    with torch.no_grad():
        for (p, c), value in zip(pairs, ours):
            full = model(input_ids=torch.tensor([p + c])).logits[0].float().log_softmax(-1)
            expect = sum(full[len(p) - 1 + j, t].item() for j, t in enumerate(c))
            assert value == pytest.approx(expect, abs=1e-4)
