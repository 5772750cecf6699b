import os
import subprocess
import sys

import numpy
import pytest
import spacy
from spacy.tokens import Doc, Span
from spacy.training import Example
from spacy.util import fix_random_seed

from spacy_mlre import Relation
from spacy_mlre.corpus.reader import make_input_doc
from spacy_mlre.relations import relation_keys

from mlre_testing import make_doc


def _examples(docs, gold_ents=True):
    return [Example(make_input_doc(d, gold_ents=gold_ents), d) for d in docs]


def _train(nlp, examples, steps=60):
    fix_random_seed(0)
    optimizer = nlp.initialize(lambda: examples)
    losses = {}
    for _ in range(steps):
        losses = {}
        nlp.update(examples, sgd=optimizer, losses=losses)
    return losses


def _predict(nlp, refs):
    return [relation_keys(nlp(make_input_doc(d))) for d in refs]


@pytest.mark.parametrize("multi_label", [True, False])
def test_overfit_predicts_exactly_the_gold(nlp, gold_docs, multi_label, tmp_path):
    if not multi_label:  # single-label decoding cannot give two labels to one pair
        doc = gold_docs[0]
        doc._.relations = [r for r in doc._.relations if r.label != "member_of"]
    nlp.add_pipe("relation_extractor", config={"multi_label": multi_label})
    losses = _train(nlp, _examples(gold_docs))
    assert losses["relation_extractor"] < 0.01
    predicted = _predict(nlp, gold_docs)
    assert predicted == [relation_keys(d) for d in gold_docs]
    scores = nlp.evaluate(_examples(gold_docs))
    assert scores["rel_micro_f"] == 1.0
    # save / load: identical predictions, labels and settings kept
    nlp.to_disk(tmp_path / "pipe")
    nlp2 = spacy.load(tmp_path / "pipe")
    assert _predict(nlp2, gold_docs) == predicted
    docs1 = [nlp(make_input_doc(d)) for d in gold_docs]
    docs2 = [nlp2(make_input_doc(d)) for d in gold_docs]
    assert [[r.score for r in d._.relations] for d in docs1] == [[r.score for r in d._.relations] for d in docs2]
    assert nlp2.get_pipe("relation_extractor").labels == nlp.get_pipe("relation_extractor").labels
    assert nlp2.get_pipe("relation_extractor").cfg["multi_label"] is multi_label
    # to_bytes / from_bytes as well
    nlp3 = spacy.blank("xx")
    nlp3.add_pipe("relation_extractor", config={"multi_label": multi_label})
    nlp3.from_bytes(nlp.to_bytes())
    assert _predict(nlp3, gold_docs) == predicted


def test_relation_records_keep_entity_labels(nlp, gold_docs):
    nlp.add_pipe("relation_extractor")
    _train(nlp, _examples(gold_docs))
    doc = nlp(make_input_doc(gold_docs[0]))
    got = {(r.head.text, r.head.label_, r.label, r.tail.text, r.tail.label_) for r in doc._.relations}
    assert ("Acme", "ORG", "located_in", "Paris", "LOC") in got
    assert all(0.5 <= r.score <= 1.0 and isinstance(r.score, float) for r in doc._.relations)


def test_default_pipe_works_alone(nlp):
    rel = nlp.add_pipe("relation_extractor")
    rel.add_label("works_for")
    nlp.initialize()
    doc = nlp("Alice works for Acme .")
    assert doc._.relations == []
    doc = nlp.make_doc("Alice works for Acme .")
    doc.ents = [Span(doc, 0, 1, "PER"), Span(doc, 3, 4, "ORG")]
    doc = nlp(doc)
    assert all(r.label == "works_for" for r in doc._.relations)


def test_edge_cases_zero_one_entity_empty_and_long_docs(nlp, gold_docs):
    nlp.add_pipe("relation_extractor", config={"max_distance": 5})
    _train(nlp, _examples(gold_docs), steps=5)
    empty = nlp.make_doc("")
    one = nlp.make_doc("Alice sleeps .")
    one.ents = [Span(one, 0, 1, "PER")]
    long = Doc(nlp.vocab, words=["Alice"] + ["blah"] * 200 + ["Acme"])
    long.ents = [Span(long, 0, 1, "PER"), Span(long, 201, 202, "ORG")]
    none = nlp.make_doc("No entities at all .")
    docs = list(nlp.pipe([empty, one, long, none, make_input_doc(gold_docs[1])]))
    assert [d._.relations for d in docs[:4]] == [[], [], [], []]
    # all zero-candidate docs in one batch: no model call at all
    assert [d._.relations for d in nlp.pipe([empty, one, long])] == [[], [], []]
    # and training on them is a no-op, not an error
    losses = nlp.update(_examples([nlp.make_doc("x"), make_doc(nlp, "A b .", [(0, 1, "PER")], [])]))
    assert losses["relation_extractor"] == 0.0


