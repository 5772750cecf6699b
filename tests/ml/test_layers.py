import numpy
import pytest
from thinc.api import Maxout, NumpyOps

from mlre_testing import numeric_grad
from spacy_mlre.ml.layers.pair_maxout import pair_maxout
from spacy_mlre.ml.layers.spans import mean_between, span_pooler, span_token_indices




def test_span_token_indices():
    idx, lengths = span_token_indices(numpy, numpy.array([[5, 8], [8, 10], [0, 1]]))
    assert idx.tolist() == [5, 6, 7, 8, 9, 0]
    assert lengths.tolist() == [3, 2, 1]


@pytest.mark.parametrize("pooling", ["mean", "max", "first"])
def test_span_pooler_values_and_gradient(pooling):
    rng = numpy.random.default_rng(0)
    X = rng.normal(size=(7, 3)).astype("float64")
    spans = numpy.array([[0, 2], [2, 5], [6, 7], [1, 4]])
    model = span_pooler(pooling)
    Y, backprop = model((X.astype("float32"), spans), is_train=True)
    expected = {
        "mean": numpy.stack([X[s:e].mean(0) for s, e in spans]),
        "max": numpy.stack([X[s:e].max(0) for s, e in spans]),
        "first": numpy.stack([X[s] for s, e in spans]),
    }[pooling]
    numpy.testing.assert_allclose(Y, expected, rtol=1e-5)
    W = rng.normal(size=Y.shape)
    dX, _ = backprop((W).astype("float32"))
    num = numeric_grad(lambda X_: float((model.predict((X_.astype("float32"), spans)) * W).sum()), X.copy(), eps=1e-3)
    numpy.testing.assert_allclose(dX, num, rtol=1e-2, atol=1e-3)


def test_mean_between_values_empty_rows_and_gradient():
    rng = numpy.random.default_rng(1)
    X = rng.normal(size=(6, 2)).astype("float32")
    spans = numpy.array([[1, 4], [3, 3], [5, 2], [0, 6]])  # empty and inverted rows give zeros
    model = mean_between()
    Y, backprop = model((X, spans), is_train=True)
    numpy.testing.assert_allclose(Y[0], X[1:4].mean(0), rtol=1e-5)
    assert not Y[1].any() and not Y[2].any()
    numpy.testing.assert_allclose(Y[3], X.mean(0), rtol=1e-5)
    W = rng.normal(size=Y.shape).astype("float32")
    dX, _ = backprop(W)
    num = numeric_grad(lambda X_: float((model.predict((X_.astype("float32"), spans)) * W).sum()), X.astype("float64"), eps=1e-3)
    numpy.testing.assert_allclose(dX, num, rtol=1e-2, atol=1e-3)


@pytest.mark.parametrize("feats_width", [3, 0])
def test_pair_maxout_equals_maxout_on_concatenated_pairs(feats_width):
    """Projecting entities once must give Maxout's outputs and gradients on [E[h]; E[t]; F]."""
    rng = numpy.random.default_rng(2)
    E = rng.normal(size=(5, 4)).astype("float32")
    F = rng.normal(size=(7, feats_width)).astype("float32")
    pairs = numpy.array([[0, 1], [1, 0], [2, 4], [4, 4], [3, 0], [0, 2], [1, 1]], dtype="int32")
    model = pair_maxout(nO=6, nP=3)
    model.initialize(X=(E, pairs, F))
    model.set_param("b", rng.normal(size=(6, 3)).astype("float32"))
    reference = Maxout(nO=6, nP=3, nI=8 + feats_width)
    reference.initialize()
    reference.set_param("W", model.get_param("W").copy())
    reference.set_param("b", model.get_param("b").copy())
    Y, backprop = model((E, pairs, F), is_train=True)
    Y_ref, backprop_ref = reference(numpy.concatenate([E[pairs[:, 0]], E[pairs[:, 1]], F], axis=1), is_train=True)
    numpy.testing.assert_allclose(Y, Y_ref, rtol=1e-5, atol=1e-5)
    dY = rng.normal(size=Y.shape).astype("float32")
    dE, _, dF = backprop(dY)
    dX = backprop_ref(dY)
    dE_ref = numpy.zeros_like(E)
    numpy.add.at(dE_ref, pairs[:, 0], dX[:, :4])
    numpy.add.at(dE_ref, pairs[:, 1], dX[:, 4:8])
    numpy.testing.assert_allclose(dE, dE_ref, rtol=1e-5, atol=1e-5)
    numpy.testing.assert_allclose(dF, dX[:, 8:], rtol=1e-5, atol=1e-5)
    numpy.testing.assert_allclose(model.get_grad("W"), reference.get_grad("W"), rtol=1e-5, atol=1e-5)
    numpy.testing.assert_allclose(model.get_grad("b"), reference.get_grad("b"), rtol=1e-5, atol=1e-5)


def test_pair_maxout_no_pairs():
    E = numpy.ones((3, 4), dtype="float32")
    model = pair_maxout(nO=2, nP=3)
    model.initialize(X=(E, numpy.array([[0, 1]]), numpy.zeros((1, 2), dtype="float32")))
    Y, backprop = model((E, numpy.zeros((0, 2), dtype="int32"), numpy.zeros((0, 2), dtype="float32")), is_train=True)
    assert Y.shape == (0, 2)
    dE, _, dF = backprop(Y)
    assert dE.shape == (3, 4) and not dE.any() and dF.shape == (0, 2)
