"""EntityMarker.v1: marker insertion, windows and summary positions on
hand-built docs (positions computed by hand), overfitting with the CPU encoder
and the tiny BERT, and typed marker tokens surviving a save/load round trip."""
from types import SimpleNamespace

import numpy
import pytest
import spacy
from spacy.tokens import Span
from spacy.training import Example
from spacy.util import fix_random_seed
from thinc.api import Config

from mlre_testing import LOAD_SCRIPT, ROOT, make_doc
from spacy_mlre.ml.markers.layout import (
    FIXED_MARKERS,
    PairPlan,
    build_layout,
    marker_rows,
    marker_vocab,
    summary_spans,
)
from spacy_mlre.ml.models.marker import make_plan
from spacy_mlre.pipeline.candidates import build_candidates


def _plan(nlp, docs, markers, entity_labels=("LOC", "ORG", "PER")):
    ents = [list(doc.ents) for doc in docs]
    cands = build_candidates(docs, ents)
    stub = SimpleNamespace(attrs={"markers": markers, "marker_vocab": marker_vocab(entity_labels)})
    return cands, make_plan(stub, docs, cands), stub.attrs["marker_vocab"]


def _render(docs, layout, vocab):
    """Each marked sequence as strings: words of the batch, then marker names."""
    words = [t.text for doc in docs for t in doc]
    table = words + list(vocab)
    flat = [table[i] for i in layout.index]
    out, start = [], 0
    for n in layout.lengths.tolist():
        out.append(" ".join(flat[start : start + n]))
        start += n
    return out


def _pair(cands, head_start, tail_start):
    starts = cands.spans[:, 0]
    rows = [i for i, (h, t) in enumerate(cands.pairs.tolist()) if starts[h] == head_start and starts[t] == tail_start]
    assert len(rows) == 1
    return rows[0]


@pytest.fixture
def two_docs(nlp):
    d1 = make_doc(nlp, "Alice works for Acme in Paris .", [(0, 5, "PER"), (16, 20, "ORG"), (24, 29, "LOC")], [])
    d2 = make_doc(nlp, "Bob Carol", [(0, 3, "PER"), (4, 9, "PER")], [])
    return [d1, d2]


def test_typed_markers_tail_before_head(nlp, two_docs):
    cands, plan, vocab = _plan(nlp, two_docs, "typed")
    layout = build_layout(plan, numpy.arange(len(two_docs[0]) + len(two_docs[1]) + 1), None)
    seqs = _render(two_docs, layout, vocab)
    i = _pair(cands, 3, 0)  # head Acme, tail Alice
    assert seqs[i] == "[CLS] [PER] Alice [PER] works for [ORG] Acme [ORG] in Paris . [SEP]"
    assert layout.marker_pos[i].tolist() == [6, 8, 1, 3]
    offset = int(layout.offsets[i])
    n = cands.n_pairs
    assert summary_spans(layout, "cls")[i].tolist() == [offset, offset + 1]
    es = summary_spans(layout, "entity_start")
    assert es[i].tolist() == [offset + 6, offset + 7] and es[n + i].tolist() == [offset + 1, offset + 2]
    emp = summary_spans(layout, "entity_maxpool")
    assert emp[i].tolist() == [offset + 6, offset + 9] and emp[n + i].tolist() == [offset + 1, offset + 4]


def test_uniform_markers_adjacent_entities_at_doc_start_and_end(nlp, two_docs):
    cands, plan, vocab = _plan(nlp, two_docs, "uniform")
    layout = build_layout(plan, numpy.arange(len(two_docs[0]) + len(two_docs[1]) + 1), None)
    seqs = _render(two_docs, layout, vocab)
    # second doc: Bob = words 7, Carol = word 8 of the batch
    forward, backward = _pair(cands, 0, 1), _pair(cands, 1, 0)
    assert cands.pair_doc[forward] == 1
    assert seqs[forward] == "[CLS] [E1] Bob [/E1] [E2] Carol [/E2] [SEP]"
    assert seqs[backward] == "[CLS] [E2] Bob [/E2] [E1] Carol [/E1] [SEP]"
    assert layout.marker_pos[forward].tolist() == [1, 3, 4, 6]
    assert layout.marker_pos[backward].tolist() == [4, 6, 1, 3]
    assert seqs[_pair(cands, 0, 5)] == "[CLS] [E1] Alice [/E1] works for Acme in [E2] Paris [/E2] . [SEP]"


