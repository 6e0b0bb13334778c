"""The MessagePack hub protocol codec: the byte vectors of ASP.NET Core and of the JS client, framing, every message
type, hostile input, and a client and a server speaking it to each other (docs/protocol.md §4.1).

Each vector cites the public file it comes from. A vector is decoded to the message it stands for and, where our
writer makes the same choices as the writer that produced it, encoded back to the same bytes; where it does not, the
vector says why.
"""

from __future__ import annotations

import base64
import itertools
import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signalr.connection import (
    ClientProtocol,
    ConnectionClosed,
    HandshakeCompleted,
    HandshakeFailed,
    MessageReceived,
    ServerProtocol,
    State,
)
from signalr.hub_protocol import HubProtocol, TransferFormat
from signalr.messagepack_protocol import (
    MAX_PAYLOAD_SIZE,
    MESSAGEPACK,
    PING_MESSAGE,
    LengthPrefixedReader,
    decode,
    encode,
    encode_many,
    encode_payload,
    frame,
    split_messages,
)
from signalr.messages import (
    DEFAULT_MAX_MESSAGE_SIZE,
    CancelInvocation,
    Close,
    Completion,
    HubMessage,
    Invocation,
    MessageTooLarge,
    Ping,
    ProtocolError,
    StreamInvocation,
    StreamItem,
    UnknownMessageType,
)
from signalr.protocols import PROTOCOLS, protocol_named

ASPNET = "https://github.com/dotnet/aspnetcore/blob/main/src/SignalR"
BASE_TESTS = f"{ASPNET}/common/SignalR.Common/test/Internal/Protocol/MessagePackHubProtocolTestBase.cs"
OBJECT_TESTS = f"{ASPNET}/common/SignalR.Common/test/Internal/Protocol/MessagePackHubProtocolTests.cs"
CUSTOM_OBJECT = f"{ASPNET}/common/SignalR.Common/test/Internal/Protocol/CustomObject.cs"
SPEC = f"{ASPNET}/docs/specs/HubProtocol.md"
JS_TESTS = f"{ASPNET}/clients/ts/signalr-protocol-msgpack/tests/MessagePackHubProtocol.test.ts"

# Why our bytes differ from a vector's, when they do.
FLOAT32 = "ASP.NET Core writes a System.Single as float32; Python floats go out as float64 (both decode to 42.0)"
HEADERS = "only Invocation carries headers here: they are read and checked, then dropped; we write an empty map"
EXTRA = "the extra element a newer peer appended is ignored on read and not written back"


@dataclass(frozen=True)
class Vector:
    name: str
    source: str
    payload: bytes  # one message without its length prefix
    message: HubMessage
    differs: str | None = None  # why encoding ``message`` does not give ``payload`` back; None: it does
    headers: dict[str, str] | None = None  # the Invocation headers the payload carries


def b64(text: str) -> bytes:
    return base64.b64decode(text)


TEST_HEADERS = {"Foo": "Bar", "KeyWith\nNew\r\nLines": "Still Works", "ValueWithNewLines": "Also\nWorks\r\nFine"}

# CustomObject (CUSTOM_OBJECT) as MessagePack-CSharp's contractless resolver writes it: a map in declaration order,
# the DateTime as a 32-bit timestamp extension, the byte[] as bin.
CUSTOM = {
    "StringProp": "SignalR!",
    "DoubleProp": 6.2831853071,
    "IntProp": 42,
    "DateTimeProp": datetime(2017, 4, 11, tzinfo=UTC),
    "NullProp": None,
    "ByteArrProp": b"\x01\x02\x03",
}
CUSTOM_B64 = "hqpTdHJpbmdQcm9wqFNpZ25hbFIhqkRvdWJsZVByb3DLQBkh+1RCzxKnSW50UHJvcCqsRGF0ZVRpbWVQcm9w1v9Y7ByAqE51bGxQcm9wwKtCeXRlQXJyUHJvcMQDAQID"  # noqa: E501

BASE_VECTORS = [
    Vector(
        "InvocationWithNoHeadersAndNoArgs", BASE_TESTS, b64("lgGAo3h5eqZtZXRob2SQkA=="), Invocation("method", (), "xyz")
    ),
    Vector("InvocationWithNoHeadersNoIdAndNoArgs", BASE_TESTS, b64("lgGAwKZtZXRob2SQkA=="), Invocation("method")),
    Vector(
        "InvocationWithNoHeadersNoIdAndSingleIntArg",
        BASE_TESTS,
        b64("lgGAwKZtZXRob2SRKpA="),
        Invocation("method", (42,)),
    ),
    Vector(
        "InvocationWithNoHeadersNoIdIntAndStringArgs",
        BASE_TESTS,
        b64("lgGAwKZtZXRob2SSKqZzdHJpbmeQ"),
        Invocation("method", (42, "string")),
    ),
    Vector(
        "InvocationWithStreamArgument",
        BASE_TESTS,
        b64("lgGAwKZUYXJnZXSQkatfX3Rlc3RfaWRfXw=="),
        Invocation("Target", (), None, ("__test_id__",)),
    ),
    Vector(
        "InvocationWithStreamAndNormalArgument",
        BASE_TESTS,
        b64("lgGAwKZUYXJnZXSRKpGrX190ZXN0X2lkX18="),
        Invocation("Target", (42,), None, ("__test_id__",)),
    ),
    Vector(
        "InvocationWithMultipleStreams",
        BASE_TESTS,
        b64("lgGAwKZUYXJnZXSQkqtfX3Rlc3RfaWRfX6xfX3Rlc3RfaWQyX18="),
        Invocation("Target", (), None, ("__test_id__", "__test_id2__")),
    ),
    Vector("StreamItemWithNoHeadersAndIntItem", BASE_TESTS, b64("lAKAo3h5eio="), StreamItem("xyz", 42)),
    Vector(
        "StreamItemWithNoHeadersAndFloatItem", BASE_TESTS, b64("lAKAo3h5espCKAAA"), StreamItem("xyz", 42.0), FLOAT32
    ),
    Vector(
        "StreamItemWithNoHeadersAndStringItem", BASE_TESTS, b64("lAKAo3h5eqZzdHJpbmc="), StreamItem("xyz", "string")
    ),
    Vector("StreamItemWithNoHeadersAndBoolItem", BASE_TESTS, b64("lAKAo3h5esM="), StreamItem("xyz", True)),
    Vector(
        "CompletionWithNoHeadersAndError",
        BASE_TESTS,
        b64("lQOAo3h5egGwRXJyb3Igbm90IGZvdW5kIQ=="),
        Completion.with_error("xyz", "Error not found!"),
    ),
    Vector(
        "CompletionWithHeadersAndError",
        BASE_TESTS,
        b64(
            "lQODo0Zvb6NCYXKyS2V5V2l0aApOZXcNCkxpbmVzq1N0aWxsIFdvcmtzsVZhbHVlV2l0aE5ld0xpbmVzsEFsc28KV29ya3MNCkZpbmWjeHl6"
            "AbBFcnJvciBub3QgZm91bmQh"
        ),
        Completion.with_error("xyz", "Error not found!"),
        HEADERS,
    ),
    Vector("CompletionWithNoHeadersAndNoResult", BASE_TESTS, b64("lAOAo3h5egI="), Completion("xyz")),
    Vector(
        "CompletionWithHeadersAndNoResult",
        BASE_TESTS,
        b64(
            "lAODo0Zvb6NCYXKyS2V5V2l0aApOZXcNCkxpbmVzq1N0aWxsIFdvcmtzsVZhbHVlV2l0aE5ld0xpbmVzsEFsc28KV29ya3MNCkZpbmWjeHl6"
            "Ag=="
        ),
        Completion("xyz"),
        HEADERS,
    ),
    Vector("CompletionWithNoHeadersAndIntResult", BASE_TESTS, b64("lQOAo3h5egMq"), Completion.with_result("xyz", 42)),
    Vector(
        "CompletionWithNoHeadersAndFloatResult",
        BASE_TESTS,
        b64("lQOAo3h5egPKQigAAA=="),
        Completion.with_result("xyz", 42.0),
        FLOAT32,
    ),
    Vector(
        "CompletionWithNoHeadersAndStringResult",
        BASE_TESTS,
        b64("lQOAo3h5egOmc3RyaW5n"),
        Completion.with_result("xyz", "string"),
    ),
    Vector(
        "CompletionWithNoHeadersAndBooleanResult", BASE_TESTS, b64("lQOAo3h5egPD"), Completion.with_result("xyz", True)
    ),
    Vector(
        "StreamInvocationWithNoHeadersAndNoArgs",
        BASE_TESTS,
        b64("lgSAo3h5eqZtZXRob2SQkA=="),
        StreamInvocation("xyz", "method"),
    ),
    Vector(
        "StreamInvocationWithNoHeadersAndIntArg",
        BASE_TESTS,
        b64("lgSAo3h5eqZtZXRob2SRKpA="),
        StreamInvocation("xyz", "method", (42,)),
    ),
    Vector(
        "StreamInvocationWithStreamArgument",
        BASE_TESTS,
        b64("lgSAo3h5eqZtZXRob2SQkatfX3Rlc3RfaWRfXw=="),
        StreamInvocation("xyz", "method", (), ("__test_id__",)),
    ),
    Vector(
        "StreamInvocationWithStreamAndNormalArgument",
        BASE_TESTS,
        b64("lgSAo3h5eqZtZXRob2SRKpGrX190ZXN0X2lkX18="),
        StreamInvocation("xyz", "method", (42,), ("__test_id__",)),
    ),
    Vector(
        "StreamInvocationWithNoHeadersAndIntAndStringArgs",
        BASE_TESTS,
        b64("lgSAo3h5eqZtZXRob2SSKqZzdHJpbmeQ"),
        StreamInvocation("xyz", "method", (42, "string")),
    ),
    Vector("CancelInvocationWithNoHeaders", BASE_TESTS, b64("kwWAo3h5eg=="), CancelInvocation("xyz")),
    Vector(
        "CancelInvocationWithHeaders",
        BASE_TESTS,
        b64(
            "kwWDo0Zvb6NCYXKyS2V5V2l0aApOZXcNCkxpbmVzq1N0aWxsIFdvcmtzsVZhbHVlV2l0aE5ld0xpbmVzsEFsc28KV29ya3MNCkZpbmWjeHl6"
        ),
        CancelInvocation("xyz"),
        HEADERS,
    ),
    Vector("Ping", BASE_TESTS, b64("kQY="), Ping()),
    # ASP.NET Core always writes AllowReconnect; its CloseMessage.Empty is our Close(None, False).
    Vector("CloseMessage", BASE_TESTS, b64("kwfAwg=="), Close(None, False)),
    Vector("CloseMessage_HasError", BASE_TESTS, b64("kwemRXJyb3Ihwg=="), Close("Error!", False)),
    Vector("CloseMessage_HasAllowReconnect", BASE_TESTS, b64("kwfAww=="), Close(None, True)),
    Vector("CloseMessage_HasErrorAndAllowReconnect", BASE_TESTS, b64("kwemRXJyb3Ihww=="), Close("Error!", True)),
    # ParseMessageWithExtraData: an 8-element Invocation; the two trailing elements are ignored.
    Vector(
        "ParseMessageWithExtraData",
        BASE_TESTS,
        bytes([0x98, 1, 0x80, 0xA3, *b"xyz", 0xA6, *b"method", 0x90, 0x90, 0xC3, 0xA2, *b"ex"]),
        Invocation("method", (), "xyz"),
        EXTRA,
    ),
]

