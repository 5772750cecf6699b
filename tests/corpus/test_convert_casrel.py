"""CasRel NYT / WebNLG JSON: entity strings located in the tokens."""
import json

import pytest

from corpus_helpers import dataset_path, load_docs, run, triples
from spacy_mlre.corpus.build import DROP_DUPLICATE, DROP_SELF
from spacy_mlre.corpus.converter import ConversionError
from spacy_mlre.corpus.casrel import (
    DROP_NOT_FOUND, REPAIR_AMBIGUOUS, REPAIR_FOLDED, REPAIR_OVERLAP, REPAIR_SAME_STRING,
)

RECORDS = [
    {"text": "A.C. Cesena ground is in Cesena and they play in Serie B .",
     "triple_list": [["A.C. Cesena", "ground", "Cesena"], ["A.C. Cesena", "league", "Serie B"],
                     ["A.C. Cesena", "league", "Serie B"]]},
    {"text": "He went to Cancun , Mexico , on holiday .",
     "triple_list": [["Mexico", "/location/location/contains", "Cancún"], ["Mexico", "capital", "Mexico City"]]},
    # a -star record: last words only, and the same string as head and tail
    {"text": "Adams County in Pennsylvania is south of Cumberland County , Pennsylvania .",
     "triple_list": [["County", "has to its north", "County"], ["County", "state", "Pennsylvania"]]},
    {"text": "Paris is nice .", "triple_list": [["Paris", "self", "Paris"]]},
]


def test_casrel_sample_rules(write, tmp_path):
    text = json.dumps(RECORDS, indent=4)
    path = write("train_triples.json", text)
    stats = run("casrel", path, tmp_path / "out")[""]["train"]
    docs = load_docs(tmp_path / "out" / "train.spacy")
    cesena, cancun, adams, paris = docs
    # longest string first; the city takes the first occurrence outside "A.C. Cesena"
    assert triples(cesena) == [("A.C. Cesena", "ground", "Cesena"), ("A.C. Cesena", "league", "Serie B")]
    assert [r.tail.start for r in cesena._.relations] == [5, 10]
    # accent-folded match; "Mexico City" is not in the text: its triple is dropped
    assert triples(cancun) == [("Mexico", "/location/location/contains", "Cancun")]
    # same string as head and tail: head on the first occurrence, tail on the next
    assert ("County", "has to its north", "County") in triples(adams)
    north = [r for r in adams._.relations if r.label == "has to its north"][0]
    assert (north.head.start, north.tail.start) == (1, 8)
    assert triples(paris) == [] and [e.text for e in paris.ents] == ["Paris"]
    starts = [i for i, line in enumerate(text.splitlines(), 1) if line == "    {"]  # where each record starts
    assert len(starts) == 4 and [d._.doc_id for d in docs] == [f"train_triples:{i}" for i in starts]
    assert stats.relations_read == 8
    assert stats.dropped == {DROP_DUPLICATE: 1, DROP_NOT_FOUND: 1, DROP_SELF: 1}
    # Cesena, County and Pennsylvania each occur twice
    assert stats.repaired == {REPAIR_AMBIGUOUS: 3, REPAIR_FOLDED: 1, REPAIR_SAME_STRING: 1}
    assert sum(stats.relations.values()) == 8 - 3
    assert all(e.label_ == "ENT" for d in docs for e in d.ents)


def test_overlap_only_occurrence_counted(write, tmp_path):
    rec = {"text": "New York City is big .", "triple_list": [["New York City", "contains", "York"]]}
    stats = run("casrel", write("test.json", json.dumps([rec])), tmp_path / "out")[""]["test"]
    assert stats.repaired == {} and stats.dropped == {}
    (doc,) = load_docs(tmp_path / "out" / "test.spacy")
    assert triples(doc) == [("New York City", "contains", "York")]
    assert [e.text for e in doc.ents] == ["New York City"] and stats.entities_not_in_ents == 1
    rec2 = {"text": "York , New York City", "triple_list": [["New York City", "contains", "York"], ["X", "r", "York"]]}
    stats = run("casrel", write("dev.json", json.dumps([rec2])), tmp_path / "out2")[""]["dev"]
    assert stats.repaired == {REPAIR_AMBIGUOUS: 1}
    # "York" occurs twice, both times inside a longer entity: first occurrence, counted
    rec3 = {"text": "New York City and York University",
            "triple_list": [["New York City", "near", "York University"], ["York University", "named after", "York"]]}
    stats = run("casrel", write("val.json", json.dumps([rec3])), tmp_path / "out3")[""]["dev"]
    assert stats.repaired == {REPAIR_OVERLAP: 1}
    (doc,) = load_docs(tmp_path / "out3" / "dev.spacy")
    assert ("York University", "named after", "York") in triples(doc)
    assert [r.tail.start for r in doc._.relations if r.label == "named after"] == [1]


def test_malformed_casrel(write, tmp_path):
    good = json.dumps(RECORDS[3])
    path = write("test.json", "[\n" + good + ",\n" + '{"text": "x", "triple_list": [["x", "r"]]}' + ",\n" + good + "\n]")
    with pytest.raises(ConversionError, match=r"test.json:3: bad triple"):
        run("casrel", path, tmp_path / "out")
    assert run("casrel", path, tmp_path / "out", skip_invalid=True)[""]["test"].skipped == {"bad triple": 1}
    broken = write("dev.json", "[\n" + good + ",\n{\"text\": \n]")
    with pytest.raises(ConversionError, match=r"dev.json:4: bad JSON"):  # where the parser failed
        run("casrel", broken, tmp_path / "out", skip_invalid=True)  # an array cannot be resynchronised


# --- the real files -------------------------------------------------------------


@pytest.mark.parametrize(
    "name,split,docs,read,stored",
    [
        ("WebNLG", "train", 5019, 11313, 11298),
        ("WebNLG", "dev", 500, 1224, 1223),
        ("WebNLG", "test", 703, 1607, 1603),
        ("WebNLG-star", "test", 703, 1591, 1537),
        ("NYT", "test", 5000, 8616, 8120),
    ],
)
def test_real_casrel_counts(tmp_path, name, split, docs, read, stored):
    file = {"train": "train_triples.json", "dev": "val_triples.json", "test": "test_triples.json"}[split]
    path = dataset_path("casrel_nyt_webnlg", "data", name, file)
    stats = run("casrel", path, tmp_path)[""][split]
    assert (stats.docs, stats.relations_read, sum(stats.relations.values())) == (docs, read, stored)
    assert read - stored == sum(stats.dropped.values())
    assert not stats.skipped


def test_real_webnlg_spot_check(tmp_path):
    path = dataset_path("casrel_nyt_webnlg", "data", "WebNLG", "train_triples.json")
    run("casrel", path, tmp_path)
    (doc,) = load_docs(tmp_path / "train.spacy", limit=1)
    assert doc.text.startswith("Peter Stöger is manager of 1 . FC Köln")
    assert set(triples(doc)) == {
        ("1 . FC Köln", "manager", "Peter Stöger"), ("1 . FC Köln", "season", "2014"),
        ("1 . FC Köln", "numberOfMembers", "50000"),
    }
