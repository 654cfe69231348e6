"""``moalign export``: traced points as folders that plain transformers / peft load.

Two tiny fronts are traced (soup and conditioned, float32), their points exported through the
CLI, and one subprocess in which ``import moalign`` fails loads every exported folder with plain
transformers / peft and writes what it computed; the tests compare that with moalign's own
points (the stored soup adapter, the soup of the runs, the conditioned run with its prompt
condition).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow  # the module's fronts are traced once, then exported and reloaded

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from moalign.cli import main  # noqa: E402

TEXT = "Human: How do I bake bread?\nAssistant: Mix flour, water and yeast."
PROMPTS = [[{"role": "user", "content": "How do I bake bread?"}],
           [{"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Name a colour."}]]
NEW_TOKENS = 12
REPLY_TOKENS = 48  # the traces' generation.max_new_tokens (FrontConfig's default)

PLAIN = textwrap.dedent('''
    import json, sys
    sys.modules["moalign"] = None  # no moalign in this process
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline
    job = json.load(open(sys.argv[1]))
    out = {"logits": {}, "replies": {}}
    def logits(model, folder):
        tok = AutoTokenizer.from_pretrained(folder)
        ids = tok(job["text"], return_tensors="pt", add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            return model(input_ids=ids).logits[0].tolist()
    for name, folder in job["merged"].items():
        out["logits"][name] = logits(AutoModelForCausalLM.from_pretrained(folder), folder)
    for name, folder in job["adapters"].items():
        cfg = json.load(open(folder + "/adapter_config.json"))
        base = AutoModelForCausalLM.from_pretrained(cfg["base_model_name_or_path"])
        out["logits"][name] = logits(PeftModel.from_pretrained(base, folder),
                                     cfg["base_model_name_or_path"])
    for name, (folder, prompts) in job["generate"].items():  # a server's own generate call
        model = AutoModelForCausalLM.from_pretrained(folder)
        tok = AutoTokenizer.from_pretrained(folder)
        out["replies"][name] = []
        for p in prompts:
            enc = tok.apply_chat_template(p, add_generation_prompt=True, return_tensors="pt",
                                          return_dict=True)
            new = model.generate(**enc, max_new_tokens=job["reply_tokens"], do_sample=False)
            out["replies"][name].append(tok.decode(new[0, enc["input_ids"].shape[1]:],
                                                   skip_special_tokens=True))
    for name, folder in job["chat"].items():
        pipe = pipeline("text-generation", model=folder, tokenizer=folder)
        out["replies"][name] = [
            pipe(p, max_new_tokens=job["new_tokens"], do_sample=False,
                 return_full_text=False)[0]["generated_text"] for p in job["prompts"]]
    json.dump(out, open(sys.argv[2], "w"))
''')


def _run(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


def _trace(folder, method):
    from moalign.fronts.trace import trace_front

    trace_front({"method": method, "model": "tiny", "dataset": "hh-rlhf",
                 "objectives": ["helpfulness", "harmlessness"], "output_dir": str(folder),
                 "grid": 2, "train_pairs": 8, "eval_pairs": 8, "metric": "implicit",
                 "max_length": 96, "precision": "float32", "progress": False, "seed": 0,
                 "train": {"max_steps": 2, "per_device_train_batch_size": 4,
                           "learning_rate": 1e-2, "max_length": 96, "max_prompt_tokens": 48},
                 "lora": {"r": 4, "lora_alpha": 8}})
    return folder


@pytest.fixture(scope="module")
def fronts(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    return {"soup": _trace(root / "soup", "soup"),
            "conditioned": _trace(root / "conditioned", "conditioned"), "root": root}


@pytest.fixture(scope="module")
def exported(fronts):
    root, soup, cond = fronts["root"], str(fronts["soup"]), str(fronts["conditioned"])
    out = root / "out"
    runs = {
        "traced": ["export", soup, "--point", "w0.50-0.50", "-o", str(out / "traced")],
        "between": ["export", soup, "--weights", "0.3,0.7", "-o", str(out / "between")],
        "adapter": ["export", soup, "--weights", "0.3,0.7", "--adapter", "-o",
                    str(out / "adapter")],
        "grid": ["export", soup, "--grid", "2", "-o", str(out / "grid")],
        "conditioned": ["export", cond, "--weights", "0.2,0.8", "-o", str(out / "cond")],
    }
    printed = {}
    for name, argv in runs.items():
        rc, stdout, stderr = _run(argv)
        assert rc == 0, stderr
        printed[name] = stdout
    grid = {f"grid/{a.name}": str(a) for a in sorted((out / "grid" / "adapters").iterdir())}
    job = {"text": TEXT, "prompts": PROMPTS, "new_tokens": NEW_TOKENS,
           "merged": {"traced": str(out / "traced"), "between": str(out / "between")},
           "adapters": {"adapter": str(out / "adapter"), **grid},
           "chat": {"conditioned": str(out / "cond")},
           "generate": {"traced": [str(out / "traced"), _recorded(soup, "w0.50-0.50")[0]]},
           "reply_tokens": REPLY_TOKENS}
    (root / "job.json").write_text(json.dumps(job))
    (root / "plain.py").write_text(PLAIN)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, str(root / "plain.py"), str(root / "job.json"),
                           str(root / "plain.json")], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    plain = json.loads((root / "plain.json").read_text())
    return {"out": out, "plain": plain, "printed": printed, "grid": grid}


def _recorded(front, point):
    """``(prompts, replies)`` the trace recorded for a point (``points/<id>/replies.jsonl``)."""
    rows = [json.loads(line) for line in
            (Path(front) / "points" / point / "replies.jsonl").read_text().splitlines()]
    return [r["prompt"] for r in rows], [r["reply"] for r in rows]


def _own_logits(model, tok):
    ids = tok(TEXT, return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        return model(input_ids=ids).logits[0]


def _runs_model(front, runs):
    import copy

    from peft import PeftModel

    from moalign.models import tiny_causal_lm

    base, tok = tiny_causal_lm(seed=0)
    model = None
    for run in runs:
        path = str(front / "runs" / run / "adapter")
        if model is None:
            model = PeftModel.from_pretrained(copy.deepcopy(base), path, adapter_name=run)
        else:
            model.load_adapter(path, adapter_name=run)
    return model.eval(), tok, base


def test_exported_soup_point_has_the_logits_of_moalign_own_point(fronts, exported):
    from peft import PeftModel

    from moalign.models import tiny_causal_lm

    soup = fronts["soup"]
    front = json.loads((soup / "front.json").read_text())
    point = next(p for p in front["points"] if p["id"] == "w0.50-0.50")
    base, tok = tiny_causal_lm(seed=0)
    own = PeftModel.from_pretrained(base, str(soup / point["checkpoint"])).eval()
    plain = torch.tensor(exported["plain"]["logits"]["traced"])
    assert float((plain - _own_logits(own, tok)).abs().max()) < 1e-5
    card = (exported["out"] / "traced" / "README.md").read_text()
    assert "w0.50-0.50" in card and "interval" in card and "not measured" not in card.lower()


def test_exported_point_served_by_plain_transformers_gives_the_replies_the_trace_recorded(
        fronts, exported):
    """``AutoModelForCausalLM.from_pretrained(folder)`` and ``generate``, in a process without
    moalign, one prompt at a time: the replies the trace recorded for that point."""
    prompts, replies = _recorded(fronts["soup"], "w0.50-0.50")
    assert len(prompts) == 4 and all(isinstance(p, list) for p in prompts)
    assert exported["plain"]["replies"]["traced"] == replies


def test_exported_soup_between_traced_weights_is_the_exact_soup(fronts, exported):
    from moalign.fronts.soup import soup_adapter

    runs = ["only_helpfulness", "only_harmlessness"]
    model, tok, base = _runs_model(fronts["soup"], runs)
    soup_adapter(model, runs, [0.3, 0.7])
    model.eval()  # peft adds the soup's modules in training mode (LoRA dropout)
    own = _own_logits(model, tok)
    for name in ("between", "adapter"):  # merged model, and one LoRA adapter over the start
        plain = torch.tensor(exported["plain"]["logits"][name])
        assert float((plain - own).abs().max()) < 1e-5, name
    with torch.no_grad():  # and the soup is not the start
        assert float((own - _own_logits(base, tok)).abs().max()) > 1e-4
    card = (exported["out"] / "between" / "README.md").read_text()
    assert "Not measured" in card and "moalign eval --model" in card
    assert "helpfulness 0.3, harmlessness 0.7" in card


def test_grid_adapters_load_with_peft_and_are_served_by_one_vllm_command(fronts, exported):
    from moalign.fronts.soup import soup_adapter

    grid = exported["grid"]
    assert sorted(grid) == ["grid/w0.00-1.00", "grid/w0.50-0.50", "grid/w1.00-0.00"]
    runs = ["only_helpfulness", "only_harmlessness"]
    model, tok, _ = _runs_model(fronts["soup"], runs)
    for name in grid:
        w = [float(x) for x in name.split("/w")[1].split("-")]
        soup_adapter(model, runs, w)
        model.eval()
        plain = torch.tensor(exported["plain"]["logits"][name])
        assert float((plain - _own_logits(model, tok)).abs().max()) < 1e-5, name
    serve = (exported["out"] / "grid" / "serve.sh").read_text()
    assert "vllm serve" in serve and "--enable-lora" in serve
    for name, folder in grid.items():
        assert f"{name.split('/')[1]}={folder}" in serve
    assert "w0.50-0.50" in (exported["out"] / "grid" / "README.md").read_text()


def test_exported_conditioned_point_reproduces_its_greedy_replies_in_a_plain_pipeline(
        fronts, exported):
    from moalign.evaluation.generation import generate_completions
    from moalign.models.inference import inference_weights
    from moalign.tradeoff.conditioning import apply_condition

    names = ["helpfulness", "harmlessness"]
    model, tok, _ = _runs_model(fronts["conditioned"], ["conditioned"])
    prompts = [apply_condition(p, [0.2, 0.8], names) for p in PROMPTS]  # as the trace shows them
    with inference_weights(model, "float32"):
        own = generate_completions(model, tok, prompts, max_new_tokens=NEW_TOKENS, batch_size=1)
    assert exported["plain"]["replies"]["conditioned"] == own
    card = (exported["out"] / "cond" / "README.md").read_text()
    assert "Objective weights: helpfulness=0.20, harmlessness=0.80" in card


def test_condition_template_renders_what_apply_condition_renders():
    from moalign.evaluation.prompts import render_prompt
    from moalign.fronts.export.folder import condition_chat_template
    from moalign.models import tiny_causal_lm
    from moalign.tradeoff.conditioning import apply_condition, format_condition

    _, tok = tiny_causal_lm()
    names = ["helpfulness", "harmlessness"]
    for style in ("system", "prefix"):
        for template in (tok.chat_template, None):
            shown = condition_chat_template(template, format_condition([0.3, 0.7], names), style)
            for prompt in PROMPTS:
                want = apply_condition(prompt, [0.3, 0.7], names, style=style)
                original = tok.chat_template
                tok.chat_template = template
                expected = render_prompt(tok, want)
                tok.chat_template = shown
                got = tok.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
                tok.chat_template = original
                assert got == expected, (style, template is None)


def test_mod_points_are_refused_with_the_reason_and_what_to_do(fronts, tmp_path):
    front = tmp_path / "mod"
    shutil.copytree(fronts["soup"], front)
    for name in ("front.json", "config.json"):
        data = json.loads((front / name).read_text())
        data["method"] = "decoding"
        (front / name).write_text(json.dumps(data))
    rc, _, err = _run(["export", str(front), "--weights", "0.3,0.7", "-o", str(tmp_path / "x")])
    assert rc == 2
    assert "mixture of models is not one model" in err and "moalign generate" in err
    assert "--soup" in err and not (tmp_path / "x").exists()
    rc, _, err = _run(["export", str(front), "--grid", "2", "-o", str(tmp_path / "x")])
    assert rc == 2 and "not one model" in err
    rc, out, err = _run(["export", str(front), "--weights", "0.3,0.7", "--soup",
                         "-o", str(tmp_path / "s")])
    assert rc == 0, err
    assert "not the MOD point" in (tmp_path / "s" / "README.md").read_text()


def test_sweep_style_lookups_name_the_traced_points(fronts, tmp_path):
    rc, _, err = _run(["export", str(fronts["soup"]), "--point", "w0.5-0.5",
                       "-o", str(tmp_path / "x")])
    assert rc == 2 and "did you mean 'w0.50-0.50'" in err
    rc, _, err = _run(["export", str(fronts["soup"]), "--weights", "0.3,0.8",
                       "-o", str(tmp_path / "x")])
    assert rc == 2 and "sum" in err


# ------------------------------------------------------------------------------- generate


def _generate(tmp_path, *argv):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps(p) + "\n" for p in PROMPTS))
    out = tmp_path / "replies.jsonl"
    rc, _, err = _run(["generate", *argv, "--prompts", str(prompts), "--output", str(out),
                       "--max-new-tokens", str(NEW_TOKENS), "--batch-size", "1"])
    assert rc == 0, err
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_generate_gives_the_replies_the_exported_folder_gives(fronts, exported, tmp_path):
    rows = _generate(tmp_path, "--front", str(fronts["conditioned"]), "--weights", "0.2,0.8",
                     "--precision", "float32")
    assert [r["prompt"] for r in rows] == PROMPTS
    assert [r["reply"] for r in rows] == exported["plain"]["replies"]["conditioned"]
    assert rows[0]["weights"] == [0.2, 0.8] and rows[0]["point"] is None


def test_generate_serves_a_mod_point_and_plain_lines(fronts, tmp_path):
    front = tmp_path / "mod"
    shutil.copytree(fronts["soup"], front)
    for name in ("front.json", "config.json"):
        data = json.loads((front / name).read_text())
        data["method"] = "decoding"
        (front / name).write_text(json.dumps(data))
    mod = _generate(tmp_path, "--front", str(front), "--weights", "1,0")
    soup = _generate(tmp_path, "--front", str(fronts["soup"]), "--point", "w1.00-0.00")
    assert [r["reply"] for r in mod] == [r["reply"] for r in soup]  # MOD at a vertex: that run
    assert soup[0]["point"] == "w1.00-0.00"
    from moalign.cli.generate import parse_prompt

    assert parse_prompt("Hi there\n") == [{"role": "user", "content": "Hi there"}]
    assert parse_prompt("Hi there\n", raw=True) == "Hi there"
    assert parse_prompt('{"prompt": "x"}') == "x" and parse_prompt('"x"') == "x"


# --------------------------------------------------------------------------------- report


def test_the_trace_records_the_replies_the_report_shows(fronts, tmp_path):
    """Every policy's replies to the first held-out prompts are in its folder, as
    ``TracedFront.replies`` generates them again (the soup at its weights, the conditioned run
    with its condition), and ``report`` uses them without generating."""
    from moalign.fronts.export.traced import TracedFront
    from moalign.fronts.report.replies import REPLY_PROMPTS, heldout_prompts, read_replies

    for method in ("soup", "conditioned"):
        tf = TracedFront(fronts[method])
        stored = read_replies(tf.folder)
        ids = [p.id for p in tf.front.points]
        assert sorted(stored) == sorted(["start", *ids])
        prompts = heldout_prompts(tf, REPLY_PROMPTS)
        assert len(prompts) == REPLY_PROMPTS
        for pid in stored:
            assert [r["prompt"] for r in stored[pid]] == prompts, (method, pid)
        again = {"start": tf.replies(tf.start_policy(), prompts),
                 "w0.50-0.50": tf.replies(tf.policy(point="w0.50-0.50")[0], prompts)}
        for pid, replies in again.items():
            assert [r["reply"] for r in stored[pid]] == replies, (method, pid)
    out = tmp_path / "r.html"
    rc, _, err = _run(["report", str(fronts["soup"]), "-o", str(out),
                       "--replies", str(REPLY_PROMPTS)])
    assert rc == 0 and "generating" not in err, err
    assert out.read_text().count("<tr data-reply") == REPLY_PROMPTS * (1 + 3)


def test_report_generates_and_stores_the_replies_of_a_front_traced_before(fronts, tmp_path):
    soup = tmp_path / "soup"
    shutil.copytree(fronts["soup"], soup)
    for f in soup.rglob("replies.jsonl"):  # as traced before the trace recorded replies
        f.unlink()
    out = tmp_path / "r.html"
    rc, _, err = _run(["report", str(soup), "-o", str(out), "--replies", "1"])
    assert rc == 0, err
    assert err.count("generating 1 replies") == 4
    ids = [p["id"] for p in json.loads((soup / "front.json").read_text())["points"]]
    stored = [soup / "baseline" / "replies.jsonl"] + [soup / "points" / i / "replies.jsonl"
                                                      for i in ids]
    assert all(len(f.read_text().splitlines()) == 1 for f in stored)
    assert out.read_text().count("<tr data-reply") == 1 + len(ids)
    rows = _generate(tmp_path, "--front", str(soup), "--start")  # the starting policy too
    assert rows[0]["point"] == "start"
