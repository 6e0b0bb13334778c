"""Subscription key check, as a pure function (docs/apim.md §3).

- The key is read from the API's header (default ``Ocp-Apim-Subscription-Key``) or, only if that
  header is absent, from its query parameter (default ``subscription-key``): "The query parameter
  is checked only if the header isn't present". A present header wins even when it is invalid and
  the query holds a valid key. An empty value counts as absent [unverified].
- Repeated keys are refused: two or more distinct non-empty values of the header (or, when no header
  is present, of the query parameter) get the invalid-key 401, even if one of them is valid. APIM
  documents the header-before-query order but not what it does with a repeated header or parameter;
  refusing is the stricter choice, and it keeps the key the gateway checked and the key a backend
  might read from being different ones. Repeating the same value is not ambiguous and is accepted.
- ``subscription_required: false``: keys are ignored entirely, valid or not.
- Otherwise a missing key and a key that is not configured each get their own 401 body.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from gateway.model import Api
from gateway.responses import GatewayResponse, access_denied
from signalr.query import split_query

__all__ = ["KeySource", "SubscriptionCheck", "SubscriptionOutcome", "check_subscription", "query_values"]


class SubscriptionOutcome(Enum):
    NOT_REQUIRED = "not required"
    ACCEPTED = "accepted"
    MISSING = "missing"
    INVALID = "invalid"
    AMBIGUOUS = "ambiguous"


class KeySource(Enum):
    HEADER = "header"
    QUERY = "query"


@dataclass(frozen=True)
class SubscriptionCheck:
    """The result of a subscription check.

    source: where the key that decided the outcome was read from (None if no key was used).
    """

    outcome: SubscriptionOutcome
    source: KeySource | None = None

    @property
    def allowed(self) -> bool:
        return self.outcome in (SubscriptionOutcome.NOT_REQUIRED, SubscriptionOutcome.ACCEPTED)

    def denial(self, api: Api, gateway_base_url: str) -> GatewayResponse | None:
        """APIM's 401 for a denied request, or None if the request may be forwarded."""
        if self.allowed:
            return None
        return access_denied(
            missing=self.outcome is SubscriptionOutcome.MISSING,
            realm=f"{gateway_base_url.rstrip('/')}/{api.suffix}",
            header_name=api.subscription_key_names.header,
        )

    def describe(self, api: Api) -> str:
        """A log-friendly explanation that never contains the key."""
        names = api.subscription_key_names
        if self.outcome is SubscriptionOutcome.NOT_REQUIRED:
            return "no subscription required"
        if self.outcome is SubscriptionOutcome.MISSING:
            return (
                f"subscription key missing: API '{api.name}' requires one in header "
                f"{names.header} or query {names.query}"
            )
        if self.outcome is SubscriptionOutcome.AMBIGUOUS:
            where = f"header {names.header}" if self.source is KeySource.HEADER else f"query {names.query}"
            return f"conflicting subscription keys: more than one distinct value in {where}"
        where = f"header {names.header}" if self.source is KeySource.HEADER else f"query {names.query}"
        if self.outcome is SubscriptionOutcome.INVALID:
            return f"invalid subscription key in {where}"
        return f"subscription key accepted from {where}"


def query_values(raw_query: str, name: str) -> list[str]:
    """The decoded values of one query parameter, in order (the query is never re-encoded)."""
    return [part.value or "" for part in split_query(raw_query) if part.name == name]


class _MultiHeaders(Protocol):
    def getall(self, key: str, default: list[str]) -> list[str]: ...


def _header_values(headers: Mapping[str, str], name: str) -> list[str]:
    """Every value of one header (a multidict's repeated lines), or the single value of a plain mapping."""
    if hasattr(headers, "getall"):
        multi: _MultiHeaders = headers
        return list(multi.getall(name, []))
    value = headers.get(name)
    return [] if value is None else [value]


def check_subscription(
    api: Api, headers: Mapping[str, str], raw_query: str, valid_keys: Collection[str]
) -> SubscriptionCheck:
    """Check a request's subscription key for an API.

    headers: the request headers, with case-insensitive lookup (e.g. a CIMultiDict; with a multidict every
        repeated header line counts).
    raw_query: the query string as received.
    valid_keys: the keys of active subscriptions (primary and secondary).
    """
    if not api.subscription_required:
        return SubscriptionCheck(SubscriptionOutcome.NOT_REQUIRED)
    names = api.subscription_key_names
    in_header = {v for v in _header_values(headers, names.header) if v}
    if len(in_header) > 1:
        return SubscriptionCheck(SubscriptionOutcome.AMBIGUOUS, KeySource.HEADER)
    if in_header:
        source, key = KeySource.HEADER, next(iter(in_header))
    else:
        in_query = {v for v in query_values(raw_query, names.query) if v}
        if len(in_query) > 1:
            return SubscriptionCheck(SubscriptionOutcome.AMBIGUOUS, KeySource.QUERY)
        if not in_query:
            return SubscriptionCheck(SubscriptionOutcome.MISSING)
        source, key = KeySource.QUERY, next(iter(in_query))
    outcome = SubscriptionOutcome.ACCEPTED if key in valid_keys else SubscriptionOutcome.INVALID
    return SubscriptionCheck(outcome, source)
