"""spacy_mlre.FrozenEncoder.v1: a frozen Hugging Face encoder in the tok2vec
slot, checked against the tiny BERT run by hand (layer mean, piece pooling,
strided windows), its cache (one encoder pass per doc), its frozenness, its
serialization (a saved pipeline loads without the original folder) and its use
in every relation architecture and in configs/pair_e5.cfg and kernel_e5.cfg."""
import json
import shutil
import subprocess
import sys

import numpy
import pytest
import spacy
from spacy.tokens import Doc
from spacy.training import Example
from spacy.util import fix_random_seed

from spacy_mlre.corpus.reader import make_input_doc
from spacy_mlre.ml.layers.doc_cache import DocCache, doc_key
from spacy_mlre.ml.layers.frozen_encoder import build_frozen_encoder, encode_docs, get_shim, window_bounds

from mlre_testing import LOAD_SCRIPT, ROOT

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

WIDTH = 32  # tiny BERT's hidden size
LONG_TEXT = " ".join(["Dieter arbeitet für Siemens in München ."] * 40)


@pytest.fixture(scope="module")
def tiny_bert_cls(tmp_path_factory):
    """A tiny BERT whose tokenizer wraps inputs in [CLS] ... [SEP] (tiny_bert's adds none)."""
    from tiny_bert import build_tiny_bert

    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert-cls"), special_tokens=True)


def _encoder(path, **kwargs):
    kwargs.setdefault("n_layers", 2)
    model = build_frozen_encoder(str(path), **kwargs)
    model.initialize()
    return model


def _hand_vectors(path, words, n_layers, windows=None, last_layer=None):
    """Token vectors computed directly with transformers: the tokenizer on the
    words, each window of pieces wrapped in [CLS] ... [SEP] when the tokenizer
    adds them, the mean of the last n_layers hidden states, each piece averaged
    over the windows holding it, each token the mean of its pieces, a token
    without pieces the next piece (the last one at the end)."""
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path))
    hf = AutoModel.from_pretrained(str(path)).eval()
    plain = tok(words, is_split_into_words=True, add_special_tokens=False)
    ids, word_ids = plain["input_ids"], plain.word_ids()
    specials = tok(words, is_split_into_words=True)["input_ids"] != ids
    windows = windows or [(0, len(ids))]
    if specials and windows == [(0, len(ids))]:
        assert tok(words, is_split_into_words=True)["input_ids"] == [tok.cls_token_id] + ids + [tok.sep_token_id]
    sums = numpy.zeros((len(ids), WIDTH))
    counts = numpy.zeros(len(ids))
    for start, end in windows:
        full = [tok.cls_token_id] + ids[start:end] + [tok.sep_token_id] if specials else ids[start:end]
        with torch.no_grad():
            out = hf(input_ids=torch.tensor([full]), output_hidden_states=True)
        hidden = out.hidden_states if last_layer is None else out.hidden_states[: last_layer + 1]
        layers = numpy.stack([h[0].numpy() for h in hidden[-n_layers:]]).mean(axis=0)
        sums[start:end] += layers[int(specials) : int(specials) + end - start]
        counts[start:end] += 1
    pieces = sums / counts[:, None]
    vectors = numpy.zeros((len(words), WIDTH))
    for i in range(len(words)):
        mine = [j for j, w in enumerate(word_ids) if w == i]
        if mine:
            vectors[i] = pieces[mine].mean(axis=0)
        else:
            following = [j for j, w in enumerate(word_ids) if w > i]
            vectors[i] = pieces[following[0] if following else len(ids) - 1]
    return vectors


