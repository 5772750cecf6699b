"""MERE.v1: router and top-k, aggregator concatenation, pointer gradients and
decoding, the relation mask, two-stage freezing, overfitting docs in three
languages, and both stages trained from their configs."""
import json
import subprocess
import sys

import numpy
import pytest
import spacy
from spacy.training import Example
from spacy.util import fix_random_seed
from thinc.api import Config

from spacy_mlre.corpus.reader import make_input_doc
from spacy_mlre.ml.mere.aggregator import group_docs, language_aggregator
from spacy_mlre.ml.mere.pointer import decode_spans, entity_pointers, pointer_loss
from spacy_mlre.ml.mere.switcher import language_switcher, language_weights, router_probabilities, set_languages, top_k_weights
from spacy_mlre.ml.models.mere import MASKED_LOGIT, make_load_stage1
from spacy_mlre.relations import relation_keys

from mlre_testing import LOAD_SCRIPT, ROOT, make_doc, numeric_grad

WIDTH = 32


def _model_config(stage=1, aggregator=True, switcher=True, **switcher_args):
    lines = [
        "[model]", '@architectures = "spacy_mlre.MERE.v1"', f"width = {WIDTH}", f"stage = {stage}", "dropout = 0.0",
        "[model.tok2vec]", '@architectures = "spacy.Tok2Vec.v2"',
        "[model.tok2vec.embed]", '@architectures = "spacy.MultiHashEmbed.v2"', f"width = {WIDTH}",
        "rows = [2000, 1000, 1000, 1000]", 'attrs = ["NORM", "PREFIX", "SUFFIX", "SHAPE"]', "include_static_vectors = false",
        "[model.tok2vec.encode]", '@architectures = "spacy.MaxoutWindowEncoder.v2"', f"width = {WIDTH}",
        "window_size = 1", "maxout_pieces = 3", "depth = 2",
    ]
    if aggregator:
        lines += ["[model.aggregator]", '@architectures = "spacy_mlre.LanguageAggregator.v1"', f"width = {WIDTH}"]
    else:
        lines.insert(5, "aggregator = null")
    if switcher:
        lines += ["[model.switcher]", '@architectures = "spacy_mlre.LanguageSwitcher.v1"', f"width = {WIDTH}", "hidden_width = 48"]
        lines += [f"{k} = {json.dumps(v)}" for k, v in switcher_args.items()]
    else:
        lines.insert(5, "switcher = null")
    return Config().from_str("\n".join(lines))["model"]


def _pipeline(model_config, multi_label=True):
    nlp = spacy.blank("xx")
    nlp.add_pipe("relation_extractor", config={"model": model_config, "multi_label": multi_label})
    return nlp


def _three_language_docs(nlp):
    return [
        make_doc(nlp, "Alice works for Acme in Paris .", [(0, 5, "PER"), (16, 20, "ORG"), (24, 29, "LOC")],
                 [(0, 1, "works_for"), (1, 2, "located_in")], "en"),
        make_doc(nlp, "Dieter arbeitet für Siemens in München .", [(0, 6, "PER"), (20, 27, "ORG"), (31, 38, "LOC")],
                 [(0, 1, "works_for"), (1, 2, "located_in")], "de"),
        make_doc(nlp, "Zofia pracuje w firmie Orlen .", [(0, 5, "PER"), (23, 28, "ORG")], [(0, 1, "works_for")], "pl"),
        make_doc(nlp, "In Warszawie mieszka Zofia .", [(3, 12, "LOC"), (21, 26, "PER")], [(1, 0, "lives_in")], "pl"),
        make_doc(nlp, "Nothing here .", [], [], "en"),
    ]


def _train(nlp, docs, steps):
    examples = [Example(make_input_doc(doc), doc) for doc in docs]
    optimizer = nlp.initialize(lambda: examples)
    for _ in range(steps):
        nlp.update(examples, sgd=optimizer)
    return examples, optimizer


# Language-specific Switcher ------------------------------------------------

def _switcher(**kwargs):
    fix_random_seed(0)
    model = language_switcher(8, 12, **kwargs)
    set_languages(model, ["pl", "en", "de"])
    model.initialize()
    return model


