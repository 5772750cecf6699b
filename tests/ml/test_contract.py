"""The contract every relation model keeps with the pipe (ml/inputs.py), checked
on the shipped CPU configs: backprop takes a gradient of the output's own type
and shape, and only the optimizer that `update` receives changes weights."""
import numpy
import pytest
import spacy
from spacy.training import Example
from spacy.util import fix_random_seed, load_config
from thinc.types import Ragged

from spacy_mlre.corpus.reader import make_input_doc
from spacy_mlre.ml.inputs import JointOutput

from mlre_testing import ROOT

CONFIGS = ["pair_tok2vec", "kernel_tok2vec", "marker_tok2vec", "mere_stage1_tok2vec", "amnre"]


def _pipeline(name: str, gold_docs):
    """A blank pipeline with the relation_extractor of configs/<name>.cfg, initialized on gold_docs."""
    fix_random_seed(0)
    config = load_config(ROOT / "configs" / f"{name}.cfg", interpolate=True)
    component = dict(config["components"]["relation_extractor"])
    component.pop("factory")
    nlp = spacy.blank("xx")
    rel = nlp.add_pipe("relation_extractor", config=component)
    examples = [Example(make_input_doc(doc), doc) for doc in gold_docs]
    nlp.initialize(lambda: examples)
    return nlp, rel, examples


def _weights(model) -> list:
    """Every parameter of the model and of its torch shims, copied."""
    out = []
    for node in model.walk():
        for name in node.param_names:
            if node.has_param(name):
                out.append(numpy.array(node.get_param(name), copy=True))
        for shim in node.shims:
            torch_model = getattr(shim, "_model", None)
            if torch_model is not None and hasattr(torch_model, "state_dict"):
                out.extend(t.detach().cpu().numpy().copy() for t in torch_model.state_dict().values())
    return out


def _same_shape(grad, value) -> bool:
    """Whether `grad` has `value`'s type and shapes (a None slot: no gradient there)."""
    if grad is None:
        return True
    if isinstance(value, JointOutput):
        return isinstance(grad, JointOutput) and _same_shape(grad.relation_logits, value.relation_logits) and (
            value.pointer_logits is None or _same_shape(grad.pointer_logits, value.pointer_logits))
    if isinstance(value, Ragged):
        return isinstance(grad, Ragged) and grad.data.shape == value.data.shape and numpy.array_equal(
            numpy.asarray(grad.lengths), numpy.asarray(value.lengths))
    if isinstance(value, tuple):
        return isinstance(grad, tuple) and len(grad) == len(value) and all(map(_same_shape, grad, value))
    return tuple(grad.shape) == tuple(value.shape)


def _fill(structure_of, value):
    """`value`'s gradient slots filled from structure (None stays None)."""
    if value is None:
        return None
    if isinstance(value, JointOutput):
        return JointOutput(relation_logits=_fill(structure_of, value.relation_logits),
                           pointer_logits=_fill(structure_of, value.pointer_logits))
    if isinstance(value, Ragged):
        return Ragged(structure_of(value.data), value.lengths)
    if isinstance(value, tuple):
        return tuple(_fill(structure_of, v) for v in value)
    return structure_of(value)


@pytest.mark.parametrize("name", CONFIGS)
def test_update_without_optimizer_changes_no_weight(name, gold_docs):
    nlp, rel, examples = _pipeline(name, gold_docs)
    before = _weights(rel.model)
    losses = rel.update(examples, sgd=None)
    assert losses["relation_extractor"] > 0
    after = _weights(rel.model)
    assert len(before) == len(after) and len(before) > 0
    for a, b in zip(before, after):
        numpy.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", CONFIGS)
def test_backprop_takes_a_gradient_of_the_output_shape(name, gold_docs):
    nlp, rel, examples = _pipeline(name, gold_docs)
    X = rel._protocol.training_inputs(examples)
    Y, backprop = rel.model.begin_update(X)
    loss, dY = rel.get_loss(examples, (X, Y))
    assert numpy.isfinite(loss) and loss > 0
    # the gradient has the output's type and shapes wherever it is given ...
    assert dY is not None and _same_shape(dY, Y)
    backprop(dY)
    # ... and backprop takes any such gradient, e.g. zeros in every slot
    Y, backprop = rel.model.begin_update(X)
    backprop(_fill(lambda a: rel.model.ops.alloc(a.shape, dtype="float32"), Y))