def _hand_text_vectors(path, doc, n_layers):
    """Token vectors with pieces_from = "text", by hand: the doc's text tokenized
    as written, each token the mean of the pieces whose characters overlap its
    own (trailing whitespace excluded), a token without one the next piece."""
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path))
    hf = AutoModel.from_pretrained(str(path)).eval()
    enc = tok(doc.text, add_special_tokens=False, return_offsets_mapping=True)
    with torch.no_grad():
        out = hf(input_ids=torch.tensor([enc["input_ids"]]), output_hidden_states=True)
    pieces = numpy.stack([h[0].numpy() for h in out.hidden_states[-n_layers:]]).mean(axis=0)
    spans = enc["offset_mapping"]
    vectors = numpy.zeros((len(doc), WIDTH))
    for i, token in enumerate(doc):
        start, end = token.idx, token.idx + len(token.text)
        mine = [j for j, (s, e) in enumerate(spans) if e > s and s < end and e > start]
        following = [j for j, (s, e) in enumerate(spans) if e > start]
        vectors[i] = pieces[mine].mean(axis=0) if mine else pieces[following[0] if following else -1]
    return vectors


def test_pieces_from_text_pools_each_piece_into_the_tokens_it_overlaps(tiny_bert, nlp):
    # tokens written without a space between them: "Siemens" + "werk" is one word to the tokenizer
    words, spaces = ["Dieter", "arbeitet", "im", "Siemens", "werk", "in", "München", "."], [1, 1, 1, 0, 1, 1, 0, 0]
    doc = Doc(nlp.vocab, words=words, spaces=[bool(x) for x in spaces])
    (text_vectors,) = _encoder(tiny_bert, pieces_from="text").predict([doc])
    numpy.testing.assert_allclose(text_vectors, _hand_text_vectors(tiny_bert, doc, 2), atol=1e-5)
    (word_vectors,) = _encoder(tiny_bert).predict([doc])
    assert not numpy.allclose(text_vectors[3], word_vectors[3], atol=1e-3)  # "Siemens" is not a word of its own now


def test_pieces_from_text_equals_words_on_space_separated_text(tiny_bert, nlp):
    """A WordPiece tokenizer splits text at spaces and punctuation: the same pieces either way."""
    doc = nlp("Dieter  arbeitet für Siemens in München .")
    (text_vectors,) = _encoder(tiny_bert, pieces_from="text").predict([doc])
    (word_vectors,) = _encoder(tiny_bert).predict([doc])
    numpy.testing.assert_allclose(text_vectors, word_vectors, atol=1e-5)


@pytest.mark.parametrize("n_layers", [1, 2])
@pytest.mark.parametrize("specials", [False, True])
def test_token_vectors_are_the_layer_mean_over_pieces(tiny_bert, tiny_bert_cls, nlp, n_layers, specials):
    path = tiny_bert_cls if specials else tiny_bert
    # "München" and "arbeitet" split into several pieces; the double space makes a whitespace token without pieces
    doc = nlp("Dieter  arbeitet für Siemens in München .")
    words = [t.text for t in doc]
    assert " " in words
    model = _encoder(path, n_layers=n_layers)
    assert model.get_dim("nO") == WIDTH
    (vectors,) = model.predict([doc])
    assert vectors.shape == (len(doc), WIDTH)
    expected = _hand_vectors(path, words, n_layers)
    numpy.testing.assert_allclose(vectors, expected, atol=1e-5)
    # the whitespace token took the next token's first piece
    assert not numpy.allclose(vectors[1], 0.0)


def test_long_doc_uses_strided_windows(tiny_bert_cls, nlp):
    """tiny BERT has 128 positions: a doc of 250+ pieces goes in windows of 126
    pieces ([CLS] and [SEP] take two), 94 apart; a piece in two windows is their mean."""
    from transformers import AutoTokenizer

    doc = nlp(LONG_TEXT)
    words = [t.text for t in doc]
    n_pieces = len(AutoTokenizer.from_pretrained(str(tiny_bert_cls))(words, is_split_into_words=True, add_special_tokens=False)["input_ids"])
    assert n_pieces > 250
    model = _encoder(tiny_bert_cls)
    assert get_shim(model).max_pieces() == 126
    windows = window_bounds(n_pieces, 126, 94)
    assert windows[0] == (0, 126) and windows[1] == (94, 220) and windows[-1] == (n_pieces - 126, n_pieces)
    (vectors,) = model.predict([doc])
    assert vectors.shape == (len(doc), WIDTH)
    numpy.testing.assert_allclose(vectors, _hand_vectors(tiny_bert_cls, words, 2, windows), atol=1e-5)
    # explicit smaller windows: the same rule
    small = _encoder(tiny_bert_cls, window=40, stride=30)
    (vectors_small,) = small.predict([doc])
    numpy.testing.assert_allclose(vectors_small, _hand_vectors(tiny_bert_cls, words, 2, window_bounds(n_pieces, 40, 30)), atol=1e-5)