OBJECT_VECTORS = [
    Vector(
        "CompletionWithNoHeadersAndNullResult",
        OBJECT_TESTS,
        b64("lQOAo3h5egPA"),
        Completion.with_result("xyz", None),
    ),
    Vector(
        "CompletionWithNoHeadersAndCustomObjectResult",
        OBJECT_TESTS,
        b64(
            "lQOAo3h5egOGqlN0cmluZ1Byb3CoU2lnbmFsUiGqRG91YmxlUHJvcMtAGSH7VELPEqdJbnRQcm9wKqxEYXRlVGltZVByb3DW/1jsHICoTnVs"
            "bFByb3DAq0J5dGVBcnJQcm9wxAMBAgM="
        ),
        Completion.with_result("xyz", CUSTOM),
    ),
    Vector(
        "CompletionWithNoHeadersAndCustomObjectArrayResult",
        OBJECT_TESTS,
        b64(
            "lQOAo3h5egOShqpTdHJpbmdQcm9wqFNpZ25hbFIhqkRvdWJsZVByb3DLQBkh+1RCzxKnSW50UHJvcCqsRGF0ZVRpbWVQcm9w1v9Y7ByAqE51"
            "bGxQcm9wwKtCeXRlQXJyUHJvcMQDAQIDhqpTdHJpbmdQcm9wqFNpZ25hbFIhqkRvdWJsZVByb3DLQBkh+1RCzxKnSW50UHJvcCqsRGF0ZVRp"
            "bWVQcm9w1v9Y7ByAqE51bGxQcm9wwKtCeXRlQXJyUHJvcMQDAQID"
        ),
        Completion.with_result("xyz", [CUSTOM, CUSTOM]),
    ),
    Vector(
        "CompletionWithHeadersAndCustomObjectArrayResult",
        OBJECT_TESTS,
        b64(
            "lQODo0Zvb6NCYXKyS2V5V2l0aApOZXcNCkxpbmVzq1N0aWxsIFdvcmtzsVZhbHVlV2l0aE5ld0xpbmVzsEFsc28KV29ya3MNCkZpbmWjeHl6"
            "A5KGqlN0cmluZ1Byb3CoU2lnbmFsUiGqRG91YmxlUHJvcMtAGSH7VELPEqdJbnRQcm9wKqxEYXRlVGltZVByb3DW/1jsHICoTnVsbFByb3DA"
            "q0J5dGVBcnJQcm9wxAMBAgOGqlN0cmluZ1Byb3CoU2lnbmFsUiGqRG91YmxlUHJvcMtAGSH7VELPEqdJbnRQcm9wKqxEYXRlVGltZVByb3DW"
            "/1jsHICoTnVsbFByb3DAq0J5dGVBcnJQcm9wxAMBAgM="
        ),
        Completion.with_result("xyz", [CUSTOM, CUSTOM]),
        HEADERS,
    ),
    Vector(
        "CompletionWithNoHeadersAndEnumResult",
        OBJECT_TESTS,
        b64("lQOAo3h5egOjT25l"),
        Completion.with_result("xyz", "One"),
    ),
    Vector(
        "InvocationWithNoHeadersNoIdAndSingleNullArg",
        OBJECT_TESTS,
        b64("lgGAwKZtZXRob2SRwJA="),
        Invocation("method", (None,)),
    ),
    Vector(
        "InvocationWithNoHeadersNoIdIntAndEnumArgs",
        OBJECT_TESTS,
        b64("lgGAwKZtZXRob2SSKqNPbmWQ"),
        Invocation("method", (42, "One")),
    ),
    Vector(
        "InvocationWithNoHeadersNoIdAndCustomObjectArg",
        OBJECT_TESTS,
        b64(
            "lgGAwKZtZXRob2STKqZzdHJpbmeGqlN0cmluZ1Byb3CoU2lnbmFsUiGqRG91YmxlUHJvcMtAGSH7VELPEqdJbnRQcm9wKqxEYXRlVGltZVBy"
            "b3DW/1jsHICoTnVsbFByb3DAq0J5dGVBcnJQcm9wxAMBAgOQ"
        ),
        Invocation("method", (42, "string", CUSTOM)),
    ),
    Vector(
        "InvocationWithNoHeadersNoIdAndArrayOfCustomObjectArgs",
        OBJECT_TESTS,
        b64(
            "lgGAwKZtZXRob2SShqpTdHJpbmdQcm9wqFNpZ25hbFIhqkRvdWJsZVByb3DLQBkh+1RCzxKnSW50UHJvcCqsRGF0ZVRpbWVQcm9w1v9Y7ByA"
            "qE51bGxQcm9wwKtCeXRlQXJyUHJvcMQDAQIDhqpTdHJpbmdQcm9wqFNpZ25hbFIhqkRvdWJsZVByb3DLQBkh+1RCzxKnSW50UHJvcCqsRGF0"
            "ZVRpbWVQcm9w1v9Y7ByAqE51bGxQcm9wwKtCeXRlQXJyUHJvcMQDAQIDkA=="
        ),
        Invocation("method", (CUSTOM, CUSTOM)),
    ),
    Vector(
        "InvocationWithHeadersNoIdAndArrayOfCustomObjectArgs",
        OBJECT_TESTS,
        b64(
            "lgGDo0Zvb6NCYXKyS2V5V2l0aApOZXcNCkxpbmVzq1N0aWxsIFdvcmtzsVZhbHVlV2l0aE5ld0xpbmVzsEFsc28KV29ya3MNCkZpbmXApm1l"
            "dGhvZJKGqlN0cmluZ1Byb3CoU2lnbmFsUiGqRG91YmxlUHJvcMtAGSH7VELPEqdJbnRQcm9wKqxEYXRlVGltZVByb3DW/1jsHICoTnVsbFBy"
            "b3DAq0J5dGVBcnJQcm9wxAMBAgOGqlN0cmluZ1Byb3CoU2lnbmFsUiGqRG91YmxlUHJvcMtAGSH7VELPEqdJbnRQcm9wKqxEYXRlVGltZVBy"
            "b3DW/1jsHICoTnVsbFByb3DAq0J5dGVBcnJQcm9wxAMBAgOQ"
        ),
        Invocation("method", (CUSTOM, CUSTOM)),
        headers=TEST_HEADERS,
    ),
    Vector(
        "StreamItemWithNoHeadersAndNullItem",
        OBJECT_TESTS,
        b64("lAKAo3h5esA="),
        StreamItem("xyz", None),
    ),
    Vector(
        "StreamItemWithNoHeadersAndEnumItem",
        OBJECT_TESTS,
        b64("lAKAo3h5eqNPbmU="),
        StreamItem("xyz", "One"),
    ),
    Vector(
        "StreamItemWithNoHeadersAndCustomObjectItem",
        OBJECT_TESTS,
        b64(
            "lAKAo3h5eoaqU3RyaW5nUHJvcKhTaWduYWxSIapEb3VibGVQcm9wy0AZIftUQs8Sp0ludFByb3AqrERhdGVUaW1lUHJvcNb/WOwcgKhOdWxs"
            "UHJvcMCrQnl0ZUFyclByb3DEAwECAw=="
        ),
        StreamItem("xyz", CUSTOM),
    ),
    Vector(
        "StreamItemWithNoHeadersAndCustomObjectArrayItem",
        OBJECT_TESTS,
        b64(
            "lAKAo3h5epKGqlN0cmluZ1Byb3CoU2lnbmFsUiGqRG91YmxlUHJvcMtAGSH7VELPEqdJbnRQcm9wKqxEYXRlVGltZVByb3DW/1jsHICoTnVs"
            "bFByb3DAq0J5dGVBcnJQcm9wxAMBAgOGqlN0cmluZ1Byb3CoU2lnbmFsUiGqRG91YmxlUHJvcMtAGSH7VELPEqdJbnRQcm9wKqxEYXRlVGlt"
            "ZVByb3DW/1jsHICoTnVsbFByb3DAq0J5dGVBcnJQcm9wxAMBAgM="
        ),
        StreamItem("xyz", [CUSTOM, CUSTOM]),
    ),
    Vector(
        "StreamItemWithHeadersAndCustomObjectArrayItem",
        OBJECT_TESTS,
        b64(
            "lAKDo0Zvb6NCYXKyS2V5V2l0aApOZXcNCkxpbmVzq1N0aWxsIFdvcmtzsVZhbHVlV2l0aE5ld0xpbmVzsEFsc28KV29ya3MNCkZpbmWjeHl6"
            "koaqU3RyaW5nUHJvcKhTaWduYWxSIapEb3VibGVQcm9wy0AZIftUQs8Sp0ludFByb3AqrERhdGVUaW1lUHJvcNb/WOwcgKhOdWxsUHJvcMCr"
            "Qnl0ZUFyclByb3DEAwECA4aqU3RyaW5nUHJvcKhTaWduYWxSIapEb3VibGVQcm9wy0AZIftUQs8Sp0ludFByb3AqrERhdGVUaW1lUHJvcNb/"
            "WOwcgKhOdWxsUHJvcMCrQnl0ZUFyclByb3DEAwECAw=="
        ),
        StreamItem("xyz", [CUSTOM, CUSTOM]),
        HEADERS,
    ),
    Vector(
        "StreamInvocationWithNoHeadersAndEnumArg",
        OBJECT_TESTS,
        b64("lgSAo3h5eqZtZXRob2SRo09uZZA="),
        StreamInvocation("xyz", "method", ("One",)),
    ),
    Vector(
        "StreamInvocationWithNoHeadersAndNullArg",
        OBJECT_TESTS,
        b64("lgSAo3h5eqZtZXRob2SRwJA="),
        StreamInvocation("xyz", "method", (None,)),
    ),
    Vector(
        "StreamInvocationWithNoHeadersAndIntStringAndCustomObjectArgs",
        OBJECT_TESTS,
        b64(
            "lgSAo3h5eqZtZXRob2STKqZzdHJpbmeGqlN0cmluZ1Byb3CoU2lnbmFsUiGqRG91YmxlUHJvcMtAGSH7VELPEqdJbnRQcm9wKqxEYXRlVGlt"
            "ZVByb3DW/1jsHICoTnVsbFByb3DAq0J5dGVBcnJQcm9wxAMBAgOQ"
        ),
        StreamInvocation("xyz", "method", (42, "string", CUSTOM)),
    ),
    Vector(
        "StreamInvocationWithNoHeadersAndCustomObjectArrayArg",
        OBJECT_TESTS,
        b64(
            "lgSAo3h5eqZtZXRob2SShqpTdHJpbmdQcm9wqFNpZ25hbFIhqkRvdWJsZVByb3DLQBkh+1RCzxKnSW50UHJvcCqsRGF0ZVRpbWVQcm9w1v9Y"
            "7ByAqE51bGxQcm9wwKtCeXRlQXJyUHJvcMQDAQIDhqpTdHJpbmdQcm9wqFNpZ25hbFIhqkRvdWJsZVByb3DLQBkh+1RCzxKnSW50UHJvcCqs"
            "RGF0ZVRpbWVQcm9w1v9Y7ByAqE51bGxQcm9wwKtCeXRlQXJyUHJvcMQDAQIDkA=="
        ),
        StreamInvocation("xyz", "method", (CUSTOM, CUSTOM)),
    ),
    Vector(
        "StreamInvocationWithHeadersAndCustomObjectArrayArg",
        OBJECT_TESTS,
        b64(
            "lgSDo0Zvb6NCYXKyS2V5V2l0aApOZXcNCkxpbmVzq1N0aWxsIFdvcmtzsVZhbHVlV2l0aE5ld0xpbmVzsEFsc28KV29ya3MNCkZpbmWjeHl6"
            "pm1ldGhvZJKGqlN0cmluZ1Byb3CoU2lnbmFsUiGqRG91YmxlUHJvcMtAGSH7VELPEqdJbnRQcm9wKqxEYXRlVGltZVByb3DW/1jsHICoTnVs"
            "bFByb3DAq0J5dGVBcnJQcm9wxAMBAgOGqlN0cmluZ1Byb3CoU2lnbmFsUiGqRG91YmxlUHJvcMtAGSH7VELPEqdJbnRQcm9wKqxEYXRlVGlt"
            "ZVByb3DW/1jsHICoTnVsbFByb3DAq0J5dGVBcnJQcm9wxAMBAgOQ"
        ),
        StreamInvocation("xyz", "method", (CUSTOM, CUSTOM)),
        HEADERS,
    ),
    # SerializerCanSerializeTypesWithNoDefaultCtor: a read-only list of one int, given as bytes.
    Vector(
        "SerializerCanSerializeTypesWithNoDefaultCtor",
        OBJECT_TESTS,
        bytes([0x95, 3, 0x80, 0xA1, ord("0"), 0x03, 0x91, 42]),
        Completion.with_result("0", [42]),
    ),
]

