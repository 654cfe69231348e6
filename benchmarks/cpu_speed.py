"""How fast this CPU runs the model, in float32 and bfloat16, and whether moalign's evaluation
keeps up with plain transformers; one run, one table.

Part 1, float32 vs bfloat16 (tokens per second, the same inputs):

- forward, ``--batch`` x ``--length`` random tokens: float32; bfloat16 by autocast; bfloat16
  weights (what ``moalign.models.inference.inference_weights`` gives evaluation);
- training step, full model forward + backward of the language-model loss: float32; bfloat16
  autocast (what TRL's ``bf16: true`` does, with float32 weights);
- greedy generation of ``--new-tokens`` tokens with the KV cache, ``--gen-batch`` prompts and
  one prompt: float32; bfloat16 weights.

Part 2, moalign vs plain transformers on the same model and the same batches, in
``--precision`` (default ``auto``: bfloat16 on a CPU with bfloat16 units, float32 elsewhere;
plain transformers then runs the model cast to that dtype). The ratio is plain time / moalign
time, so >= 1 means moalign is faster; goal >= 0.95:

- log-probs of ``--pairs`` held-out HH-RLHF pairs (chosen and rejected, prompts cut to 48
  tokens, 128 tokens in all): ``moalign.evaluation.pair_logprobs`` against a plain forward
  with full logits and ``log_softmax`` over the very batches moalign forms;
- the same with a LoRA adapter of rank 32 on q/k/v/o (a soup point): moalign merges it
  (``inference_weights``), plain peft runs the adapter in every layer;
- greedy generation for ``--gen-batch`` held-out prompts: ``generate_completions`` against a
  plain ``model.generate`` over the same left-padded batches.

Part 3, how close to the limit: the CPU's peak matrix-multiply throughput in float32 and
bfloat16 (a square ``--matmul``-sized product, the same threads), and the evaluation's
throughput expressed as the fraction of that peak it uses (2 FLOPs per weight of every linear
layer, the output projection included, per token; attention scores not counted, so the fraction
is a slight underestimate). moalign's evaluation in float32 vs in ``--precision`` is printed too.

Wall time, median of ``--repeats`` (moalign and plain alternate, after a warm-up), and each ratio
with its spread: the lowest and highest ratio of the runs paired in order; the load
average is printed, since other processes on the cores slow everything down alike.

    python benchmarks/cpu_speed.py            # the embedded SmolLM2-135M-Instruct
    python benchmarks/cpu_speed.py --tiny     # a tiny random model: a check that it runs
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
warnings.filterwarnings("ignore")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tiny", action="store_true", help="a tiny random model (seconds)")
    p.add_argument("--model", default="smollm2", help="policy spec (default: embedded SmolLM2)")
    p.add_argument("--batch", type=int, default=8, help="sequences per forward / training step")
    p.add_argument("--length", type=int, default=128, help="tokens per sequence")
    p.add_argument("--gen-batch", type=int, default=16, help="prompts generated together")
    p.add_argument("--new-tokens", type=int, default=48, help="tokens generated per prompt")
    p.add_argument("--pairs", type=int, default=32, help="HH-RLHF pairs of the log-prob check")
    p.add_argument("--repeats", type=int, default=3, help="timed runs of each measurement")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--precision", default="auto", choices=("auto", "float32", "bfloat16"),
                   help="precision of part 2, moalign vs plain (auto: what precision: auto picks)")
    p.add_argument("--matmul", type=int, default=2048, help="size of the peak-throughput matmul")
    return p.parse_args(argv)


class Timing(list):
    """Seconds of each timed run of one measurement, in order; ``.median`` summarizes."""

    @property
    def median(self) -> float:
        return statistics.median(self)


def _seconds(fn, repeats: int) -> Timing:
    times = Timing()
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def _paired(a, b, repeats: int) -> tuple[Timing, Timing]:
    """Seconds of each run of ``a`` and of ``b``, run alternately (after one warm-up of each)."""
    a()
    b()
    ta, tb = Timing(), Timing()
    for _ in range(repeats):
        for fn, out in ((a, ta), (b, tb)):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return ta, tb


def speed_ratio(base: Timing, other: Timing) -> tuple[float, float, float]:
    """Throughput of ``other`` over that of ``base`` (``base`` seconds / ``other`` seconds):
    the ratio of the medians, and the lowest and highest ratio of the i-th runs of each (the
    spread across repeats; runs are paired in the order they ran)."""
    per_run = [b / o for b, o in zip(base, other)]
    return base.median / other.median, min(per_run), max(per_run)


def ratio_text(ratio: tuple[float, float, float]) -> str:
    mid, low, high = ratio
    return f"{mid:.2f}x [{low:.2f}, {high:.2f}]"


def load(args):
    import torch

    if args.tiny:
        from moalign.models import tiny_causal_lm

        model, tok = tiny_causal_lm(seed=0)
    else:
        from moalign.models import load_policy

        model, tok = load_policy(args.model)
    torch.manual_seed(0)
    return model.eval(), tok


def precision_rows(model, tok, args) -> list[tuple[str, float, float, str, str]]:
    """``(what, float32 tok/s, bfloat16 tok/s, bf16 / fp32 with its spread, how bfloat16
    ran)``."""
    import torch

    from moalign.models.inference import inference_weights

    vocab = model.config.vocab_size
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, vocab, (args.batch, args.length), generator=g)
    n = ids.numel()
    r = args.repeats

    def forward():
        with torch.no_grad():
            model(input_ids=ids)

    def autocast_forward():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            forward()

    def weights_forward():
        with inference_weights(model, "bfloat16"):
            forward()

    def train_step():
        model.zero_grad(set_to_none=True)
        model(input_ids=ids, labels=ids).loss.backward()

    def autocast_train_step():
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()

    rows = []
    forward()
    autocast_forward()
    weights_forward()

    def row(what, base, other, how, units):
        return (what, units / base.median, units / other.median,
                ratio_text(speed_ratio(base, other)), how)

    f32 = _seconds(forward, r)
    rows.append(row(f"forward, {args.batch} x {args.length} tokens", f32,
                    _seconds(autocast_forward, r), "autocast", n))
    rows.append(row("", f32, _seconds(weights_forward, r), "bf16 weights", n))
    model.train()
    train_step()
    autocast_train_step()
    rows.append(row("training step (full model, fwd + bwd)", _seconds(train_step, r),
                    _seconds(autocast_train_step, r), "autocast", n))
    model.zero_grad(set_to_none=True)
    model.eval()
    for batch in (args.gen_batch, 1):
        prompt = ids[:batch, :32]

        def gen(prompt=prompt):
            with torch.no_grad():
                model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt),
                               max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens,
                               do_sample=False, pad_token_id=tok.pad_token_id)

        def gen_bf16():
            with inference_weights(model, "bfloat16"):
                gen()

        gen()
        gen_bf16()
        m = batch * args.new_tokens
        rows.append(row(f"greedy generation, batch {batch}, {args.new_tokens} new tokens",
                        _seconds(gen, r), _seconds(gen_bf16, r), "bf16 weights", m))
    return rows


def _heldout(tok, args):
    from moalign.data import catalog, truncate_prompts

    ds = catalog.load_dataset("hh-rlhf").select(range(args.pairs))
    rows, _ = truncate_prompts(ds, tok, 48)
    return rows.to_list()


def _plain_logprobs(model, tok, rows, max_length: int):
    """The batches moalign forms for these pairs, each run as a plain transformers forward
    with full logits and ``log_softmax``."""
    import torch

    from moalign.evaluation.batching import length_batches
    from moalign.evaluation.logprobs import _completion_ids, _truncate

    seqs = []
    for row in rows:
        p, (c, j) = _completion_ids(tok, row["prompt"], [row["chosen"], row["rejected"]])
        seqs += [_truncate(p, c, max_length), _truncate(p, j, max_length)]
    lengths = [len(p) + len(c) for p, c in seqs]
    batches = length_batches(lengths, batch_size=64)
    pad = tok.pad_token_id
    prepared = []
    for batch in batches:
        width = max(lengths[i] for i in batch)
        ids = torch.full((len(batch), width), pad)
        attn = torch.zeros_like(ids)
        comp = torch.zeros_like(ids, dtype=torch.bool)
        for r, i in enumerate(batch):
            p, c = seqs[i]
            ids[r, : lengths[i]] = torch.tensor(p + c)
            attn[r, : lengths[i]] = 1
            comp[r, len(p) : lengths[i]] = True
        prepared.append((ids, attn, comp))

    def run():
        out = []
        with torch.no_grad():
            for ids, attn, comp in prepared:
                logp = torch.log_softmax(model(input_ids=ids, attention_mask=attn).logits, -1)
                tokp = logp[:, :-1].gather(-1, ids[:, 1:, None]).squeeze(-1)
                out.append((tokp * comp[:, 1:]).sum(-1))
        return out

    return run, sum(lengths)


def _plain_generate(model, tok, prompts, args):
    """``model.generate`` over the batches ``generate_completions`` forms (left padding)."""
    import torch

    from moalign.evaluation.batching import length_batches
    from moalign.evaluation.generation import render_prompt

    texts = [render_prompt(tok, p) for p in prompts]
    lengths = [len(t) for t in tok(texts, add_special_tokens=False)["input_ids"]]
    batches = length_batches([n + args.new_tokens for n in lengths], batch_size=args.gen_batch)
    side = tok.padding_side
    tok.padding_side = "left"
    encoded = [tok([texts[i] for i in b], return_tensors="pt", padding=True,
                   add_special_tokens=False) for b in batches]
    tok.padding_side = side
    made = [0]

    def run():
        made[0] = 0
        with torch.no_grad():
            for enc in encoded:
                out = model.generate(**enc, max_new_tokens=args.new_tokens, do_sample=False,
                                     pad_token_id=tok.pad_token_id,
                                     eos_token_id=tok.eos_token_id)
                made[0] += int((out[:, enc["input_ids"].shape[1]:] != tok.pad_token_id).sum())

    return run, made


def moalign_rows(model, tok, args, precision: str = "float32"
                 ) -> tuple[list[tuple[str, float, float, str]], dict[str, float]]:
    """``(what, moalign units/s, plain units/s, moalign / plain with its spread)`` in
    ``precision`` (plain transformers runs a copy of the model cast to it), and the measured
    log-prob throughputs ``{"moalign": tok/s, "moalign_float32": tok/s}``."""
    import copy

    import torch
    from peft import LoraConfig, get_peft_model

    from moalign.evaluation import measure_throughput
    from moalign.evaluation.generation import generate_completions
    from moalign.evaluation.logprobs import pair_logprobs
    from moalign.models.inference import inference_weights
    from moalign.models.precision import torch_dtype

    dtype = torch_dtype(precision)
    rows = _heldout(tok, args)
    cast = copy.deepcopy(model).to(dtype) if dtype != torch.float32 else model
    plain, tokens = _plain_logprobs(cast, tok, rows, 128)

    def ours(m=model, p=precision):
        with inference_weights(m, p):
            pair_logprobs(m, tok, rows, max_length=128)

    def row(what, t_ours, t_plain, units_ours, units_plain):
        mid, low, high = speed_ratio(t_plain, t_ours)
        scale = units_ours / units_plain  # the same work counted by each side (equal but gen)
        return (what, units_ours / t_ours.median, units_plain / t_plain.median,
                ratio_text((mid * scale, low * scale, high * scale)))

    t_ours, t_plain = _paired(ours, plain, args.repeats)
    out = [row(f"log-probs of {len(rows)} HH pairs (tokens/s)", t_ours, t_plain, tokens, tokens)]
    rates = {"moalign": tokens / t_ours.median}
    if precision != "float32":
        t32, t_low = _paired(lambda: ours(p="float32"), ours, args.repeats)
        rates["moalign_float32"] = tokens / t32.median
        rates["precision_ratio"] = speed_ratio(t32, t_low)
    del cast

    lora = get_peft_model(copy.deepcopy(model), LoraConfig(
        task_type="CAUSAL_LM", r=32, lora_alpha=32,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
    lora.eval()
    lora_cast = copy.deepcopy(lora).to(dtype) if dtype != torch.float32 else lora
    peft_plain, _ = _plain_logprobs(lora_cast, tok, rows, 128)
    t_ours, t_plain = _paired(lambda: ours(lora), peft_plain, args.repeats)
    out.append(row("  the same, LoRA r=32 soup point", t_ours, t_plain, tokens, tokens))
    del lora_cast

    prompts = list({repr(r["prompt"]): r["prompt"] for r in rows}.values())[: args.gen_batch]
    cast = copy.deepcopy(model).to(dtype) if dtype != torch.float32 else model
    plain_gen, made = _plain_generate(cast, tok, prompts, args)
    meter_box = {}

    def ours_gen():
        with measure_throughput() as meter, inference_weights(model, precision):
            generate_completions(model, tok, prompts, max_new_tokens=args.new_tokens,
                                 batch_size=args.gen_batch)
        meter_box["units"] = meter.units["generation"]

    t_ours, t_plain = _paired(ours_gen, plain_gen, args.repeats)
    out.append(row(f"greedy generation, {len(prompts)} HH prompts (tokens/s)", t_ours, t_plain,
                   meter_box["units"], made[0]))
    return out, rates


def peak_flops(size: int, dtype, repeats: int) -> tuple[float, float, float]:
    """FLOP/s of a ``size`` x ``size`` matrix product in ``dtype`` with the current threads:
    (median, lowest, highest run)."""
    import torch

    g = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=g).to(dtype)
    b = torch.randn(size, size, generator=g).to(dtype)
    a @ b  # warm-up
    times = _seconds(lambda: a @ b, max(repeats, 3))
    flops = 2.0 * size ** 3
    return flops / times.median, flops / max(times), flops / min(times)


def flops_per_token(model) -> float:
    """2 FLOPs per weight of every linear layer (the output projection included) per token."""
    import torch

    return 2.0 * sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))


def table(header, rows) -> str:
    widths = [max(len(str(r[c])) for r in [header, *rows]) for c in range(len(header))]
    lines = ["| " + " | ".join(str(h).ljust(w) for h, w in zip(header, widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(str(v).ljust(w) for v, w in zip(r, widths)) + " |" for r in rows]
    return "\n".join(lines)


def main(argv=None) -> int:
    import torch

    from moalign.models.precision import cpu_bf16_flags, describe_precision

    args = parse_args(argv)
    if args.tiny:
        args.batch, args.length, args.gen_batch = min(args.batch, 4), min(args.length, 32), 4
        args.new_tokens, args.pairs, args.repeats = min(args.new_tokens, 8), min(args.pairs, 8), 1
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    model, tok = load(args)
    name = "tiny random Llama" if args.tiny else args.model
    flags = ", ".join(cpu_bf16_flags()) or "none"
    print(f"model {name}; torch {torch.__version__}, {torch.get_num_threads()} threads; CPU "
          f"bfloat16 units: {flags}; load average {os.getloadavg()[0]:.2f}; "
          f"precision auto -> {describe_precision('auto', device='cpu')}", flush=True)
    rows = precision_rows(model, tok, args)
    print(table(["what", "float32 tok/s", "bfloat16 tok/s", "bf16 / fp32", "bfloat16 as"],
                [(w, f"{a:,.0f}", f"{b:,.0f}", ratio, how) for w, a, b, ratio, how in rows]))
    print(flush=True)
    from moalign.models.precision import resolve_precision

    precision = resolve_precision(args.precision, device="cpu")
    ours, rates = moalign_rows(model, tok, args, precision)
    print(table([f"moalign vs plain transformers ({precision})", "moalign", "plain", "ratio"],
                [(w, f"{a:,.0f}", f"{b:,.0f}", ratio) for w, a, b, ratio in ours]))
    print(flush=True)
    per_token = flops_per_token(model)
    limit = []
    for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        mid, low, high = peak_flops(args.matmul, dtype, args.repeats)
        used = rates["moalign_float32" if name == "float32" and precision != "float32"
                     else "moalign"] if name in ("float32", precision) else None
        limit.append((f"{name} matmul {args.matmul}^3", f"{mid / 1e9:,.1f} [{low / 1e9:,.1f}, "
                      f"{high / 1e9:,.1f}]",
                      "" if used is None else f"{used * per_token / 1e9:,.1f}",
                      "" if used is None else f"{used * per_token / mid:.0%}"))
    print(table(["how close to the limit", "peak GFLOP/s [lowest, highest]",
                 "evaluation GFLOP/s", "evaluation / peak"], limit))
    if "precision_ratio" in rates:
        print(f"\nmoalign's evaluation (log-probs) in {precision} vs float32: "
              f"{ratio_text(rates['precision_ratio'])} "
              f"({rates['moalign']:,.0f} vs {rates['moalign_float32']:,.0f} tokens/s)")
    print(f"\n(ratios: the medians' ratio [lowest, highest ratio of paired runs over "
          f"{args.repeats} repeat(s)]; moalign / plain throughput, goal >= 0.95; "
          f"{time.perf_counter() - start:.0f} s"
          f" in all, load average now {os.getloadavg()[0]:.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
