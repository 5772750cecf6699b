"""The kernel model's transformer encoder as in the paper: E_w from the
penultimate hidden layer (spacy_mlre.HiddenStatesTransformer.v1 +
spacy_mlre.TransformerHiddenListener.v1, fine-tuned through that layer) and E_a
the CLS embedding (KernelMatrix.v1 doc_vector = "cls"), checked against the
Hugging Face model run on the same wordpieces."""
import subprocess
import sys

import numpy
import pytest
import spacy
from spacy.training import Example
from spacy.util import fix_random_seed

from spacy_mlre.corpus.reader import make_input_doc
from spacy_mlre.ml.models.kernel import build_kernel_matrix
from spacy_mlre.relations import relation_keys

from mlre_testing import ROOT, make_doc

pytest.importorskip("spacy_transformers")
torch = pytest.importorskip("torch")

@pytest.fixture(scope="module")
def tiny_bert_cls(tmp_path_factory):
    """tiny_bert's model with a tokenizer that adds [CLS] ... [SEP] (tiny_bert's adds none)."""
    from tiny_bert import build_tiny_bert

    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert-cls"), special_tokens=True)


TEXTS = ["Alice works for Acme in Paris .", "Dieter arbeitet für Siemens in München ."]
SPANS = {"@span_getters": "spacy-transformers.strided_spans.v1", "window": 128, "stride": 96}


def _transformer_nlp(tiny_bert, hidden_layer=-2, arch="spacy_mlre.HiddenStatesTransformer.v1", nlp=None):
    nlp = nlp if nlp is not None else spacy.blank("xx")
    model = {"@architectures": arch, "name": str(tiny_bert), "get_spans": SPANS}
    if arch == "spacy_mlre.HiddenStatesTransformer.v1":
        model["hidden_layer"] = hidden_layer
    nlp.add_pipe("transformer", config={"model": model})
    return nlp


def _listener(layer, cls=False):
    from spacy_mlre.ml.layers.trf_hidden import build_transformer_hidden_listener
    from thinc.api import reduce_mean

    model = build_transformer_hidden_listener(reduce_mean(), layer=layer)
    model.get_ref("trf_hidden").attrs["cls_row"] = cls
    model.get_ref("listener").set_dim("nO", 32)  # what the transformer pipe sets when it finds it
    return model


def _hf_hidden_states(tiny_bert, trf_data):
    """hidden_states of an independently loaded HF model on the doc's wordpieces."""
    from transformers import AutoModel

    hf = AutoModel.from_pretrained(str(tiny_bert)).eval()
    wp = trf_data.wordpieces
    with torch.no_grad():
        out = hf(input_ids=torch.as_tensor(wp.input_ids, dtype=torch.long),
                 attention_mask=torch.as_tensor(wp.attention_mask), output_hidden_states=True)
    return [h.numpy() for h in out.hidden_states]


def _pool_tokens(states, align):
    """Mean of each token's aligned wordpiece rows (the listener's reduce_mean)."""
    flat = states.reshape(-1, states.shape[-1])
    rows, start = [], 0
    for n in align.lengths:
        rows.append(flat[align.dataXd[start:start + n]].mean(axis=0))
        start += n
    return numpy.stack(rows)


def test_listener_layer_is_the_penultimate_hidden_state(tiny_bert):
    nlp = _transformer_nlp(tiny_bert, hidden_layer=-2)
    nlp.initialize()
    docs = list(nlp.pipe(TEXTS))
    penultimate, last = _listener(-2), _listener(-1)
    E_pen, E_last = penultimate.predict(docs), last.predict(docs)
    for doc, Xp, Xl in zip(docs, E_pen, E_last):
        trf_data = doc._.trf_data
        hidden = _hf_hidden_states(tiny_bert, trf_data)
        assert len(hidden) == 3  # embeddings + 2 layers: -2 is the first encoder layer's output
        numpy.testing.assert_allclose(trf_data.model_output["hidden_states[-2]"], hidden[-2], atol=1e-5)
        numpy.testing.assert_allclose(Xp, _pool_tokens(hidden[-2], trf_data.align), atol=1e-5)
        numpy.testing.assert_allclose(Xl, _pool_tokens(hidden[-1], trf_data.align), atol=1e-5)
        assert Xp.shape == (len(doc), 32) and not numpy.allclose(Xp, Xl)


