"""A realistic customer-support intent data set, for the demo and for tests.

Live chat traffic for ten intents, phrased many ways: templates with slot fillers (order numbers,
products, amounts, plans, devices), greetings and sign-offs, lower-casing and typos, and a share of
ambiguous messages that honestly fit two intents (so a TF-IDF + LinearSVC classifier scores a macro
F1 well below 1.0). Like real traffic it holds:

- live rows whose label is the deployed router's answer (a few of them wrong);
- human corrections: source ``corrected``, weight 2.0, ``meta.corrected_from`` = the wrong label;
- late arrivals: rows created hours before they landed (``ingested_at`` is the watermark);
- malformed rows the extract must quarantine: empty text, truncated messages JSON, role ``bot``,
  weight -1, an unknown source, a bare string instead of a list of turns.

Everything is a pure function of the seed (``random.Random(seed)``); no clock is read.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tuneloop.examples import classification_example
from tuneloop.warehouse.base import (
    COL_ID,
    COL_INGESTED_AT,
    COL_MESSAGES,
    COL_SOURCE,
    COL_WEIGHT,
    duckdb_uri,
    example_to_row,
    iso,
    open_warehouse,
    to_utc,
)

DEMO_TABLE = "support_interactions"
DEMO_START = dt.datetime(2025, 6, 2, 9, 0, tzinfo=dt.UTC)
# How far apart consecutive rows land, in seconds (uniform).
ARRIVAL_GAP_S = (5, 120)
LATE_FRACTION = 0.03  # rows created hours before they landed
ROUTER_ERROR_FRACTION = 0.03  # live rows whose label is wrong and nobody corrected
AMBIGUOUS_FRACTION = 0.09

# -- slot fillers --------------------------------------------------------------------------------
SLOTS: dict[str, Sequence[str]] = {
    "product": (
        "headphones",
        "the blue hoodie",
        "my running shoes",
        "a phone case",
        "the coffee grinder",
        "the laptop stand",
        "the kids bike",
        "the water filter 4-pack",
        "the desk lamp",
        "a wireless charger",
        "the yoga mat",
        "two t-shirts",
        "the air fryer",
        "my new sneakers",
        "the gift card",
    ),
    "amount": ("$12.99", "$40", "49.00", "$120", "€35", "£18.50", "$7.99", "$249", "$59.90", "€99"),
    "plan": ("Pro", "Premium", "Business", "Family", "Plus", "Team", "Unlimited"),
    "device": ("iPhone", "Android phone", "iPad", "Windows laptop", "Mac", "Chromebook", "Samsung tablet"),
    "when": (
        "yesterday",
        "last week",
        "on Monday",
        "two weeks ago",
        "on the 14th",
        "this morning",
        "last month",
    ),
    "days": ("3", "5", "two", "10", "four", "6", "seven"),
    "city": ("Leeds", "Austin", "Toronto", "Berlin", "Denver", "Manchester", "Portland", "Dublin", "Sydney"),
    "street": ("12 Oak Street", "221 Baker St", "4 Elm Rd", "88 Harbor Ave", "17 Mill Lane", "9 Pine Ct"),
    "carrier": ("UPS", "FedEx", "DHL", "USPS", "Royal Mail", "the courier"),
    "feature": (
        "the checkout page",
        "search",
        "the app",
        "notifications",
        "the dashboard",
        "dark mode",
        "the export button",
        "photo upload",
        "the order history page",
        "the settings screen",
    ),
    "error": (
        "error 500",
        "a blank white screen",
        "'something went wrong'",
        "error code E42",
        "a spinner that never stops",
        "'unexpected error, try again'",
        "a 404",
    ),
    "card": ("Visa", "Mastercard", "Amex", "debit card", "PayPal", "Apple Pay", "gift card"),
}
_NAMES = ("jane.doe", "mike88", "s.khan", "liu.wei", "anna_b", "tom.r", "maria.g", "devon", "priya.n", "olu")
_DOMAINS = ("example.com", "mail.test", "inbox.example.org")

# -- intents -------------------------------------------------------------------------------------
INTENTS: dict[str, Sequence[str]] = {
    "billing_refund": (
        "I want a refund for {product}",
        "can I get my money back for order {order}",
        "you charged me twice for {order}, please refund the {amount}",
        "how long does a refund take to show up on my card",
        "refund status for {order}?",
        "I returned {product} {when} and still haven't got my refund",
        "please refund {amount}, the item arrived broken",
        "I was charged {amount} for something I never ordered",
        "requesting reimbursement for {product}, it doesn't work",
        "need my {amount} back asap",
        "the refund you promised never came through",
        "how do I return {product} and get a refund",
        "I was overcharged on my last bill, can you credit it back",
        "double charged {when}, want the extra {amount} back",
    ),
    "cancel_subscription": (
        "how do I cancel my subscription",
        "please cancel my {plan} plan",
        "stop my membership from renewing",
        "I don't want to be billed next month, cancel it",
        "turn off auto-renew",
        "cancel my plan effective {when}",
        "i want to end my subscription",
        "unsubscribe me from the {plan} plan please",
        "how can I stop the monthly charges",
        "I'd like to cancel before the trial ends",
        "don't renew my {plan} membership",
        "where is the cancel button for my subscription",
        "downgrade me to free, I'm done with {plan}",
    ),
    "password_reset": (
        "I forgot my password",
        "reset password link not arriving at {email}",
        "can't log in, password doesn't work",
        "how do I change my password",
        "locked out of my account after too many attempts",
        "the reset email expired before I clicked it",
        "need a new password for {email}",
        "login keeps saying wrong password on my {device}",
        "i cant remember my password",
        "send me a password reset link",
        "my account got locked, how do I get back in",
        "2fa code not coming through so I can't sign in",
    ),
    "shipping_status": (
        "where is my order {order}",
        "has {order} shipped yet",
        "tracking for {order} hasn't updated in {days} days",
        "when will {product} arrive",
        "my package is late",
        "{carrier} says delivered but I don't have it",
        "can you check the delivery status of {order}",
        "order still says processing after {days} days",
        "what's the ETA on {product}",
        "is my order on its way?",
        "the tracking number for {order} doesn't work on the {carrier} site",
        "still waiting on my delivery from {when}",
        "any update on {order}? ordered {when}",
    ),
    "change_address": (
        "I need to change my shipping address",
        "update my address to {street}, {city}",
        "I moved, please update the delivery address on {order}",
        "can I ship {order} to a different address",
        "wrong address on my order, it should be {city}",
        "change the billing address on my account",
        "please send {product} to my work address instead",
        "how do I edit my saved address",
        "typo in my street name on {order}",
        "new address: {street}, {city}",
        "I'm moving to {city} next week, where do I change my address",
    ),
    "technical_bug": (
        "the app crashes when I open {feature}",
        "getting {error} on {feature}",
        "{feature} is broken on my {device}",
        "page won't load, just shows {error}",
        "the app keeps freezing on my {device}",
        "bug: {feature} doesn't respond when I tap it",
        "something is wrong with {feature}, it shows {error}",
        "is your website down?",
        "images not loading in the app",
        "since the last update {feature} stopped working",
        "the checkout button does nothing",
        "the app logs me out every few minutes on my {device}",
    ),
    "upgrade_plan": (
        "how do I upgrade to {plan}",
        "I want to switch to the {plan} plan",
        "what does {plan} include compared to my current plan",
        "can I move up to {plan} mid-cycle",
        "upgrade my account please",
        "is there a discount if I upgrade to annual {plan}",
        "I need more seats, can I change to {plan}",
        "how much is {plan} per month",
        "interested in the {plan} tier",
        "want to go {plan}",
        "does {plan} come with priority support? thinking of upgrading",
    ),
    "payment_failed": (
        "my card was declined",
        "payment failed but I have money in the account",
        "why did my payment not go through",
        "I can't pay with my {card}",
        "checkout says payment error",
        "update my card, the old one expired",
        "your system keeps rejecting my {card}",
        "payment of {amount} declined",
        "the renewal payment failed, how do I fix it",
        "can I pay with {card} instead, the other one got declined",
        "transaction failed for {order}",
    ),
    "account_delete": (
        "delete my account",
        "please remove all my data",
        "I want to close my account permanently",
        "how do I erase my profile",
        "GDPR request: delete everything you have on {email}",
        "remove my account and personal info",
        "close the account registered to {email}",
        "i want you to forget me, delete my data",
        "deactivate and delete my account",
        "how do I permanently delete {email} from your system",
    ),
    "greeting_smalltalk": (
        "hi",
        "hello",
        "hey there",
        "thanks, that's all",
        "good morning!",
        "are you a bot?",
        "thank you so much",
        "ok cool",
        "you guys are great",
        "how are you today",
        "lol ok",
        "bye",
        "is anyone there?",
    ),
}
# Relative traffic share per intent (shipping questions dominate, deletions are rare).
INTENT_SHARE: dict[str, float] = {
    "shipping_status": 0.17,
    "billing_refund": 0.13,
    "password_reset": 0.12,
    "technical_bug": 0.11,
    "cancel_subscription": 0.10,
    "change_address": 0.08,
    "upgrade_plan": 0.08,
    "payment_failed": 0.08,
    "greeting_smalltalk": 0.07,
    "account_delete": 0.06,
}
# Messages that honestly fit more than one intent: (template, ((intent, probability), ...)).
AMBIGUOUS: Sequence[tuple[str, Sequence[tuple[str, float]]]] = (
    ("cancel my order and refund me", (("billing_refund", 0.6), ("cancel_subscription", 0.4))),
    ("I want to cancel and get my money back", (("cancel_subscription", 0.5), ("billing_refund", 0.5))),
    (
        "stop charging my card",
        (("cancel_subscription", 0.5), ("billing_refund", 0.3), ("payment_failed", 0.2)),
    ),
    ("can't log in on the app, it shows {error}", (("technical_bug", 0.5), ("password_reset", 0.5))),
    ("I was charged but {order} never arrived", (("billing_refund", 0.5), ("shipping_status", 0.5))),
    ("cancel and delete my account", (("account_delete", 0.5), ("cancel_subscription", 0.5))),
    (
        "the upgrade to {plan} didn't work and I got charged",
        (("upgrade_plan", 0.3), ("technical_bug", 0.4), ("billing_refund", 0.3)),
    ),
    ("my payment went through twice", (("billing_refund", 0.6), ("payment_failed", 0.4))),
    ("I moved, where is my package", (("shipping_status", 0.5), ("change_address", 0.5))),
    ("help", (("greeting_smalltalk", 0.6), ("technical_bug", 0.4))),
    ("the app says my {card} is invalid", (("payment_failed", 0.6), ("technical_bug", 0.4))),
    ("I changed my email and now I can't log in", (("password_reset", 0.6), ("technical_bug", 0.4))),
    ("switch me to a cheaper plan", (("upgrade_plan", 0.5), ("cancel_subscription", 0.5))),
    (
        "my order {order} is wrong",
        (("change_address", 0.4), ("billing_refund", 0.3), ("shipping_status", 0.3)),
    ),
)
# Which wrong answer a router gives for each intent (what a human later corrects).
CONFUSABLE: dict[str, Sequence[str]] = {
    "billing_refund": ("payment_failed", "cancel_subscription", "shipping_status"),
    "cancel_subscription": ("billing_refund", "account_delete", "upgrade_plan"),
    "password_reset": ("technical_bug", "account_delete"),
    "shipping_status": ("change_address", "billing_refund"),
    "change_address": ("shipping_status",),
    "technical_bug": ("password_reset", "payment_failed"),
    "upgrade_plan": ("cancel_subscription", "billing_refund"),
    "payment_failed": ("billing_refund", "technical_bug"),
    "account_delete": ("cancel_subscription", "password_reset"),
    "greeting_smalltalk": ("technical_bug",),
}
_PREFIXES = (
    "",
    "",
    "",
    "",
    "hi, ",
    "hello, ",
    "hey ",
    "hi there. ",
    "good morning, ",
    "urgent: ",
    "quick question - ",
)
_SUFFIXES = ("", "", "", "", " thanks", " thank you!", " pls help", " asap", "??", "!!", " ty", " :(")
_CHANNELS = ("chat", "chat", "chat", "email", "app", "app")
_LOCALES = ("en-US", "en-US", "en-GB", "en-CA", "en-AU", "en-IE")
MALFORMED_KINDS = (
    "empty_text",
    "truncated_json",
    "role_bot",
    "negative_weight",
    "unknown_source",
    "bare_string",
)


def _fill(template: str, rng: random.Random) -> str:
    values = {k: rng.choice(v) for k, v in SLOTS.items()}
    values["order"] = rng.choice(("#", "#", "order ", "A-")) + str(rng.randint(10_000, 9_999_999))
    values["email"] = f"{rng.choice(_NAMES)}{rng.randint(1, 99)}@{rng.choice(_DOMAINS)}"
    return template.format(**values)


def _typo(text: str, rng: random.Random) -> str:
    letters = [i for i, c in enumerate(text) if c.isalpha()]
    if len(letters) < 4:
        return text
    i = rng.choice(letters[:-1])
    op = rng.randrange(4)
    if op == 0:  # swap neighbours
        return text[:i] + text[i + 1] + text[i] + text[i + 2 :]
    if op == 1:  # drop
        return text[:i] + text[i + 1 :]
    if op == 2:  # double
        return text[:i] + text[i] + text[i:]
    keys = "qwertyuiopasdfghjklzxcvbnm"  # a neighbouring-ish key
    return text[:i] + keys[(keys.find(text[i].lower()) + 1) % len(keys)] + text[i + 1 :]


def _phrase(template: str, rng: random.Random) -> str:
    text = _fill(template, rng)
    if text not in ("hi", "hello", "bye", "help"):
        text = rng.choice(_PREFIXES) + text + rng.choice(_SUFFIXES)
    r = rng.random()
    if r < 0.45:
        text = text.lower()
    elif r < 0.5:
        text = text.upper()
    for _ in range(rng.choice((0, 0, 0, 1, 1, 2))):
        text = _typo(text, rng)
    return text.strip()


def _pick_intent(rng: random.Random) -> str:
    names = list(INTENT_SHARE)
    return rng.choices(names, weights=[INTENT_SHARE[n] for n in names])[0]


def sample_message(rng: random.Random) -> tuple[str, str]:
    """One customer message and its true intent."""
    if rng.random() < AMBIGUOUS_FRACTION:
        template, options = rng.choice(AMBIGUOUS)
        intent = rng.choices([o[0] for o in options], weights=[o[1] for o in options])[0]
        return _phrase(template, rng), intent
    intent = _pick_intent(rng)
    return _phrase(rng.choice(INTENTS[intent]), rng), intent


def _malformed(kind: str, text: str, label: str, row: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    msgs = [{"role": "user", "content": text}, {"role": "assistant", "content": label}]
    row = {**row, COL_ID: rng.choice((None, f"{rng.getrandbits(128):032x}"))}
    if kind == "empty_text":
        msgs[0]["content"] = rng.choice(("", "   "))
    elif kind == "role_bot":
        msgs[1]["role"] = "bot"
    if kind == "truncated_json":
        full = json.dumps(msgs, ensure_ascii=False)
        row[COL_MESSAGES] = full[: rng.randint(5, len(full) - 3)]
    elif kind == "bare_string":
        row[COL_MESSAGES] = json.dumps(text)
    else:
        row[COL_MESSAGES] = json.dumps(msgs, ensure_ascii=False, separators=(",", ":"))
    if kind == "negative_weight":
        row[COL_WEIGHT] = -1.0
    if kind == "unknown_source":
        row[COL_SOURCE] = rng.choice(("webhook", "zendesk", ""))
    return row


def generate_batch(
    n: int,
    *,
    seed: int,
    start: dt.datetime | str = DEMO_START,
    corrected_fraction: float = 0.05,
    malformed_fraction: float = 0.02,
) -> list[dict[str, Any]]:
    """Generate ``n`` warehouse rows of support traffic that land from ``start`` on.

    Args:
        n: Rows to generate (>= 0).
        seed: The whole batch is a pure function of the arguments.
        start: Landing time of the first row; later rows land 5-120 s apart.
        corrected_fraction: Share of rows that are human corrections (source ``corrected``, weight 2.0).
        malformed_fraction: Share of rows the extract must quarantine (at least one when n >= 50 and
            the fraction is > 0).

    Returns:
        Rows keyed by :data:`tuneloop.warehouse.base.TABLE_COLUMNS`: ``messages``/``meta`` as JSON text,
        timestamps as ISO-8601 strings, in landing order.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n={n!r} must be an integer >= 0")
    for name, frac in (
        ("corrected_fraction", corrected_fraction),
        ("malformed_fraction", malformed_fraction),
    ):
        if not 0 <= frac <= 1:
            raise ValueError(f"{name}={frac!r} must be in [0, 1]")
    if corrected_fraction + malformed_fraction > 1:
        raise ValueError("corrected_fraction + malformed_fraction must be <= 1")
    rng = random.Random(seed)
    landed = to_utc(start, "start")
    n_bad = round(n * malformed_fraction) or (1 if n >= 50 and malformed_fraction > 0 else 0)
    n_fix = round(n * corrected_fraction)
    kinds = ["live"] * (n - n_bad - n_fix) + ["corrected"] * n_fix + ["malformed"] * n_bad
    rng.shuffle(kinds)
    rows = []
    n_malformed = 0  # malformed rows cycle through MALFORMED_KINDS
    for i, kind in enumerate(kinds):
        if i:
            landed += dt.timedelta(seconds=rng.uniform(*ARRIVAL_GAP_S))
        if rng.random() < LATE_FRACTION:
            created = landed - dt.timedelta(hours=rng.uniform(2, 72))
        else:
            created = landed - dt.timedelta(seconds=rng.uniform(0.5, 30))
        text, intent = sample_message(rng)
        meta: dict[str, Any] = {
            "channel": rng.choice(_CHANNELS),
            "locale": rng.choice(_LOCALES),
            "session": f"s-{rng.getrandbits(40):010x}",
        }
        label, source = intent, "live"
        if kind == "corrected":
            source = "corrected"
            meta["corrected_from"] = rng.choice(CONFUSABLE[intent])
        elif rng.random() < ROUTER_ERROR_FRACTION:
            label = rng.choice(CONFUSABLE[intent])  # the router got it wrong and nobody noticed
        ex = classification_example(text, label, source=source, created_at=created, meta=meta)
        row = example_to_row(ex, ingested_at=iso(landed))
        if kind == "malformed":
            row = _malformed(MALFORMED_KINDS[n_malformed % len(MALFORMED_KINDS)], text, label, row, rng)
            n_malformed += 1
        rows.append(row)
    return rows


