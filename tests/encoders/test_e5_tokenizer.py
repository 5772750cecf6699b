"""The Unigram tokenizer built from a file's pieces and scores: exact ids for a
hand-made vocabulary, agreement with a plain-Python SentencePiece Viterbi on
random strings, the file's normaliser reproduced for every code point, and the
saved folder loading as a fast tokenizer."""
import random

import pytest

from spacy_mlre.encoders.e5_file import E5Vocab
from spacy_mlre.encoders.tokenizer import (
    PLACEHOLDERS,
    build_normalizer,
    build_tokenizer,
    normalise_code_points,
    normaliser_overrides,
    save_tokenizer,
)

from e5_testing import MAP_CHANGES, PIECES, reference_unigram, tiny_normaliser, tiny_scores


@pytest.fixture(scope="module")
def vocab():
    return E5Vocab(PIECES, tiny_scores(PIECES), bos=0, eos=2, pad=1, unk=3, normaliser=tiny_normaliser())


@pytest.fixture(scope="module")
def overrides(vocab):
    return normaliser_overrides(vocab.normaliser)


@pytest.fixture(scope="module")
def tokenizer(vocab, overrides):
    return build_tokenizer(vocab, overrides)


def test_overrides_are_where_the_map_departs_from_nfkc(overrides):
    assert overrides == MAP_CHANGES


def test_normaliser_follows_the_map_for_every_code_point(tokenizer):
    """All but the two noncharacters that carry the overrides past NFKC."""
    code_points = [cp for cp in range(1, 0x110000) if not 0xD800 <= cp < 0xE000]
    got = normalise_code_points(tokenizer.normalizer, code_points)
    mapping = tiny_normaliser()
    wrong = {cp: g for cp, g in zip(code_points, got) if g != mapping.get(cp, chr(cp))}
    assert wrong == {ord(PLACEHOLDERS[0]): "u", ord(PLACEHOLDERS[1]): "～"}


def test_too_many_overrides_are_returned_not_dropped_silently():
    overrides = {0x4E00 + i: "x" for i in range(100)}
    _, left_over = build_normalizer(overrides)
    assert len(left_over) == 100 - 66


@pytest.mark.parametrize("text, ids", [
    ("abc", [0, 8, 2]),  # ▁abc beats ▁ab + c
    ("the abc", [0, 5, 8, 2]),
    ("xy", [0, 16, 2]),
    ("stop.", [0, 36, 43, 2]),
    ("～", [0, 4, 24, 2]),  # the map keeps the fullwidth tilde (NFKC alone would give "~" = 25)
    ("µ", [0, 4, 3, 2]),  # the map's "u" is not a piece: unknown
    ("cafe\u0301", [0, 30, 2]),  # NFKC composes é
    ("①", [0, 28, 2]),  # NFKC: "1", as "▁1"
    ("ＡＢＣ qq", [0, 4, 3, 4, 3, 2]),  # consecutive unknowns fuse, as in SentencePiece
    ("  a\tb  ", [0, 6, 4, 10, 4, 2]),  # tab -> space, runs collapsed, "▁" kept where spaces were
    ("der über-", [0, 18, 22, 45, 2]),
])
def test_pinned_ids(tokenizer, text, ids):
    assert tokenizer.encode(text).ids == ids


def test_agrees_with_reference_viterbi(tokenizer, vocab):
    rng = random.Random(0)
    alphabet = list("abcxyrdeüst op.,-") + ["～", "~", "配", "1", "é", "q", "µ", "①", "Ａ", "  ", "\t"]
    for _ in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 14)))
        want = reference_unigram(text, vocab.pieces, vocab.scores, vocab.unk, vocab.normaliser)
        assert tokenizer.encode(text, add_special_tokens=False).ids == want, repr(text)


def test_saved_folder_is_a_fast_tokenizer_like_xlmr(vocab, overrides, tmp_path):
    from transformers import AutoTokenizer

    save_tokenizer(vocab, str(tmp_path), 40, overrides)
    tok = AutoTokenizer.from_pretrained(str(tmp_path))
    assert tok.is_fast and not hasattr(tok, "vocab_file")  # spacy-transformers would open a vocab_file
    assert (tok.bos_token_id, tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    assert tok.mask_token == "<mask>" and tok.mask_token_id == PIECES.index("<mask>")
    assert tok("abc <mask>")["input_ids"] == [0, 8, PIECES.index("<mask>"), 2]  # "<mask>" takes its space
    assert tok.model_max_length == 40
    enc = tok("the abc stop.", return_offsets_mapping=True)
    assert set(enc) == {"input_ids", "attention_mask", "offset_mapping"}
    assert enc["input_ids"] == [0, 5, 8, 36, 43, 2]
    assert enc["offset_mapping"] == [(0, 0), (0, 3), (3, 7), (7, 12), (12, 13), (0, 0)]
    assert tok.decode(enc["input_ids"], skip_special_tokens=True) == "the abc stop."
    assert tok("abc", "xy")["input_ids"] == [0, 8, 2, 2, 16, 2]
    batch = tok(["abc", "the abc stop."], padding=True)
    assert batch["input_ids"][0] == [0, 8, 2, 1, 1, 1] and batch["attention_mask"][0] == [1, 1, 1, 0, 0, 0]
