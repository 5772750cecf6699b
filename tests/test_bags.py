"""Bag keys, doc grouping and the bag batcher (spacy_mlre.bags)."""
import pytest
from spacy.tokens import DocBin, Span
from spacy.training import Example
from spacy.util import registry

from spacy_mlre.bags import doc_bag_keys, group_docs, pack_groups, pair_bag_keys, set_pair_bag_keys
from spacy_mlre.corpus.reader import make_input_doc

from mlre_testing import make_doc


def _with_kb(doc, kb_ids):
    doc.ents = [Span(doc, e.start, e.end, label=e.label, kb_id=kb) for e, kb in zip(doc.ents, kb_ids)]
    return doc


@pytest.fixture
def parallel(nlp):
    """The same two facts in English and German, plus an unrelated English doc."""
    en = make_doc(nlp, "Alice works for Acme in Paris .", [(0, 5, "PER"), (16, 20, "ORG"), (24, 29, "LOC")],
                  [(0, 1, "works_for"), (1, 2, "located_in")], "en")
    de = make_doc(nlp, "Alice arbeitet für ACME in Paris .", [(0, 5, "PER"), (19, 23, "ORG"), (27, 32, "LOC")],
                  [(0, 1, "works_for")], "de")
    other = make_doc(nlp, "Bob met Carol .", [(0, 3, "PER"), (8, 13, "PER")], [], "en")
    return en, de, other


def _pairs(doc, *index_pairs):
    ents = list(doc.ents)
    return [(ents[h].start, ents[h].end, ents[t].start, ents[t].end) for h, t in index_pairs]


def test_text_keys_span_docs_and_languages(parallel):
    en, de, _ = parallel
    # normalised text: "Acme" and "ACME" are one entity, in either language
    assert pair_bag_keys(en, _pairs(en, (0, 1), (1, 0)), ["text"]) == ["alice|acme", "acme|alice"]
    assert pair_bag_keys(de, _pairs(de, (0, 1)), ["text"]) == ["alice|acme"]


def test_kb_ids_then_text(parallel):
    en, de, _ = parallel
    _with_kb(en, ["Q1", "Q2", ""])
    _with_kb(de, ["Q1", "Q2", "Q90"])
    assert pair_bag_keys(en, _pairs(en, (0, 1), (0, 2)), ["kb", "text"]) == ["Q1|Q2", "alice|paris"]
    assert pair_bag_keys(de, _pairs(de, (0, 1), (0, 2)), ["kb", "text"]) == ["Q1|Q2", "Q1|Q90"]


def test_explicit_keys_first_and_stable_through_docbin(nlp, parallel):
    en, de, _ = parallel
    rows = en.user_data["spacy_mlre.relations"]
    rows[0][8] = "fact-1"  # the converter's id on the works_for relation
    set_pair_bag_keys(de, {_pairs(de, (0, 1))[0]: "fact-1"})
    assert pair_bag_keys(en, _pairs(en, (0, 1), (1, 2)))[0] == "fact-1"
    assert pair_bag_keys(en, _pairs(en, (1, 2)))[0] == "acme|paris"  # no id: text
    restored = list(DocBin(store_user_data=True, docs=[en, de]).get_docs(nlp.vocab))
    assert [pair_bag_keys(d, _pairs(d, (0, 1)))[0] for d in restored] == ["fact-1", "fact-1"]


def test_unknown_source_is_an_error(parallel):
    with pytest.raises(ValueError, match="Unknown bag key source"):
        pair_bag_keys(parallel[0], [], ["wikidata"])


def test_group_docs_connected_components():
    keys = [["a", "b"], ["c"], ["b", "d"], ["d"], ["c", "e"], ["f"]]
    assert group_docs(keys) == [[0, 2, 3], [1, 4], [5]]


def test_pack_groups_never_splits():
    groups = [[0, 1, 2], [3], [4, 5, 6, 7, 8], [9]]
    batches = pack_groups(groups, 4)
    assert batches == [[0, 1, 2, 3], [4, 5, 6, 7, 8], [9]]


def test_batcher_keeps_every_bag_in_one_batch(nlp):
    """Facts repeated over docs in three languages; whatever the batch size, every
    bag key lives in exactly one batch and every doc is batched once."""
    people, orgs, langs = ["Ann", "Ben", "Cy", "Dee", "Eve"], ["Acme", "Orlen", "Fiat"], ["en", "de", "pl"]
    examples = []
    for i in range(24):
        p, o = people[i % 5], orgs[(i // 2) % 3]
        text = f"{p} joined {o} ."
        ref = make_doc(nlp, text, [(0, len(p), "PER"), (len(p) + 8, len(p) + 8 + len(o), "ORG")],
                       [(0, 1, "works_for")], langs[i % 3])
        examples.append(Example(make_input_doc(ref), ref))
    batcher = registry.batchers.get("spacy_mlre.bag_batcher.v1")
    for size in (1, 3, 7):
        batches = list(batcher(size=size, key_sources=["text"])(examples))
        seen = [id(eg) for b in batches for eg in b]
        assert sorted(seen) == sorted(id(eg) for eg in examples)
        owner = {}
        for n, batch in enumerate(batches):
            for eg in batch:
                for key in doc_bag_keys(eg.reference, ["text"]):
                    assert owner.setdefault(key, n) == n, f"bag {key} split across batches (size {size})"
        assert len({owner[k] for k in owner}) == len(batches)
        assert len({k for k in owner}) == 30  # 15 (person, org) facts, both directions


def test_batcher_copies_explicit_ids_to_the_input_docs(nlp, parallel):
    en, de, other = parallel
    for doc in (en, de):
        doc.user_data["spacy_mlre.relations"][0][8] = "fact-1"
    examples = [Example(make_input_doc(d), d) for d in (en, other, de)]
    batcher = registry.batchers.get("spacy_mlre.bag_batcher.v1")(size=1)
    batches = list(batcher(examples))
    assert [len(b) for b in batches] == [2, 1]  # en and de share bags: one batch despite size 1
    assert batches[0][1].reference is de
    assert pair_bag_keys(examples[2].predicted, _pairs(de, (0, 1)))[0] == "fact-1"