def test_router_probabilities_sum_to_one_and_top_k_keeps_k():
    model = _switcher(module_layers=[1, 1, 1, 2, 2, 2], top_k=3)
    table = language_weights(model)
    assert table.shape == (4, 6)  # de, en, pl and the unseen-language fallback
    numpy.testing.assert_allclose(table.sum(axis=1), 1.0, rtol=1e-6)
    assert (table > 0).all()
    for k in range(1, 7):
        kept = top_k_weights(table, k)
        assert ((kept > 0).sum(axis=1) == k).all()
        numpy.testing.assert_allclose(kept.sum(axis=1), 1.0, rtol=1e-6)
        # the kept modules are the k most probable ones
        for row, full in zip(kept, table):
            assert set(numpy.nonzero(row)[0]) == set(numpy.argsort(-full)[:k])
    probs = router_probabilities(model)
    assert list(probs) == ["de", "en", "pl", "unseen"]
    numpy.testing.assert_allclose(probs["unseen"], table[:3].mean(axis=0), rtol=1e-6)


def test_switcher_mixes_all_modules_in_training_and_top_k_at_prediction():
    """Eq. 8 in training; at prediction only the top-k modules, renormalised.
    An unseen language routes with the mean of the known distributions."""
    model = _switcher(module_layers=[1, 2, 1], top_k=2)
    rng = numpy.random.default_rng(0)
    X = rng.normal(size=(5, 8)).astype("float32")
    lengths = model.ops.asarray1i([2, 3])
    outputs = [module.predict(X) for module in model.layers]
    table = language_weights(model)
    train_Y, _ = model((X, lengths, ["en", "xx"]), is_train=True)
    pred_Y = model.predict((X, lengths, ["en", "xx"]))
    for doc, rows, lang_row in ((0, slice(0, 2), 1), (1, slice(2, 5), 3)):
        mixed = sum(table[lang_row, t] * outputs[t][rows] for t in range(3))
        numpy.testing.assert_allclose(train_Y[rows], mixed, rtol=1e-4, atol=1e-5)
        kept = top_k_weights(table[lang_row : lang_row + 1], 2)[0]
        assert (kept > 0).sum() == 2
        top = sum(kept[t] * outputs[t][rows] for t in range(3))
        numpy.testing.assert_allclose(pred_Y[rows], top, rtol=1e-4, atol=1e-5)


def test_language_routing_is_one_module_per_language():
    """mERE14: language i uses sub-module i only; too few modules is an error."""
    model = _switcher(module_layers=[1, 1, 1], routing="language")
    table = language_weights(model)
    numpy.testing.assert_array_equal(table[:3], numpy.eye(3))
    numpy.testing.assert_allclose(table[3], [1 / 3] * 3)
    small = language_switcher(8, 12, module_layers=[1, 1], routing="language")
    with pytest.raises(ValueError, match="one sub-module per language"):
        set_languages(small, ["de", "en", "pl"])


def _numeric_grad(loss, array):
    """Central differences of loss() w.r.t. a float32 array used in place (a
    parameter or an input), with a step float32 can resolve."""
    original = array.copy()

    def f(values):
        array[...] = values
        return loss()

    grad = numeric_grad(f, original, eps=1e-3)
    array[...] = original
    return grad


def test_switcher_gradients_match_finite_differences():
    model = _switcher(module_layers=[1, 2], top_k=1)
    rng = numpy.random.default_rng(1)
    X = rng.normal(size=(5, 8)).astype("float32")
    R = rng.normal(size=(5, 8)).astype("float32")
    lengths = model.ops.asarray1i([2, 3])
    langs = ["de", "xx"]  # a known language and the fallback row

    def loss():
        Y, _ = model((X, lengths, langs), is_train=True)
        return float((Y * R).sum())

    Y, backprop = model((X, lengths, langs), is_train=True)
    dX = backprop(R)[0]
    numpy.testing.assert_allclose(dX, _numeric_grad(loss, X), rtol=2e-2, atol=2e-3)
    for name in ("W_f", "E_l"):
        numpy.testing.assert_allclose(model.get_grad(name), _numeric_grad(loss, model.get_param(name)), rtol=2e-2, atol=2e-3)