def test_error_relation_entity_not_among_ents(nlp):
    doc = make_doc(nlp, "Alice works for Acme .", [(0, 5, "PER"), (16, 20, "ORG")], [(0, 1, "works_for")])
    works = doc[1:2]
    doc._.relations = [Relation(doc.ents[0], doc.ents[1], "works_for"), Relation(doc.ents[0], works, "does")]
    doc._.doc_id = "train-17"
    nlp.add_pipe("relation_extractor")
    with pytest.raises(ValueError, match=r"tail of relation 'does' in doc 'train-17'.*'works' \(tokens 1:2\)"):
        nlp.initialize(lambda: _examples([doc]))


def test_error_unknown_label(nlp, gold_docs):
    rel = nlp.add_pipe("relation_extractor")
    with pytest.raises(ValueError, match=r"Unknown relation label 'member_of' in doc 'Alice works for Acme in Paris \.'"):
        rel.initialize(lambda: _examples(gold_docs[:1]), nlp=nlp, labels=["works_for"])


def test_span_group_entities_with_overlaps(nlp):
    doc = nlp.make_doc("The New York Times reports from New York .")
    times, city1, city2 = Span(doc, 1, 4, "ORG"), Span(doc, 1, 3, "LOC"), Span(doc, 6, 8, "LOC")
    doc.spans["entities"] = [times, city1, city2]
    doc._.relations = [Relation(times, city1, "named_after"), Relation(times, city2, "based_in")]
    nlp.add_pipe("relation_extractor", config={"spans_key": "entities"})
    losses = _train(nlp, _examples([doc]), steps=40)
    assert losses["relation_extractor"] < 0.01
    pred = make_input_doc(doc)
    assert not pred.ents  # only the span group carries the entities
    assert relation_keys(nlp(pred)) == relation_keys(doc)


def test_gold_entities_used_when_nothing_upstream_sets_them(nlp, gold_docs):
    nlp.add_pipe("relation_extractor")
    examples = _examples(gold_docs, gold_ents=False)  # plain text on the input side
    losses = _train(nlp, examples, steps=40)
    assert losses["relation_extractor"] < 0.05
    # at inference the pipe only sees the doc's own entities: none here
    assert nlp(make_input_doc(gold_docs[0], gold_ents=False))._.relations == []


def test_type_constraints_learned_and_saved(nlp, gold_docs, tmp_path):
    rel = nlp.add_pipe("relation_extractor", config={"type_constraints": True})
    nlp.initialize(lambda: _examples(gold_docs))
    assert rel.cfg["allowed_types"] == [["ORG", "LOC"], ["PER", "ORG"], ["PER", "PER"]]
    cands = rel.get_candidates([make_input_doc(gold_docs[0])])
    assert cands.pairs.tolist() == [[0, 1], [1, 2]]
    nlp.to_disk(tmp_path / "p")
    assert spacy.load(tmp_path / "p").get_pipe("relation_extractor").cfg["allowed_types"] == rel.cfg["allowed_types"]


def test_negative_weight_and_sampling_change_the_loss(nlp, gold_docs):
    rel = nlp.add_pipe("relation_extractor")
    examples = _examples(gold_docs)
    nlp.initialize(lambda: examples)
    docs = [eg.predicted for eg in examples]
    X = (docs, rel.get_candidates(docs))
    logits = rel.model.predict(X)
    base, d_base = rel.get_loss(examples, (X, logits))
    rel.cfg["negative_weight"] = 0.0
    pos_only, d_pos = rel.get_loss(examples, (X, logits))
    targets = rel.get_targets(examples, X)
    negatives = ~targets.any(axis=1)
    assert negatives.sum() > 0 and (~negatives).sum() > 0
    assert not d_pos[negatives].any() and d_pos[~negatives].any()
    assert pos_only != pytest.approx(base)
    rel.cfg["negative_weight"] = 1.0
    rel.cfg["negative_sampling"] = 0.5
    fix_random_seed(0)
    _, d_sampled = rel.get_loss(examples, (X, logits))
    dropped = negatives & ~d_sampled.any(axis=1)
    assert 0 < dropped.sum() < negatives.sum()


@pytest.mark.parametrize("own, expected", [(None, 0.1), (0.8, 0.8), (0.0, 0.0)])
def test_pipe_dropout_replaces_the_training_one(nlp, gold_docs, own, expected):
    """spacy train hands one training.dropout to every component; the pipe's
    own rate, when set, is the one its model trains at."""
    rel = nlp.add_pipe("relation_extractor", config={"dropout": own})
    examples = _examples(gold_docs)
    optimizer = nlp.initialize(lambda: examples)
    nlp.update(examples, sgd=optimizer, drop=0.1)
    rates = {node.attrs["dropout_rate"] for node in rel.model.walk() if "dropout_rate" in node.attrs}
    assert rates == {expected}


