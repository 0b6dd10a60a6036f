"""RFC 6455 frames a server sends, built once and shared.

An event goes to every subscriber as the same bytes: a server's frames are
not masked and drpd negotiates no extension (no per-connection compression),
so the frame of an event is made once (``bus.Entry.frame``) instead of once
per subscriber. Everything else of the protocol (the handshake, parsing what
clients send, close and ping) is wsproto's.
"""

from __future__ import annotations

__all__ = ["text_frame"]

#: FIN + opcode 1 (text)
_TEXT = 0x81


def text_frame(payload: bytes) -> bytes:
    """One final, unmasked text frame carrying ``payload`` (UTF-8 already)."""
    n = len(payload)
    if n < 126:
        header = bytes((_TEXT, n))
    elif n < 1 << 16:
        header = bytes((_TEXT, 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((_TEXT, 127)) + n.to_bytes(8, "big")
    return header + payload