# Language-universal Aggregator --------------------------------------------

def test_groups_mix_languages():
    numpy.random.seed(0)
    langs = ["en", "en", "de", "de", "pl", "pl"]
    groups = group_docs(langs, 2)
    assert sorted(i for g in groups for i in g) == list(range(6))
    assert all(len(g) == 2 and langs[g[0]] != langs[g[1]] for g in groups)
    # a monolingual batch still concatenates
    assert sorted(len(g) for g in group_docs(["en"] * 5, 2)) == [1, 2, 2]
    assert [len(g) for g in group_docs(["en", "de", "pl", "fr"], 4)] == [4]


def test_aggregator_concatenates_only_in_training_and_gradients_match():
    fix_random_seed(0)
    model = language_aggregator(6, concat_sentences=2)
    model.initialize()
    rng = numpy.random.default_rng(0)
    X = rng.normal(size=(7, 6)).astype("float32")
    lengths = model.ops.asarray1i([3, 0, 4])
    langs = ["en", "de", "pl"]
    alone = [model.predict((X[:3], model.ops.asarray1i([3]), ["en"])), model.predict((X[3:], model.ops.asarray1i([4]), ["pl"]))]
    batched = model.predict((X, lengths, langs))
    numpy.testing.assert_allclose(batched, numpy.concatenate(alone), rtol=1e-5, atol=1e-6)
    # in training, the two non-empty docs (en, pl) attend to each other
    trained, _ = model((X, lengths, ["en", "en", "pl"]), is_train=True)
    assert not numpy.allclose(trained[:3], alone[0], atol=1e-4) and not numpy.allclose(trained[3:], alone[1], atol=1e-4)
    R = rng.normal(size=X.shape).astype("float32")

    def loss():
        numpy.random.seed(3)  # the same random groups each time
        Y, _ = model((X, lengths, langs), is_train=True)
        return float((Y * R).sum())

    numpy.random.seed(3)
    _, backprop = model((X, lengths, langs), is_train=True)
    dX = backprop(R)[0]
    numpy.testing.assert_allclose(dX, _numeric_grad(loss, X), rtol=2e-2, atol=2e-3)
    numpy.testing.assert_allclose(model.get_grad("W_q"), _numeric_grad(loss, model.get_param("W_q")), rtol=2e-2, atol=2e-3)


@pytest.mark.parametrize("residual", [True, False])
def test_aggregator_prediction_in_blocks_equals_the_batched_attention(residual, monkeypatch):
    """Prediction attends within each doc in blocks of query rows; with s = 1
    the training path computes the same attention batched and padded."""
    from spacy_mlre.ml.mere import aggregator

    fix_random_seed(0)
    model = language_aggregator(6, concat_sentences=1, residual=residual)
    model.initialize()
    X = numpy.random.default_rng(1).normal(size=(12, 6)).astype("float32")
    inputs = (X, model.ops.asarray1i([5, 0, 7]), ["en", "de", "pl"])
    batched, _ = model(inputs, is_train=True)
    monkeypatch.setattr(aggregator, "BLOCK_FLOATS", 10)  # two query rows of a 5- or 7-token doc per block
    numpy.testing.assert_allclose(model.predict(inputs), batched, rtol=1e-5, atol=1e-6)
    _, backprop = model(inputs, is_train=False)
    with pytest.raises(ValueError, match="is_train=True"):  # no silent, wrong gradient
        backprop(batched)


# Pointers -----------------------------------------------------------------