def test_typed_adjacent_same_type_and_unseen_type_falls_back(nlp):
    doc = make_doc(nlp, "Bob Carol Xyz", [(0, 3, "PER"), (4, 9, "PER"), (10, 13, "ALIEN")], [])
    cands, plan, vocab = _plan(nlp, [doc], "typed", entity_labels=["PER"])
    layout = build_layout(plan, numpy.arange(len(doc) + 1), None)
    seqs = _render([doc], layout, vocab)
    assert seqs[_pair(cands, 0, 1)] == "[CLS] [PER] Bob [PER] [PER] Carol [PER] Xyz [SEP]"
    assert seqs[_pair(cands, 2, 1)] == "[CLS] Bob [PER] Carol [PER] [ENT] Xyz [ENT] [SEP]"


def test_long_doc_window_around_the_pair(nlp):
    words = [f"w{i}" for i in range(30)]
    doc = spacy.tokens.Doc(nlp.vocab, words=words)
    doc.ents = [Span(doc, 10, 11, "PER"), Span(doc, 13, 14, "ORG"), Span(doc, 0, 1, "LOC"), Span(doc, 2, 3, "LOC")]
    cands, plan, vocab = _plan(nlp, [doc], "uniform")
    layout = build_layout(plan, numpy.arange(31), 8)
    seqs = _render([doc], layout, vocab)
    # covering span [10, 14) is 4 words; 4 left over: 2 on each side
    i = _pair(cands, 10, 13)
    assert layout.windows[i].tolist() == [8, 16]
    assert seqs[i] == "[CLS] w8 w9 [E1] w10 [/E1] w11 w12 [E2] w13 [/E2] w14 w15 [SEP]"
    assert layout.marker_pos[i].tolist() == [3, 5, 8, 10]
    # at the doc start nothing is left of the pair: the right side takes all of it
    j = _pair(cands, 2, 0)
    assert layout.windows[j].tolist() == [0, 8]
    assert seqs[j] == "[CLS] [E2] w0 [/E2] w1 [E1] w2 [/E1] w3 w4 w5 w6 w7 [SEP]"
    # a pair wider than the limit keeps just its covering span
    covering = numpy.maximum(plan.head[:, 1], plan.tail[:, 1]) - numpy.minimum(plan.head[:, 0], plan.tail[:, 0])
    assert layout.lengths.tolist() == (numpy.maximum(covering, 8) + 6).tolist()
    k = _pair(cands, 13, 0)
    assert seqs[k] == "[CLS] [E2] w0 [/E2] " + " ".join(f"w{i}" for i in range(1, 13)) + " [E1] w13 [/E1] [SEP]"


def test_word_piece_units_and_marker_rows(nlp):
    """Words of 1, 2, 1, 1, 2 pieces: the markers go before a word's first piece."""
    plan = PairPlan(
        head=numpy.array([[1, 2]]), tail=numpy.array([[3, 4]]),
        doc_bounds=numpy.array([[0, 5]]), marker_rows=numpy.array([[3, 4, 5, 6]]),
    )
    layout = build_layout(plan, numpy.array([0, 1, 3, 4, 5, 7]), 4)
    S = 7  # marker vocab rows follow the 7 pieces
    assert layout.windows.tolist() == [[1, 4]]
    assert layout.index.tolist() == [S + 0, S + 3, 1, 2, S + 4, 3, S + 5, 4, S + 6, S + 1]
    assert layout.marker_pos.tolist() == [[1, 4, 6, 8]]


def test_marker_vocab_and_bad_options():
    vocab = marker_vocab(["PER", "ORG", "PER"])
    assert vocab == list(FIXED_MARKERS) + ["[ORG]", "[PER]"]
    rows = marker_rows("typed", vocab, ["PER", "ORG", "GPE"], numpy.array([[0, 1], [2, 0]]))
    assert [[vocab[r] for r in row] for row in rows.tolist()] == [
        ["[PER]", "[PER]", "[ORG]", "[ORG]"], ["[ENT]", "[ENT]", "[PER]", "[PER]"]
    ]
    with pytest.raises(ValueError):
        marker_rows("coloured", vocab, ["PER"], numpy.zeros((0, 2), dtype="int64"))
    from spacy_mlre.ml.models.marker import build_entity_marker

    with pytest.raises(ValueError, match="pooling"):
        build_entity_marker(encoder=None, pooling="mean")


def _marker_config(**overrides):
    cfg = Config().from_disk(ROOT / "configs" / "marker_tok2vec.cfg")
    model = cfg["components"]["relation_extractor"]["model"]
    model.update(overrides)
    return model


def _overfit(nlp, gold_docs, model_cfg, steps, lr=None):
    fix_random_seed(0)
    nlp.add_pipe("relation_extractor", config={"model": model_cfg})
    examples = [Example(nlp.make_doc(d.text), d) for d in gold_docs]
    optimizer = nlp.initialize(lambda: examples)
    if lr is not None:
        optimizer.learn_rate = lr
    for _ in range(steps):
        nlp.update(examples, sgd=optimizer)
    return examples


