"""Subscription keys (docs/apim.md §3): precedence, and APIM's exact 401 bodies and headers."""

from __future__ import annotations

from dataclasses import replace

import pytest
from multidict import CIMultiDict

from gateway.model import SubscriptionKeyNames
from gateway.profiles import sse_lp_profile, with_subscription_required
from gateway.responses import (
    ACCESS_DENIED_INVALID_KEY,
    ACCESS_DENIED_MISSING_KEY,
    RESOURCE_NOT_FOUND,
    internal_server_error,
    resource_not_found,
)
from gateway.subscription import KeySource, SubscriptionOutcome, check_subscription, query_values

API = with_subscription_required(sse_lp_profile()).apis[0]
OPEN_API = sse_lp_profile().apis[0]
KEYS = frozenset({"primary-key", "secondary-key"})
GATEWAY = "http://127.0.0.1:8080"

MISSING_BODY = (
    b'{ "statusCode": 401, "message": "Access denied due to missing subscription key. '
    b'Make sure to include subscription key when making requests to an API." }'
)
INVALID_BODY = (
    b'{ "statusCode": 401, "message": "Access denied due to invalid subscription key. '
    b'Make sure to provide a valid key for an active subscription." }'
)


def check(headers: dict[str, str], query: str = "") -> tuple[SubscriptionOutcome, KeySource | None]:
    result = check_subscription(API, CIMultiDict(headers), query, KEYS)
    return result.outcome, result.source


CASES = [
    # (headers, raw query, outcome, source)
    ({}, "", SubscriptionOutcome.MISSING, None),
    ({}, "hub=chat", SubscriptionOutcome.MISSING, None),
    ({"Ocp-Apim-Subscription-Key": "primary-key"}, "", SubscriptionOutcome.ACCEPTED, KeySource.HEADER),
    ({"ocp-apim-subscription-key": "secondary-key"}, "", SubscriptionOutcome.ACCEPTED, KeySource.HEADER),
    ({"Ocp-Apim-Subscription-Key": "wrong"}, "", SubscriptionOutcome.INVALID, KeySource.HEADER),
    ({}, "hub=chat&subscription-key=primary-key", SubscriptionOutcome.ACCEPTED, KeySource.QUERY),
    ({}, "subscription-key=wrong", SubscriptionOutcome.INVALID, KeySource.QUERY),
    # "The query parameter is checked only if the header isn't present": a present header wins.
    (
        {"Ocp-Apim-Subscription-Key": "wrong"},
        "subscription-key=primary-key",
        SubscriptionOutcome.INVALID,
        KeySource.HEADER,
    ),
    (
        {"Ocp-Apim-Subscription-Key": "primary-key"},
        "subscription-key=wrong",
        SubscriptionOutcome.ACCEPTED,
        KeySource.HEADER,
    ),
    # An empty header counts as missing [unverified], so the query decides.
    ({"Ocp-Apim-Subscription-Key": ""}, "subscription-key=primary-key", SubscriptionOutcome.ACCEPTED, KeySource.QUERY),
    ({"Ocp-Apim-Subscription-Key": ""}, "subscription-key=", SubscriptionOutcome.MISSING, None),
    # Query values are percent-decoded before comparison; the name must match exactly.
    ({}, "subscription-key=primary%2Dkey", SubscriptionOutcome.ACCEPTED, KeySource.QUERY),
    ({}, "Subscription-Key=primary-key", SubscriptionOutcome.MISSING, None),
]


@pytest.mark.parametrize(("headers", "query", "outcome", "source"), CASES)
def test_precedence(
    headers: dict[str, str], query: str, outcome: SubscriptionOutcome, source: KeySource | None
) -> None:
    assert check(headers, query) == (outcome, source)


def test_not_required_ignores_keys_entirely() -> None:
    for headers, query in (({}, ""), ({"Ocp-Apim-Subscription-Key": "wrong"}, "subscription-key=wrong")):
        result = check_subscription(OPEN_API, CIMultiDict(headers), query, KEYS)
        assert result.outcome is SubscriptionOutcome.NOT_REQUIRED and result.allowed
        assert result.denial(OPEN_API, GATEWAY) is None


def test_missing_key_response() -> None:
    result = check_subscription(API, CIMultiDict(), "", KEYS)
    denial = result.denial(API, GATEWAY)
    assert denial is not None
    assert (denial.status, denial.reason) == (401, "Access Denied")
    assert denial.body == MISSING_BODY == ACCESS_DENIED_MISSING_KEY
    assert len(denial.body) == 152
    assert dict(denial.headers) == {
        "Content-Type": "application/json",
        "WWW-Authenticate": 'AzureApiManagementKey realm="http://127.0.0.1:8080/client",'
        'name="Ocp-Apim-Subscription-Key",type="header"',
    }