def test_pointer_gradients_and_loss_match_finite_differences():
    fix_random_seed(0)
    model = entity_pointers(5, nR=3)
    model.initialize()
    rng = numpy.random.default_rng(2)
    S = rng.normal(size=(7, 5)).astype("float32")
    lengths = numpy.array([3, 4])
    queries = numpy.array([[0, 2], [1, 0], [1, 2]])
    targets = numpy.array([[0, 1, 2, 2], [3, 3, 0, 1], [1, 2, 3, 3]])

    def loss():
        (logits, mask), _ = model((S, lengths, queries), is_train=True)
        return pointer_loss(logits, mask, targets, weight=1.0)[0]

    (logits, mask), backprop = model((S, lengths, queries), is_train=True)
    assert logits.shape == (3, 4, 4) and mask.tolist()[0] == [True, True, True, False]
    value, d_logits = pointer_loss(logits, mask, targets, weight=1.0)
    dS = backprop(d_logits)[0]
    numpy.testing.assert_allclose(dS, _numeric_grad(loss, S), rtol=2e-2, atol=2e-3)
    for name in ("W_tok", "W_rel", "U", "E_r"):
        numpy.testing.assert_allclose(model.get_grad(name), _numeric_grad(loss, model.get_param(name)), rtol=2e-2, atol=2e-3)
    # the loss is the sum of four cross-entropies, averaged over queries
    log_p = logits - numpy.log(numpy.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True)) - logits.max(1, keepdims=True)
    expected = -numpy.mean([sum(log_p[q, targets[q, p], p] for p in range(4)) for q in range(3)])
    assert value == pytest.approx(expected, rel=1e-5)


def test_pointer_decoding_gives_valid_spans():
    rng = numpy.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(1, 12))
        logits = rng.normal(size=(n, 4)) * 3
        hs, he, ts, te = decode_spans(logits, max_width=3)
        assert 0 <= hs < he <= n and 0 <= ts < te <= n
        assert he - hs <= 3 and te - ts <= 3
        if n > 1:
            assert (hs, he) != (ts, te)
        if n >= 4:
            ents = numpy.array([[0, 1], [1, 3], [3, n]])
            hs, he, ts, te = decode_spans(logits, ents)
            assert [hs, he] in ents.tolist() and [ts, te] in ents.tolist() and (hs, he) != (ts, te)
    # a clear winner inside the entities, although a better free span exists
    logits = numpy.full((6, 4), -5.0)
    logits[0, 0] = logits[0, 1] = 5.0  # head "0:1" (not an entity)
    logits[2, 0] = logits[3, 1] = 2.0  # head "2:4"
    logits[5, 2] = logits[5, 3] = 5.0  # tail "5:6"
    assert decode_spans(logits) == (0, 1, 5, 6)
    assert decode_spans(logits, numpy.array([[2, 4], [5, 6]])) == (2, 4, 5, 6)
    assert decode_spans(logits, numpy.array([[2, 4]])) is None


# The whole model in the pipe ----------------------------------------------

def test_overfits_three_languages_with_and_without_entities(nlp):
    fix_random_seed(0)
    pipeline = _pipeline(_model_config())
    docs = _three_language_docs(pipeline)
    _train(pipeline, docs, 100)
    rel = pipeline.get_pipe("relation_extractor")
    assert rel.model.attrs["langs"] == ["de", "en", "pl"]
    for doc in docs:
        gold = sorted(relation_keys(doc))
        # constrained by the gold entities, as the corpus reader gives them
        assert sorted(relation_keys(pipeline(make_input_doc(doc)))) == gold
        # free decoding: the model finds the spans itself
        free = pipeline.make_doc(doc.text)
        free._.lang = doc._.lang
        predicted = pipeline(free)
        assert sorted(relation_keys(predicted)) == gold
        assert all(r.head.label_ in ("", "PER", "ORG", "LOC") for r in predicted._.relations)


def test_single_label_decoding_as_in_the_paper():
    """One relation per sentence, softmax with a no-relation output."""
    fix_random_seed(0)
    pipeline = _pipeline(_model_config(), multi_label=False)
    docs = [d for d in _three_language_docs(pipeline) if len(relation_keys(d)) <= 1]
    _train(pipeline, docs, 80)
    for doc in docs:
        assert sorted(relation_keys(pipeline(make_input_doc(doc)))) == sorted(relation_keys(doc))