SPEC_VECTORS = [
    Vector(
        "Invocation",
        SPEC,
        bytes.fromhex("96 01 80 a3 78 79 7a a6 6d 65 74 68 6f 64 91 2a 90"),
        Invocation("method", (42,), "xyz"),
    ),
    Vector(
        "Non-Blocking Invocation",
        SPEC,
        bytes.fromhex("96 01 80 c0 a6 6d 65 74 68 6f 64 91 2a 90"),
        Invocation("method", (42,)),
    ),
    Vector(
        "StreamInvocation",
        SPEC,
        bytes.fromhex("96 04 80 a3 78 79 7a a6 6d 65 74 68 6f 64 91 2a 90"),
        StreamInvocation("xyz", "method", (42,)),
    ),
    Vector("StreamItem", SPEC, bytes.fromhex("94 02 80 a3 78 79 7a 2a"), StreamItem("xyz", 42)),
    Vector(
        "Completion Error Result",
        SPEC,
        bytes.fromhex("95 03 80 a3 78 79 7a 01 a5 45 72 72 6f 72"),
        Completion.with_error("xyz", "Error"),
    ),
    Vector("Completion Void Result", SPEC, bytes.fromhex("94 03 80 a3 78 79 7a 02"), Completion("xyz")),
    Vector(
        "Completion Non-Void Result",
        SPEC,
        bytes.fromhex("95 03 80 a3 78 79 7a 03 2a"),
        Completion.with_result("xyz", 42),
    ),
    Vector("CancelInvocation", SPEC, bytes.fromhex("93 05 80 a3 78 79 7a"), CancelInvocation("xyz")),
    Vector("Ping", SPEC, bytes.fromhex("91 06"), Ping()),
    Vector("Close", SPEC, bytes.fromhex("92 07 a3 78 79 7a"), Close("xyz")),
    Vector("Close that allows reconnects", SPEC, bytes.fromhex("93 07 a3 78 79 7a c3"), Close("xyz", True)),
    Vector(
        "MessagePack Headers Encoding",
        SPEC,
        bytes.fromhex("96 01 82 a1 78 a1 79 a1 7a a1 7a a3 78 79 7a a6 6d 65 74 68 6f 64 91 2a 90"),
        Invocation("method", (42,), "xyz"),
        headers={"x": "y", "z": "z"},
    ),
]