def test_window_bounds():
    assert window_bounds(0, 10, 5) == [(0, 0)]
    assert window_bounds(10, 10, 5) == [(0, 10)]
    assert window_bounds(23, 10, 5) == [(0, 10), (5, 15), (10, 20), (13, 23)]


def test_doc_key_is_tokens_and_whitespace(nlp):
    from spacy.tokens import Doc

    a = nlp("Alice works for Acme .")
    assert doc_key(a) == doc_key(nlp("Alice works for Acme ."))
    assert doc_key(a) != doc_key(Doc(nlp.vocab, words=["Alice", "works", "for", "Acme."], spaces=[True, True, True, False]))
    assert doc_key(a) != doc_key(Doc(nlp.vocab, words=["Alice", "works", "for", "Acme", "."], spaces=[True, True, True, False, False]))


def test_doc_cache_bound():
    cache = DocCache(10)
    rows = lambda n: numpy.zeros((n, 2), dtype="f")  # noqa: E731
    assert cache.put(b"t1", rows(4), is_train=True)
    assert cache.put(b"p1", rows(3), is_train=False)
    assert cache.put(b"p2", rows(3), is_train=False)
    assert cache.get(b"p1") is not None  # p2 is now the least recently used
    assert cache.put(b"p3", rows(3), is_train=False)  # evicts p2, never t1
    assert b"p2" not in cache and b"t1" in cache and cache.n_rows == 10
    assert cache.put(b"t2", rows(5), is_train=True)  # training evicts prediction entries
    assert b"t2" in cache and b"t1" in cache and cache.n_rows <= 10
    assert not cache.put(b"t3", rows(5), is_train=True)  # nothing evictable: not stored
    assert not cache.put(b"p4", rows(2), is_train=False)
    assert cache.n_rows <= 10 and cache.get(b"t3") is None
    assert not DocCache(0).put(b"x", rows(1), is_train=True)


def _pipeline(path, model=None, nlp=None, **encoder):
    encoder_cfg = {"@architectures": "spacy_mlre.FrozenEncoder.v1", "name": str(path), "n_layers": 2, **encoder}
    model = model or {"@architectures": "spacy_mlre.PairClassifier.v1", "hidden_width": 32}
    model = dict(model)
    model["embed" if model["@architectures"] == "spacy_mlre.AMNRE.v1" else "tok2vec"] = encoder_cfg
    nlp = nlp if nlp is not None else spacy.blank("xx")
    nlp.add_pipe("relation_extractor", config={"model": model, "multi_label": model["@architectures"] != "spacy_mlre.AMNRE.v1"})
    return nlp


def _examples(nlp, gold_docs):
    return [Example(make_input_doc(doc), doc) for doc in gold_docs]


def _count_encoded(shim):
    """Count the windows (rows of input_ids) that go through the encoder."""
    calls = []
    shim._model.register_forward_hook(lambda module, args, kwargs, out: calls.append(kwargs["input_ids"].shape[0]), with_kwargs=True)
    return calls