def test_pipe_dropout_out_of_range_is_refused(nlp):
    with pytest.raises(ValueError, match="dropout is the rate of the 'relation_extractor' component's updates"):
        nlp.add_pipe("relation_extractor", config={"dropout": 1.0})


def test_targets_cover_two_labels_and_both_directions(nlp, gold_docs):
    rel = nlp.add_pipe("relation_extractor")
    examples = _examples(gold_docs)
    nlp.initialize(lambda: examples)
    docs = [eg.predicted for eg in examples]
    cands = rel.get_candidates(docs)
    targets = rel.get_targets(examples, (docs, cands))
    labels = rel.labels
    found = set()
    for row, (h, t) in enumerate(cands.pairs.tolist()):
        for j in targets[row].nonzero()[0]:
            found.add((tuple(cands.spans[h]), tuple(cands.spans[t]), labels[j]))
    # every gold relation of every doc is a candidate target (spans are doc-local)
    gold = {((k[0], k[1]), (k[2], k[3]), k[4]) for d in gold_docs for k in relation_keys(d)}
    assert found == gold
    assert targets.sum() == sum(len(d._.relations) for d in gold_docs)


def test_tune_thresholds(nlp, gold_docs, tmp_path):
    rel = nlp.add_pipe("relation_extractor")
    _train(nlp, _examples(gold_docs), steps=30)
    chosen = rel.tune_thresholds(_examples(gold_docs))
    assert set(chosen) == set(rel.labels)
    assert all(0.0 < t < 1.0 for t in chosen.values())
    rel.cfg["thresholds"]["works_for"] = 0.9999999
    keys = relation_keys(nlp(make_input_doc(gold_docs[2])))
    assert all(k[4] != "works_for" for k in keys)
    nlp.to_disk(tmp_path / "p")
    assert spacy.load(tmp_path / "p").get_pipe("relation_extractor").cfg["thresholds"]["works_for"] == pytest.approx(0.9999999)


def test_micro_objective_finds_the_best_micro_f_thresholds():
    """Two labels, three thresholds each: the rare label's own F1 is best at
    its lowest threshold, the micro F1 of both at its highest. Coordinate
    ascent from the per-label choice reaches the brute-force optimum here."""
    import itertools

    from spacy_mlre.pipeline.relation_extractor import _micro_f_picks

    tp = numpy.array([[90, 80, 50], [4, 2, 1]])  # frequent label, rare label
    fp = numpy.array([[30, 10, 2], [8, 2, 0]])
    n_gold = 100 + 8

    def micro(p):
        t = tp[[0, 1], p].sum()
        return 2 * t / (t + fp[[0, 1], p].sum() + n_gold)

    own = (2 * tp / (tp + fp + numpy.array([[100], [8]]))).argmax(axis=1)
    assert own.tolist() == [1, 0]  # the rare label's F1: 0.40, 0.33, 0.22
    picks = _micro_f_picks(tp, fp, n_gold, 0, own)
    best = max(itertools.product(range(3), range(3)), key=lambda p: micro(numpy.array(p)))
    assert tuple(picks.tolist()) == best == (1, 2)
    assert micro(picks) > micro(own)
    # false positives of labels that are not tuned count too: with many, the micro F1 is low,
    # and a pair is worth predicting at a lower precision (above F1 / 2)
    assert _micro_f_picks(tp, fp, n_gold, 1000, own).tolist() == [0, 0]


@pytest.mark.parametrize("multi_label", [True, False])
def test_tune_thresholds_for_micro_f(nlp, gold_docs, multi_label):
    """objective="micro": the dev micro F1, as the scorer counts it, is at
    least that of the per-label choice it starts from."""
    rel = nlp.add_pipe("relation_extractor", config={"multi_label": multi_label})
    _train(nlp, _examples(gold_docs), steps=8)
    scores = {}
    for objective in ("label", "micro"):
        chosen = rel.tune_thresholds(_examples(gold_docs), grid=[0.1, 0.3, 0.5, 0.7, 0.9], objective=objective)
        assert set(chosen) == set(rel.labels)
        scores[objective] = nlp.evaluate(_examples(gold_docs))["rel_micro_f"]
    assert scores["micro"] >= scores["label"]
    with pytest.raises(ValueError, match="objective must be one of label, micro, got 'macro'"):
        rel.tune_thresholds(_examples(gold_docs), objective="macro")