def test_relations_unseen_for_a_language_are_masked():
    fix_random_seed(0)
    pipeline = _pipeline(_model_config(switcher=False))
    docs = _three_language_docs(pipeline)
    _train(pipeline, docs, 2)
    rel = pipeline.get_pipe("relation_extractor")
    labels = list(rel.labels)
    mask = dict(zip(rel.model.attrs["langs"], rel.model.attrs["label_mask"]))
    assert mask["pl"][labels.index("located_in")] == 0 and mask["pl"][labels.index("lives_in")] == 1
    assert mask["en"][labels.index("lives_in")] == 0
    batch = rel._protocol.inputs([make_input_doc(docs[2]), make_input_doc(docs[0])])
    logits = rel.model.predict(batch).relation_logits
    assert logits[0, labels.index("located_in")] == MASKED_LOGIT
    assert logits[1, labels.index("lives_in")] == MASKED_LOGIT
    # an unseen language may predict every relation
    unseen = make_input_doc(docs[0])
    unseen._.lang = "fi"
    assert (rel.model.predict(rel._protocol.inputs([unseen])).relation_logits != MASKED_LOGIT).all()


def test_serialization_keeps_languages_masks_and_router():
    fix_random_seed(0)
    pipeline = _pipeline(_model_config())
    docs = _three_language_docs(pipeline)
    _train(pipeline, docs, 30)
    loaded = _pipeline(_model_config()).from_bytes(pipeline.to_bytes())
    old, new = pipeline.get_pipe("relation_extractor").model, loaded.get_pipe("relation_extractor").model
    assert new.attrs["langs"] == old.attrs["langs"] and new.attrs["label_mask"] == old.attrs["label_mask"]
    assert router_probabilities(new.get_ref("switcher")) == router_probabilities(old.get_ref("switcher"))
    for doc in docs:
        a, b = pipeline(make_input_doc(doc)), loaded(make_input_doc(doc))
        assert [(r.key, round(r.score, 5)) for r in a._.relations] == [(r.key, round(r.score, 5)) for r in b._.relations]


def test_stage_two_trains_only_switcher_classifier_and_pointers(tmp_path):
    fix_random_seed(0)
    stage1 = _pipeline(_model_config(stage=1, switcher=False))
    docs = _three_language_docs(stage1)
    _train(stage1, docs, 5)
    stage1.to_disk(tmp_path / "stage1")
    stage2 = _pipeline(_model_config(stage=2))
    examples = [Example(make_input_doc(doc), doc) for doc in docs]
    optimizer = stage2.initialize(lambda: examples)
    make_load_stage1(str(tmp_path / "stage1"))(stage2)
    model = stage2.get_pipe("relation_extractor").model
    source = stage1.get_pipe("relation_extractor").model

    def params(node):
        return {(n.id, name): n.get_param(name).copy() for n in node.walk() for name in n.param_names if n.has_param(name)}

    # stage 2 starts from the stage-1 weights
    for name in ("tok2vec", "aggregator", "classifier", "pointers"):
        assert [p.tolist() for p in params(model.get_ref(name)).values()] == [p.tolist() for p in params(source.get_ref(name)).values()]
    frozen = {**params(model.get_ref("tok2vec")), **params(model.get_ref("aggregator"))}
    E_r = model.get_ref("pointers").get_param("E_r").copy()
    trained = {name: params(model.get_ref(name)) for name in ("switcher", "classifier")}
    W_tok = model.get_ref("pointers").get_param("W_tok").copy()
    for _ in range(5):
        stage2.update(examples, sgd=optimizer)
    after = {**params(model.get_ref("tok2vec")), **params(model.get_ref("aggregator"))}
    assert frozen.keys() == after.keys() and all(numpy.array_equal(frozen[k], after[k]) for k in frozen)
    numpy.testing.assert_array_equal(model.get_ref("pointers").get_param("E_r"), E_r)
    assert not numpy.array_equal(model.get_ref("pointers").get_param("W_tok"), W_tok)
    for name, before in trained.items():
        now = params(model.get_ref(name))
        assert any(not numpy.array_equal(before[k], now[k]) for k in before), name


def test_stage_two_refuses_a_mismatched_stage_one(tmp_path):
    stage1 = _pipeline(_model_config(stage=1, aggregator=False, switcher=False))
    docs = _three_language_docs(stage1)
    _train(stage1, docs, 1)
    stage1.to_disk(tmp_path / "stage1")
    stage2 = _pipeline(_model_config(stage=2))
    _train(stage2, docs, 0)
    with pytest.raises(ValueError, match="aggregator"):
        make_load_stage1(str(tmp_path / "stage1"))(stage2)