def test_cache_encodes_each_doc_once(tiny_bert, nlp, gold_docs):
    fix_random_seed(0)
    nlp = _pipeline(tiny_bert, nlp=nlp)
    examples = _examples(nlp, gold_docs)
    optimizer = nlp.initialize(lambda: examples)
    encoder = nlp.get_pipe("relation_extractor").model.get_ref("tok2vec")
    shim = get_shim(encoder)
    calls = _count_encoded(shim)
    shim.cache.clear()  # initialize ran the encoder on its sample
    per_epoch = []
    for _ in range(2):  # two epochs of two batches
        for batch in (examples[:2], examples[2:]):
            nlp.update(batch, sgd=optimizer)
        per_epoch.append(sum(calls))
    # every doc the pipe encoded went through the encoder once, in the first epoch only
    assert per_epoch[0] == per_epoch[1] == shim.cache.stats()["train_docs"] >= 3
    docs = [eg.predicted for eg in examples]
    train_out = encoder(docs, is_train=True)[0]
    predicted = encoder.predict(docs)
    assert sum(calls) == len(docs)  # docs the pipe never encoded (no pairs) once more, the rest all hits
    fresh = encode_docs(encoder, docs)
    for a, b, c in zip(train_out, predicted, fresh):
        numpy.testing.assert_array_equal(a, b)
        numpy.testing.assert_allclose(a, c, atol=1e-6)


def test_cache_is_bounded_at_prediction(tiny_bert, nlp):
    model = _encoder(tiny_bert, cache_size=20)
    shim = get_shim(model)
    calls = _count_encoded(shim)
    docs = [nlp(f"Alice works for Acme number {i} .") for i in range(10)]  # 7 tokens each
    model.predict(docs)
    assert shim.cache.n_rows <= 20 and len(shim.cache) == 2
    assert sum(calls) == 10
    model.predict(docs[-2:])  # the most recent two are cached
    assert sum(calls) == 10
    model.predict(docs[:1])
    assert sum(calls) == 11


def test_backprop_changes_no_encoder_weight(tiny_bert, nlp, gold_docs):
    fix_random_seed(0)
    nlp = _pipeline(tiny_bert, nlp=nlp)
    examples = _examples(nlp, gold_docs)
    optimizer = nlp.initialize(lambda: examples)
    model = nlp.get_pipe("relation_extractor").model
    shim = get_shim(model)
    before = {k: v.clone() for k, v in shim._model.state_dict().items()}
    head_before = model.get_ref("output_layer").get_param("W").copy()
    assert not any(p.requires_grad for p in shim._model.parameters())
    losses = [nlp.update(examples, sgd=optimizer)["relation_extractor"] for _ in range(5)]
    assert losses[-1] < losses[0]
    after = shim._model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in shim._model.parameters())
    assert not numpy.array_equal(head_before, model.get_ref("output_layer").get_param("W"))
    encoder = model.get_ref("tok2vec")
    docs = [eg.predicted for eg in examples]
    _, backprop = encoder(docs, is_train=True)
    assert backprop([numpy.ones((len(d), WIDTH), dtype="f") for d in docs]) is docs