def _predicted(nlp, gold_docs):
    out = []
    for gold in gold_docs:
        doc = nlp.make_doc(gold.text)
        doc.ents = [Span(doc, e.start, e.end, e.label_) for e in gold.ents]
        out.append(sorted((r.head.start, r.tail.start, r.label) for r in nlp(doc)._.relations))
    return out


def _gold(gold_docs):
    return [sorted((r.head.start, r.tail.start, r.label) for r in d._.relations) for d in gold_docs]


@pytest.fixture
def one_thread():
    torch = pytest.importorskip("torch")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize(
    "markers,pooling,type_width",
    [("typed", "entity_start", 0), ("uniform", "entity_maxpool", 0), ("uniform", "entity_start", 8)],
)
def test_overfit_cpu_encoder(nlp, gold_docs, one_thread, markers, pooling, type_width):
    cfg = _marker_config(markers=markers, pooling=pooling, entity_type_width=type_width)
    _overfit(nlp, gold_docs, cfg, steps=80, lr=0.01)
    assert _predicted(nlp, gold_docs) == _gold(gold_docs)


def _trf_config(path, **overrides):
    model = _marker_config(**overrides)
    model["encoder"] = {
        "@architectures": "spacy_mlre.MarkedTransformer.v1",
        "name": str(path),
        "max_length": 64,
        "tokenizer_config": {"use_fast": True},
        "transformer_config": {},
        "mixed_precision": False,
        "grad_scaler_config": {},
    }
    return model


def test_overfit_tiny_bert_and_typed_markers_survive_save_load(nlp, gold_docs, tiny_bert, one_thread, tmp_path):
    _overfit(nlp, gold_docs, _trf_config(tiny_bert), steps=60, lr=0.003)
    assert _predicted(nlp, gold_docs) == _gold(gold_docs)
    nlp.to_disk(tmp_path / "pipeline")
    loaded = spacy.load(tmp_path / "pipeline")
    model = loaded.get_pipe("relation_extractor").model
    tokenizer = model.get_ref("encoder").shims[0]._hfmodel.tokenizer
    for marker in ("[PER]", "[ORG]", "[LOC]", "[ENT]"):
        assert marker in tokenizer.get_vocab()
        assert tokenizer.tokenize(f"a {marker} b") == ["a", marker, "b"]
    assert model.get_ref("encoder").shims[0]._model.get_input_embeddings().num_embeddings == len(tokenizer)
    assert _predicted(loaded, gold_docs) == _gold(gold_docs)


def test_parameter_averages_reach_the_encoder_weights(nlp, gold_docs, tiny_bert, one_thread):
    """With use_averages, nlp.use_params(optimizer.averages) (spacy train's
    evaluation and saving) puts the averaged weights into the torch encoder,
    and the trained ones back after."""
    from thinc.api import Adam

    examples = _overfit(nlp, gold_docs, _trf_config(tiny_bert), steps=0)
    optimizer = Adam(0.01, use_averages=True)
    for _ in range(3):
        nlp.update(examples, sgd=optimizer)
    shim = nlp.get_pipe("relation_extractor").model.get_ref("encoder").shims[0]
    name, weight = next((n, p) for n, p in shim._model.named_parameters() if n.endswith("query.weight"))
    trained = weight.detach().numpy().copy()
    average = optimizer.averages[(shim.id, name)]
    assert not numpy.allclose(average, trained)
    trained_out = nlp.get_pipe("relation_extractor").predict(gold_docs)[1]
    with nlp.use_params(optimizer.averages):
        numpy.testing.assert_allclose(weight.detach().numpy(), average.reshape(trained.shape))
        averaged_out = nlp.get_pipe("relation_extractor").predict(gold_docs)[1]
    numpy.testing.assert_array_equal(weight.detach().numpy(), trained)
    assert not numpy.allclose(averaged_out, trained_out)


def test_tiny_bert_window_fits_position_limit(nlp, tiny_bert, one_thread):
    """A pair deep inside a doc longer than the model's 128 positions is encoded in a window."""
    words = ["Paris"] * 300
    doc = spacy.tokens.Doc(nlp.vocab, words=words)
    doc.ents = [Span(doc, 200, 201, "LOC"), Span(doc, 203, 204, "ORG")]
    doc2 = make_doc(nlp, "Alice works for Acme .", [(0, 5, "PER"), (16, 20, "ORG")], [(0, 1, "works_for")])
    cfg = _trf_config(tiny_bert, pooling="entity_maxpool")
    cfg["encoder"]["max_length"] = 16
    nlp.add_pipe("relation_extractor", config={"model": cfg})
    nlp.initialize(lambda: [Example(nlp.make_doc(doc2.text), doc2)])
    pipe = nlp.get_pipe("relation_extractor")
    cands = pipe.get_candidates([doc])
    (H, layout), _ = pipe.model.get_ref("encoder")((([doc]), make_plan(pipe.model, [doc], cands)), False)
    assert layout.lengths.max() <= 16 and H.shape[0] == layout.lengths.sum()
    assert pipe.model.predict(([doc], cands)).shape == (2, 1)


