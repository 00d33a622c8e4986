"""Refusing secrets that only look long: a token of one repeated character, a key of one byte.

Length alone says little: `API_TOKEN='a'*32` passes a length check and falls to the first
guess. These checks catch what a person types instead of generating (repeats, few distinct
characters); a generated secret (`tango-resend gen-secret`, `secrets.token_urlsafe(32)`) passes
them with a margin so large that a false refusal never happens in practice.
"""

from __future__ import annotations

# A generated 32-character token holds about 25 distinct characters; a hex token of 32, about
# 14. Fewer than this many betrays a typed pattern.
MIN_DISTINCT_CHARACTERS = 8
# A 16-byte random key holds about 15.5 distinct bytes; fewer than this is no random key.
MIN_DISTINCT_KEY_BYTES = 8

GENERATE_TOKEN_HINT = "make one with `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"


def _period(text: str | bytes) -> int:
    """The length of the shortest unit whose repetition makes `text` (its own length if none)."""
    for size in range(1, len(text) // 2 + 1):
        if len(text) % size == 0 and text[:size] * (len(text) // size) == text:
            return size
    return len(text)


def weak_token_reason(token: str) -> str | None:
    """Why `token` is too easy to guess for a bearer token, or None when it is not."""
    if len(set(token)) < MIN_DISTINCT_CHARACTERS:
        return f"holds fewer than {MIN_DISTINCT_CHARACTERS} distinct characters"
    if _period(token) < len(token):
        return "is one short piece repeated"
    return None


def weak_key_reason(key: bytes) -> str | None:
    """Why an HMAC key (a webhook secret's bytes) is too easy to guess, or None."""
    if len(set(key)) < MIN_DISTINCT_KEY_BYTES:
        return f"has a key of fewer than {MIN_DISTINCT_KEY_BYTES} distinct bytes"
    if _period(key) < len(key):
        return "has a key that is one short piece repeated"
    return None
