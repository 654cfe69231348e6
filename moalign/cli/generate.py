"""``moalign generate``: replies of any point of a traced front, one JSON line per prompt.

``moalign generate --front FRONT --weights 0.3,0.7 < prompts.txt`` rebuilds the policy at those
weights (:class:`moalign.fronts.export.traced.TracedFront`: a sweep point, a soup at any
weights, a conditioned policy with its condition, a MOD mixture) and generates through the one
decode driver with the trace's generation settings, precision and chat-template handling.

Prompts (``--prompts FILE``, or standard input): one per line. A line holding a JSON list is a
chat (``[{"role": "user", "content": ...}]``), a JSON object its ``"prompt"`` (text or chat), a
JSON string that text as it is; any other line is the text of one user message (rendered
with the chat template), or with ``--raw`` the text as it is.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from moalign.cli._output import quiet_library_output

HELP = "generate replies from any point of a traced front (prompts from a file or stdin, JSON lines out)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.allow_abbrev = False
    parser.add_argument("--front", required=True, metavar="FRONT",
                        help="a trace folder or its front.json")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--weights", metavar="W", help="weight vector, e.g. 0.3,0.7")
    which.add_argument("--point", metavar="ID", help="a traced point's id")
    which.add_argument("--start", action="store_true", help="the starting (SFT) policy")
    parser.add_argument("--prompts", metavar="FILE", default="-",
                        help="prompts, one per line (default: standard input)")
    parser.add_argument("--output", "-o", metavar="FILE", default="-",
                        help="JSON lines to write (default: standard output)")
    parser.add_argument("--raw", action="store_true",
                        help="plain lines are fed as they are, not as a user message")
    parser.add_argument("--max-new-tokens", type=int, help="default: the trace's setting")
    parser.add_argument("--do-sample", action="store_true", help="sample (default: greedy)")
    parser.add_argument("--temperature", type=float)
    parser.add_argument("--top-p", type=float)
    parser.add_argument("--seed", type=int, help="default: the trace's seed")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--precision", choices=("float32", "bfloat16"),
                        help="default: the precision the trace evaluated in")


def parse_prompt(line: str, raw: bool = False) -> Any:
    """One input line as a prompt (see the module docstring)."""
    text = line.rstrip("\n")
    if text.lstrip()[:1] in ("[", "{", '"'):
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = None
        if isinstance(value, dict) and "prompt" in value:
            return value["prompt"]
        if isinstance(value, (list, str)):
            return value
    return text if raw else [{"role": "user", "content": text}]


def run(args: argparse.Namespace, overrides: dict[str, Any]) -> int:
    from moalign.errors import ConfigError
    from moalign.fronts.export.traced import TracedFront

    if overrides:
        raise ConfigError(f"unknown options: {', '.join('--' + k for k in overrides)}")
    tf = TracedFront(args.front)
    if args.prompts == "-":
        lines = sys.stdin.readlines()
    else:
        with open(args.prompts, encoding="utf-8") as f:
            lines = f.readlines()
    prompts = [parse_prompt(line, args.raw) for line in lines if line.strip()]
    if not prompts:
        raise ConfigError("no prompts: give --prompts FILE or lines on standard input")
    settings = {k: v for k, v in {
        "max_new_tokens": args.max_new_tokens, "temperature": args.temperature,
        "top_p": args.top_p, "seed": args.seed, "batch_size": args.batch_size}.items()
        if v is not None}
    if args.do_sample:
        settings["do_sample"] = True
    with quiet_library_output(args.debug, progress=False):
        if args.start:
            policy, weights, point = tf.start_policy(), None, "start"
        else:
            policy, w = tf.policy(args.weights, args.point)
            weights, found = w.tolist(), tf.traced_point(w)
            point = found.id if found else None
        replies = tf.replies(policy, prompts, precision=args.precision, **settings)
    rows = [json.dumps({"prompt": p, "reply": r, "weights": weights, "point": point},
                       ensure_ascii=False) for p, r in zip(prompts, replies)]
    text = "\n".join(rows) + "\n"
    if args.output == "-":
        sys.stdout.write(text)
    else:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text)
    return 0
