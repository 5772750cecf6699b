"""Issue 18, "nothing silent": wrong input to the relation_extractor pipe
(empty or relation-less training data, dev data without support or with
labels the pipe never saw, a saved cfg that no longer fits its weights)
stops with an error, or warns, saying what and where and what to do."""
import json
import re

import pytest
import spacy
import srsly
from spacy.training import Example
from spacy.util import fix_random_seed

from spacy_mlre import Relation
from spacy_mlre.corpus.reader import make_input_doc
from spacy_mlre.pipeline.relation_extractor import get_relation_extractor

from mlre_testing import make_doc


def _examples(docs):
    return [Example(make_input_doc(d), d) for d in docs]


def _train(nlp, docs, steps=10):
    fix_random_seed(0)
    examples = _examples(docs)
    optimizer = nlp.initialize(lambda: examples)
    for _ in range(steps):
        nlp.update(examples, sgd=optimizer)


def _without_relations(docs):
    for doc in docs:
        doc._.relations = []
    return docs


@pytest.fixture
def trained(nlp, gold_docs):
    nlp.add_pipe("relation_extractor")
    _train(nlp, gold_docs)
    return nlp


# Training data (item 9) ---------------------------------------------------


def test_initialize_without_examples_says_the_training_data_is_empty(nlp):
    """Was spaCy's E143 "labels not initialized", which does not say the corpus
    is empty. A corpus reader yields nothing (an empty list is spaCy's E930)."""
    nlp.add_pipe("relation_extractor")
    with pytest.raises(ValueError, match=r"No training examples: .*initialize\(\) read 0 examples.*\[paths\.train\]"):
        nlp.initialize(lambda: iter([]))


def test_initialize_without_relations_names_what_it_read(nlp, gold_docs):
    nlp.add_pipe("relation_extractor")
    examples = _examples(_without_relations(gold_docs))
    with pytest.raises(ValueError, match=r"No gold relations in the training data.*read 4 examples in de, en with 8 entities "
                                         r"and 0 gold relations.*\[initialize\.components\.relation_extractor\.labels\]"):
        nlp.initialize(lambda: examples)


def test_initialize_with_labels_and_no_relations_warns(nlp, gold_docs):
    rel = nlp.add_pipe("relation_extractor")
    examples = _examples(_without_relations(gold_docs))
    with pytest.warns(UserWarning, match="No gold relations in the training data.*trained as a negative"):
        rel.initialize(lambda: examples, nlp=nlp, labels=["works_for"])
    assert rel.labels == ("works_for",)


def test_label_seen_only_in_dev_is_warned_about_when_scored(trained, gold_docs):
    """initialize() sees only the training data; the scorer, which spacy train
    and evaluate call on the dev data, is where a dev-only label shows up."""
    doc = make_doc(trained, "Ada founded Initech .", [(0, 3, "PER"), (12, 19, "ORG")], [(0, 1, "founded")])
    with pytest.warns(UserWarning, match=r"evaluation data have labels .* not trained on: 'founded' \(1\).*leave them out"):
        scores = trained.evaluate(_examples(gold_docs + [doc]))
    assert "founded" not in scores["rel_f_per_label"]  # the pipe's scorer scores its own labels


# Tuning (items 1, 9) -------------------------------------------------------


def test_tune_keeps_the_threshold_of_labels_without_dev_support(trained, gold_docs):
    """Without gold relations of a label every threshold scores F1 0 and the
    lowest one (0.05) won, flooding predictions with that label."""
    rel = trained.get_pipe("relation_extractor")
    rel.cfg["thresholds"] = {"sibling": 0.7}
    chosen = rel.tune_thresholds(_examples(gold_docs[2:]))  # works_for and located_in only
    assert set(chosen) == {"works_for", "located_in"}
    assert rel.cfg["thresholds"]["sibling"] == 0.7 and "member_of" not in rel.cfg["thresholds"]
    assert dict(zip(rel.labels, rel._thresholds().tolist()))["member_of"] == 0.5


def test_tune_on_dev_data_without_relations_is_an_error(trained, gold_docs):
    rel = trained.get_pipe("relation_extractor")
    with pytest.raises(ValueError, match=r"No gold relations of .*labels .* in the 4 docs of the tuning \(dev\) data"):
        rel.tune_thresholds(_examples(_without_relations(gold_docs)))
    assert rel.cfg["thresholds"] == {}


def test_tune_warns_about_dev_only_labels_instead_of_a_key_error(trained, gold_docs):
    doc = make_doc(trained, "Ada founded Initech .", [(0, 3, "PER"), (12, 19, "ORG")], [(0, 1, "founded")])
    rel = trained.get_pipe("relation_extractor")
    with pytest.warns(UserWarning, match=r"'founded' \(1\).*left out of tuning"):
        chosen = rel.tune_thresholds(_examples(gold_docs + [doc]))
    assert set(chosen) == set(rel.labels)
    assert doc._.relations[0].label == "founded"  # the caller's gold is left alone


# Loading a saved pipeline (item 6) -----------------------------------------