JS_DATE = datetime(2018, 1, 1, 11, 24, tzinfo=UTC)  # new Date(Date.UTC(2018, 0, 1, 11, 24, 0))


def js(framed: list[int]) -> bytes:
    """A JS test's framed byte array without its one-byte length prefix (checked)."""
    assert framed[0] == len(framed) - 1
    return bytes(framed[1:])


JS_VECTORS = [
    Vector(
        "can read Completion message (error)",
        JS_TESTS,
        js([0x0C, 0x95, 0x03, 0x80, 0xA3, 0x61, 0x62, 0x63, 0x01, 0xA3, 0x45, 0x72, 0x72]),
        Completion.with_error("abc", "Err"),
    ),
    Vector(
        "can read Completion message (result)",
        JS_TESTS,
        js([0x0B, 0x95, 0x03, 0x80, 0xA3, 0x61, 0x62, 0x63, 0x03, 0xA2, 0x4F, 0x4B]),
        Completion.with_result("abc", "OK"),
    ),
    Vector(
        "can read Completion message (void)",
        JS_TESTS,
        js([0x08, 0x94, 0x03, 0x80, 0xA3, 0x61, 0x62, 0x63, 0x02]),
        Completion("abc"),
    ),
    Vector(
        "can read Completion message (Date result)",
        JS_TESTS,
        js([0x0E, 0x95, 0x03, 0x80, 0xA3, 0x61, 0x62, 0x63, 0x03, 0xD6, 0xFF, 0x5A, 0x4A, 0x1A, 0x50]),
        Completion.with_result("abc", JS_DATE),
    ),
    Vector(
        "can read Completion message (extra property at the end)",
        JS_TESTS,
        js([0x09, 0x95, 0x03, 0x80, 0xA3, 0x61, 0x62, 0x63, 0x02, 0x00]),
        Completion("abc"),
        EXTRA,
    ),
    Vector(
        "can read StreamItem message",
        JS_TESTS,
        js([0x08, 0x94, 0x02, 0x80, 0xA3, 0x61, 0x62, 0x63, 0x08]),
        StreamItem("abc", 8),
    ),
    Vector(
        "can read StreamItem message (Date item)",
        JS_TESTS,
        js([0x0D, 0x94, 0x02, 0x80, 0xA3, 0x61, 0x62, 0x63, 0xD6, 0xFF, 0x5A, 0x4A, 0x1A, 0x50]),
        StreamItem("abc", JS_DATE),
    ),
    Vector(
        "can read message with headers",
        JS_TESTS,
        js([0x0C, 0x94, 0x02, 0x81, 0xA1, 0x74, 0xA1, 0x75, 0xA3, 0x61, 0x62, 0x63, 0x08]),
        StreamItem("abc", 8),
        HEADERS,
    ),
    Vector("can read ping message", JS_TESTS, js([0x02, 0x91, 0x06]), Ping()),
    Vector(
        "can write cancel message",
        JS_TESTS,
        js([0x07, 0x93, 0x05, 0x80, 0xA3, 0x61, 0x62, 0x63]),
        CancelInvocation("abc"),
    ),
    Vector(
        "can write completion message with false result",
        JS_TESTS,
        js([0x09, 0x95, 0x03, 0x80, 0xA3, 0x61, 0x62, 0x63, 0x03, 0xC2]),
        Completion.with_result("abc", False),
    ),
    Vector(
        "can write completion message with null result",
        JS_TESTS,
        js([0x09, 0x95, 0x03, 0x80, 0xA3, 0x61, 0x62, 0x63, 0x03, 0xC0]),
        Completion.with_result("abc", None),
    ),
]

VECTORS = BASE_VECTORS + OBJECT_VECTORS + SPEC_VECTORS + JS_VECTORS


def vector_id(vector: Vector) -> str:
    return f"{vector.source.rsplit('/', 1)[-1]}:{vector.name}"


@pytest.mark.parametrize("vector", VECTORS, ids=vector_id)
def test_vector_decodes_to_its_message(vector: Vector) -> None:
    message = decode(vector.payload)
    assert message == vector.message
    if isinstance(message, Invocation):
        assert message.headers == vector.headers
    # The framed form splits back to the payload, through the HubProtocol too.
    assert MESSAGEPACK.split(frame(vector.payload)) == [vector.payload]
    assert MESSAGEPACK.decode(vector.payload) == vector.message


@pytest.mark.parametrize("vector", [v for v in VECTORS if v.differs is None], ids=vector_id)
def test_vector_encodes_to_the_same_bytes(vector: Vector) -> None:
    message = vector.message
    if isinstance(message, Invocation) and vector.headers is not None:
        message = replace(message, headers=vector.headers)
    assert encode_payload(message) == vector.payload
    assert encode(message) == frame(vector.payload)
    assert MESSAGEPACK.encode(message) == frame(vector.payload)


@pytest.mark.parametrize("vector", [v for v in VECTORS if v.differs is not None], ids=vector_id)
def test_vector_our_bytes_differ_only_as_documented_and_read_back_the_same(vector: Vector) -> None:
    ours = encode_payload(vector.message)
    assert ours != vector.payload
    assert decode(ours) == vector.message
    if vector.differs == HEADERS:
        assert ours[2] == 0x80  # an empty headers map where the vector has one
    elif vector.differs == FLOAT32:
        assert 0xCA in vector.payload and 0xCB in ours
    else:
        assert vector.differs == EXTRA and len(ours) < len(vector.payload)


def test_custom_object_has_bin_and_timestamp_values() -> None:
    """CUSTOM_OBJECT's DateTime is a 32-bit timestamp (d6 ff) and its byte[] a bin 8 (c4): both ways."""
    packed = b64(CUSTOM_B64)
    assert bytes.fromhex("d6ff58ec1c80") in packed and bytes.fromhex("c403010203") in packed
    value = decode(bytes([0x94, 2, 0x80, 0xA1, ord("1")]) + packed)
    assert isinstance(value, StreamItem)
    assert value.item == CUSTOM
    assert value.item["DateTimeProp"].tzinfo is not None
    assert isinstance(value.item["ByteArrProp"], bytes)


def test_multiple_messages_in_one_buffer() -> None:
    """JS_TESTS "can read multiple messages": a StreamItem and a Completion in one buffer."""
    stream_item = bytes([0x08, 0x94, 0x02, 0x80, 0xA3, 0x61, 0x62, 0x63, 0x08])
    completion = bytes([0x0B, 0x95, 0x03, 0x80, 0xA3, 0x61, 0x62, 0x63, 0x03, 0xA2, 0x4F, 0x4B])
    buffer = stream_item + completion
    assert [decode(p) for p in split_messages(buffer)] == [StreamItem("abc", 8), Completion.with_result("abc", "OK")]
    assert encode_many([StreamItem("abc", 8), Completion.with_result("abc", "OK")]) == buffer