def build_demo_warehouse(
    path: str | Path,
    *,
    n_initial: int = 1200,
    seed: int = 0,
    table: str = DEMO_TABLE,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Create the demo's DuckDB warehouse holding the first batch of traffic.

    Args:
        path: The DuckDB file to create.
        n_initial: Rows in the first batch.
        seed: Seed of the batch.
        table: Table name.
        overwrite: Replace an existing file (otherwise an existing file is an error).

    Returns:
        ``{"uri", "table", "rows", "intents", "corrected", "malformed", "ingested_from", "ingested_to"}``.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
    """
    p = Path(path)
    if p.exists():
        if not overwrite:
            raise FileExistsError(f"path={str(p)!r} exists; pass overwrite=True or pick another path")
        p.unlink()
        Path(f"{p}.wal").unlink(missing_ok=True)
    rows = generate_batch(n_initial, seed=seed, start=DEMO_START)
    wh = open_warehouse(duckdb_uri(str(p)))
    try:
        wh.ensure_table(table)
        wh.insert_rows(table, rows)
    finally:
        wh.close()
    return {
        "uri": duckdb_uri(str(p)),
        "table": table,
        **describe_rows(rows),
    }


def add_traffic(path: str | Path, n: int, *, seed: int, table: str = DEMO_TABLE) -> int:
    """Append ``n`` rows of new traffic landing after everything already in the table (the demo's second run).

    Use a seed other than the initial batch's for new messages.

    Returns:
        Rows inserted.
    """
    from tuneloop.warehouse.sql import load_query

    wh = open_warehouse(duckdb_uri(str(path)))
    try:
        wh.ensure_table(table)
        latest = wh.query(load_query("max_ingested_at"), {}, identifiers={"table": table}).to_pylist()[0]
        newest = latest["max_ingested_at"]
        start = DEMO_START if newest is None else newest + dt.timedelta(minutes=1)
        return wh.insert_rows(table, generate_batch(n, seed=seed, start=start))
    finally:
        wh.close()


def describe_rows(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Counts of a generated batch: rows, intents (label -> count), corrected, malformed, landing span."""
    from tuneloop.examples import ExampleError
    from tuneloop.warehouse.extract import row_to_example

    intents: dict[str, int] = {}
    corrected = malformed = 0
    for r in rows:
        try:
            ex, _ = row_to_example(r)
        except ExampleError:
            malformed += 1
            continue
        corrected += ex.source == "corrected"
        if ex.label is not None:
            intents[ex.label] = intents.get(ex.label, 0) + 1
    return {
        "rows": len(rows),
        "intents": dict(sorted(intents.items())),
        "corrected": corrected,
        "malformed": malformed,
        "ingested_from": rows[0][COL_INGESTED_AT] if rows else None,
        "ingested_to": rows[-1][COL_INGESTED_AT] if rows else None,
    }


__all__ = [
    "AMBIGUOUS",
    "DEMO_START",
    "DEMO_TABLE",
    "INTENTS",
    "add_traffic",
    "build_demo_warehouse",
    "describe_rows",
    "generate_batch",
    "sample_message",
]