def test_cls_doc_vector_equals_the_cls_row(tiny_bert_cls):
    nlp = _transformer_nlp(tiny_bert_cls, hidden_layer=-2)
    nlp.initialize()
    docs = list(nlp.pipe(TEXTS + [""]))
    Xs = _listener(-2, cls=True).predict(docs)
    for doc, X in zip(docs[:2], Xs):
        assert doc._.trf_data.wordpieces.strings[0][0] == "[CLS]"
        hidden = _hf_hidden_states(tiny_bert_cls, doc._.trf_data)
        assert X.shape == (len(doc) + 1, 32)
        numpy.testing.assert_allclose(X[0], hidden[-1][0, 0], atol=1e-5)  # CLS of the last layer
        numpy.testing.assert_allclose(X[1:], _pool_tokens(hidden[-2], doc._.trf_data.align), atol=1e-5)
    assert Xs[2].shape[0] == 1 and not Xs[2].any()  # an empty doc: a zero doc vector, no tokens
    # the kernel model wires it: doc_vector = "cls" turns the CLS row on
    model = build_kernel_matrix(_listener(-2), width=32, doc_vector="cls", nO=2)
    assert model.get_ref("tok2vec").get_ref("trf_hidden").attrs["cls_row"]


def test_cls_needs_an_encoder_that_gives_it(tiny_bert):
    from thinc.api import Model

    plain = Model("plain_tok2vec", lambda model, X, is_train: (X, lambda d: d))
    with pytest.raises(ValueError, match="TransformerHiddenListener"):
        build_kernel_matrix(plain, width=32, doc_vector="cls")
    # a tokenizer without a CLS token (tiny_bert's aligns wordpiece 0 to the first token)
    nlp = _transformer_nlp(tiny_bert, hidden_layer=-2)
    nlp.initialize()
    with pytest.raises(ValueError, match="special token"):
        _listener(-2, cls=True).predict(list(nlp.pipe(TEXTS)))


def test_penultimate_layer_needs_a_transformer_that_exposes_it(tiny_bert):
    nlp = _transformer_nlp(tiny_bert, arch="spacy-transformers.TransformerModel.v3")
    nlp.initialize()
    docs = list(nlp.pipe(TEXTS))
    with pytest.raises(ValueError, match="HiddenStatesTransformer.v1 with hidden_layer = -2"):
        _listener(-2).predict(docs)


def _kernel_pipeline(tiny_bert, layer, doc_vector, nlp=None):
    nlp = _transformer_nlp(tiny_bert, hidden_layer=-2, nlp=nlp)
    model = {"@architectures": "spacy_mlre.KernelMatrix.v1", "width": 32, "projection_width": 8,
             "attention_heads": 4, "doc_vector": doc_vector, "dropout": 0.0,
             "tok2vec": {"@architectures": "spacy_mlre.TransformerHiddenListener.v1", "layer": layer,
                         "pooling": {"@layers": "reduce_mean.v1"}}}
    nlp.add_pipe("relation_extractor", config={"model": model})
    return nlp


def _update(nlp, examples, optimizer):
    """As `spacy train` does: backprop through every component, then apply (nlp.update
    with sgd would apply the transformer's update before the listener's backprop)."""
    losses = nlp.update(examples, sgd=False)
    for name, proc in nlp.pipeline:
        proc.finish_update(optimizer)
    return losses


def _encoder_layers(nlp):
    bert = nlp.get_pipe("transformer").model.transformer
    return bert.encoder.layer[0], bert.encoder.layer[1]


def test_gradients_reach_the_transformer_through_the_penultimate_layer(tiny_bert_cls, gold_docs):
    tiny_bert = tiny_bert_cls
    fix_random_seed(0)
    examples = [Example(make_input_doc(doc), doc) for doc in gold_docs]
    # E_w from layer -2 and a pooled E_a: only the path through hidden_states[-2]
    nlp = _kernel_pipeline(tiny_bert, layer=-2, doc_vector="mean")
    nlp.initialize(lambda: examples)
    first, second = _encoder_layers(nlp)
    nlp.update(examples, sgd=False)  # backprop only: gradients stay on the torch parameters
    grad_first = [p.grad for p in first.parameters() if p.grad is not None]
    assert grad_first and any(float(g.abs().sum()) > 0 for g in grad_first)
    # the last layer is not on the path: its gradients are exactly zero
    assert all(p.grad is None or not p.grad.any() for p in second.parameters())

    # with the CLS doc vector, the last layer gets gradients too; an update changes both
    fix_random_seed(0)
    nlp = _kernel_pipeline(tiny_bert, layer=-2, doc_vector="cls")
    optimizer = nlp.initialize(lambda: examples)
    first, second = _encoder_layers(nlp)
    before = [p.detach().clone() for p in list(first.parameters()) + list(second.parameters())]
    n_first = len(list(first.parameters()))
    _update(nlp, examples, optimizer)
    after = list(first.parameters()) + list(second.parameters())
    changed = [not torch.equal(b, a.detach()) for b, a in zip(before, after)]
    assert any(changed[:n_first]) and any(changed[n_first:])


