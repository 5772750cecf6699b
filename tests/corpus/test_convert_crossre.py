"""CrossRE / Multi-CrossRE converter: inline samples and the real files."""
import json

import pytest

from corpus_helpers import dataset_path, load_docs, run, triples
from spacy_mlre.corpus.build import DROP_DUPLICATE, DROP_SELF
from spacy_mlre.corpus.converter import ConversionError

EN = {
    "doc_key": "ai-train-9",
    "sentence": ["Turing", "worked", "at", "Bletchley", "Park", "in", "England", "."],
    "ner": [[0, 0, "researcher"], [3, 4, "organisation"], [4, 4, "location"], [6, 6, "country"]],
    "relations": [
        [0, 0, 3, 4, "role", "worked_at", False, False],
        [0, 0, 3, 4, "role", "other explanation", True, False],  # duplicate (flags differ)
        [3, 4, 6, 6, "physical", "", False, False],
        [6, 6, 6, 6, "part-of", "", False, False],  # self-relation
        [4, 4, 6, 6, "physical", "", False, False],  # on an overlapping entity
    ],
}
# German translation: entity order changed, so the mapping is not the identity.
DE = {
    "doc_key": "ai-train-9",
    "sentence": ["Turing", "arbeitete", "in", "Bletchley", "Park", "(", "England", ")", "."],
    "sentence-detokenized": "Turing arbeitete in Bletchley Park (England).",
    "token2charspan": [[0, 6], [7, 16], [17, 19], [20, 29], [30, 34], [35, 36], [36, 43], [43, 44], [44, 45]],
    "ner": [[6, 6, "country"], [0, 0, "researcher"], [3, 4, "organisation"]],
    "ner_mapping_to_source": [3, 0, 1],
    "relations": [[0, 0, 3, 4, "role", "", False, False], [3, 4, 6, 6, "physical", "", False, False]],
    "relations_mapping_to_source": [0, 2],
}


def lines(*records) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def test_english_sample(write, tmp_path):
    path = write("ai-train.json", lines(EN))
    stats = run("crossre", path, tmp_path / "out")[""]["train"]
    (doc,) = load_docs(tmp_path / "out" / "train.spacy")
    assert doc.text == "Turing worked at Bletchley Park in England ."
    assert doc._.lang == "en" and doc._.doc_id == "ai-train-9"
    assert [(s.text, s.label_) for s in doc.spans["entities"]] == [
        ("Turing", "researcher"), ("Bletchley Park", "organisation"), ("Park", "location"), ("England", "country"),
    ]
    # "Park" overlaps "Bletchley Park": kept in the span group, left out of doc.ents
    assert [e.text for e in doc.ents] == ["Turing", "Bletchley Park", "England"]
    assert triples(doc) == [
        ("Turing", "role", "Bletchley Park"),
        ("Bletchley Park", "physical", "England"),
        ("Park", "physical", "England"),
    ]
    assert doc._.relations[2].head.label_ == "location"
    assert stats.relations_read == 5
    assert stats.dropped == {DROP_DUPLICATE: 1, DROP_SELF: 1}
    assert stats.entities == 4 and stats.entities_not_in_ents == 1


def test_bag_keys_match_across_languages(write, tmp_path):
    write("english/ai-train.json", lines(EN))
    write("german/ai-train.json", lines(DE))
    results = run("crossre", tmp_path / "in", tmp_path / "out")
    assert set(results) == {"en", "de"}
    (en,) = load_docs(tmp_path / "out" / "en" / "train.spacy")
    (de,) = load_docs(tmp_path / "out" / "de" / "train.spacy")
    assert de._.lang == "de"
    assert de.text == "Turing arbeitete in Bletchley Park (England)."
    assert [t.text for t in de] == DE["sentence"]
    en_keys = {(r.head.text, r.label, r.tail.text): r.bag_key for r in en._.relations}
    de_keys = {(r.head.text, r.label, r.tail.text): r.bag_key for r in de._.relations}
    assert de_keys[("Turing", "role", "Bletchley Park")] == en_keys[("Turing", "role", "Bletchley Park")] == "ai-train-9|0|1"
    assert de_keys[("Bletchley Park", "physical", "England")] == en_keys[("Bletchley Park", "physical", "England")]
    # unrelated pairs too: entity kb ids name the English-source entity
    en_kb = {e.text: e.kb_id_ for e in en.spans["entities"]}
    de_kb = {e.text: e.kb_id_ for e in de.spans["entities"]}
    assert de_kb == {"England": "ai-train-9|3", "Turing": "ai-train-9|0", "Bletchley Park": "ai-train-9|1"}
    assert all(en_kb[text] == kb for text, kb in de_kb.items())
    assert [e.kb_id_ for e in de.ents] == ["ai-train-9|0", "ai-train-9|1", "ai-train-9|3"]