@pytest.mark.parametrize("weights_dtype,quantize", [("float32", None), ("float16", None), ("float32", "int8"), ("float16", "int8-smooth")])
def test_saved_pipeline_loads_without_the_original_folder(tiny_bert, nlp, gold_docs, tmp_path, weights_dtype, quantize):
    folder = tmp_path / "encoder"
    shutil.copytree(tiny_bert, folder)
    fix_random_seed(0)
    nlp = _pipeline(folder, nlp=nlp, weights_dtype=weights_dtype, quantize=quantize)
    examples = _examples(nlp, gold_docs)
    optimizer = nlp.initialize(lambda: examples)
    for _ in range(3):
        nlp.update(examples, sgd=optimizer)
    encoder = nlp.get_pipe("relation_extractor").model.get_ref("tok2vec")
    docs = [eg.predicted for eg in examples]
    trained = encoder(docs, is_train=True)[0]  # cached training-time vectors
    relations = [[(r.head.start, r.tail.start, r.label, round(r.score, 6)) for r in d._.relations] for d in nlp.pipe([make_input_doc(g) for g in gold_docs])]
    nlp.to_disk(tmp_path / "pipeline")
    shutil.rmtree(folder)
    loaded = spacy.load(tmp_path / "pipeline")
    loaded_encoder = loaded.get_pipe("relation_extractor").model.get_ref("tok2vec")
    assert len(get_shim(loaded_encoder).cache) == 0
    assert loaded_encoder.get_dim("nO") == WIDTH
    for a, b in zip(trained, loaded_encoder.predict(docs)):
        numpy.testing.assert_array_equal(a, b)
    again = [[(r.head.start, r.tail.start, r.label, round(r.score, 6)) for r in d._.relations] for d in loaded.pipe([Doc(loaded.vocab).from_bytes(make_input_doc(g).to_bytes()) for g in gold_docs])]
    assert again == relations
    assert get_shim(loaded_encoder).quantize == quantize
    # the weights are in the pipeline's model bytes, at the chosen precision
    # (int8 Linear layers are not torch parameters: their size is checked below)
    if quantize is None:
        n_params = sum(p.numel() for p in get_shim(loaded_encoder)._model.parameters())
        size = (tmp_path / "pipeline" / "relation_extractor" / "model").stat().st_size
        bytes_per = 4 if weights_dtype == "float32" else 2
        assert n_params * bytes_per < size < n_params * bytes_per * 1.5 + 200_000
    # and in a process that never imports spacy_mlre, offline
    load = subprocess.run([sys.executable, "-c", LOAD_SCRIPT, str(tmp_path / "pipeline")], capture_output=True, text=True)
    assert load.returncode == 0, load.stderr[-3000:]


def test_loading_without_transformers_says_what_to_install(tiny_bert, nlp, gold_docs, tmp_path, monkeypatch):
    # transformers is an optional dependency: a packaged encoder pipeline installed
    # without it must say so, not fail with a ModuleNotFoundError from inside thinc
    nlp = _pipeline(tiny_bert, nlp=nlp)
    nlp.initialize(lambda: _examples(nlp, gold_docs))
    nlp.to_disk(tmp_path / "pipeline")
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers -> ImportError
    with pytest.raises(ImportError, match=r"FrozenEncoder.*pip install 'spacy-mlre\[transformers\]'"):
        spacy.load(tmp_path / "pipeline")


def test_half_precision_rounds_the_weights_at_initialize(tiny_bert, nlp):
    doc = nlp("Dieter arbeitet für Siemens in München .")
    full = _encoder(tiny_bert).predict([doc])[0]
    half_model = _encoder(tiny_bert, weights_dtype="float16")
    half = half_model.predict([doc])[0]
    assert not numpy.array_equal(full, half)
    numpy.testing.assert_allclose(full, half, atol=1e-2)
    weights = torch.cat([p.flatten() for p in get_shim(half_model)._model.parameters()])
    assert torch.equal(weights, weights.half().float())


def _encode(tiny_bert, doc, **settings):
    """An initialized encoder with these settings, and its token vectors of doc."""
    model = _encoder(tiny_bert, **settings)
    return model, model.predict([doc])[0]


def _min_cosine(a, b) -> float:
    """The lowest cosine between the rows of a and b: how far a variant moves any token's vector."""
    return float(((a * b).sum(1) / numpy.linalg.norm(a, axis=1) / numpy.linalg.norm(b, axis=1)).min())


def test_int8_replaces_the_linear_layers_and_moves_the_vectors_slightly(tiny_bert, nlp):
    doc = nlp("Dieter arbeitet für Siemens in München .")
    full_model, full = _encode(tiny_bert, doc)
    int8_model, int8 = _encode(tiny_bert, doc, quantize="int8")
    modules = list(get_shim(int8_model)._model.modules())
    assert not any(type(m) is torch.nn.Linear for m in modules)
    assert any(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in modules)
    assert not numpy.array_equal(full, int8)
    assert _min_cosine(full, int8) > 0.99
    # the int8 weights are what is saved: a quarter of the Linear layers' bytes
    data = int8_model.to_bytes()
    linear_floats = sum(m.weight.numel() for m in get_shim(full_model)._model.modules() if type(m) is torch.nn.Linear)
    assert len(full_model.to_bytes()) - len(data) > 2 * linear_floats
    loaded = build_frozen_encoder(str(tiny_bert), n_layers=2, quantize="int8").from_bytes(data)
    numpy.testing.assert_array_equal(loaded.predict([doc])[0], int8)