@pytest.mark.parametrize("markers,n_sequences", [("typed", 4), ("uniform", 8)])
def test_tiny_bert_encodes_each_distinct_sequence_once(nlp, gold_docs, tiny_bert, one_thread, monkeypatch, markers, n_sequences):
    """Typed markers give (A, B) and (B, A) one sequence, encoded once; its
    hidden rows and the encoder's gradients equal those of encoding every pair."""
    import torch

    from spacy_mlre.ml.markers import encoders

    docs = gold_docs[:2]  # three and two entities: 8 ordered pairs
    _overfit(nlp, docs, _trf_config(tiny_bert, markers=markers), steps=0)
    pipe = nlp.get_pipe("relation_extractor")
    encoder = pipe.model.get_ref("encoder")
    torch_model = encoder.shims[0]._model
    for module in torch_model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
        if hasattr(module, "dropout_prob"):  # the attention's functional dropout
            module.dropout_prob = 0.0
    seen = []
    torch_model.register_forward_hook(lambda mod, args, kwargs, out: seen.append(kwargs["input_ids"].shape[0]), with_kwargs=True)
    cands = pipe.get_candidates(docs)
    assert len(cands.pairs) == 8

    def run():
        torch_model.zero_grad()
        (H, layout), backprop = encoder((docs, make_plan(pipe.model, docs, cands)), True)
        dH = numpy.random.default_rng(0).normal(size=H.shape).astype("float32")
        backprop(dH)
        return H.copy(), [p.grad.clone() for p in torch_model.parameters() if p.grad is not None]

    H, grads = run()
    assert seen == [n_sequences]
    monkeypatch.setattr(encoders, "_unique_rows", lambda m: (m, numpy.arange(len(m))))
    H_all, grads_all = run()
    assert seen == [n_sequences, 8]
    numpy.testing.assert_allclose(H, H_all, atol=1e-5)
    assert len(grads) == len(grads_all) > 0
    for g, g_all in zip(grads, grads_all):
        torch.testing.assert_close(g, g_all, atol=1e-4, rtol=1e-3)




@pytest.mark.parametrize(
    "config,overrides",
    [
        ("marker_tok2vec.cfg", ["--components.relation_extractor.model.markers", "uniform",
                                "--components.relation_extractor.model.pooling", "cls"]),
        ("marker_trf.cfg", ["--components.relation_extractor.model.pooling", "entity_maxpool",
                            "--training.optimizer.learn_rate.initial_rate", "0.003"]),
    ],
)
def test_variants_train_from_configs_and_load_without_import(tiny_corpus, tiny_bert, tmp_path, config, overrides):
    import json
    import os
    import subprocess
    import sys

    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    cmd = [sys.executable, "-m", "spacy", "train", str(ROOT / "configs" / config), "--output", str(tmp_path),
           "--paths.train", str(tiny_corpus / "train.spacy"), "--paths.dev", str(tiny_corpus / "dev.spacy"),
           "--paths.transformer", str(tiny_bert), "--training.max_steps", "40", "--training.eval_frequency", "20",
           "--training.batcher.size", "200", *overrides]
    if config == "marker_tok2vec.cfg":
        cmd = [c for c in cmd if c not in ("--paths.transformer", str(tiny_bert))]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    load = subprocess.run([sys.executable, "-c", LOAD_SCRIPT, str(tmp_path / "model-last")],
                          capture_output=True, text=True, env=env)
    assert load.returncode == 0, load.stderr[-3000:]
    assert all(len(rel) == 3 for rel in json.loads(load.stdout))


@pytest.mark.parametrize("markers,pooling,same", [("typed", "cls", True), ("uniform", "cls", False), ("typed", "entity_start", False)])
def test_direction_of_a_pair(nlp, gold_docs, one_thread, markers, pooling, same):
    """Typed markers do not depend on direction: only the summary order (head
    first) tells (A, B) from (B, A), so typed + cls scores both the same."""
    _overfit(nlp, gold_docs, _marker_config(markers=markers, pooling=pooling), steps=0)
    pipe = nlp.get_pipe("relation_extractor")
    doc = gold_docs[1]  # Bob and Carol
    cands = pipe.get_candidates([doc])
    scores = pipe.model.predict(([doc], cands))
    assert cands.pairs.tolist() == [[0, 1], [1, 0]]
    assert numpy.allclose(scores[0], scores[1]) == same
