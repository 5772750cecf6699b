import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest
import spacy
from spacy.tokens import Doc, DocBin, Span

import spacy_mlre  # noqa: F401  (registers the Doc extensions)

from mlre_testing import DATASETS, ROOT, make_doc  # noqa: F401


@pytest.fixture
def nlp():
    return spacy.blank("xx")


@pytest.fixture
def gold_docs(nlp):
    """Several relations, two labels on one pair, both directions of a pair, a
    doc without entities: the cases the pipe must learn exactly."""
    return [
        make_doc(nlp, "Alice works for Acme in Paris .", [(0, 5, "PER"), (16, 20, "ORG"), (24, 29, "LOC")],
                 [(0, 1, "works_for"), (0, 1, "member_of"), (1, 2, "located_in")], "en"),
        make_doc(nlp, "Bob and Carol are siblings .", [(0, 3, "PER"), (8, 13, "PER")],
                 [(0, 1, "sibling"), (1, 0, "sibling")], "en"),
        make_doc(nlp, "Dieter arbeitet für Siemens in München .", [(0, 6, "PER"), (20, 27, "ORG"), (31, 38, "LOC")],
                 [(0, 1, "works_for"), (1, 2, "located_in")], "de"),
        make_doc(nlp, "Nothing here .", [], [], "en"),
    ]


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory):
    pytest.importorskip("spacy_transformers")
    from tiny_bert import build_tiny_bert

    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """train.spacy / dev.spacy: two directed labels whose direction depends on word order, three languages."""
    nlp = spacy.blank("xx")
    path = tmp_path_factory.mktemp("corpus")
    people = ["Alice", "Bob", "Dieter", "Zofia", "Émile"]
    orgs = ["Acme", "Siemens", "Orlen", "Renault"]
    for split, n in (("train", 30), ("dev", 8)):
        docs = []
        for i in range(n):
            p, o = people[i % len(people)], orgs[i % len(orgs)]
            if i % 2:
                text = f"{p} works for {o} ."
                ents = [(0, len(p), "PER"), (len(p) + 11, len(p) + 11 + len(o), "ORG")]
                rels = [(0, 1, "works_for"), (1, 0, "employs")]
            else:
                text = f"{o} hired {p} ."
                ents = [(0, len(o), "ORG"), (len(o) + 7, len(o) + 7 + len(p), "PER")]
                rels = [(1, 0, "works_for"), (0, 1, "employs")]
            docs.append(make_doc(nlp, text, ents, rels, ["en", "de", "pl"][i % 3]))
        DocBin(store_user_data=True, docs=docs).to_disk(path / f"{split}.spacy")
    return path


@pytest.fixture(scope="session")
def trained_pipeline(tiny_corpus, tmp_path_factory):
    """A PairClassifier pipeline trained on tiny_corpus with the Python API, saved to disk."""
    from spacy.util import fix_random_seed

    from spacy_mlre.corpus.reader import RelationCorpus

    fix_random_seed(0)
    nlp = spacy.blank("xx")
    nlp.add_pipe("relation_extractor")
    examples = list(RelationCorpus(tiny_corpus / "train.spacy")(nlp))
    optimizer = nlp.initialize(lambda: examples)
    for _ in range(30):
        nlp.update(examples, sgd=optimizer)
    path = tmp_path_factory.mktemp("trained") / "pipeline"
    nlp.to_disk(path)
    return path