def test_bfloat16_compute_moves_the_vectors_slightly_and_keeps_float32_weights(tiny_bert, nlp):
    doc = nlp("Dieter arbeitet für Siemens in München .")
    full_model, full = _encode(tiny_bert, doc)
    bf16_model, bf16 = _encode(tiny_bert, doc, compute_dtype="bfloat16")
    assert bf16.dtype == numpy.float32 and not numpy.array_equal(full, bf16)
    assert _min_cosine(full, bf16) > 0.99
    # the weights stay float32 (the shim saves the same bytes); the setting is saved with the model
    assert get_shim(bf16_model).to_bytes() == get_shim(full_model).to_bytes()
    loaded = build_frozen_encoder(str(tiny_bert), n_layers=2).from_bytes(bf16_model.to_bytes())
    assert loaded.attrs["compute_dtype"] == "bfloat16"
    numpy.testing.assert_array_equal(loaded.predict([doc])[0], bf16)


def test_last_layer_drops_the_layers_above_it(tiny_bert, nlp, tmp_path):
    doc = nlp("Dieter arbeitet für Siemens in München .")
    model = _encoder(tiny_bert, n_layers=1, last_layer=1)
    transformer = get_shim(model)._model
    assert len(transformer.encoder.layer) == 1 and transformer.config.num_hidden_layers == 1
    expected = _hand_vectors(tiny_bert, [t.text for t in doc], 1, last_layer=1)
    numpy.testing.assert_allclose(model.predict([doc])[0], expected, atol=1e-5)
    assert not numpy.allclose(_encoder(tiny_bert, n_layers=1).predict([doc])[0], expected, atol=1e-3)
    # saved without the dropped layer, and rebuilt from the saved config
    loaded = build_frozen_encoder(str(tmp_path / "gone"), n_layers=1, last_layer=1).from_bytes(model.to_bytes())
    assert len(get_shim(loaded)._model.encoder.layer) == 1
    numpy.testing.assert_array_equal(loaded.predict([doc])[0], model.predict([doc])[0])
    with pytest.raises(ValueError, match="last_layer = 3, but .* has layers 1 to 2"):
        _encoder(tiny_bert, n_layers=1, last_layer=3)


def test_settings_are_checked():
    with pytest.raises(ValueError, match="last_layer must be at least n_layers"):
        build_frozen_encoder("x", n_layers=4, last_layer=3)
    with pytest.raises(ValueError, match="quantize must be null, \"int8\" or \"int8-smooth\""):
        build_frozen_encoder("x", quantize="int4")
    with pytest.raises(ValueError, match="weights_dtype must be one of"):
        build_frozen_encoder("x", weights_dtype="int8")
    with pytest.raises(ValueError, match="pieces_from must be \"words\" or \"text\", got 'chars'"):
        build_frozen_encoder("x", pieces_from="chars")
    with pytest.raises(ValueError, match="compute_dtype must be \"float32\" or \"bfloat16\", got 'float16'"):
        build_frozen_encoder("x", compute_dtype="float16")


def test_width_is_checked(tiny_bert):
    with pytest.raises(ValueError, match="width = 48"):
        _encoder(tiny_bert, width=48)
    with pytest.raises(ValueError, match="n_layers = 3"):
        _encoder(tiny_bert, n_layers=3)
    assert _encoder(tiny_bert, width=WIDTH).get_dim("nO") == WIDTH