def test_ping_is_exactly_02_91_06() -> None:
    """SPEC: the Ping is always exactly 0x91 0x06; JS_TESTS "can write ping message" frames it as 02 91 06."""
    assert PING_MESSAGE == b"\x02\x91\x06" == MESSAGEPACK.ping == encode(Ping())


# ASP.NET Core's MessageSizeData (BASE_TESTS): the framed size of each message. Its CloseMessage always carries
# AllowReconnect, so CloseMessage.Empty is Close(None, False) and CloseMessage("error") is Close("error", False).
@pytest.mark.parametrize(
    ("message", "size"),
    [
        (Invocation("Target", (1,)), 15),
        (Invocation("Target", (1,), "1"), 16),
        (Invocation("Target", (1,), "1", ("2",)), 18),
        (Close(None, False), 5),
        (Close("error", False), 10),
        (StreamItem("1", None), 7),
        (StreamItem("1", 1), 7),
        (Completion("1"), 7),
        (Completion.with_result("1", 1), 8),
        (Completion.with_error("1", "error"), 13),
        (StreamInvocation("1", "target"), 15),
        (StreamInvocation("1", "target", (), ("2",)), 17),
        (CancelInvocation("1"), 6),
        (Ping(), 3),
    ],
)
def test_message_sizes_match_aspnet_core(message: HubMessage, size: int) -> None:
    assert len(encode(message)) == size


# -- our writer's choices ------------------------------------------------------------------------------------------


def test_close_without_allow_reconnect_is_two_elements() -> None:
    """SPEC: AllowReconnect is optional; ``None`` leaves it out so Close() reads back as Close()."""
    assert encode_payload(Close()) == b"\x92\x07\xc0"
    assert encode_payload(Close("bye")) == b"\x92\x07\xa3bye"
    assert decode(b"\x92\x07\xc0") == Close()
    assert decode(b"\x93\x07\xc0\xc0") == Close()  # nil AllowReconnect counts as absent


def test_empty_invocation_id_is_a_non_blocking_invocation() -> None:
    """ASP.NET Core writes nil for an empty invocation id and reads an empty one as none."""
    assert encode_payload(Invocation("m", (), "")) == encode_payload(Invocation("m"))
    assert decode(bytes([0x96, 1, 0x80, 0xA0, 0xA1, ord("m"), 0x90, 0x90])) == Invocation("m")


def test_streamids_are_optional_and_empty_means_none() -> None:
    """Clients before stream uploads send five elements (ASP.NET Core reads StreamIds only when there are more)."""
    assert decode(bytes([0x95, 1, 0x80, 0xC0, 0xA1, ord("m"), 0x90])) == Invocation("m")
    assert decode(bytes([0x95, 4, 0x80, 0xA1, ord("1"), 0xA1, ord("m"), 0x90])) == StreamInvocation("1", "m")
    assert encode_payload(Invocation("m", stream_ids=())).endswith(b"\x90\x90")


def test_headers_map_is_empty_when_none_and_kept_in_order() -> None:
    assert encode_payload(Invocation("m"))[2] == 0x80
    headers = {"b": "2", "a": "1"}
    payload = encode_payload(Invocation("m", headers=headers))
    assert payload[2:11] == b"\x82\xa1b\xa12\xa1a\xa11"
    decoded = decode(payload)
    assert isinstance(decoded, Invocation) and decoded.headers == headers


def test_binary_values_are_bin_both_ways() -> None:
    payload = encode_payload(StreamItem("1", b"\x00\xff"))
    assert payload.endswith(b"\xc4\x02\x00\xff")
    assert decode(payload) == StreamItem("1", b"\x00\xff")


def test_datetimes_are_timestamps_in_utc() -> None:
    """An aware datetime goes out as the timestamp extension; it comes back as the same instant in UTC."""
    paris = datetime(2018, 1, 1, 12, 24, tzinfo=timezone(timedelta(hours=1)))
    payload = encode_payload(StreamItem("1", paris))
    assert payload.endswith(bytes.fromhex("d6ff5a4a1a50"))  # JS_TESTS' Date: the same instant
    decoded = decode(payload)
    assert isinstance(decoded, StreamItem)
    assert decoded.item == JS_DATE and decoded.item.utcoffset() == timedelta(0)
    # Microseconds survive (timestamp 64 carries nanoseconds); before 1970 and after 2514 use timestamp 96.
    for moment in (datetime(2020, 5, 6, 7, 8, 9, 123456, tzinfo=UTC), datetime(1, 1, 1, tzinfo=UTC)):
        assert decode(encode_payload(StreamItem("1", moment))) == StreamItem("1", moment)
    assert decode(encode_payload(StreamItem("1", datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)))) == (
        StreamItem("1", datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC))
    )


@pytest.mark.parametrize(
    "value",
    [
        {1, 2},  # no MessagePack form
        datetime(2020, 1, 1),  # naive: which instant?
        2**64,
        -(2**63) - 1,
        "\ud800",  # no UTF-8 form
        object(),
        complex(1, 2),
    ],
    ids=["set", "naive-datetime", "uint64-overflow", "int64-underflow", "lone-surrogate", "object", "complex"],
)
def test_encode_refuses_values_messagepack_cannot_carry(value: Any) -> None:
    with pytest.raises(ValueError):
        encode(Invocation("m", (value,)))
    with pytest.raises(ValueError):
        encode(Completion.with_result("1", value))


def test_encode_refuses_nesting_deeper_than_the_packer_allows() -> None:
    nested: list[Any] = []
    for _ in range(600):
        nested = [nested]
    with pytest.raises(ValueError):
        encode(StreamItem("1", nested))


def test_a_refused_value_queues_nothing() -> None:
    client = open_client()
    client.data_to_send()
    with pytest.raises(ValueError):
        client.send(Invocation("m", ({1},)))
    assert client.data_to_send() == b""
    client.send(Invocation("m", (1,)))  # nothing of the refused message is left in the encoder either
    assert client.data_to_send() == bytes.fromhex("09 96 01 80 c0 a1 6d 91 01 90")


def test_registered_as_messagepack_binary_version_1() -> None:
    protocol: HubProtocol = MESSAGEPACK
    assert PROTOCOLS["messagepack"] is MESSAGEPACK is protocol_named("messagepack")
    assert (protocol.name, protocol.version, protocol.transfer_format) == ("messagepack", 1, TransferFormat.BINARY)


# -- malformed payloads --------------------------------------------------------------------------------------------


