"""Benchmark: tuneloop's formatter vs the usual cookbook loop, on synthetic support chats.

Ours, per format: render + count tokens + validate each canonical example in one pass
(``Format.format_many``), timed in memory (``core``) and end to end (``format_dataset``: also the
split files, the quarantine and the report written to disk).

Baseline ("the way people do it today"): the OpenAI cookbook "Data preparation and analysis for
chat model fine-tuning" loop over an OpenAI chat JSONL file: ``json.loads`` one line at a time,
its per-example format checks (data type, missing messages, message keys, unrecognized keys,
roles, content, assistant present), then per-example token counting with the same tokenizer
(bpe_openai o200k_base, one ``encode`` call per message). A second baseline row is the cookbook's
``num_tokens_from_messages`` verbatim, which encodes every value of a message (role and content).

Run: ``python bench/bench_formatter.py --n 200000 --out bench/RESULTS-formatter.md``
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tuneloop.examples import make_example, split_examples  # noqa: E402
from tuneloop.formats import FORMAT_NAMES, format_dataset, get_format  # noqa: E402
from tuneloop.formats.base import Limits  # noqa: E402

SYSTEM = (
    "You are Nova, the customer support assistant for Brightline Home. Be concise and friendly, "
    "never promise refunds outside policy, and ask for the order number when you need it."
)
FIRST = ["Maya", "Liam", "Sofia", "Noah", "Aisha", "Kenji", "Lucía", "Omar", "Emma", "Ravi", "Zoë", "Jonas"]
PRODUCTS = [
    "standing desk", "air purifier", "espresso machine", "robot vacuum", "office chair", "blender",
    "smart thermostat", "duvet set", "cast iron pan", "desk lamp", "water filter", "kettle",
]
CARRIERS = ["UPS", "FedEx", "DHL", "USPS"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]


def _order() -> str:
    return f"#{random.randint(100000, 999999)}"


def _pick(*options: str) -> str:
    return random.choice(options)


def _exchange() -> tuple[str, str]:
    """One support exchange (user, assistant) with specifics filled in, so most turns are unique."""
    name, product, order = random.choice(FIRST), random.choice(PRODUCTS), _order()
    day, carrier = random.choice(DAYS), random.choice(CARRIERS)
    n_days, amount = random.randint(2, 20), f"${random.randint(10, 400)}.{random.randint(10, 99)}"
    mins, hour = random.choice([15, 30, 60]), random.randint(8, 18)
    kind = random.randrange(6)
    if kind == 0:
        user = _pick(
            f"Hi, my {product} (order {order}) was supposed to arrive on {day} but tracking hasn't moved.",
            f"where is my order {order}?? it's been {n_days} days",
            f"Hello, I'm {name}. Could you check the delivery status of {order}? It's a {product}.",
        )
        greet = f", {name}" if name in user else ""
        bot = (f"Thanks{greet}! Order {order} left our warehouse and is with {carrier}; the latest scan shows "
               f"it in transit, with delivery expected by {day}. I've flagged it so we'll reach out if it slips.")
    elif kind == 1:
        user = _pick(
            f"I want to return the {product} I bought, it stopped working after {n_days} days.",
            f"The {product} arrived damaged. Can I get a refund for order {order}?",
            f"how do I send back a {product}? order {order}",
        )
        bot = (f"I'm sorry about the {product}. You're within our 30-day window, so I've started a return "
               f"for order {order}. A prepaid {carrier} label is on its way to your email; once it's scanned, "
               f"the refund of {amount} reaches your card in 5-7 business days.")
    elif kind == 2:
        user = _pick(
            f"I can't log in, the password reset email never shows up. I tried {n_days} times.",
            f"reset password not working for {name.lower()}@example.com",
            f"Hi, this is {name}, my account is locked after too many attempts since {hour}:00.",
        )
        bot = (f"Let's fix that, {name}. I've sent a fresh reset link that stays valid for {mins} minutes; please "
               "check your spam folder too. If it doesn't arrive in 5 minutes, reply here and I'll verify "
               "your account another way.")
    elif kind == 3:
        user = _pick(
            f"I was charged twice for order {order}.",
            f"Why is there a {amount} charge on my card from you?",
            f"Can you send me an invoice for order {order}?",
        )
        bot = (f"I can see a pending authorization of {amount} and a final charge for {order}; the pending "
               "one drops off automatically within 3 business days. I've also emailed the invoice.")
    elif kind == 4:
        user = _pick(
            f"Can I change the shipping address on {order}? I'm moving on {day}.",
            f"need to update delivery address for {order} to {random.randint(1, 999)} Elm Street",
        )
        bot = (f"Done: order {order} will now ship to the new address. Since it hasn't left the warehouse, "
               f"there's no extra charge, and you'll get an updated confirmation by {hour}:00 today.")
    else:
        user = _pick(
            f"Please cancel my subscription to the {product} filter plan.",
            f"I'd like to cancel order {order} before it ships.",
            f"How do I stop the monthly refill deliveries? I'm {name}.",
        )
        bot = (f"No problem, I've cancelled it and you won't be charged again after {day}. You'll get a "
               "confirmation email, and you can restart any time from your account page.")
    return user, bot


def _follow_up() -> tuple[str, str]:
    """A second exchange: mostly specific, sometimes the stock closing every support bot repeats."""
    kind = random.randrange(4)
    if kind == 0:
        return "Thanks a lot, that was quick.", "Happy to help! Is there anything else I can do for you today?"
    if kind == 1:
        c = random.choice(CARRIERS)
        return (f"Great, thanks! Will I get a {c} tracking number?",
                f"Yes, {c} emails it as soon as they scan the package, usually within {random.randint(2, 48)} hours.")
    if kind == 2:
        d = random.choice(DAYS)
        return (f"ok and can it come before {d}", f"I've asked the warehouse to prioritise it; {d} is likely but "
                "not guaranteed. I'll message you if that changes.")
    o = _order()
    return (f"Can you also check my other order {o}?", f"Sure: {o} is packed and ships tomorrow morning.")


def make_chats(n: int, seed: int = 7) -> list:
    """n canonical support chats: 80% with the bot's system prompt, then 1-2 exchanges (3-5 turns);
    1% have two user turns in a row (valid canonically, invalid for Gemini/Bedrock)."""
    random.seed(seed)
    out = []
    for i in range(n):
        turns = []
        with_system = random.random() < 0.8
        if with_system:
            turns.append({"role": "system", "content": SYSTEM})
        user, bot = _exchange()
        turns.append({"role": "user", "content": user})
        turns.append({"role": "assistant", "content": bot})
        if not with_system or random.random() < 0.5:
            user, bot = _follow_up()
            if random.random() < 0.01:
                turns.append({"role": "user", "content": "hello?"})
            turns.append({"role": "user", "content": user})
            turns.append({"role": "assistant", "content": bot})
        out.append(make_example(turns, created_at="2026-11-01T00:00:00Z", meta={"n": i}))
    return out


# -- the baseline, as in the OpenAI cookbook -----------------------------------------------------


def cookbook_baseline(path: str, encode, *, every_value: bool) -> tuple[int, int, dict]:
    """json.loads per line, the cookbook's format checks, per-example token counting."""
    format_errors: dict[str, int] = defaultdict(int)
    n = 0
    total_tokens = 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            ex = json.loads(line)
            n += 1
            if not isinstance(ex, dict):
                format_errors["data_type"] += 1
                continue
            messages = ex.get("messages", None)
            if not messages:
                format_errors["missing_messages_list"] += 1
                continue
            for message in messages:
                if "role" not in message or "content" not in message:
                    format_errors["message_missing_key"] += 1
                if any(k not in ("role", "content", "name", "function_call", "weight") for k in message):
                    format_errors["message_unrecognized_key"] += 1
                if message.get("role", None) not in ("system", "user", "assistant", "function"):
                    format_errors["unrecognized_role"] += 1
                content = message.get("content", None)
                function_call = message.get("function_call", None)
                if (not content and not function_call) or not isinstance(content, str):
                    format_errors["missing_content"] += 1
            if not any(message.get("role", None) == "assistant" for message in messages):
                format_errors["example_missing_assistant_message"] += 1
            # num_tokens_from_messages: 3 per message, + tokens of the values, + 3 priming.
            num_tokens = 3
            for message in messages:
                num_tokens += 3
                if every_value:
                    for key, value in message.items():
                        if isinstance(value, str):
                            num_tokens += len(encode(value))
                        if key == "name":
                            num_tokens += 1
                else:
                    num_tokens += len(encode(message["content"]))
            total_tokens += num_tokens
    return n, total_tokens, dict(format_errors)


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        nproc = subprocess.run(["nproc"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        nproc = "?"
    from importlib.metadata import version

    return {
        "nproc": nproc,
        "cpu": cpu,
        "python": platform.python_version(),
        "bpe-openai": version("bpe-openai"),
        "platform": platform.platform(),
    }


class Timer:
    """Best-of-N wall and CPU seconds per named measurement (runs are interleaved by the caller)."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.last: dict[str, float] = {}

    def run(self, key: str, fn):
        w, c = time.perf_counter(), time.process_time()
        result = fn()
        w, c = time.perf_counter() - w, time.process_time() - c
        self.last[key] = w
        self.wall[key] = min(self.wall.get(key, float("inf")), w)
        self.cpu[key] = min(self.cpu.get(key, float("inf")), c)
        return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200_000, help="synthetic examples")
    ap.add_argument("--repeat", type=int, default=3, help="interleaved rounds (best of each is kept)")
    ap.add_argument("--out", default="", help="write the results markdown here")
    args = ap.parse_args(argv)

    import bpe_openai

    from tuneloop.formats.jsonl import paused_gc
    from tuneloop.formats.tokens import get_counter

    t0 = time.perf_counter()
    examples = make_chats(args.n)
    gen_s = time.perf_counter() - t0
    splits = split_examples(examples)
    n = args.n
    n_msgs = sum(len(e.messages) for e in examples)
    n_chars = sum(len(m.content) for e in examples for m in e.messages)
    distinct = len({m.content for e in examples for m in e.messages})
    print(f"generated {n:,} examples ({n_msgs:,} turns, {n_chars / n_msgs:.0f} chars/turn, "
          f"{distinct / n_msgs:.0%} distinct turn texts) in {gen_s:.1f}s")

    # Tokenizers load their merge tables once per process, for both sides, before timing.
    enc = bpe_openai.get_encoding("o200k_base")
    enc.encode("warm up")
    counter = get_counter("o200k_base")
    fmts = {name: get_format(name) for name in FORMAT_NAMES}
    for fmt in fmts.values():
        fmt.count_tokens([fmt.render(examples[0])])
    limits = Limits(max_tokens_per_example=65536)

    tmp = Path(tempfile.mkdtemp(prefix="bench-formatter-"))
    timer = Timer()
    results: dict[str, tuple[int, int, bool]] = {}
    try:
        baseline_path = tmp / "openai.jsonl"  # the baseline's input, written untimed
        with baseline_path.open("w", encoding="utf-8") as fh:
            for ex in examples:
                fh.write(json.dumps(fmts["openai"].render(ex), ensure_ascii=False) + "\n")

        for rnd in range(args.repeat):
            _, base_tokens, base_errors = timer.run(
                "baseline", lambda: cookbook_baseline(str(baseline_path), enc.encode, every_value=False)
            )
            _, cook_tokens, cook_errors = timer.run(
                "cookbook", lambda: cookbook_baseline(str(baseline_path), enc.encode, every_value=True)
            )
            for name, fmt in fmts.items():

                def core(fmt=fmt):
                    tokens = rejected = 0
                    with paused_gc():
                        for _line, _row, t, reasons, _dropped in fmt.format_many(examples, limits):
                            tokens += t
                            rejected += bool(reasons)
                    return tokens, rejected

                def e2e(name=name):
                    out = tmp / f"out-{name}"
                    shutil.rmtree(out, ignore_errors=True)
                    return format_dataset(splits, name, out, min_examples=1)

                counter.clear_cache()  # no counts carried over between runs
                tok_total, rejected = timer.run(f"core:{name}", core)
                counter.clear_cache()
                report = timer.run(f"e2e:{name}", e2e)
                results[name] = (tok_total, rejected, report.tokens_exact)
            print(f"round {rnd + 1} (wall ex/s): baseline {n / timer.last['baseline']:,.0f}, core "
                  + ", ".join(f"{k} {n / timer.last['core:' + k]:,.0f}" for k in fmts))
        print(f"baseline format errors: {base_errors or 'none'}; cookbook verbatim: {cook_errors or 'none'}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    def rate(key: str, clock: dict[str, float]) -> float:
        return n / clock[key]

    rows = []
    for name in FORMAT_NAMES:
        tok_total, rejected, exact = results[name]
        w_core, c_core = rate(f"core:{name}", timer.wall), rate(f"core:{name}", timer.cpu)
        w_e2e, c_e2e = rate(f"e2e:{name}", timer.wall), rate(f"e2e:{name}", timer.cpu)
        rows.append(
            f"| {name} | {w_core:,.0f} | **{w_core / rate('baseline', timer.wall):.1f}x** "
            f"({c_core / rate('baseline', timer.cpu):.1f}x) | {w_e2e:,.0f} | "
            f"{w_e2e / rate('baseline', timer.wall):.1f}x ({c_e2e / rate('baseline', timer.cpu):.1f}x) | "
            f"{tok_total:,} ({'exact' if exact else 'estimate'}) | {rejected:,} |"
        )

    m = machine()
    cmd = "python bench/bench_formatter.py " + " ".join(argv if argv is not None else sys.argv[1:])
    openai_ok = results["openai"][0] == cook_tokens
    md = [
        "# Formatter benchmark",
        "",
        f"Command: `{cmd.strip()}`  ",
        f"Machine: {m['nproc']} CPUs ({m['cpu']}), Python {m['python']}, bpe-openai {m['bpe-openai']}, "
        f"{m['platform']}  ",
        f"Data: {n:,} synthetic support chats ({n_msgs:,} turns, mean {n_chars / n_msgs:.0f} chars/turn, "
        f"{distinct / n_msgs:.0%} distinct turn texts; 80% carry the bot's system prompt; 3-5 turns; 1% with "
        "two user turns in a row). Single process. Best of "
        f"{args.repeat} interleaved rounds (baseline and ours alternate, so machine load hits both).",
        "",
        "## Baseline: the OpenAI cookbook loop over the OpenAI JSONL",
        "",
        "| baseline | examples/s (wall) | examples/CPU-s | tokens counted |",
        "|---|---:|---:|---:|",
        f"| `json.loads` per line + cookbook format checks + 1 `encode` per message "
        f"| {rate('baseline', timer.wall):,.0f} | {rate('baseline', timer.cpu):,.0f} | {base_tokens:,} (content) |",
        f"| same, cookbook `num_tokens_from_messages` verbatim (encodes role and content) "
        f"| {rate('cookbook', timer.wall):,.0f} | {rate('cookbook', timer.cpu):,.0f} | {cook_tokens:,} |",
        "",
        "## tuneloop formatter",
        "",
        "`core` = render (to the JSON line written to the file) + token count + validate (all of the "
        "provider's rules), one pass per example, in memory: the same work as the baseline. "
        "`format_dataset` = the pipeline step end to end: the same pass plus the quarantine, and "
        "train/validation/eval/quarantine JSONL + report.json written to disk (the baseline writes "
        "nothing). Ratios are against the first (cheaper) baseline row, wall clock, with the CPU-time ratio "
        "in parentheses (less sensitive to other load on the machine).",
        "",
        "| format | core ex/s | core vs baseline | format_dataset ex/s | format_dataset vs baseline "
        "| tokens | rejected |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        f"Check: the openai format's token total {'equals' if openai_ok else 'DIFFERS FROM'} the cookbook's "
        f"verbatim count ({results['openai'][0]:,} vs {cook_tokens:,}). Rejections are the 1% double-user "
        "chats, which Gemini and Bedrock forbid (user/model must alternate) and OpenAI/HF allow.",
        "",
        "Where the time goes: token counting dominates (the Rust BPE itself). Ours calls the tokenizer's "
        "native `count` (no token list, no special-token regex scan, no per-call metrics object). One pass "
        "per example: each distinct turn is rendered to its JSON, counted and checked once and remembered "
        "(the system prompt and stock replies repeat), the line is joined from those pieces (no row dict, "
        "no JSON encoder), and the structural rules are judged once per conversation shape (roles in "
        "order, turn weights) by the same validator `tuneloop validate` runs, so a row is re-checked only "
        "when it is rejected. Gemini/Bedrock/HF token counts are o200k_base estimates, labelled as such; "
        "HF counts the ChatML text a turn at a time (o200k pre-tokenizes at every turn boundary, so the "
        "sum is the text's exact count).",
        "",
    ]
    text = "\n".join(md)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"wrote {args.out}")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