def test_domains_option_and_split_merge(write, tmp_path):
    write("ai-train.json", lines(EN))
    write("news-train.json", lines(dict(EN, doc_key="news-train-1")))
    both = run("crossre", tmp_path / "in", tmp_path / "a")[""]["train"]
    ai = run("crossre", tmp_path / "in", tmp_path / "b", domains=["ai"])[""]["train"]
    assert (both.docs, ai.docs) == (2, 1)
    with pytest.raises(ValueError, match="Unknown domain"):
        run("crossre", tmp_path / "in", tmp_path / "c", domains=["sport"])


@pytest.mark.parametrize(
    "bad,reason",
    [
        ('{"doc_key": "x", "sentence": ["a"], ', "bad JSON"),
        (json.dumps(dict(EN, ner=[[0, 9, "researcher"]], relations=[])), "entity offsets outside the text"),
        (json.dumps(dict(EN, relations=[[0, 0, 1, 1, "role", "", False, False]])), "relation names a missing entity"),
        (json.dumps(dict(DE, token2charspan=DE["token2charspan"][:-1])), "token2charspan does not match the tokens"),
        (json.dumps(dict(DE, ner_mapping_to_source=[0])), "ner_mapping_to_source does not match ner"),
    ],
)
def test_malformed_record_names_file_line_reason(write, tmp_path, bad, reason):
    path = write("ai-dev.json", lines(EN) + bad + "\n" + lines(EN))
    with pytest.raises(ConversionError) as err:
        run("crossre", path, tmp_path / "out")
    assert (err.value.path, err.value.line) == (path, 2)
    assert str(err.value).startswith(f"{path}:2: {reason}")
    stats = run("crossre", path, tmp_path / "out", skip_invalid=True)[""]["dev"]
    assert stats.docs == 2 and stats.skipped == {reason: 1}


# --- the real files -------------------------------------------------------------

EXPECTED_EN = {  # split: (docs, relations as published, duplicates, self-relations)
    "train": (668, 2394, 2, 1),
    "dev": (2151, 8199, 0, 1),
    "test": (2446, 9168, 1, 3),
}


@pytest.fixture(scope="module")
def crossre_en(tmp_path_factory):
    out = tmp_path_factory.mktemp("crossre_en")
    return run("crossre", dataset_path("crossre", "crossre_data"), out)[""], out


@pytest.mark.parametrize("split", ["train", "dev", "test"])
def test_real_crossre_counts(crossre_en, split):
    stats = crossre_en[0][split]
    docs, published, dups, selfs = EXPECTED_EN[split]
    assert (stats.docs, stats.relations_read) == (docs, published)
    assert stats.dropped.get(DROP_DUPLICATE, 0) == dups
    assert stats.dropped.get(DROP_SELF, 0) == selfs
    assert sum(stats.relations.values()) == published - dups - selfs
    assert stats.docs_per_lang == {"en": docs}
    assert not stats.skipped and not stats.repaired


def test_real_crossre_spot_checks(crossre_en):
    docs = {d._.doc_id: d for d in load_docs(crossre_en[1] / "train.spacy")}
    doc = docs["ai-train-1"]
    assert doc.text.startswith("Popular approaches of opinion-based recommender system utilize")
    assert ("opinion-based recommender system", "part-of", "text mining") in triples(doc)
    assert ("Multimodal sentiment analysis", "type-of", "sentiment analysis") in triples(doc)
    keys = {(r.head.text, r.label, r.tail.text): r.bag_key for r in doc._.relations}
    assert keys[("opinion-based recommender system", "part-of", "text mining")] == "ai-train-1|0|1"
    # music-train-11 links KRS-One to itself: dropped, other relations kept
    assert all(r.head.text != r.tail.text or r.head.start != r.tail.start for r in docs["music-train-11"]._.relations)
    # news-train-98: two 'role' records for one pair with different explanations -> one relation
    roles = [t for t in triples(docs["news-train-98"]) if t[1] == "role"]
    assert len(roles) == len(set(roles))


def test_real_multicrossre_german(tmp_path):
    path = dataset_path("crossre", "multi-crossre_data", "translation", "german")
    results = run("crossre", path, tmp_path)[""]
    test = results["test"]
    assert (test.docs, test.relations_read) == (2446, 8308)
    assert sum(test.relations.values()) == 8308 - 1 - 3
    assert test.dropped == {DROP_DUPLICATE: 1, DROP_SELF: 3}
    assert (results["train"].relations_read, results["dev"].relations_read) == (2197, 7558)
    assert test.docs_per_lang == {"de": 2446}
    docs = {d._.doc_id: d for d in load_docs(tmp_path / "train.spacy")}
    doc = docs["ai-train-1"]
    assert doc.text.startswith("Beliebte Ansätze für meinungsbasierte Empfehlungssysteme")
    assert ("meinungsbasierte Empfehlungssysteme", "part-of", "Text Mining") in triples(doc)
    key = {(r.head.text, r.label, r.tail.text): r.bag_key for r in doc._.relations}
    assert key[("meinungsbasierte Empfehlungssysteme", "part-of", "Text Mining")] == "ai-train-1|0|1"