# ASP.NET Core's BaseInvalidPayloads and ArgumentBindingErrors (BASE_TESTS) with their messages. ASP.NET Core reads
# element by element and never checks the array's count, so some of its payloads declare more or fewer elements than
# they hold; ours decode the whole array first, so those are given here with the count corrected (marked "count").
ASPNET_INVALID = [
    ("MessageTypeString", [0x91, 0xA3, *b"foo"], "Reading 'messageType' as Int32 failed."),
    ("HeadersNotAMap", [0x92, 1, 0xA3, *b"foo"], "Reading map length for 'headers' failed."),
    ("HeaderKeyInt (count)", [0x92, 1, 0x81, 0x2A, 0xA3, *b"foo"], "Reading 'headers[0].Key' as String failed."),
    ("HeaderValueInt (count)", [0x92, 1, 0x81, 0xA3, *b"foo", 42], "Reading 'headers[0].Value' as String failed."),
    (
        "HeaderValueArray (count)",
        [0x92, 1, 0x82, 0xA3, *b"foo", 0xA3, *b"foo", 0xA3, *b"fop", 0x90],
        "Reading 'headers[1].Value' as String failed.",
    ),
    ("InvocationMissingId", [0x92, 1, 0x80], "Reading 'invocationId' as String failed."),
    ("InvocationIdBoolean (count)", [0x93, 1, 0x80, 0xC2], "Reading 'invocationId' as String failed."),
    ("InvocationTargetMissing", [0x93, 1, 0x80, 0xA3, *b"abc"], "Reading 'target' as String failed."),
    ("InvocationTargetInt", [0x94, 1, 0x80, 0xA3, *b"abc", 42], "Reading 'target' as String failed."),
    ("StreamInvocationMissingId", [0x92, 4, 0x80], "Reading 'invocationId' as String failed."),
    ("StreamInvocationIdBoolean", [0x93, 4, 0x80, 0xC2], "Reading 'invocationId' as String failed."),
    ("StreamInvocationTargetMissing", [0x93, 4, 0x80, 0xA3, *b"abc"], "Reading 'target' as String failed."),
    ("StreamInvocationTargetInt", [0x94, 4, 0x80, 0xA3, *b"abc", 42], "Reading 'target' as String failed."),
    ("StreamItemMissingId", [0x92, 2, 0x80], "Reading 'invocationId' as String failed."),
    ("StreamItemInvocationIdBoolean", [0x93, 2, 0x80, 0xC2], "Reading 'invocationId' as String failed."),
    ("CompletionMissingId", [0x92, 3, 0x80], "Reading 'invocationId' as String failed."),
    ("CompletionIdBoolean", [0x93, 3, 0x80, 0xC2], "Reading 'invocationId' as String failed."),
    (
        "CompletionResultKindString",
        [0x94, 3, 0x80, 0xA3, *b"xyz", 0xA3, *b"xyz"],
        "Reading 'resultKind' as Int32 failed.",
    ),
    ("CompletionResultKindOutOfRange", [0x94, 3, 0x80, 0xA3, *b"xyz", 42], "Invalid invocation result kind."),
    ("CompletionErrorMissing", [0x94, 3, 0x80, 0xA3, *b"xyz", 0x01], "Reading 'error' as String failed."),
    ("CompletionErrorInt", [0x95, 3, 0x80, 0xA3, *b"xyz", 0x01, 42], "Reading 'error' as String failed."),
    (
        "InvocationArgumentArrayMissing",
        [0x94, 1, 0x80, 0xA3, *b"abc", 0xA3, *b"xyz"],
        "Reading array length for 'arguments' failed.",
    ),
    (
        "InvocationArgumentArrayNotAnArray",
        [0x95, 1, 0x80, 0xA3, *b"abc", 0xA3, *b"xyz", 42],
        "Reading array length for 'arguments' failed.",
    ),
    (
        "StreamInvocationArgumentArrayMissing",
        [0x94, 4, 0x80, 0xA3, *b"abc", 0xA3, *b"xyz"],
        "Reading array length for 'arguments' failed.",
    ),
    (
        "StreamInvocationArgumentArrayNotAnArray",
        [0x95, 4, 0x80, 0xA3, *b"abc", 0xA3, *b"xyz", 42],
        "Reading array length for 'arguments' failed.",
    ),
]


@pytest.mark.parametrize(("name", "payload", "error"), ASPNET_INVALID, ids=[row[0] for row in ASPNET_INVALID])
def test_aspnet_core_invalid_payloads_give_its_messages(name: str, payload: list[int], error: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        decode(bytes(payload))
    assert str(caught.value) == error
    assert type(caught.value) is ProtocolError


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        # ASP.NET Core's own forms of the payloads above whose declared count is wrong: refused as well.
        ([0x92, 1, 0x82, 0x2A, 0xA3, *b"foo"], "Message is not valid MessagePack: Unpack failed: incomplete input."),
        ([0x91, 1, 0x80, 0xC2], "Message has bytes after its MessagePack array."),
        # HeaderKeyArray: an array as a map key.
        (
            [0x92, 1, 0x82, 0xA3, *b"foo", 0xA3, *b"foo", 0x90, 0xA3, *b"foo"],
            "Message is not valid MessagePack: a map key is an array or a map.",
        ),
        # The JS client's "throws for ..." payloads (JS_TESTS), framing removed.
        ([], "Message is not valid MessagePack: Unpack failed: incomplete input."),
        ([0x90], "Reading 'messageType' as Int32 failed."),
        ([0xC2], "Message is not a MessagePack array."),
        ([0x92, 0x01, 0x05], "Reading map length for 'headers' failed."),
        ([0x92, 0x01, 0x80], "Reading 'invocationId' as String failed."),
        ([0x92, 0x02, 0x80], "Reading 'invocationId' as String failed."),
        ([0x93, 0x03, 0x80, 0xA0], "Reading 'resultKind' as Int32 failed."),
        ([0x94, 0x03, 0x80, 0xA0, 0x01], "Reading 'error' as String failed."),
        ([0x94, 0x03, 0x80, 0xA0, 0x03], "Missing 'result' in Completion message."),
    ],
)
def test_other_invalid_payloads(payload: list[int], error: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        decode(bytes(payload))
    assert str(caught.value) == error


def array(*elements: Any) -> bytes:
    packed: bytes = msgpack.packb(list(elements), use_bin_type=True)
    return packed


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (array(True), "Reading 'messageType' as Int32 failed."),
        (array(1.0), "Reading 'messageType' as Int32 failed."),
        (array(None), "Reading 'messageType' as Int32 failed."),
        (array("1"), "Reading 'messageType' as Int32 failed."),
        (msgpack.packb({"type": 1}), "Message is not a MessagePack array."),
        (msgpack.packb("x"), "Message is not a MessagePack array."),
        (msgpack.packb(6), "Message is not a MessagePack array."),
        (array(1, {"a": None}, None, "m", []), "Reading 'headers[0].Value' as String failed."),
        (array(1, {b"a": "b"}, None, "m", []), "Reading 'headers[0].Key' as String failed."),
        (array(1, {}, None, b"m", []), "Reading 'target' as String failed."),
        (array(1, {}, None, None, []), "Reading 'target' as String failed."),
        (array(1, {}, 5, "m", []), "Reading 'invocationId' as String failed."),
        (array(1, {}, None, "m", {}), "Reading array length for 'arguments' failed."),
        (array(1, {}, None, "m", [], "s"), "Reading array length for 'streamIds' failed."),
        (array(1, {}, None, "m", [], ["a", 1]), "Reading 'streamIds[1]' as String failed."),
        (array(4, {}, None, "m", []), "Reading 'invocationId' as String failed."),
        (array(2, {}, "1"), "Missing 'item' in StreamItem message."),
        (array(3, {}, "1", True), "Reading 'resultKind' as Int32 failed."),
        (array(3, {}, "1", 4), "Invalid invocation result kind."),
        (array(3, {}, "1", 0), "Invalid invocation result kind."),
        (array(3, {}, "1", 1, None), "Reading 'error' as String failed."),
        (array(5, {}), "Reading 'invocationId' as String failed."),
        (array(5, {}, None), "Reading 'invocationId' as String failed."),
        (array(5), "Reading map length for 'headers' failed."),
        (array(7), "Reading 'error' as String failed."),
        (array(7, 1), "Reading 'error' as String failed."),
        (array(7, None, "true"), "Reading 'allowReconnect' as Boolean failed."),
        (array(7, None, 1), "Reading 'allowReconnect' as Boolean failed."),
    ],
)
def test_wrong_element_types_name_the_field(payload: bytes, error: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        decode(payload)
    assert str(caught.value) == error


@pytest.mark.parametrize("kind", [0, 8, 9, 10, 127, -1, 2**40, 2**64 - 1])
def test_unknown_message_types(kind: int) -> None:
    """Ack (8) and Sequence (9) are stateful reconnect, not negotiated here: unknown like any newer type."""
    with pytest.raises(UnknownMessageType) as caught:
        decode(array(kind, 36))
    assert caught.value.kind == kind
    assert str(caught.value) == f"Unknown message type '{kind}'."


def test_ack_and_sequence_from_the_spec_are_unknown() -> None:
    for payload in (bytes.fromhex("92 08 cc 24"), bytes.fromhex("92 09 cc 13")):  # SPEC's Ack and Sequence examples
        with pytest.raises(UnknownMessageType):
            decode(payload)


DEEP = b"\x91" * 5000 + b"\x06"


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (b"\xc1", "not valid MessagePack"),  # the one reserved byte
        (b"\x91\x06\x00", "bytes after its MessagePack array"),
        (b"\x91\x06\x91\x06", "bytes after its MessagePack array"),
        (b"\x92\x06", "incomplete input"),
        (DEEP, "nested too deeply"),
        (b"\x92\x02" + b"\x91" * 2000 + b"\xc0", "nested too deeply"),
        # Declared sizes far past the payload: refused before anything is allocated.
        (b"\xdd\xff\xff\xff\xff", "exceeds max_array_len"),
        (b"\xdf\xff\xff\xff\xff", "exceeds max_map_len"),
        (b"\xdb\xff\xff\xff\xff", "not valid MessagePack"),
        (b"\xc6\xff\xff\xff\xff", "not valid MessagePack"),
        (b"\xc9\xff\xff\xff\xff\x05", "exceeds max_ext_len"),
        (b"\x94\x02\x80\xa1\x31\xdd\x7f\xff\xff\xff" + b"\xc0" * 100, "exceeds max_array_len"),
        # Strings must be UTF-8 (raw=False), lone surrogates included.
        (b"\x92\x07\xa1\xff", "not valid UTF-8"),
        (b"\x92\x07\xa3\xed\xa0\x80", "not valid UTF-8"),
        # Extension types: only the timestamp (-1), and only with a valid length and range.
        (b"\x94\x02\x80\xa1\x31\xd4\x05\x00", "extension type 5 is not supported"),
        (b"\x94\x02\x80\xa1\x31\xc7\x00\x01", "extension type 1 is not supported"),
        (b"\x94\x02\x80\xa1\x31\xd4\xff\x00", "not valid MessagePack"),
        (b"\x94\x02\x80\xa1\x31\xc7\x03\xff\x00\x00\x00", "not valid MessagePack"),
        (b"\x94\x02\x80\xa1\x31\xc7\x0c\xff" + b"\x00" * 4 + b"\x7f" + b"\xff" * 7, "timestamp is out of range"),
        (b"\x94\x02\x80\xa1\x31\xc7\x0c\xff" + b"\x00" * 4 + b"\x80" + b"\x00" * 7, "timestamp is out of range"),
        # Map keys Python cannot hash.
        (b"\x94\x02\x80\xa1\x31\x81\x90\x01", "map key is an array or a map"),
        (b"\x94\x02\x80\xa1\x31\x81\x80\x01", "map key is an array or a map"),
    ],
    ids=lambda value: value[:24].hex() if isinstance(value, bytes) else None,
)
def test_hostile_payloads_are_protocol_errors(payload: bytes, error: str) -> None:
    with pytest.raises(ProtocolError, match=error):
        decode(payload)


