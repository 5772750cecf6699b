"""`encoder shrink` on a tiny BERT (WordPiece): cutting the vocabulary to some
docs leaves their token vectors as they were, in memory and after saving;
unseen words still split into known pieces; float16 halves the weights; the
CLI writes a smaller pipeline and fails with one message on bad input. One
test cuts the real multilingual-e5-small tokenizer (Unigram) when it is in
assets/."""
import re
from pathlib import Path

import numpy
import pytest
import spacy
from spacy.tokens import DocBin
from typer.testing import CliRunner

import spacy_mlre.cli.encoder  # noqa: F401  (registers the command)
from spacy_mlre.cli import app
from spacy_mlre.encoders.shrink import cut_vocabulary, find_shims, shrink_pipeline

pytest.importorskip("transformers")

E5 = Path(__file__).resolve().parents[2] / "assets" / "multilingual-e5-small"
TEXTS = ["Alice works for Acme in Paris .", "Dieter arbeitet für Siemens in München ."]
UNSEEN = "Warszawie"  # in the tiny BERT's training text, not in TEXTS


@pytest.fixture(scope="module")
def tiny_bert_cls(tmp_path_factory):
    """A tiny BERT whose tokenizer adds [CLS] ... [SEP] (a TemplateProcessing post-processor)."""
    from tiny_bert import build_tiny_bert

    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert-cls"), special_tokens=True)


def _pipeline(path):
    nlp = spacy.blank("xx")
    model = {"@architectures": "spacy_mlre.FrozenEncoder.v1", "name": str(path), "n_layers": 1}
    nlp.add_pipe("tok2vec", config={"model": model})
    nlp.initialize()
    return nlp


def _vectors(nlp, texts=TEXTS):
    return nlp.get_pipe("tok2vec").model.predict([nlp.make_doc(text) for text in texts])


def _shim(nlp):
    ((_, _, shim),) = find_shims(nlp)
    return shim


def _pieces(shim, word):
    """The word's piece ids and strings, as the encoder tokenizes it."""
    ids = shim.tokenizer([[word]], is_split_into_words=True, add_special_tokens=False)["input_ids"][0]
    return ids, shim.tokenizer.convert_ids_to_tokens(ids)


def _assert_close(got, expected, atol):
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        numpy.testing.assert_allclose(a, b, atol=atol, rtol=0)


@pytest.fixture(params=["plain", "cls"])
def encoder_path(request, tiny_bert, tiny_bert_cls):
    return tiny_bert if request.param == "plain" else tiny_bert_cls


def test_cut_keeps_the_docs_vectors(encoder_path, tmp_path):
    nlp = _pipeline(encoder_path)
    before = _vectors(nlp)
    shim = _shim(nlp)
    specials = shim.special_tokens()
    rows = shim._model.get_input_embeddings().weight.shape[0]
    (report,) = shrink_pipeline(nlp, vocab_docs=[nlp.make_doc(t) for t in TEXTS]).values()
    new_rows = shim._model.get_input_embeddings().weight.shape[0]
    assert new_rows < rows and report["rows_before"] == rows and report["rows_after"] == new_rows
    assert report["pieces_after"] == len(shim.tokenizer) == new_rows < report["pieces_before"]
    assert report["embedding_bytes_after"] < report["embedding_bytes_before"]
    assert shim._model.config.vocab_size == new_rows
    # [CLS] / [SEP] of the cls tokenizer keep their (low) ids
    assert [shim.tokenizer.convert_ids_to_tokens(ids) for ids in shim.special_tokens()] == [
        shim.tokenizer.convert_ids_to_tokens(ids) for ids in specials]
    _assert_close(_vectors(nlp), before, atol=1e-6)

    nlp.to_disk(tmp_path / "shrunk")
    loaded = spacy.load(tmp_path / "shrunk")
    assert len(_shim(loaded).tokenizer) == new_rows
    assert _shim(loaded)._model.get_input_embeddings().weight.shape[0] == new_rows
    _assert_close(_vectors(loaded), before, atol=1e-6)


def test_unseen_word_splits_into_known_pieces(tiny_bert):
    nlp = _pipeline(tiny_bert)
    shim = _shim(nlp)
    ids, pieces = _pieces(shim, UNSEEN)
    assert shim.tokenizer.unk_token_id not in ids
    assert not any(UNSEEN in t for t in TEXTS)
    shrink_pipeline(nlp, vocab_docs=[nlp.make_doc(t) for t in TEXTS])
    new_ids, new_pieces = _pieces(shim, UNSEEN)
    assert shim.tokenizer.unk_token_id not in new_ids
    assert len(new_pieces) >= len(pieces)
    assert "".join(p.removeprefix("##") for p in new_pieces) == UNSEEN