def test_invalid_key_response() -> None:
    result = check_subscription(API, CIMultiDict({"Ocp-Apim-Subscription-Key": "nope"}), "", KEYS)
    denial = result.denial(API, GATEWAY + "/")
    assert denial is not None
    assert (denial.status, denial.reason) == (401, "Access Denied")
    assert denial.body == INVALID_BODY == ACCESS_DENIED_INVALID_KEY
    assert len(denial.body) == 143
    assert (
        "WWW-Authenticate",
        'AzureApiManagementKey realm="http://127.0.0.1:8080/client",name="Ocp-Apim-Subscription-Key",type="header"',
    ) in denial.headers


def test_custom_key_names() -> None:
    api = replace(API, subscription_key_names=SubscriptionKeyNames(header="X-Key", query="key"))
    assert check_subscription(api, CIMultiDict({"x-key": "primary-key"}), "", KEYS).allowed
    assert check_subscription(api, CIMultiDict(), "key=primary-key", KEYS).allowed
    result = check_subscription(api, CIMultiDict({"Ocp-Apim-Subscription-Key": "primary-key"}), "", KEYS)
    assert result.outcome is SubscriptionOutcome.MISSING
    denial = result.denial(api, GATEWAY)
    assert denial is not None and 'name="X-Key"' in dict(denial.headers)["WWW-Authenticate"]


def test_descriptions_never_contain_the_key() -> None:
    for headers, query in (({"Ocp-Apim-Subscription-Key": "sekrit"}, ""), ({}, "subscription-key=sekrit")):
        result = check_subscription(API, CIMultiDict(headers), query, KEYS)
        assert "sekrit" not in result.describe(API)
        assert "invalid subscription key in" in result.describe(API)


def test_query_values() -> None:
    assert query_values("a=1&b=2&a=3&a", "a") == ["1", "3", ""]
    assert query_values("", "a") == []


def test_query_values_decode_names_and_values_but_compare_names_exactly() -> None:
    name = "subscription-key"
    assert query_values("subscription-key=a+b%20c", name) == ["a b c"]
    assert query_values("subscription%2Dkey=k&x=1", name) == ["k"]
    assert query_values("SUBSCRIPTION-KEY=k", name) == []
    assert query_values("a&&subscription-key", name) == [""]
    assert query_values("=x&subscription-key==k&subscription-key=%E2%82%AC", name) == ["=k", "\u20ac"]
    assert query_values("subscription-key=%ZZ", name) == ["%ZZ"]


def test_gateway_bodies() -> None:
    not_found = resource_not_found()
    assert (not_found.status, not_found.reason) == (404, "Not Found")
    assert not_found.body == RESOURCE_NOT_FOUND == b'{ "statusCode": 404, "message": "Resource not found" }'
    assert len(not_found.body) == 54
    assert dict(not_found.headers) == {"Content-Type": "application/json"}
    error = internal_server_error("00000000-0000-0000-0000-000000000000")
    assert error.status == 500
    assert error.body == (
        b'{ "statusCode": 500, "message": "Internal server error", '
        b'"activityId": "00000000-0000-0000-0000-000000000000" }'
    )


def test_repeated_keys_are_refused_unless_they_agree() -> None:
    from multidict import CIMultiDict

    def multi(*values: str) -> CIMultiDict[str]:
        return CIMultiDict(("Ocp-Apim-Subscription-Key", v) for v in values)

    assert check(multi("primary-key", "wrong"), "") == (SubscriptionOutcome.AMBIGUOUS, KeySource.HEADER)
    assert check(multi("wrong", "primary-key"), "") == (SubscriptionOutcome.AMBIGUOUS, KeySource.HEADER)
    assert check(multi("primary-key", "secondary-key"), "") == (SubscriptionOutcome.AMBIGUOUS, KeySource.HEADER)
    assert check(multi("primary-key", "primary-key"), "") == (SubscriptionOutcome.ACCEPTED, KeySource.HEADER)
    assert check(multi("primary-key", ""), "") == (SubscriptionOutcome.ACCEPTED, KeySource.HEADER)
    ambiguous = "subscription-key=primary-key&subscription-key=wrong"
    assert check({}, ambiguous) == (SubscriptionOutcome.AMBIGUOUS, KeySource.QUERY)
    assert check({}, "subscription-key=primary-key&subscription-key=primary%2Dkey")[0] is SubscriptionOutcome.ACCEPTED
    # the documented order still holds: with a header present the query is not read
    assert check(multi("primary-key"), ambiguous) == (SubscriptionOutcome.ACCEPTED, KeySource.HEADER)