def test_maps_with_other_scalar_keys_are_values() -> None:
    """A .NET Dictionary<int, …> arrives as a map with integer keys: a value like any other."""
    assert decode(array(2, {}, "1", {1: "a", None: "b", -2: "c"})) == StreamItem("1", {1: "a", None: "b", -2: "c"})


# -- framing --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("length", "prefix"),
    [
        (0, "00"),
        (0x35, "35"),  # SPEC's VarInt examples
        (0x7F, "7f"),
        (0x80, "8001"),
        (0x1480, "8029"),
        (0x3FFF, "ff7f"),
        (0x4000, "808001"),
        (MAX_PAYLOAD_SIZE, "ffffffff07"),
    ],
)
def test_varint_prefix(length: int, prefix: str) -> None:
    if length < 1 << 16:
        assert frame(b"\x00" * length) == bytes.fromhex(prefix) + b"\x00" * length
    reader = LengthPrefixedReader(MAX_PAYLOAD_SIZE)
    assert reader.feed(bytes.fromhex(prefix)) == ([b""] if length == 0 else [])
    assert reader.pending == (0 if length == 0 else len(prefix) // 2)


def test_spec_binary_encoding_example() -> None:
    """SPEC: "Hello\\nWorld" and 01 02 framed back to back (the framing alone, whatever the payloads hold)."""
    data = bytes.fromhex("0b") + b"Hello\nWorld" + bytes.fromhex("02 01 02")
    assert split_messages(data) == [b"Hello\nWorld", b"\x01\x02"]
    assert frame(b"Hello\nWorld") + frame(b"\x01\x02") == data


def test_split_needs_a_complete_buffer() -> None:
    assert split_messages(b"") == []
    with pytest.raises(ProtocolError, match="Cannot read message size"):
        split_messages(b"\x80")
    with pytest.raises(ProtocolError, match="Incomplete message"):
        split_messages(b"\x05\x01")  # BASE_TESTS ParserDoesNotConsumePartialData
    with pytest.raises(ProtocolError, match="Incomplete message"):
        split_messages(PING_MESSAGE + PING_MESSAGE[:-1])
    with pytest.raises(ProtocolError, match="2GB"):
        split_messages(bytes.fromhex("ffffffff08"))


def test_zero_length_message_is_split_and_refused_by_decode() -> None:
    assert split_messages(b"\x00" + PING_MESSAGE) == [b"", b"\x91\x06"]
    with pytest.raises(ProtocolError):
        decode(b"")


@pytest.mark.parametrize(
    "prefix",
    [
        "ffffffff08",  # 2^31: one past the largest length
        "ffffffff0f",
        "ffffffff7f",
        "8080808010",  # 2^32
        "8080808080",  # a continuation bit on the fifth byte
        "808080808000",  # six bytes
        "ffffffffffffffffffff01",
    ],
)
def test_varint_over_five_bytes_or_2gib_is_a_protocol_error(prefix: str) -> None:
    reader = LengthPrefixedReader(MAX_PAYLOAD_SIZE)
    with pytest.raises(ProtocolError, match="2GB") as caught:
        reader.feed(bytes.fromhex(prefix))
    assert not isinstance(caught.value, MessageTooLarge)
    assert reader.pending == 0
    with pytest.raises(ProtocolError):
        split_messages(bytes.fromhex(prefix) + b"\x00" * 16)


def test_non_minimal_varint_is_read_like_aspnet_core() -> None:
    assert split_messages(b"\x82\x00\x91\x06") == [b"\x91\x06"]


def test_reader_refuses_an_oversized_declared_length_from_the_prefix_alone() -> None:
    reader = LengthPrefixedReader(1024)
    with pytest.raises(MessageTooLarge, match="maximum message size of 1024 bytes"):
        reader.feed(frame(b"\x00" * 1025)[:2])  # only the prefix has arrived
    assert reader.pending == 0


def test_reader_refuses_a_huge_declared_length_before_buffering() -> None:
    reader = LengthPrefixedReader(DEFAULT_MAX_MESSAGE_SIZE)
    with pytest.raises(MessageTooLarge):
        reader.feed(bytes.fromhex("ffffffff07") + b"\x00" * 100)
    assert reader.pending == 0


def test_oversized_message_after_good_ones() -> None:
    reader = LengthPrefixedReader(16)
    with pytest.raises(MessageTooLarge):
        reader.feed(PING_MESSAGE + frame(b"\x00" * 17))


def test_message_of_exactly_max_size_passes() -> None:
    payload = encode_payload(StreamItem("1", "x" * 100))
    reader = LengthPrefixedReader(len(payload))
    assert reader.feed(frame(payload)) == [payload]
    with pytest.raises(MessageTooLarge):
        LengthPrefixedReader(len(payload) - 1).feed(frame(payload))


def test_reader_keeps_the_partial_tail() -> None:
    data = encode_many([Invocation("m", ("x" * 300,)), Ping()])
    reader = MESSAGEPACK.reader(DEFAULT_MAX_MESSAGE_SIZE)
    assert reader.feed(data[:1]) == []  # inside the two-byte prefix
    assert reader.pending == 1
    assert reader.feed(data[1:100]) == []
    assert reader.pending == 100
    first, second = split_messages(data)
    assert reader.feed(data[100:-1]) == [first]
    assert reader.pending == 2
    assert reader.feed(data[-1:]) == [second]
    assert reader.pending == 0


def test_a_large_message_in_small_chunks() -> None:
    payload = encode_payload(StreamItem("1", b"\xab" * 500_000))
    data = frame(payload) + PING_MESSAGE
    reader = LengthPrefixedReader(DEFAULT_MAX_MESSAGE_SIZE)
    out: list[bytes] = []
    for start in range(0, len(data), 1000):
        out += reader.feed(data[start : start + 1000])
    assert out == [payload, b"\x91\x06"]
    assert reader.pending == 0


def test_default_max_message_size_is_1_mb() -> None:
    assert LengthPrefixedReader().max_message_size == DEFAULT_MAX_MESSAGE_SIZE == 1024 * 1024


def test_frame_refuses_2gib() -> None:
    class Huge(bytes):
        def __len__(self) -> int:
            return MAX_PAYLOAD_SIZE + 1

    with pytest.raises(ValueError, match="cannot exceed"):
        frame(Huge())


# -- round trips ----------------------------------------------------------------------------------------------------

_ids = st.text(min_size=1, max_size=12)
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=20)
    | st.datetimes(timezones=st.just(UTC))
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8) | st.integers(-100, 100), inner, max_size=4)
    ),
    max_leaves=12,
)
_arguments = st.lists(_values, max_size=4).map(tuple)
_stream_ids = st.none() | st.lists(_ids, min_size=1, max_size=3).map(tuple)
_headers = st.none() | st.dictionaries(st.text(min_size=1, max_size=8), st.text(max_size=8), min_size=1, max_size=3)