PAIR_V2 = {"@architectures": "spacy_mlre.PairClassifier.v2", "product": True,
           "reducer": {"@layers": "reduce_mean.v1"}, "scorer": {"@architectures": "spacy_mlre.PairScorer.v1", "hidden_width": 32}}
KERNEL = {"@architectures": "spacy_mlre.KernelMatrix.v1", "width": WIDTH, "attention_heads": 2, "projection_width": 16}
MERE = {"@architectures": "spacy_mlre.MERE.v1", "width": WIDTH, "aggregator": None, "switcher": None}
AMNRE = {"@architectures": "spacy_mlre.AMNRE.v1", "langs": ["en", "de"], "hidden_width": 24, "discriminator_width": 32,
         "dropout": 0.0, "bag_keys": ["text"], "adversarial": None}


@pytest.mark.parametrize("model", [None, PAIR_V2, KERNEL, MERE, AMNRE], ids=["pair", "pair_v2", "kernel", "mere", "amnre"])
def test_every_architecture_trains_on_it(tiny_bert, nlp, gold_docs, model):
    fix_random_seed(0)
    nlp = _pipeline(tiny_bert, model, nlp=nlp)
    examples = _examples(nlp, gold_docs)
    optimizer = nlp.initialize(lambda: examples)
    shim = get_shim(nlp.get_pipe("relation_extractor").model)
    calls = _count_encoded(shim)
    for _ in range(3):
        nlp.update(examples, sgd=optimizer)
    assert sum(calls) <= len(examples)
    docs = list(nlp.pipe([make_input_doc(g) for g in gold_docs]))
    assert all(isinstance(r.score, float) for d in docs for r in d._.relations)


def test_width_by_interpolation_in_a_config(tiny_bert):
    """A model that needs the width in its config reads the encoder's with ${...}."""
    from spacy.util import load_config_from_str, load_model_from_config

    cfg = f"""
[nlp]
lang = "xx"
pipeline = ["relation_extractor"]
[components]
[components.relation_extractor]
factory = "relation_extractor"
[components.relation_extractor.model]
@architectures = "spacy_mlre.KernelMatrix.v1"
width = ${{components.relation_extractor.model.tok2vec.width}}
attention_heads = 2
[components.relation_extractor.model.tok2vec]
@architectures = "spacy_mlre.FrozenEncoder.v1"
name = "{tiny_bert}"
n_layers = 2
width = {WIDTH}
"""
    nlp = load_model_from_config(load_config_from_str(cfg), auto_fill=True)
    assert nlp.get_pipe("relation_extractor").model.get_ref("kernel").get_dim("nI") == WIDTH


@pytest.mark.parametrize("config", ["pair_e5.cfg", "kernel_e5.cfg"])
def test_e5_configs_train_with_spacy_train(tiny_corpus, tiny_bert, tmp_path, config):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "spacy", "train", str(ROOT / "configs" / config), "--output", str(out),
           "--paths.train", str(tiny_corpus / "train.spacy"), "--paths.dev", str(tiny_corpus / "dev.spacy"),
           "--paths.transformer", str(tiny_bert), "--components.relation_extractor.model.tok2vec.n_layers", "1",
           "--components.relation_extractor.model.tok2vec.last_layer", "1",
           "--components.relation_extractor.model.tok2vec.width", str(WIDTH),
           "--training.max_steps", "30", "--training.eval_frequency", "15"]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "REL_MICRO_F" in result.stdout
    meta = json.loads((out / "model-last" / "meta.json").read_text())
    assert "rel_micro_f" in meta["performance"]
    nlp = spacy.load(out / "model-last")
    encoder = next(node for node in nlp.get_pipe("relation_extractor").model.walk() if node.name == "frozen_encoder")
    assert encoder.get_dim("nO") == WIDTH and get_shim(encoder)._model is not None
    assert len(get_shim(encoder)._model.encoder.layer) == 1  # the config's last_layer, kept when saved
    assert len(list(nlp.pipe(["Alice works for Acme ."]))) == 1
