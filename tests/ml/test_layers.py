import numpy
import pytest
from thinc.api import NumpyOps

from mlre_testing import numeric_grad
from spacy_mlre.ml.layers.spans import gather_rows, mean_between, span_pooler, span_token_indices




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


def test_gather_rows_scatters_back():
    X = numpy.arange(6, dtype="float32").reshape(3, 2)
    model = gather_rows()
    Y, backprop = model((X, numpy.array([2, 0, 2])), is_train=True)
    assert Y.tolist() == [[4, 5], [0, 1], [4, 5]]
    dX, _ = backprop(numpy.ones((3, 2), dtype="float32"))
    assert dX.tolist() == [[1, 1], [0, 0], [2, 2]]