messages: st.SearchStrategy[HubMessage] = st.one_of(
    st.builds(Invocation, st.text(max_size=12), _arguments, st.none() | _ids, _stream_ids, _headers),
    st.builds(StreamItem, _ids, _values),
    st.builds(Completion, _ids),
    st.builds(Completion.with_result, _ids, _values),
    st.builds(Completion.with_error, _ids, st.text(max_size=20)),
    st.builds(StreamInvocation, _ids, st.text(max_size=12), _arguments, _stream_ids),
    st.builds(CancelInvocation, _ids),
    st.just(Ping()),
    st.builds(Close, st.none() | st.text(max_size=20), st.none() | st.booleans()),
)


def same(a: Any, b: Any) -> bool:
    """Equal, and of the same types all the way down (True is not 1, b"" is not "")."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return bool(a == b)


@settings(max_examples=300, deadline=None)
@given(messages)
def test_round_trip_any_message(message: HubMessage) -> None:
    framed = encode(message)
    (payload,) = split_messages(framed)
    decoded = decode(payload)
    assert decoded == message
    for field in ("arguments", "item", "result"):
        if hasattr(message, field):
            assert same(getattr(decoded, field), getattr(message, field))
    if isinstance(message, Invocation):
        assert isinstance(decoded, Invocation) and decoded.headers == message.headers


@settings(max_examples=100, deadline=None)
@given(st.lists(messages, min_size=1, max_size=6), st.lists(st.integers(min_value=0, max_value=10_000), max_size=8))
def test_any_split_of_a_stream_yields_the_same_messages(batch: list[HubMessage], cuts: list[int]) -> None:
    data = encode_many(batch)
    whole = MESSAGEPACK.reader(DEFAULT_MAX_MESSAGE_SIZE).feed(data)
    assert whole == split_messages(data)
    bounds = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    reader = MESSAGEPACK.reader(DEFAULT_MAX_MESSAGE_SIZE)
    pieces: list[bytes] = []
    for start, end in itertools.pairwise(bounds):
        pieces += reader.feed(data[start:end])
    assert pieces == whole
    assert reader.pending == 0
    by_byte = MESSAGEPACK.reader(DEFAULT_MAX_MESSAGE_SIZE)
    assert [p for i in range(len(data)) for p in by_byte.feed(data[i : i + 1])] == whole
    assert [decode(p) for p in whole] == batch


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_decode_or_raise_protocol_error(data: bytes) -> None:
    try:
        decode(data)
    except ProtocolError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=10))
def test_arbitrary_chunks_split_or_raise_protocol_error(chunks: list[bytes]) -> None:
    reader = LengthPrefixedReader(64)
    try:
        for chunk in chunks:
            for payload in reader.feed(chunk):
                assert len(payload) <= 64
    except ProtocolError:
        assert reader.pending == 0


# -- a client and a server speaking MessagePack ----------------------------------------------------------------------

HANDSHAKE = b'{"protocol":"messagepack","version":1}\x1e'


def open_client() -> ClientProtocol:
    client = ClientProtocol(MESSAGEPACK)
    client.handshake()
    assert client.data_to_send() == HANDSHAKE
    assert client.receive_data(b"{}\x1e") == [HandshakeCompleted("messagepack", 1)]
    return client


def connected() -> tuple[ClientProtocol, ServerProtocol]:
    client = ClientProtocol(MESSAGEPACK)
    server = ServerProtocol()
    client.handshake()
    hello = client.data_to_send()
    assert hello == HANDSHAKE
    assert server.receive_data(hello) == [HandshakeCompleted("messagepack", 1)]
    assert server.protocol is MESSAGEPACK
    reply = server.data_to_send()
    assert reply == b"{}\x1e"
    assert client.receive_data(reply) == [HandshakeCompleted("messagepack", 1)]
    assert client.state is State.OPEN and server.state is State.OPEN
    return client, server


def test_client_and_server_exchange_binary_messages() -> None:
    client, server = connected()
    call = Invocation("broadcastMessage", ("alice", b"\x00\x01", datetime(2024, 2, 29, tzinfo=UTC)), "0")
    client.send(call)
    wire = client.data_to_send()
    assert wire == frame(encode_payload(call))
    assert wire[0] == len(wire) - 1 and wire[1] == 0x96  # a one-byte length, then the 6-element array; no 0x1E
    assert server.receive_data(wire) == [MessageReceived(call)]

    server.send(StreamItem("0", {"n": 1}))
    server.send(Completion.with_result("0", [1, 2]))
    server.send_ping()
    out = server.data_to_send()
    assert out.endswith(b"\x02\x91\x06")
    assert client.receive_data(out) == [
        MessageReceived(StreamItem("0", {"n": 1})),
        MessageReceived(Completion.with_result("0", [1, 2])),
        MessageReceived(Ping()),
    ]


def test_messages_in_the_same_buffer_as_the_handshake() -> None:
    client = ClientProtocol(MESSAGEPACK)
    server = ServerProtocol()
    client.handshake()
    client_bytes = client.data_to_send()
    events = server.receive_data(client_bytes + encode(Invocation("a")) + encode(Invocation("b")))
    assert events == [
        HandshakeCompleted("messagepack", 1),
        MessageReceived(Invocation("a")),
        MessageReceived(Invocation("b")),
    ]
    server.send(Invocation("c"))
    assert client.receive_data(server.data_to_send()) == [
        HandshakeCompleted("messagepack", 1),
        MessageReceived(Invocation("c")),
    ]


def test_client_skips_an_unknown_message_type() -> None:
    client, _server = connected()
    ack = frame(bytes.fromhex("92 08 cc 24"))  # SPEC's Ack: stateful reconnect, never negotiated here
    newer = frame(array(42, {}, "future"))
    events = client.receive_data(ack + newer + encode(StreamItem("1", 2)))
    assert events == [MessageReceived(StreamItem("1", 2))]
    assert client.state is State.OPEN
    assert client.data_to_send() == b""


def test_server_closes_on_an_unknown_message_type_with_a_messagepack_close() -> None:
    _client, server = connected()
    events = server.receive_data(frame(bytes.fromhex("92 08 cc 24")))
    assert events == [ConnectionClosed("Unknown message type '8'.", by_peer=False)]
    assert server.state is State.CLOSED
    out = server.data_to_send()
    assert split_messages(out) == [msgpack.packb([7, "Unknown message type '8'."])]
    assert decode(split_messages(out)[0]) == Close("Unknown message type '8'.")


def test_server_closes_on_a_malformed_message_with_the_field_named() -> None:
    _client, server = connected()
    events = server.receive_data(frame(array(1, {}, None, 42, [])))
    assert events == [ConnectionClosed("Reading 'target' as String failed.", by_peer=False)]
    assert decode(split_messages(server.data_to_send())[0]) == Close("Reading 'target' as String failed.")


def test_server_closes_on_an_oversized_declared_length() -> None:
    client = ClientProtocol(MESSAGEPACK)
    server = ServerProtocol(max_message_size=64)
    client.handshake()
    server.receive_data(client.data_to_send())
    server.data_to_send()
    events = server.receive_data(frame(b"\x00" * 65)[:1])
    assert len(events) == 1 and isinstance(events[0], ConnectionClosed)
    assert "maximum message size of 64 bytes" in (events[0].error or "")
    (payload,) = split_messages(server.data_to_send())
    assert isinstance(decode(payload), Close)


def test_close_from_the_server_reaches_the_client_with_allow_reconnect() -> None:
    client, server = connected()
    server.send(Close("restarting", True))
    assert client.receive_data(server.data_to_send()) == [ConnectionClosed("restarting", True, True)]
    assert client.state is State.CLOSED


def test_a_text_only_transport_refuses_messagepack_at_the_handshake() -> None:
    server = ServerProtocol(transfer_formats=frozenset({TransferFormat.TEXT}))
    error = (
        "Cannot use the 'messagepack' protocol on the current transport. "
        "The transport does not support 'Binary' transfer format."
    )
    assert server.receive_data(HANDSHAKE) == [HandshakeFailed(error)]
    assert server.data_to_send() == b'{"error":"' + error.encode() + b'"}\x1e'


def test_a_json_server_refuses_messagepack() -> None:
    from signalr.json_protocol import JSON

    server = ServerProtocol(protocols={"json": JSON})
    assert server.receive_data(HANDSHAKE) == [HandshakeFailed("The protocol 'messagepack' is not supported.")]
