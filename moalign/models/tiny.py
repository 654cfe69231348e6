"""Tiny random models for tests and ``--tiny`` runs: a real byte-level tokenizer with a ChatML
chat template, a small Llama causal LM and a sequence-classification reward model, built from
configs entirely offline. Public so that plugin authors can test their objectives the same way.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CHATML_TEMPLATE", "tiny_causal_lm", "tiny_reward_model", "tiny_tokenizer"]

#: ChatML, the template of SmolLM2-Instruct; the tiny tokenizer uses it too.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def tiny_tokenizer(padding_side: str = "right"):
    """A byte-level tokenizer (256 byte tokens + 3 specials) with a ChatML chat template.

    No merges: every UTF-8 byte is one token, so any text round-trips exactly. Specials:
    ``<|endoftext|>`` (pad), ``<|im_start|>``, ``<|im_end|>`` (eos).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    backend = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
        padding_side=padding_side,
        model_max_length=2048,
    )
    tok.chat_template = CHATML_TEMPLATE
    return tok


def _tiny_llama_config(tokenizer, **overrides: Any):
    from transformers import LlamaConfig

    kwargs: dict[str, Any] = dict(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        tie_word_embeddings=False,
    )
    kwargs.update(overrides)
    return LlamaConfig(**kwargs)


def tiny_causal_lm(seed: int = 0, **config_overrides: Any):
    """A random 2-layer Llama causal LM (~30k parameters) and its tokenizer: ``(model, tokenizer)``.

    Same architecture family as SmolLM2 (so LoRA targets ``q_proj``/``v_proj`` work). Seeded:
    the same ``seed`` gives the same weights.
    """
    import torch
    from transformers import LlamaForCausalLM

    tokenizer = tiny_tokenizer()
    config = _tiny_llama_config(tokenizer, **config_overrides)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model, tokenizer


def tiny_reward_model(seed: int = 0, num_labels: int = 1, **config_overrides: Any):
    """A random 2-layer Llama sequence classifier and its tokenizer: ``(model, tokenizer)``.

    ``num_labels`` > 1 gives a multi-head reward model (one score per head).
    """
    import torch
    from transformers import LlamaForSequenceClassification

    tokenizer = tiny_tokenizer()
    config = _tiny_llama_config(tokenizer, num_labels=num_labels, **config_overrides)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForSequenceClassification(config)
    return model, tokenizer


# --------------------------------------------------------------------------------------------
# Where models are
# --------------------------------------------------------------------------------------------