def test_single_label_decoding_reads_labels_below_no_relation():
    """The best label wins at its threshold even where no-relation is the
    argmax; at 0.5 and above that is the plain argmax."""
    from spacy_mlre.ml.losses import decode_labels

    probs = numpy.array([[0.30, 0.10, 0.60],   # no-relation first, label 0 at 0.30
                         [0.70, 0.20, 0.10],   # label 0 first
                         [0.05, 0.15, 0.80],   # label 1 best of the labels, at 0.15
                         [0.50, 0.50, 0.00]])  # a tie between labels: the first
    rows, cols = decode_labels(probs, numpy.array([0.5, 0.5]), multi_label=False)
    assert (rows.tolist(), cols.tolist()) == ([1, 3], [0, 0])
    rows, cols = decode_labels(probs, numpy.array([0.25, 0.1]), multi_label=False)
    assert (rows.tolist(), cols.tolist()) == ([0, 1, 2, 3], [0, 0, 1, 0])
    rows, _ = decode_labels(probs[:0], numpy.array([0.5, 0.5]), multi_label=False)
    assert rows.size == 0


def test_tune_thresholds_single_label(nlp, gold_docs):
    """Single-label pipes are tuned too: a label is counted only where it is the
    most probable label, as decoding predicts it."""
    rel = nlp.add_pipe("relation_extractor", config={"multi_label": False})
    _train(nlp, _examples(gold_docs), steps=30)
    examples = _examples(gold_docs)
    chosen = rel.tune_thresholds(examples)
    assert set(chosen) == set(rel.labels) and all(0.0 < t < 1.0 for t in chosen.values())
    gold = {k for d in gold_docs for k in relation_keys(d)}
    predicted = {k for d in nlp.pipe([make_input_doc(g) for g in gold_docs]) for k in relation_keys(d)}
    assert predicted & gold


def test_multiprocess_pipe_matches_single_process(trained_pipeline, tiny_corpus):
    from spacy_mlre.corpus.reader import RelationCorpus

    nlp = spacy.load(trained_pipeline)
    inputs = [eg.predicted for eg in RelationCorpus(tiny_corpus / "dev.spacy")(nlp)]
    single = [[(r.key, r.score) for r in d._.relations] for d in nlp.pipe([d.copy() for d in inputs])]
    multi_docs = list(nlp.pipe([d.copy() for d in inputs], n_process=2, batch_size=2))
    multi = [[(r.key, r.score) for r in d._.relations] for d in multi_docs]
    assert single == multi and sum(map(len, single)) > 0
    assert [d._.lang for d in multi_docs] == [d._.lang for d in inputs]


FORK_AFTER_TORCH = """
import multiprocessing as mp
import spacy_mlre
import torch

def work(q):
    a = torch.ones(2000, 2000)
    q.put(float((a @ a)[0, 0]))

torch.set_num_threads(2)
a = torch.ones(2000, 2000)
(a @ a).sum()  # the parent starts torch's thread pool, as a torch model's predict does
ctx = mp.get_context("fork")  # what nlp.pipe(n_process=2) uses on Linux
q = ctx.Queue()
p = ctx.Process(target=work, args=(q,))
p.start()
print(q.get(timeout=60))
p.join()
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork start method only")
def test_forked_worker_runs_torch_after_the_parent_did():
    """The torch models (kernel, marker, mERE, AMNRE) hung forever under
    nlp.pipe(n_process=2) once the parent had predicted: forked workers
    inherit a dead thread pool. Importing spacy_mlre sets one torch thread in
    forked children."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    result = subprocess.run([sys.executable, "-c", FORK_AFTER_TORCH], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert float(result.stdout.strip()) == 2000.0


def test_weights_that_do_not_fit_the_config_say_to_retrain(nlp, gold_docs, tmp_path):
    """A pipeline whose stored weights do not fit the model its config builds
    (what a pipeline saved by an older version looks like) fails with an error
    that names the version that saved it and says to retrain."""
    nlp.add_pipe("relation_extractor")
    _train(nlp, _examples(gold_docs), steps=1)
    nlp.to_disk(tmp_path / "p")
    v1 = {"@architectures": "spacy_mlre.PairClassifier.v1",
          "tok2vec": {"@architectures": "spacy.Tok2Vec.v2",
                      "embed": {"@architectures": "spacy.MultiHashEmbed.v2", "width": 64, "rows": [5000, 1000, 2500, 1000],
                                "attrs": ["NORM", "PREFIX", "SUFFIX", "SHAPE"], "include_static_vectors": False},
                      "encode": {"@architectures": "spacy.MaxoutWindowEncoder.v2", "width": 64, "window_size": 1,
                                 "maxout_pieces": 3, "depth": 2}}}
    other = spacy.blank("xx").add_pipe("relation_extractor", config={"model": v1})
    with pytest.raises(ValueError, match=r"saved with spacy-mlre 0\.2\.0.*Retrain the pipeline"):
        other.from_disk(tmp_path / "p" / "relation_extractor", exclude=["vocab"])
    assert spacy.load(tmp_path / "p").get_pipe("relation_extractor").cfg["saved_with"] == "0.2.0"
