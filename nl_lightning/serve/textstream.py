"""``TextStream``: generated token ids -> text pieces to stream, cut at the first stop string.

Concatenated, the pieces are exactly the text of the whole answer: that is what a non-streamed
request returns, so streamed and non-streamed answers agree. A piece never ends inside a
multi-byte character (a byte vocabulary or byte-level BPE can stop mid-character: decoding then
ends in U+FFFD, held back until the next token completes it) nor inside what may become a stop
string (held back until it is one, and then dropped, as OpenAI drops it).
"""

from __future__ import annotations

from collections.abc import Sequence

from nl_lightning.data.tokenizer import TextCodec

REPLACEMENT = "\ufffd"


class TextStream:
    """Feed one token at a time with ``push``; ``finish`` flushes what was held back."""

    def __init__(self, codec: TextCodec, stop: Sequence[str] = ()) -> None:
        self.codec = codec
        self.stop = tuple(s for s in stop if s)
        self.ids: list[int] = []
        self.sent = 0  # characters of the decoded text already emitted
        self.stopped = False
        """True once a stop string appeared: the answer ends before it."""

    def push(self, token: int) -> str:
        """The text that may be sent now that ``token`` was generated ("" while held back)."""
        self.ids.append(token)
        text = self.codec.decode(self.ids)
        cut = self._stop_at(text)
        if cut is not None:
            self.stopped = True
            return self._emit(text, cut)
        safe = len(text.rstrip(REPLACEMENT))  # an unfinished character decodes to U+FFFD
        safe -= self._partial_stop(text[:safe])
        return self._emit(text, safe)

    def finish(self) -> str:
        """Everything not sent yet (nothing after a stop string)."""
        if self.stopped:
            return ""
        return self._emit(self.codec.decode(self.ids), None)

    def _emit(self, text: str, end: int | None) -> str:
        end = len(text) if end is None else end
        piece = text[self.sent:end] if end > self.sent else ""
        self.sent = max(self.sent, end)
        return piece

    def _stop_at(self, text: str) -> int | None:
        """Where the first stop string starts in ``text`` (searching only what could be new)."""
        longest = max((len(s) for s in self.stop), default=0)
        start = max(0, self.sent - longest)
        found = [i for i in (text.find(s, start) for s in self.stop) if i >= 0]
        return min(found) if found else None

    def _partial_stop(self, text: str) -> int:
        """Length of the longest end of ``text`` that begins a stop string (held back for now)."""
        for size in range(min(len(text), max((len(s) for s in self.stop), default=1) - 1), 0, -1):
            if any(s.startswith(text[-size:]) for s in self.stop):
                return size
        return 0