def _edit_cfg(path, edit):
    cfg_path = path / "relation_extractor" / "cfg"
    cfg = srsly.read_json(cfg_path)
    edit(cfg)
    srsly.write_json(cfg_path, cfg)


@pytest.mark.parametrize(
    "edit,expected",
    [
        (lambda labels: labels[:-1], "its cfg lists the labels {cfg}, its model was trained on {trained} (in this order)"),
        (lambda labels: labels[::-1], "its cfg lists the labels {cfg}, its model was trained on {trained}"),
        (lambda labels: [], "its cfg lists the labels [], its model was trained on {trained}"),
    ],
    ids=["label-removed", "labels-reordered", "labels-emptied"],
)
def test_cfg_that_no_longer_fits_the_weights_fails_to_load(trained, tmp_path, edit, expected):
    """Such a cfg loaded, and predicted nothing or the wrong labels."""
    trained.to_disk(tmp_path / "p")
    labels = list(trained.get_pipe("relation_extractor").labels)
    _edit_cfg(tmp_path / "p", lambda cfg: cfg.update(labels=edit(labels)))
    where = tmp_path / "p" / "relation_extractor"
    problem = expected.format(cfg=edit(labels), trained=labels)
    with pytest.raises(ValueError, match=re.escape(f"component ({where}) does not fit its model weights: {problem}")):
        spacy.load(tmp_path / "p")


def test_cfg_emptied_to_an_object_loads_the_defaults_and_fails(trained, tmp_path):
    trained.to_disk(tmp_path / "p")
    _edit_cfg(tmp_path / "p", lambda cfg: cfg.clear())
    with pytest.raises(ValueError, match=r"its cfg lists the labels \[\], its model was trained on .*restore the cfg file"):
        spacy.load(tmp_path / "p")


@pytest.mark.parametrize("content,problem", [(None, "is missing"), ("", "is not valid JSON"), ("[]", "holds a list")])
def test_missing_or_unreadable_cfg_fails_to_load(trained, tmp_path, content, problem):
    trained.to_disk(tmp_path / "p")
    cfg_path = tmp_path / "p" / "relation_extractor" / "cfg"
    cfg_path.unlink() if content is None else cfg_path.write_text(content)
    with pytest.raises(ValueError, match=rf"cfg file {re.escape(str(cfg_path))} {problem}.*restore it"):
        spacy.load(tmp_path / "p")


def _as_saved_before_labels_attr(nlp):
    """What a pipeline saved before the labels were stored with the weights looks like."""
    del nlp.get_pipe("relation_extractor").model.attrs["labels"]


def test_pipeline_saved_before_the_labels_attr_is_checked_by_output_width(trained, tmp_path):
    _as_saved_before_labels_attr(trained)
    trained.to_disk(tmp_path / "p")
    labels = list(trained.get_pipe("relation_extractor").labels)
    _edit_cfg(tmp_path / "p", lambda cfg: cfg["labels"].reverse())
    assert spacy.load(tmp_path / "p").get_pipe("relation_extractor").labels == tuple(labels[::-1])  # undetectable
    _edit_cfg(tmp_path / "p", lambda cfg: cfg["labels"].pop())
    with pytest.raises(ValueError, match=r"cfg lists 3 labels \(.*\), its model has 4 outputs"):
        spacy.load(tmp_path / "p")


def test_labels_travel_with_the_weights_in_bytes(trained):
    rel = trained.get_pipe("relation_extractor")
    data = rel.to_bytes()
    assert rel.model.attrs["labels"] == list(rel.labels)
    other = spacy.blank("xx").add_pipe("relation_extractor")
    other.from_bytes(data)
    assert other.labels == rel.labels and other.model.attrs["labels"] == list(rel.labels)
    msg = srsly.msgpack_loads(data)
    cfg = srsly.json_loads(msg["cfg"])
    cfg["labels"] = cfg["labels"][::-1]
    msg["cfg"] = json.dumps(cfg)
    with pytest.raises(ValueError, match=r"\(bytes\) does not fit its model weights: its cfg lists the labels"):
        spacy.blank("xx").add_pipe("relation_extractor").from_bytes(srsly.msgpack_dumps(msg))


# Finding the pipe (items 2, 9) --------------------------------------------


def test_pipeline_without_a_relation_extractor_names_its_components():
    nlp = spacy.blank("xx")
    nlp.add_pipe("sentencizer")
    with pytest.raises(ValueError, match=r"The pipeline p has no relation_extractor component; its components are \['sentencizer'\]"):
        get_relation_extractor(nlp, where="The pipeline p")
    with pytest.raises(ValueError, match=r"a component 'sentencizer', but it is a Sentencizer, not a relation_extractor"):
        get_relation_extractor(nlp, "sentencizer", where="The pipeline p")
    nlp.add_pipe("relation_extractor", name="rel")
    with pytest.raises(ValueError, match=r"no component 'relation_extractor'.*Name the relation extractor, 'rel' \(--component rel\)"):
        get_relation_extractor(nlp, "relation_extractor", where="The pipeline p")
    with pytest.raises(ValueError, match=r"'rel' component without labels: it was never trained"):
        get_relation_extractor(nlp, where="The pipeline p")
