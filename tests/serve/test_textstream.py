"""TextStream: pieces that add up to the decoded answer, never splitting a character or a stop string."""

from __future__ import annotations

import pytest

from nl_lightning.data.tokenizer import BYTES, load_codec
from nl_lightning.serve.textstream import TextStream


def pieces(stream: TextStream, ids: list[int]) -> list[str]:
    out = [stream.push(i) for i in ids]
    return out + [stream.finish()]


@pytest.mark.parametrize("text", ["plain ascii", "Grüße — 日本語 🎉", "é"])
def test_bytes_pieces_add_up_and_never_end_inside_a_character(text):
    got = pieces(TextStream(BYTES), list(text.encode()))
    assert "".join(got) == text and not any("\ufffd" in p for p in got)


def test_a_stop_string_across_tokens_is_cut_and_not_sent():
    stream = TextStream(BYTES, stop=["\n\n", "END"])
    got = pieces(stream, list(b"one\ntwo\n\nthree"))
    assert "".join(got) == "one\ntwo" and stream.stopped
    assert got[3] == "" and got[4] == "\nt"  # the first "\n" is held until the next byte shows it is no stop
    stream = TextStream(BYTES, stop=["END"])
    assert "".join(pieces(stream, list(b"the ENDING"))) == "the " and stream.stopped


def test_an_unfinished_character_at_the_end_is_flushed_as_the_decoder_writes_it():
    assert "".join(pieces(TextStream(BYTES), [0xE6, 0x97])) == BYTES.decode([0xE6, 0x97]) == "\ufffd"


def test_a_tokenizers_pieces_add_up_to_its_decode(trained_tokenizer):
    codec = load_codec(trained_tokenizer)
    text = "Grüße, naïve café — 日本語のテキスト and emoji 🎉"
    ids = codec.encode(text)
    got = pieces(TextStream(codec), ids)
    assert "".join(got) == codec.decode(ids) == text and not any("\ufffd" in p for p in got)
