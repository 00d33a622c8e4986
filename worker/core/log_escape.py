"""Control characters out of log lines: no field of a record can start a line of its own.

An id in a URL path (`x%0A[2026-12-05 ...: INFO...]`), a header, or Tango's message reaches
log lines verbatim; a newline in it would print a second, forged line. Every control
character (C0, DEL, C1), the Unicode line and paragraph separators and the bidirectional
overrides are written as `\\xNN` or `\\uNNNN` instead. A traceback keeps its own line breaks,
but every line after its first is indented, so that only the first line of a record ever
starts at the left margin.
"""

from __future__ import annotations

# C0, DEL, C1, the line and paragraph separators, and the bidirectional overrides (which
# can make a line read in another order than it was written).
_CONTROL = [
    *range(0x00, 0x20),
    0x7F,
    *range(0x80, 0xA0),
    0x2028,
    0x2029,
    *range(0x202A, 0x202F),
    *range(0x2066, 0x206A),
]
_ESCAPES = {code: (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}") for code in _CONTROL}
_ESCAPES_KEEPING_LINES = {code: text for code, text in _ESCAPES.items() if code != 0x0A}
TRACEBACK_INDENT = "    "


def escape_controls(text: str) -> str:
    """`text` on one line: each control character written as its escape."""
    return text.translate(_ESCAPES)


def escape_multiline(text: str) -> str:
    """A traceback's text: control characters escaped but for its line breaks, and each line
    after the first indented."""
    return text.translate(_ESCAPES_KEEPING_LINES).replace("\n", "\n" + TRACEBACK_INDENT)
