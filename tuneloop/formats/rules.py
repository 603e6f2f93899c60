"""The validation rules several provider formats share, written once; each format composes them.

Every function returns (or appends) reasons in the form ``"<field path>: <what is wrong>[; fix]"`` and
never raises on any JSON shape. The wording a provider's documentation uses (``model`` vs
``assistant``, what a row is called) is a parameter, the rule is not. Used by
:mod:`.openai`, :mod:`.gemini`, :mod:`.bedrock` and :mod:`.hf`, and by
:meth:`tuneloop.formats.base.Format.validate` (the token limit).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from tuneloop.formats.base import Limits


def type_name(value: Any) -> str:
    """JSON-ish type name for messages ("null", "list", "object", ...)."""
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "list"
    return type(value).__name__


def clean_text(value: Any) -> bool:
    """Whether ``value`` is a string with something besides whitespace (what every format asks of a text)."""
    return type(value) is str and value != "" and not value.isspace()


def unknown_keys(obj: dict, allowed: frozenset[str], where: str, what: str, listed: Sequence[str],
                 reasons: list[str]) -> None:
    """Keys of ``obj`` outside ``allowed``: ``"<where><key>: unknown key; <what> has only <listed>"``."""
    if allowed.issuperset(obj):
        return
    for k in obj:
        if k not in allowed:
            reasons.append(f"{where}{k}: unknown key; {what} has only {', '.join(listed)}")


def non_empty_list(value: Any, where: str, noun: str, reasons: list[str]) -> bool:
    """True if ``value`` is a non-empty list; else appends why not (``"(empty)"`` for ``[]``)."""
    if type(value) is list and value:
        return True
    reasons.append(f"{where}: must be a non-empty list of {noun}, got {type_name(value)}"
                   + (" (empty)" if value == [] else ""))
    return False


def text_reason(where: str, value: Any, *, empty: str = "is empty; fill the turn or drop it",
                missing: str | None = "missing; every turn needs text") -> str | None:
    """A text field: a non-blank string. ``missing=None`` treats null like any other non-string."""
    if type(value) is str:
        return None if clean_text(value) else f"{where}: {empty}"
    if value is None and missing:
        return f"{where}: {missing}"
    return f"{where}: must be a string, got {type_name(value)}"


def role_reason(where: str, role: Any, roles: Collection[str], *, system_hint: str = "") -> str | None:
    """A role outside ``roles`` (missing, or not one of them); ``system_hint`` explains a refused ``system``."""
    if type(role) is str and role in roles:
        return None
    listed = ", ".join(roles)
    if role is None:
        return f"{where}.role: missing; use one of {listed}"
    if role == "system" and system_hint:
        return f"{where}.role: 'system' is not one of {listed}; {system_hint}"
    return f"{where}.role: {role!r} is not one of {listed}"


def weight_reason(where: str, role: Any, weight: Any) -> str | None:
    """A per-turn training weight: only on assistant turns, and 0 or 1."""
    if role != "assistant":
        return f"{where}.weight: only assistant turns may carry a weight (role {role!r})"
    if isinstance(weight, bool) or weight not in (0, 1):
        return f"{where}.weight: {weight!r} must be 0 or 1"
    return None


@dataclass(frozen=True)
class RoleOrder:
    """Which roles open and close a conversation, and whether turns alternate.

    Attributes:
        first: the role the first turn must have (None: any).
        last: the role the last turn must have (None: any).
        alternate: the two roles that must alternate, e.g. ``("user", "model")`` (empty: no rule).
        first_fix / last_fix: the provider's words after the offending role.
    """

    first: str | None = None
    last: str | None = None
    alternate: tuple[str, ...] = ()
    first_fix: str = ""
    last_fix: str = ""

    def first_reason(self, where: str, role: Any) -> str | None:
        if self.first is None or role == self.first:
            return None
        return f"{where}[0].role: {role!r}; {self.first_fix}"

    def follow_reason(self, where: str, i: int, role: Any, prev: Any) -> str | None:
        if not self.alternate or role != prev:
            return None
        a, b = self.alternate
        return (f"{where}[{i}].role: {role!r} follows another {role!r} turn; {a} and {b} turns must "
                "alternate (merge the two turns)")

    def last_reason(self, where: str, i: int, role: Any) -> str | None:
        if self.last is None or role == self.last:
            return None
        return f"{where}[{i}].role: {role!r}; {self.last_fix}"

    def turn_reasons(self, where: str, i: int, role: Any, prev: Any, last_i: int, reasons: list[str]) -> None:
        """The order rules for turn ``i`` (of ``last_i + 1``) whose previous turn had role ``prev``."""
        r = self.first_reason(where, role) if i == 0 else self.follow_reason(where, i, role, prev)
        if r:
            reasons.append(r)
        if i == last_i:
            r = self.last_reason(where, i, role)
            if r:
                reasons.append(r)


def token_reason(tokens: int, limits: Limits, *, exact: bool) -> str | None:
    """The per-example token limit (``limits.max_tokens_per_example``; None = unchecked)."""
    limit = limits.max_tokens_per_example
    if limit is None or tokens <= limit:
        return None
    label = "tokens" if exact else "tokens (estimated)"
    model = f" of {limits.model}" if limits.model else ""
    return f"{label}: {tokens:,} exceed the {limit:,}-token example limit{model}; shorten or split the conversation"