def test_float16_halves_the_weights(tiny_bert, tmp_path):
    nlp = _pipeline(tiny_bert)
    before = _vectors(nlp)
    nlp.to_disk(tmp_path / "float32")
    (report,) = shrink_pipeline(nlp, dtype="float16").values()
    assert (report["weights_dtype_before"], report["weights_dtype_after"]) == ("float32", "float16")
    assert report["embedding_bytes_after"] * 2 == report["embedding_bytes_before"]
    assert _shim(nlp)._model.get_input_embeddings().weight.dtype.is_floating_point  # still computes in float32
    vectors = _vectors(nlp)
    _assert_close(vectors, before, atol=1e-2)
    nlp.to_disk(tmp_path / "float16")
    size32 = (tmp_path / "float32" / "tok2vec" / "model").stat().st_size
    size16 = (tmp_path / "float16" / "tok2vec" / "model").stat().st_size
    assert 0.45 < size16 / size32 < 0.65  # the tokenizer's files do not shrink
    loaded = spacy.load(tmp_path / "float16")
    assert _shim(loaded).weights_dtype == "float16"
    _assert_close(_vectors(loaded), vectors, atol=0)  # the rounded weights are what was saved


def test_int8_encoder_rounds_and_cuts(tiny_bert, tmp_path):
    """Quantized Linear layers stay as they are; the rest is rounded and saved so."""
    nlp = spacy.blank("xx")
    model = {"@architectures": "spacy_mlre.FrozenEncoder.v1", "name": str(tiny_bert), "n_layers": 1, "quantize": "int8"}
    nlp.add_pipe("tok2vec", config={"model": model})
    nlp.initialize()
    before = _vectors(nlp)
    shrink_pipeline(nlp, dtype="bfloat16", vocab_docs=[nlp.make_doc(t) for t in TEXTS])
    vectors = _vectors(nlp)
    _assert_close(vectors, before, atol=5e-2)
    nlp.to_disk(tmp_path / "shrunk")
    loaded = spacy.load(tmp_path / "shrunk")
    assert (_shim(loaded).quantize, _shim(loaded).weights_dtype) == ("int8", "bfloat16")
    _assert_close(_vectors(loaded), vectors, atol=0)


def test_int8_smooth_after_training_is_saved_as_used(tiny_bert, tmp_path):
    """Quantized after training on calibration docs; the saved pipeline computes
    what the quantized one in memory did, and says it is quantized."""
    nlp = _pipeline(tiny_bert)
    before = _vectors(nlp)
    reports = shrink_pipeline(nlp, quantize="int8-smooth", calibration_docs=[nlp.make_doc(t) for t in TEXTS])
    assert reports["tok2vec"]["quantize"] == "int8-smooth"
    vectors = _vectors(nlp)
    assert not all(numpy.array_equal(a, b) for a, b in zip(vectors, before))
    _assert_close(vectors, before, atol=5e-2)
    nlp.to_disk(tmp_path / "smooth")
    loaded = spacy.load(tmp_path / "smooth")
    assert _shim(loaded).quantize == "int8-smooth"
    _assert_close(_vectors(loaded), vectors, atol=0)
    with pytest.raises(ValueError, match="already quantized"):
        shrink_pipeline(loaded, quantize="int8-smooth", calibration_docs=[loaded.make_doc(TEXTS[0])])


def test_float16_overflow_is_refused(tiny_bert):
    import torch

    nlp = _pipeline(tiny_bert)
    with torch.no_grad():
        _shim(nlp)._model.get_input_embeddings().weight[5, 0] = 1e5
    with pytest.raises(ValueError, match="float16's range; use bfloat16"):
        shrink_pipeline(nlp, dtype="float16")
    assert _shim(nlp).weights_dtype == "float32"


def test_pipeline_without_encoder():
    nlp = spacy.blank("xx")
    nlp.add_pipe("sentencizer")
    with pytest.raises(ValueError, match="holds no FrozenEncoder.v1.*sentencizer"):
        shrink_pipeline(nlp, dtype="float16")


# CLI ---------------------------------------------------------------------------


def _shrink(*args):
    result = CliRunner().invoke(app, ["encoder", "shrink", *map(str, args)])
    return result.exit_code, " ".join(re.sub(r"\x1b\[[0-9;]*m", "", result.output).split())


@pytest.fixture(scope="module")
def saved(tiny_bert, tmp_path_factory):
    """A saved pipeline and a DocBin of TEXTS."""
    folder = tmp_path_factory.mktemp("cli")
    nlp = _pipeline(tiny_bert)
    nlp.to_disk(folder / "pipeline")
    DocBin(docs=[nlp.make_doc(t) for t in TEXTS]).to_disk(folder / "docs.spacy")
    return folder


def test_cli_shrinks_a_saved_pipeline(saved):
    from spacy_mlre.cli.encoder import _folder_size

    out = saved / "shrunk"
    code, output = _shrink(saved / "pipeline", out, "--vocab", saved / "docs.spacy", "--dtype", "bfloat16")
    assert code == 0, output
    assert "tok2vec:" in output and "word pieces kept" in output and f"Wrote {out}" in output
    assert _folder_size(out) < _folder_size(saved / "pipeline")
    shim = _shim(spacy.load(out))
    assert shim.weights_dtype == "bfloat16" and len(shim.tokenizer) < len(_shim(spacy.load(saved / "pipeline")).tokenizer)


