"""PairClassifier.v2: chain(pair features, scorer) with swappable blocks."""
import numpy
import pytest
from spacy.training import Example
from spacy.util import fix_random_seed, registry
from thinc.api import Model, reduce_max

from spacy_mlre.corpus.reader import make_input_doc
from spacy_mlre.ml.layers.pair_features import pair_features
from spacy_mlre.ml.models.pair import build_pair_classifier, build_pair_classifier_v2, build_pair_scorer

from mlre_testing import numeric_grad

TOK2VEC = {"@architectures": "spacy.Tok2Vec.v2",
           "embed": {"@architectures": "spacy.MultiHashEmbed.v2", "width": 12, "rows": [100, 50, 50, 50],
                     "attrs": ["NORM", "PREFIX", "SUFFIX", "SHAPE"], "include_static_vectors": False},
           "encode": {"@architectures": "spacy.MaxoutWindowEncoder.v2", "width": 12, "window_size": 1,
                      "maxout_pieces": 2, "depth": 1}}


def _tok2vec() -> Model:
    return registry.resolve({"x": TOK2VEC})["x"]


def _inputs(nlp, gold_docs):
    rel = nlp.add_pipe("relation_extractor")
    docs = [make_input_doc(doc) for doc in gold_docs]
    return docs, rel.get_candidates(docs)


def test_v2_equals_v1_with_the_same_weights(nlp, gold_docs):
    """v2 with reduce_mean and PairScorer.v1 is v1 with pooling "mean", rebuilt from blocks."""
    X = _inputs(nlp, gold_docs)
    fix_random_seed(0)
    v1 = build_pair_classifier(_tok2vec(), pooling="mean", hidden_width=8, dropout=0.0, nO=3)
    v1.initialize(X=X)
    v2 = build_pair_classifier_v2(_tok2vec(), registry.resolve({"x": {"@layers": "reduce_mean.v1"}})["x"],
                                  build_pair_scorer(hidden_width=8, dropout=0.0, nO=3))
    v2.initialize(X=X)
    features = v2.layers[0]
    features.get_ref("tok2vec").from_bytes(v1.get_ref("tok2vec").to_bytes())
    features.get_ref("type_embed").from_bytes(v1.get_ref("type_embed").to_bytes())
    v2.layers[1].from_bytes(v1.get_ref("classifier").to_bytes())
    numpy.testing.assert_allclose(v2.predict(X), v1.predict(X), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("context,product", [(True, True), (False, True), (True, False), (False, False)])
def test_pair_features_gradient(nlp, gold_docs, context, product):
    """Backprop of every feature (pooled entities, types, context, head * tail)
    against finite differences, through a fixed random projection of the features."""
    X = _inputs(nlp, gold_docs)
    fix_random_seed(0)
    docs, cands = X
    tokvecs = [numpy.random.default_rng(i).normal(size=(len(doc), 6)).astype("float32") for i, doc in enumerate(docs)]
    layer = pair_features(_fixed(tokvecs), reduce_max(), entity_type_width=0, context=context, product=product)
    layer.initialize(X=X)
    (ents, pairs, feats), backprop = layer(X, is_train=True)
    rng = numpy.random.default_rng(1)
    R_e, R_f = rng.normal(size=ents.shape), rng.normal(size=feats.shape)
    backprop((R_e.astype("float32"), pairs, R_f.astype("float32")))
    analytic = layer.get_ref("tok2vec").attrs["grad"]

    def f(flat):
        parts = numpy.split(flat, numpy.cumsum([len(d) for d in docs])[:-1])
        layer.get_ref("tok2vec").attrs["values"] = [p.astype("float32") for p in parts]
        e, _, p = layer.predict(X)
        return float((e * R_e).sum() + (p * R_f).sum())

    flat = numpy.concatenate(tokvecs).astype("float64")
    numpy.testing.assert_allclose(numpy.concatenate(analytic), numeric_grad(f, flat, eps=1e-3), rtol=1e-2, atol=1e-3)


def _fixed(values):
    """A tok2vec stand-in that returns given vectors and records its gradient."""

    def forward(model, docs, is_train):
        def backprop(dYs):
            model.attrs["grad"] = [numpy.asarray(d) for d in dYs]
            return docs

        return [numpy.asarray(v) for v in model.attrs["values"]], backprop

    return Model("fixed", forward, dims={"nO": values[0].shape[1]}, attrs={"values": values})


def test_swapping_the_reducer_and_the_product_feature_trains(nlp, gold_docs):
    """A config with spaCy's mean_max_reducer (a width-changing reducer) and
    head * tail learns the gold relations."""
    model = {"@architectures": "spacy_mlre.PairClassifier.v2", "product": True, "tok2vec": TOK2VEC,
             "reducer": {"@layers": "spacy.mean_max_reducer.v1", "hidden_size": 16},
             "scorer": {"@architectures": "spacy_mlre.PairScorer.v1", "hidden_width": 32, "dropout": 0.0}}
    fix_random_seed(0)
    nlp.add_pipe("relation_extractor", config={"model": model})
    examples = [Example(make_input_doc(doc), doc) for doc in gold_docs]
    optimizer = nlp.initialize(lambda: examples)
    for _ in range(100):  # a 12-wide tok2vec of depth 1 learns slower than the pipe's default
        losses = nlp.update(examples, sgd=optimizer)
    assert losses["relation_extractor"] < 0.1
    for doc, predicted in zip(gold_docs, nlp.pipe([make_input_doc(doc) for doc in gold_docs])):
        assert {r.key for r in predicted._.relations} == {r.key for r in doc._.relations}
