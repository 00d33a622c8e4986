"""A corpus of hostile input: bad order ids, emails, phones, template ids, delivery methods and
webhook bodies. Every entry must be refused with a message naming the field; none may reach
Redis, a worker or Tango.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

GOOD_ORDER = "RA251205-6001-01"


@dataclass(frozen=True)
class FieldCase:
    """One bad value for one field of a resend request (Tango's field name)."""

    field: str
    value: Any
    why: str

    @property
    def fields(self) -> dict[str, Any]:
        base: dict[str, Any] = {"referenceOrderID": GOOD_ORDER}
        base[self.field] = self.value
        return base

    @property
    def id(self) -> str:
        return f"{self.field}:{self.why}"


@dataclass(frozen=True)
class BodyCase:
    """A raw webhook body and the statuses that refuse it properly."""

    body: bytes
    why: str
    statuses: tuple[int, ...] = (400, 422)


HUGE = "A" * 100_000
WRONG_TYPES: list[tuple[Any, str]] = [
    (0, "int"),
    (1.5, "float"),
    (True, "bool"),
    (["x"], "list"),
    ({"a": "b"}, "object"),
    (b"RA251205-6001-01", "bytes"),
    (float("nan"), "nan"),
    (float("inf"), "inf"),
    (10**40, "huge-int"),
]

ORDER_IDS: list[tuple[Any, str]] = [
    ("", "empty"),
    (" ", "space"),
    ("RA251205-6001-01/../../admin", "path-traversal"),
    ("../RA251205-6001-01", "leading-traversal"),
    ("RA251205-6001-01/..", "trailing-traversal"),
    ("..%2fRA251205-6001-01", "encoded-traversal"),
    ("RA251205-6001-01%2f..%2f..", "encoded-traversal-suffix"),
    ("%2e%2e/%2e%2e/etc/passwd", "encoded-dots"),
    ("RA251205-6001-01?admin=1", "query"),
    ("RA251205-6001-01#frag", "fragment"),
    ("RA251205-6001-01/resends", "extra-segment"),
    ("RA251205-6001-01;x=1", "matrix-param"),
    ("RA251205-6001-01\r\nX-Injected: 1", "crlf"),
    ("RA251205-6001-01\n", "trailing-newline"),
    ("\nRA251205-6001-01", "leading-newline"),
    ("RA251205-6001-01\x00", "nul"),
    ("RA251205\x00-6001-01", "inner-nul"),
    ("RA251205-6001-01\t", "tab"),
    (" RA251205-6001-01", "leading-space"),
    ("RA251205-6001-01 ", "trailing-space"),
    ("ra251205-6001-01", "lower-case"),
    ("Ra251205-6001-01", "mixed-case"),
    ("\u0420\u0410251205-6001-01", "cyrillic-ra"),
    ("R\u0410251205-6001-01", "cyrillic-a"),
    ("\uff32\uff21251205-6001-01", "fullwidth-ra"),
    ("RA\uff12\uff15\uff11\uff12\uff10\uff15-6001-01", "fullwidth-digits"),
    ("RA\u0662\u0665\u0661\u0662\u0660\u0665-6001-01", "arabic-indic-digits"),
    ("RA\u00b2\u00b5\u00b9\u00b2\u2070\u2075-6001-01", "superscripts"),
    ("RA251205\u20106001\u201001", "unicode-hyphens"),
    ("RA251205\u22126001\u221201", "minus-signs"),
    ("RA251205-6001-01\u200b", "zero-width-space"),
    ("\u202eRA251205-6001-01", "rtl-override"),
    ("\ufeffRA251205-6001-01", "bom"),
    ("RA251205-6001-01\u0301", "combining-accent"),
    ("RA25120-6001-01", "short-date"),
    ("RA2512050-6001-01", "long-date"),
    ("RA251205--6001-01", "double-dash"),
    ("RA251205-6001", "missing-part"),
    ("RA251205-6001-01-02", "extra-part"),
    ("RA251205-12345678901-01", "part-too-long"),
    ("RA251205-6001-", "empty-part"),
    ("RA251205_6001_01", "underscores"),
    ("RB251205-6001-01", "wrong-prefix"),
    ("XRA251205-6001-01", "prefix-garbage"),
    ("RA251205-6001-01' OR '1'='1", "sql"),
    ('{"referenceOrderID": "RA251205-6001-01"}', "json-in-string"),
    ("${jndi:ldap://127.0.0.1/a}", "jndi"),
    ("<script>alert(1)</script>", "html"),
    ("RA251205-6001-01\U0001f600", "emoji"),
    ("RA251205-6001-01" * 3, "repeated"),
    (HUGE, "huge-100k"),
    ("R" + "A" * 39, "exactly-40-garbage"),
    *WRONG_TYPES,
    (None, "null"),
]

EMAILS: list[tuple[Any, str]] = [
    ("", "empty"),
    ("plainaddress", "no-at"),
    ("@example.com", "no-local"),
    ("pat@", "no-domain"),
    ("pat@@example.com", "double-at"),
    ("pat@example@example.com", "two-ats"),
    ("pat@example", "no-tld"),
    ("pat@localhost", "localhost"),
    ("pat@[127.0.0.1]", "ip-literal"),
    ("pat@127.0.0.1", "bare-ip"),
    ("pat doe@example.com", "space-local"),
    ("pat@exa mple.com", "space-domain"),
    ("pat@example.com\r\nBcc: victim@example.com", "crlf-bcc"),
    ("pat@example.com\nBcc: victim@example.com", "lf-bcc"),
    ("pat@example.com%0d%0aBcc:victim@example.com", "encoded-crlf"),
    ("pat@example.com\n", "trailing-newline"),
    ("pat\x00@example.com", "nul"),
    ("pat@example.com\x00", "trailing-nul"),
    ("pat@example.com\t", "tab"),
    ("pat@example.com,eve@example.com", "comma-list"),
    ("pat@example.com;eve@example.com", "semicolon-list"),
    ("Pat <pat@example.com>", "display-name"),
    ('"pat"@example.com', "quoted-local"),
    ('"pat doe"@example.com', "quoted-space"),
    ("mailto:pat@example.com", "mailto"),
    ("pat@example..com", "double-dot-domain"),
    ("pat..doe@example.com", "double-dot-local"),
    (".pat@example.com", "leading-dot"),
    ("pat.@example.com", "trailing-dot-local"),
    ("pat@-example.com", "leading-hyphen-label"),
    ("pat@example.com.", "trailing-dot-domain"),
    ("p\u0430t@example.com", "cyrillic-local"),
    ("p\u00e4t@example.com", "smtputf8-local"),
    ("pat@example.com\u200b", "zero-width-space"),
    ("pat@exa\u200bmple.com", "inner-zero-width"),
    ("\u202epat@example.com", "rtl-override"),
    ("pat\uff20example.com", "fullwidth-at"),
    ("<script>@example.com", "html"),
    ("pat@example.com' OR '1'='1", "sql"),
    ("a" * 250 + "@example.com", "over-254"),
    ("pat@" + "a" * 64 + ".com", "label-64"),
    (HUGE + "@example.com", "huge-100k"),
    *WRONG_TYPES,
]

PHONES: list[tuple[Any, str]] = [
    ("", "empty"),
    ("+", "plus-only"),
    ("14155550123", "no-plus"),
    ("+1 415 555 0123", "spaces"),
    ("+1-415-555-0123", "dashes"),
    ("+1(415)5550123", "parens"),
    ("+1415555O123", "letter-o"),
    ("+1234567", "too-short"),
    ("+1234567890123456", "too-long"),
    ("+04155550123", "zero-country"),
    ("+10000000000", "not-a-number"),
    ("+14155550123\r\n", "crlf"),
    ("+14155550123\n", "trailing-newline"),
    ("+14155550123\x00", "nul"),
    (" +14155550123", "leading-space"),
    ("tel:+14155550123", "tel-uri"),
    ("+1\u0664\u0661\u0665\u0665\u0665\u0665\u0660\u0661\u0662\u0663", "arabic-indic"),
    ("+\uff11\uff14\uff11\uff15\uff15\uff15\uff15\uff10\uff11\uff12\uff13", "fullwidth"),
    ("\uff0b14155550123", "fullwidth-plus"),
    ("+14155550123\u200b", "zero-width"),
    ("++14155550123", "double-plus"),
    ("+14155550123,+14155550124", "two-numbers"),
    ("+14155550123;ext=1", "extension"),
    ("+1" + "5" * 40, "forty-digits"),
    ("+" + "1" * 100_000, "huge"),
    ("<script>", "html"),
    *WRONG_TYPES,
]

ETIDS: list[tuple[Any, str]] = [
    ("", "empty"),
    ("E", "letter-only"),
    ("e000000", "lower-case"),
    ("E00000", "five-digits"),
    ("E0000000", "seven-digits"),
    ("E000000\n", "trailing-newline"),
    ("E000000\x00", "nul"),
    (" E000000", "leading-space"),
    ("E-000000", "dash"),
    ("../E000000", "traversal"),
    ("E00000\uff10", "fullwidth-digit"),
    ("\u0415000000", "cyrillic-e"),
    ("E\u0660\u0660\u0660\u0660\u0660\u0660", "arabic-indic"),
    ("X000000", "wrong-letter"),
    ("E000000;drop", "suffix"),
    ("E" + "0" * 100_000, "huge"),
    *WRONG_TYPES,
]

METHODS: list[tuple[Any, str]] = [
    ("", "empty"),
    ("email", "lower-case"),
    ("Email", "title-case"),
    ("SMS", "sms"),
    ("FAX", "fax"),
    ("POST", "post"),
    ("EMAIL ", "trailing-space"),
    ("EMAIL\n", "trailing-newline"),
    ("EMAIL\x00", "nul"),
    ("\u0415MAIL", "cyrillic-e"),
    ("\uff25\uff2d\uff21\uff29\uff2c", "fullwidth"),
    ("EMAIL,PHONE", "two-methods"),
    ("EMAIL|PHONE", "regex-like"),
    ("DeliveryMethod.EMAIL", "enum-repr"),
    ("__class__", "dunder"),
    ("EMAIL" * 20_000, "huge"),
    *WRONG_TYPES,
]

FIELD_CASES: list[FieldCase] = [
    FieldCase(field, value, why)
    for field, values in (
        ("referenceOrderID", ORDER_IDS),
        ("newEmail", EMAILS),
        ("newMobile", PHONES),
        ("newEtid", ETIDS),
        ("newDeliveryMethod", METHODS),
    )
    for value, why in values
]


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


_nested_value = {"referenceOrderID": GOOD_ORDER, "newEmail": [[[[[[["pat@example.com"]]]]]]]}
BODY_CASES: list[BodyCase] = [
    BodyCase(b"", "empty-body"),
    BodyCase(b" ", "blank"),
    BodyCase(b"null", "null"),
    BodyCase(b"[]", "array"),
    BodyCase(b'["RA251205-6001-01"]', "array-of-id"),
    BodyCase(b'"RA251205-6001-01"', "string"),
    BodyCase(b"1", "number"),
    BodyCase(b"true", "bool"),
    BodyCase(b"{", "truncated"),
    BodyCase(b'{"referenceOrderID": "RA251205-6001-01"', "unclosed"),
    BodyCase(b"{]", "mismatched"),
    BodyCase(b"{'referenceOrderID': 'RA251205-6001-01'}", "single-quotes"),
    BodyCase(b'{"referenceOrderID": "RA251205-6001-01",}', "trailing-comma"),
    BodyCase(b"\x00\x00\x00", "nul-bytes"),
    BodyCase(b"\xff\xfe\xfa", "not-utf8"),
    BodyCase(b'{"referenceOrderID": "\xff"}', "invalid-utf8-in-string"),
    BodyCase(b"<html><body>hi</body></html>", "html"),
    BodyCase(b"referenceOrderID=RA251205-6001-01", "form-encoded"),
    BodyCase(b"{}", "empty-object"),
    BodyCase(_json({"referenceOrderID": None}), "null-id"),
    BodyCase(_json({"newEmail": "pat@example.com"}), "missing-id"),
    BodyCase(_json({"referenceOrderID": GOOD_ORDER, "extra": 1}), "extra-field"),
    BodyCase(_json({"referenceOrderID": GOOD_ORDER, "__proto__": {"a": 1}}), "proto"),
    BodyCase(_json({"referenceOrderID": GOOD_ORDER, "constructor": "x"}), "constructor"),
    BodyCase(_json({"referenceOrderID": GOOD_ORDER, "newemail": "pat@example.com"}), "case"),
    BodyCase(_json({"referenceOrderID": GOOD_ORDER, "x" * 60_000: 1}), "huge-key"),
    BodyCase(_json({"referenceOrderID": GOOD_ORDER, "\ud800": 1}), "surrogate-key"),
    BodyCase(b'{"referenceOrderID": "\\ud800"}', "surrogate-value"),
    BodyCase(b'{"referenceOrderID": "RA251205-6001-01\\u0000"}', "escaped-nul"),
    BodyCase(b'{"referenceOrderID": "RA251205-6001-01\\r\\nX: 1"}', "escaped-crlf"),
    BodyCase(b'{"referenceOrderID": NaN}', "nan"),
    BodyCase(b'{"referenceOrderID": Infinity}', "infinity"),
    BodyCase(b'{"referenceOrderID": 1' + b"0" * 5000 + b"}", "int-over-4300-digits"),
    BodyCase(b'{"referenceOrderID": 1e999}', "float-overflow"),
    BodyCase(b"[" * 50_000 + b"]" * 50_000, "deep-array", (400, 413, 422)),
    BodyCase(b'{"a":' * 10_000 + b"1" + b"}" * 10_000, "deep-object"),
    BodyCase(_json(_nested_value), "nested-value"),
    BodyCase(_json({"referenceOrderID": {"$ne": ""}}), "operator-injection"),
    BodyCase(_json({"referenceOrderID": [GOOD_ORDER, GOOD_ORDER]}), "id-list"),
    BodyCase(
        _json({"referenceOrderID": GOOD_ORDER, "newEmail": "pat@example.com\r\nBcc: x@y.z"}),
        "crlf-email",
    ),
    BodyCase(_json({"referenceOrderID": GOOD_ORDER, "pad": "x" * 70_000}), "over-64k", (413,)),
    BodyCase(b" " * 70_000, "whitespace-over-64k", (413,)),
    *(
        BodyCase(_json(case.fields), f"field:{case.id}")
        for case in FIELD_CASES[::7]
        if not isinstance(case.value, bytes)
    ),
]