def test_cli_quantizes_with_calibration_docs(saved):
    out = saved / "quantized"
    code, output = _shrink(saved / "pipeline", out, "--quantize", "int8-smooth", "--calibrate", saved / "docs.spacy")
    assert code == 0, output
    assert "Linear layers int8-smooth" in output
    assert _shim(spacy.load(out)).quantize == "int8-smooth"


def test_cli_sets_the_compute_dtype(saved):
    out = saved / "bf16"
    code, output = _shrink(saved / "pipeline", out, "--compute", "bfloat16")
    assert code == 0, output
    assert "computes in bfloat16" in output
    loaded = spacy.load(out)
    encoder = next(node for node in loaded.get_pipe("tok2vec").model.walk() if node.name == "frozen_encoder")
    assert encoder.attrs["compute_dtype"] == "bfloat16" and _shim(loaded).weights_dtype == "float32"


@pytest.mark.parametrize("args, expected", [
    ([], "Nothing to shrink"),
    (["--compute", "float16"], "--compute float16: expected one of float32, bfloat16"),
    (["--vocab", "{dir}/missing.spacy"], "{dir}/missing.spacy does not exist"),
    (["--dtype", "int8"], "--dtype int8: expected one of float16, bfloat16"),
    (["--quantize", "int8-smooth"], "--quantize int8-smooth and --calibrate DATA go together"),
    (["--quantize", "int4", "--calibrate", "{dir}/docs.spacy"], "--quantize int4: expected int8-smooth"),
])
def test_cli_errors(saved, tmp_path, args, expected):
    args = [a.format(dir=saved) for a in args]
    code, output = _shrink(saved / "pipeline", tmp_path / "out", *args)
    assert code != 0 and expected.format(dir=saved) in output, output
    assert "Traceback" not in output and not (tmp_path / "out").exists()


# The real multilingual-e5-small (Unigram) ----------------------------------------


@pytest.mark.skipif(not (E5 / "tokenizer.json").exists(), reason="assets/multilingual-e5-small is not there")
@pytest.mark.parametrize("pieces_from", ["words", "text"])
def test_cut_real_e5_tokenizer(pieces_from):
    """Pieces and embedding rows of the kept sentences, tokenized as the encoder's
    `pieces_from` says (as words, or their text), survive the cut. Only the
    tokenizer and the embedding table are real: a one-layer BERT holds them."""
    import torch
    from safetensors import safe_open
    from transformers import AutoConfig, AutoTokenizer, BertModel

    from spacy_mlre.ml.layers.frozen_encoder import FrozenHFShim

    nlp = spacy.blank("xx")
    sentences = [
        "Dieter arbeitet seit 2019 für Siemens in München.",
        "田中さんは東京のトヨタで働いています。",
        "Alice works for Acme in Paris.",
    ]
    words = [[t.text for t in nlp.make_doc(s)] for s in sentences]
    tokenizer = AutoTokenizer.from_pretrained(str(E5))
    config = AutoConfig.from_pretrained(str(E5), num_hidden_layers=1, intermediate_size=8)
    with safe_open(str(E5 / "model.safetensors"), "pt") as f:
        table = f.get_tensor("embeddings.word_embeddings.weight")
    with torch.device("meta"):
        model = BertModel(config, add_pooling_layer=False)
    model = model.to_empty(device="cpu")  # the layer's weights stay uninitialized: the test never runs it
    model.set_input_embeddings(torch.nn.Embedding.from_pretrained(table, padding_idx=config.pad_token_id))
    shim = FrozenHFShim()
    shim._set(tokenizer, model, "float32", round_weights=False)

    as_text = pieces_from == "text"
    kept = sentences if as_text else words

    def encode(items):
        enc = shim.tokenizer(items, is_split_into_words=not as_text, add_special_tokens=False)
        return enc["input_ids"], [shim.tokenizer.convert_ids_to_tokens(ids) for ids in enc["input_ids"]]

    old_ids, old_pieces = encode(kept)
    unseen = ["Zürich Kraków"] if as_text else [["Zürich", "Kraków"]]
    assert tokenizer.unk_token_id not in encode(unseen)[0][0]
    report = cut_vocabulary(shim, kept, pieces_from)
    assert report["pieces_before"] == 250_002 and report["rows_before"] == len(table)
    assert report["pieces_after"] == report["rows_after"] == config.vocab_size < 30_000
    assert shim.tokenizer.convert_ids_to_tokens([0, 1, 2, 3]) == ["<s>", "<pad>", "</s>", "<unk>"]
    assert shim.tokenizer.convert_ids_to_tokens(report["pieces_after"] - 1) == "<mask>"
    assert shim.special_tokens() == ([0], [2]) and shim._model.config.pad_token_id == 1
    new_ids, new_pieces = encode(kept)
    assert new_pieces == old_pieces
    assert as_text == ("▁" not in old_pieces[1][1:])  # as words, 。 is a word of its own: ▁ 。
    new_table = shim._model.get_input_embeddings().weight
    for old, new in zip(old_ids, new_ids):
        assert torch.equal(new_table[new], table[old])
    assert shim.tokenizer.unk_token_id not in encode(unseen)[0][0]