def test_cls_and_penultimate_overfit_a_small_set(tiny_bert_cls, nlp, gold_docs):
    """End to end through the real transformer: the listener's gradients make
    the whole model learn the gold relations."""
    fix_random_seed(0)
    examples = [Example(make_input_doc(doc), doc) for doc in gold_docs]
    nlp = _kernel_pipeline(tiny_bert_cls, layer=-2, doc_vector="cls", nlp=nlp)
    optimizer = nlp.initialize(lambda: examples)
    for _ in range(40):
        losses = _update(nlp, examples, optimizer)
    assert losses["relation_extractor"] < 0.1
    for doc, predicted in zip(gold_docs, nlp.pipe([make_input_doc(doc) for doc in gold_docs])):
        assert set(relation_keys(predicted)) == set(relation_keys(doc)), doc.text


def test_kernel_trf_config_trains_with_penultimate_layer_and_cls(tiny_corpus, tiny_bert_cls, tmp_path):
    """configs/kernel_trf.cfg with the paper's switches on: a few steps, saved, loaded, predicts."""
    cmd = [sys.executable, "-m", "spacy", "train", str(ROOT / "configs" / "kernel_trf.cfg"), "--output", str(tmp_path),
           "--paths.train", str(tiny_corpus / "train.spacy"), "--paths.dev", str(tiny_corpus / "dev.spacy"),
           "--paths.transformer", str(tiny_bert_cls), "--components.relation_extractor.model.width", "32",
           "--components.relation_extractor.model.attention_heads", "4",
           "--components.relation_extractor.model.tok2vec.layer", "-2",
           "--components.relation_extractor.model.doc_vector", "cls",
           "--training.max_steps", "6", "--training.eval_frequency", "3"]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    nlp = spacy.load(tmp_path / "model-last")
    model = nlp.get_pipe("relation_extractor").model
    assert model.attrs["doc_vector"] == "cls"
    hidden = model.get_ref("tok2vec").get_ref("trf_hidden")
    assert hidden.attrs["layer"] == -2 and hidden.attrs["cls_row"]
    doc = nlp(make_input_doc(make_doc(spacy.blank("xx"), "Zofia works for Acme .", [(0, 5, "PER"), (16, 20, "ORG")], [])))
    assert "hidden_states[-2]" in doc._.trf_data.model_output
    assert all(0.0 <= r.score <= 1.0 for r in doc._.relations)


def test_listener_gradients_equal_torch_autograd(tiny_bert_cls):
    """What the listener sends back, through the Transformer's unsplit and the
    model's backward, gives the transformer's parameters exactly the gradients
    torch computes for the same function of hidden_states[-2] and the CLS row."""
    from transformers import AutoModel

    no_dropout = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
    nlp = spacy.blank("xx")
    nlp.add_pipe("transformer", config={"model": {
        "@architectures": "spacy_mlre.HiddenStatesTransformer.v1", "name": str(tiny_bert_cls),
        "get_spans": SPANS, "hidden_layer": -2, "transformer_config": no_dropout}})
    nlp.initialize()
    trf = nlp.get_pipe("transformer").model
    docs = [nlp.make_doc(text) for text in TEXTS]
    listener = _listener(-2, cls=True).get_ref("trf_hidden")
    full, bp_full = trf.begin_update(docs)
    Ys, bp_hidden = listener(full.doc_data, is_train=True)
    rng = numpy.random.default_rng(0)
    dYs = [rng.normal(size=Y.shape).astype("float32") for Y in Ys]
    d_datas = bp_hidden(dYs)
    bp_full(full.unsplit_by_doc([d.tensors for d in d_datas]))
    ours = {name: p.grad.clone() for name, p in trf.transformer.named_parameters() if p.grad is not None}

    hf = AutoModel.from_pretrained(str(tiny_bert_cls), **no_dropout)
    loss = 0.0
    for data, dY in zip(full.doc_data, dYs):
        wp = data.wordpieces
        out = hf(input_ids=torch.as_tensor(wp.input_ids, dtype=torch.long),
                 attention_mask=torch.as_tensor(wp.attention_mask), output_hidden_states=True)
        flat = out.hidden_states[-2].reshape(-1, 32)
        starts = numpy.cumsum(data.align.lengths) - data.align.lengths
        tokens = torch.stack([flat[torch.as_tensor(data.align.dataXd[s:s + n], dtype=torch.long)].mean(0)
                              for s, n in zip(starts, data.align.lengths)])
        cls = out.last_hidden_state[:, 0].mean(0)
        loss = loss + (torch.as_tensor(dY[1:]) * tokens).sum() + (torch.as_tensor(dY[0]) * cls).sum()
    loss.backward()
    reference = {name: p.grad for name, p in hf.named_parameters() if p.grad is not None}
    assert set(ours) == set(reference)
    for name, grad in reference.items():
        numpy.testing.assert_allclose(ours[name].numpy(), grad.numpy(), rtol=1e-4, atol=1e-6, err_msg=name)
    # the last layer's own weights only get the CLS path, the first layer both
    assert float(ours["encoder.layer.1.output.dense.weight"].abs().sum()) > 0
