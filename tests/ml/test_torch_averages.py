"""Parameter averages (use_averages = true) reach the torch weights of every
relation model: thinc's PyTorchShim.use_params alone leaves them unused."""
import numpy
import pytest
from spacy.util import load_config, registry
from thinc.api import Adam, PyTorchWrapper_v2
from thinc.shims import PyTorchShim

from mlre_testing import ROOT
from spacy_mlre.ml.layers.torch_averages import average_torch_weights

torch = pytest.importorskip("torch")


def test_use_params_swaps_in_the_averages_and_back():
    torch.manual_seed(0)
    model = average_torch_weights(PyTorchWrapper_v2(torch.nn.Linear(3, 2)))
    X = numpy.random.default_rng(0).normal(size=(4, 3)).astype("float32")
    optimizer = Adam(0.1, use_averages=True)
    for _ in range(3):
        Y, backprop = model.begin_update(X)
        backprop(numpy.ones_like(Y))
        model.finish_update(optimizer)
    shim = model.shims[0]
    trained = shim._model.weight.detach().numpy().copy()
    average = optimizer.averages[(shim.id, "weight")]
    assert not numpy.allclose(average, trained)
    with model.use_params(optimizer.averages):
        numpy.testing.assert_allclose(shim._model.weight.detach().numpy(), average)
        numpy.testing.assert_allclose(model.predict(X), X @ average.T + optimizer.averages[(shim.id, "bias")], rtol=1e-5)
    numpy.testing.assert_array_equal(shim._model.weight.detach().numpy(), trained)


def test_wrapping_twice_keeps_one_class():
    model = average_torch_weights(average_torch_weights(PyTorchWrapper_v2(torch.nn.Linear(3, 2))))
    assert type(model.shims[0]).__name__ == "AveragedPyTorchShim"


def _relation_models():
    for path in sorted((ROOT / "configs").glob("*.cfg")):
        cfg = load_config(path, overrides={"paths.transformer": "unused"}, interpolate=True)
        for name, component in cfg["components"].items():
            if component.get("factory") == "relation_extractor":
                yield path.name, registry.resolve({"model": component["model"]})["model"]


def test_every_torch_weight_of_the_configs_relation_models_reads_the_averages():
    with_torch = {}
    for config, model in _relation_models():
        shims = [s for node in model.walk() for s in node.shims if isinstance(s, PyTorchShim)]
        if shims:
            with_torch[config] = [getattr(s, "reads_optimizer_keys", False) for s in shims]
    # the families with trainable torch weights: AMNRE, the kernel head's attention, both marker encoders
    assert {"amnre.cfg", "kernel_tok2vec.cfg", "marker_tok2vec.cfg", "marker_trf.cfg"} <= set(with_torch)
    assert all(all(flags) for flags in with_torch.values()), with_torch