def test_both_stages_train_from_their_configs(tiny_corpus, tmp_path):
    def train(config, out, *overrides):
        cmd = [sys.executable, "-m", "spacy", "train", str(ROOT / "configs" / config), "--output", str(out),
               "--paths.train", str(tiny_corpus / "train.spacy"), "--paths.dev", str(tiny_corpus / "dev.spacy"),
               "--training.eval_frequency", "40", "--training.batcher.size", "8", *overrides]
        result = subprocess.run(cmd, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    train("mere_stage1_tok2vec.cfg", tmp_path / "stage1", "--training.max_steps", "120")
    train("mere_stage2_tok2vec.cfg", tmp_path / "stage2", "--training.max_steps", "40",
          "--paths.stage1", str(tmp_path / "stage1" / "model-best"))
    for stage in ("stage1", "stage2"):
        meta = json.loads((tmp_path / stage / "model-best" / "meta.json").read_text())
        assert meta["performance"]["rel_micro_f"] > 0.9, (stage, meta["performance"])
    # the stage-2 pipeline loads without importing spacy_mlre and decodes spans itself
    load = subprocess.run([sys.executable, "-c", LOAD_SCRIPT, str(tmp_path / "stage2" / "model-best")], capture_output=True, text=True)
    assert load.returncode == 0, load.stderr[-3000:]
    assert sorted(map(tuple, json.loads(load.stdout))) == [("Acme", "employs", "Zofia"), ("Zofia", "works_for", "Acme")]


def test_transformer_configs_chain_both_stages(tiny_corpus, tiny_bert, tmp_path):
    """Stage 1 on a (tiny) BERT, then stage 2 sourcing the transformer frozen
    and annotating: the relation extractor trains on top, BERT stays fixed."""
    from spacy.training.initialize import init_nlp
    from spacy.util import load_config

    from spacy_mlre.corpus.reader import RelationCorpus

    width = json.loads((tiny_bert / "config.json").read_text())["hidden_size"]
    paths = {"paths.train": str(tiny_corpus / "train.spacy"), "paths.dev": str(tiny_corpus / "dev.spacy"),
             "components.relation_extractor.model.width": width,
             "components.relation_extractor.model.aggregator.width": width}
    fix_random_seed(0)
    config = load_config(ROOT / "configs" / "mere_stage1_trf.cfg", overrides={**paths, "paths.transformer": str(tiny_bert)})
    nlp = init_nlp(config)
    examples = list(RelationCorpus(tiny_corpus / "train.spacy")(nlp))[:8]
    optimizer = nlp.create_optimizer()
    for _ in range(2):
        nlp.update(examples, sgd=optimizer)
    nlp.to_disk(tmp_path / "stage1")
    overrides = {**paths, "paths.stage1": str(tmp_path / "stage1"),
                 "components.relation_extractor.model.switcher.width": width,
                 "components.relation_extractor.model.switcher.hidden_width": 16}
    stage2 = init_nlp(load_config(ROOT / "configs" / "mere_stage2_trf.cfg", overrides=overrides))
    assert stage2.pipe_names == ["transformer", "relation_extractor"]
    def bert_weights(pipeline):
        shims = [shim for node in pipeline.get_pipe("transformer").model.walk() for shim in node.shims]
        return {k: v.detach().numpy().copy() for shim in shims for k, v in shim._model.state_dict().items()}

    bert = bert_weights(stage2)
    assert all(numpy.array_equal(v, bert_weights(nlp)[k]) for k, v in bert.items())  # sourced from stage 1
    pointers = stage2.get_pipe("relation_extractor").model.get_ref("pointers").get_param("W_tok").copy()
    optimizer = stage2.create_optimizer()
    for _ in range(2):
        stage2.update(examples, sgd=optimizer, exclude=["transformer"], annotates=["transformer"])
    after = bert_weights(stage2)
    assert bert.keys() == after.keys() and all(numpy.array_equal(v, after[k]) for k, v in bert.items())
    assert not numpy.array_equal(stage2.get_pipe("relation_extractor").model.get_ref("pointers").get_param("W_tok"), pointers)
    doc = stage2(stage2.make_doc("Zofia works for Acme ."))
    assert all(0 <= r.head.start < r.head.end <= len(doc) for r in doc._.relations)
