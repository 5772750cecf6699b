"""configs/ner_pair_e5.cfg: the raw-text pipeline, one frozen encoder (spaCy's
tok2vec component) shared through listeners by spaCy's ner and the
relation_extractor. Trained with spacy train on the tiny BERT; the encoder's
weights are saved once; raw text gets entities from the NER and relations
between them; gold-entity scoring and tuning keep the NER out."""
import subprocess
import sys

import pytest
import spacy

from spacy_mlre.cli.evaluate import evaluate_pipeline
from spacy_mlre.cli.tune import tune_pipeline
from spacy_mlre.pipeline.relation_extractor import entity_setters

from mlre_testing import ROOT

pytest.importorskip("torch")
pytest.importorskip("transformers")

WIDTH = 32  # the tiny BERT's


@pytest.fixture(scope="module")
def trained(tiny_corpus, tiny_bert, tmp_path_factory):
    out = tmp_path_factory.mktemp("ner-pair-e5")
    cmd = [sys.executable, "-m", "spacy", "train", str(ROOT / "configs" / "ner_pair_e5.cfg"), "--output", str(out),
           "--paths.train", str(tiny_corpus / "train.spacy"), "--paths.dev", str(tiny_corpus / "dev.spacy"),
           "--paths.transformer", str(tiny_bert), "--components.tok2vec.model.n_layers", "1",
           "--components.tok2vec.model.last_layer", "1",
           "--components.ner.model.tok2vec.width", str(WIDTH),
           "--components.relation_extractor.model.tok2vec.width", str(WIDTH),
           # the tiny corpus keeps its entities in doc.ents only
           "--components.relation_extractor.spans_key", "null",
           "--training.max_steps", "60", "--training.eval_frequency", "30"]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "ENTS_F" in result.stdout and "REL_MICRO_F" in result.stdout
    return out / "model-last"


def _encoders(model):
    return [node for node in model.walk() if node.name == "frozen_encoder"]


def test_one_encoder_is_saved_and_shared(trained):
    nlp = spacy.load(trained)
    assert nlp.pipe_names == ["tok2vec", "ner", "relation_extractor"]
    assert len(_encoders(nlp.get_pipe("tok2vec").model)) == 1
    for name in ("ner", "relation_extractor"):
        assert _encoders(nlp.get_pipe(name).model) == []
        assert [n.name for n in nlp.get_pipe(name).model.walk() if n.name == "tok2vec-listener"]
        # no torch module (the encoder's weights) anywhere else
        assert not [n for n in nlp.get_pipe(name).model.walk() if n.shims]


def test_raw_text_gets_entities_and_relations_between_them(trained, tiny_corpus):
    nlp = spacy.load(trained)
    doc = nlp("Zofia works for Acme .")
    assert doc.tensor.shape == (len(doc), WIDTH)
    assert [(e.text, e.label_) for e in doc.ents] == [("Zofia", "PER"), ("Acme", "ORG")]
    ents = {(e.start, e.end) for e in doc.ents}
    assert doc._.relations
    assert all((r.head.start, r.head.end) in ents and (r.tail.start, r.tail.end) in ents for r in doc._.relations)
    # the same pipeline scores end to end on the dev split
    scores = evaluate_pipeline(str(trained), tiny_corpus / "dev.spacy", gold_ents=False)
    assert scores["ents_f"] == 1.0 and scores["rel_micro_f"] > 0.5


def test_gold_entity_scores_and_tuning_run_without_the_ner(trained, tiny_corpus):
    """An untrained-looking NER must not matter with gold entities: the scores
    and the tuned thresholds are those of the pipeline without it."""
    nlp = spacy.load(trained)
    assert entity_setters(nlp) == ["ner"]
    with_ner = evaluate_pipeline(str(trained), tiny_corpus / "dev.spacy", gold_ents=True)
    assert "ents_f" not in with_ner
    without = spacy.load(trained, exclude=["ner"])
    alone = evaluate_pipeline(str(trained), tiny_corpus / "dev.spacy", gold_ents=True, nlp=without)
    assert with_ner["rel_micro_f"] == alone["rel_micro_f"]
    tuned, chosen = tune_pipeline(str(trained), tiny_corpus / "dev.spacy", spans_key="")
    assert chosen


def test_tune_spans_key_is_saved(trained, tiny_corpus, tmp_path):
    """--spans-key "" : a model trained on a span group reads doc.ents (the
    NER's) once tuned, in its cfg and in config.cfg."""
    nlp, _ = tune_pipeline(str(trained), tiny_corpus / "dev.spacy", spans_key="")
    nlp.to_disk(tmp_path / "tuned")
    loaded = spacy.load(tmp_path / "tuned")
    assert loaded.get_pipe("relation_extractor").cfg["spans_key"] is None
    assert loaded.config["components"]["relation_extractor"]["spans_key"] is None
    nlp, _ = tune_pipeline(str(trained), tiny_corpus / "dev.spacy", spans_key="entities")
    assert nlp.get_pipe("relation_extractor").cfg["spans_key"] == "entities"
    assert nlp.config["components"]["relation_extractor"]["spans_key"] == "entities"


def test_entity_setters_are_found_by_what_they_assign():
    nlp = spacy.blank("xx")
    for name in ("entity_ruler", "tok2vec", "ner", "relation_extractor", "spancat"):
        nlp.add_pipe(name)
    assert entity_setters(nlp) == ["entity_ruler", "ner", "spancat"]
    assert entity_setters(nlp, before="relation_extractor") == ["entity_ruler", "ner"]



CALLS = []


@spacy.Language.component("mlre_test_entity_writer", assigns=["doc.ents"])
def _entity_writer(doc):
    """Records that it ran; an NER stand-in that evaluation with gold entities must skip."""
    CALLS.append(len(doc))
    return doc


def test_evaluate_runs_entity_writers_only_for_predicted_entities(trained_pipeline, tiny_corpus):
    nlp = spacy.load(trained_pipeline)
    nlp.add_pipe("mlre_test_entity_writer", before="relation_extractor")
    CALLS.clear()
    evaluate_pipeline(str(trained_pipeline), tiny_corpus / "dev.spacy", gold_ents=True, nlp=nlp)
    assert CALLS == []
    evaluate_pipeline(str(trained_pipeline), tiny_corpus / "dev.spacy", gold_ents=False, nlp=nlp)
    assert len(CALLS) == 8  # the dev docs
