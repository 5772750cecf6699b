"""quantize = "int8-smooth" (ml/layers/smooth_quant.py): SmoothQuant scales cut
the int8 error of input channels with outliers, they are calibrated at
initialize on the docs given, and a saved pipeline computes what the trained
one did."""
import copy

import numpy
import pytest
import spacy

from spacy_mlre.ml.layers.frozen_encoder import build_frozen_encoder, get_shim

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from spacy_mlre.ml.layers.smooth_quant import SmoothedLinear, encoder_linears, input_absmax, smooth_quantize  # noqa: E402

TEXTS = ["Dieter arbeitet für Siemens in München .", "Alice works for Acme in Paris .", "Marie Curie was born in Warsaw ."]


def _encoder(path, docs, **kwargs):
    model = build_frozen_encoder(str(path), n_layers=2, **kwargs)
    model.initialize(X=docs)
    return model


def _error(got, full):
    """Relative L2 error of the token vectors."""
    got, full = numpy.concatenate(got), numpy.concatenate(full)
    return float(numpy.linalg.norm(got - full) / numpy.linalg.norm(full))


def test_smoothing_is_exact_before_rounding():
    """X W^T = (X / s)(W * s)^T: what makes the scales free of error."""
    torch.manual_seed(0)
    linear = torch.nn.Linear(16, 8)
    x = torch.randn(5, 16) * torch.tensor([30.0, 1.0] * 8)
    absmax = x.abs().amax(0)
    w_max = linear.weight.abs().amax(0)
    inv = 1.0 / (absmax**0.7 / w_max**0.3)
    smoothed = torch.nn.Linear(16, 8)
    with torch.no_grad():
        smoothed.weight.copy_(linear.weight / inv)
        smoothed.bias.copy_(linear.bias)
    torch.testing.assert_close(SmoothedLinear(smoothed, inv)(x), linear(x), rtol=1e-5, atol=1e-5)


def test_scales_cut_the_int8_error_of_outlier_channels():
    """The same per-channel int8 layer with and without the scales, on inputs
    whose first four channels are 50x the others (as a BERT's FFN inputs)."""
    torch.manual_seed(0)
    toy = torch.nn.Module()
    toy.encoder = torch.nn.Module()
    toy.encoder.layer = torch.nn.ModuleList([torch.nn.Sequential(torch.nn.Linear(64, 32))])
    x = torch.randn(256, 64)
    x[:, :4] *= 50.0
    with torch.no_grad():
        want = toy.encoder.layer[0](x)
    plain = smooth_quantize(copy.deepcopy(toy))  # unit scales: per-channel int8 alone
    names = encoder_linears(toy)
    absmax = input_absmax(toy, names, lambda: toy.encoder.layer[0](x))
    smooth = smooth_quantize(copy.deepcopy(toy), absmax)

    def error(model):
        with torch.no_grad():
            return float((model.encoder.layer[0](x) - want).norm() / want.norm())

    assert 0 < error(smooth) < error(plain) / 3


def test_frozen_encoder_quantizes_every_layer_linear(tiny_bert):
    nlp = spacy.blank("xx")
    docs = [nlp.make_doc(t) for t in TEXTS]
    full = _encoder(tiny_bert, docs).predict(docs)
    smooth_model = _encoder(tiny_bert, docs, quantize="int8-smooth")
    smooth = smooth_model.predict(docs)
    assert 0 < _error(smooth, full) < 1e-2
    transformer = get_shim(smooth_model)._model
    wrapped = [m for m in transformer.encoder.modules() if isinstance(m, SmoothedLinear)]
    assert len(wrapped) == 6 * len(transformer.encoder.layer)  # q, k, v, attention output, FFN in and out
    assert all(isinstance(m.linear, torch.ao.nn.quantized.dynamic.Linear) for m in wrapped)
    assert not any(type(m) is torch.nn.Linear for m in transformer.encoder.modules())
    assert type(transformer.embeddings.word_embeddings) is torch.nn.Embedding  # only the layers' Linear ones


def test_calibration_records_each_layers_input_maxima(tiny_bert):
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(tiny_bert)).eval()
    names = encoder_linears(model)
    ids = torch.tensor([[5, 6, 7, 8]])
    absmax = input_absmax(model, names, lambda: model(input_ids=ids))
    assert set(absmax) == set(names)
    seen = {}
    model.encoder.layer[0].intermediate.dense.register_forward_hook(lambda m, i, o: seen.update(x=i[0]))
    model(input_ids=ids)
    torch.testing.assert_close(absmax["encoder.layer.0.intermediate.dense"], seen["x"].abs().amax(dim=(0, 1)))


@pytest.mark.parametrize("weights_dtype", ["float32", "float16"])
def test_saved_encoder_computes_what_the_trained_one_did(tiny_bert, weights_dtype):
    nlp = spacy.blank("xx")
    docs = [nlp.make_doc(t) for t in TEXTS]
    model = _encoder(tiny_bert, docs, quantize="int8-smooth", weights_dtype=weights_dtype)
    vectors = model.predict(docs)
    loaded = build_frozen_encoder(str(tiny_bert), n_layers=2, quantize="int8-smooth").from_bytes(model.to_bytes())
    assert get_shim(loaded).quantize == "int8-smooth"
    for a, b in zip(loaded.predict(docs), vectors):
        numpy.testing.assert_array_equal(a, b)


def test_int8_smooth_needs_docs_at_initialize(tiny_bert):
    model = build_frozen_encoder(str(tiny_bert), n_layers=2, quantize="int8-smooth")
    with pytest.raises(ValueError, match="calibrates on the docs given to initialize"):
        model.initialize()


def test_structure_without_scales_loads_a_state(tiny_bert):
    """Loading rebuilds the layers with unit scales, then the state fills them in."""
    from transformers import AutoModel

    calibrated = AutoModel.from_pretrained(str(tiny_bert)).eval()
    names = encoder_linears(calibrated)
    absmax = {n: torch.rand(calibrated.get_submodule(n).in_features) * 10 for n in names}
    smooth_quantize(calibrated, absmax)
    empty = smooth_quantize(AutoModel.from_pretrained(str(tiny_bert)).eval())
    assert not torch.equal(empty.get_submodule(names[0]).inv_scale, calibrated.get_submodule(names[0]).inv_scale)
    empty.load_state_dict(calibrated.state_dict())
    ids = torch.tensor([[5, 6, 7, 8]])
    torch.testing.assert_close(empty(input_ids=ids).last_hidden_state, calibrated(input_ids=ids).last_hidden_state)
