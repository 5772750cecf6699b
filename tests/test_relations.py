import pickle

import pytest
import spacy
from spacy.language import Language
from spacy.tokens import Doc, DocBin, Span
from spacy.training import Example

from spacy_mlre import Relation
from spacy_mlre.relations import RELATIONS_KEY, relation_keys

from mlre_testing import make_doc


def _summary(doc):
    return [(r.head.text, r.head.label_, r.label, r.tail.text, r.tail.label_, r.score, r.bag_key) for r in doc._.relations]


def test_relations_are_plain_data_in_user_data(gold_docs):
    doc = gold_docs[0]
    rows = doc.user_data[RELATIONS_KEY]
    assert all(isinstance(v, (int, str, float, type(None))) for row in rows for v in row)
    # deterministic order: head, tail, label
    assert relation_keys(doc) == [(0, 1, 3, 4, "member_of"), (0, 1, 3, 4, "works_for"), (3, 4, 5, 6, "located_in")]
    rel = doc._.relations[0]
    assert (rel.head.text, rel.head.label_, rel.tail.label_) == ("Alice", "PER", "ORG")
    assert isinstance(rel.score, float)


def test_docbin_round_trip(nlp, gold_docs):
    data = DocBin(store_user_data=True, docs=gold_docs).to_bytes()
    docs = list(DocBin().from_bytes(data).get_docs(nlp.vocab))
    assert [_summary(d) for d in docs] == [_summary(d) for d in gold_docs]
    assert [d._.lang for d in docs] == ["en", "en", "de", "en"]


def test_to_bytes_and_pickle_round_trip(nlp, gold_docs):
    doc = gold_docs[2]
    doc._.relations = [Relation(doc.ents[0], doc.ents[1], "works_for", 0.25, "bag-7")]
    restored = Doc(nlp.vocab).from_bytes(doc.to_bytes())
    assert _summary(restored) == _summary(doc) == [("Dieter", "PER", "works_for", "Siemens", "ORG", 0.25, "bag-7")]
    assert restored._.lang == "de"
    unpickled = pickle.loads(pickle.dumps(doc))
    assert _summary(unpickled) == _summary(doc)
    assert unpickled._.lang == "de"


@Language.component("_test_fixed_relations")
def _fixed_relations(doc):
    if len(doc.ents) >= 2:
        doc._.relations = [Relation(doc.ents[0], doc.ents[1], "rel", 0.5)]
    doc._.lang = "pl"
    return doc


@Language.component("_test_ents")
def _set_ents(doc):
    doc.ents = [Span(doc, 0, 1, "A"), Span(doc, 2, 3, "B")]
    return doc


def test_n_process_2_round_trip():
    nlp = spacy.blank("xx")
    nlp.add_pipe("_test_ents")
    nlp.add_pipe("_test_fixed_relations")
    texts = [f"x{i} and y{i} ." for i in range(8)]
    docs = list(nlp.pipe(texts, n_process=2, batch_size=2))
    assert [_summary(d) for d in docs] == [[(f"x{i}", "A", "rel", f"y{i}", "B", 0.5, None)] for i in range(8)]
    assert all(d._.lang == "pl" for d in docs)


def test_setter_accepts_tuples_and_validates(nlp):
    doc = make_doc(nlp, "Alice met Bob .", [(0, 5, "PER"), (10, 13, "PER")], [])
    doc._.relations = [(doc.ents[0], doc.ents[1], "met")]
    assert _summary(doc) == [("Alice", "PER", "met", "Bob", "PER", 1.0, None)]
    other = nlp.make_doc("Alice met Bob .")
    with pytest.raises(ValueError, match="belongs to another doc"):
        doc._.relations = [(doc.ents[0], other[2:3], "met")]
    with pytest.raises(ValueError, match="Duplicate relation 'met' from 'Alice'"):
        doc._.relations = [(doc.ents[0], doc.ents[1], "met"), (doc.ents[0], doc.ents[1], "met")]
    with pytest.raises(ValueError, match="non-empty string"):
        doc._.relations = [(doc.ents[0], doc.ents[1], "")]


def test_language_fallbacks():
    nlp = spacy.blank("xx")
    doc = nlp("Hallo Welt")
    assert doc._.lang == "xx"  # the pipeline's language
    if not Doc.has_extension("language"):
        Doc.set_extension("language", default=None)
    doc._.language = {"language": "de", "score": 0.99}  # spacy-langdetect style
    assert doc._.lang == "de"
    doc._.language = "nl"  # spacy_fastlang style
    assert doc._.lang == "nl"
    doc._.lang = "pt-BR"  # explicit wins, normalised to ISO 639-1
    assert doc._.lang == "pt"
    doc._.language = None
    doc._.lang = None
    assert doc._.lang == "xx"


# --- relations after retokenizing (issue 18, item 4) ------------------------------


def _ents_component(doc):
    """Multi-token entities, so merge_entities changes the doc's length."""
    doc.ents = [doc.char_span(0, 9, "ORG"), doc.char_span(18, 35, "OBJ")]
    return doc


Language.component("_test_multi_token_ents", func=_ents_component)


def _pipe_then_merge():
    nlp = spacy.blank("xx")
    nlp.add_pipe("_test_multi_token_ents")
    nlp.add_pipe("relation_extractor", config={"threshold": 0.0})  # barely trained: every pair predicted
    reference = _ents_component(nlp.make_doc("Acme Corp built a big antenna array ."))
    reference._.relations = [Relation(reference.ents[0], reference.ents[1], "built")]
    nlp.initialize(lambda: [Example(_ents_component(nlp.make_doc(reference.text)), reference)])
    nlp.add_pipe("merge_entities", after="relation_extractor")
    return nlp


@pytest.mark.parametrize("text", ["Acme Corp built a big antenna array of the city .", "Acme Corp built a big antenna array"])
def test_relations_follow_merge_entities_after_the_pipe(text):
    """Issue 18 item 4: merge_entities after the pipe gave relations on other tokens
    ('big antenna array of the'), or an IndexError on a short doc."""
    doc = _pipe_then_merge()(text)
    assert [t.text for t in doc][:4] == ["Acme Corp", "built", "a", "big antenna array"]
    pairs = sorted((r.head.text, r.head.label_, r.tail.text, r.tail.label_) for r in doc._.relations)
    assert pairs == [("Acme Corp", "ORG", "big antenna array", "OBJ"), ("big antenna array", "OBJ", "Acme Corp", "ORG")]
    assert relation_keys(doc) == [(0, 1, 3, 4, "built"), (3, 4, 0, 1, "built")]
    # realigned rows are stored as plain data again
    restored = list(DocBin(store_user_data=True, docs=[doc]).get_docs(doc.vocab))[0]
    assert sorted((r.head.text, r.tail.text) for r in restored._.relations) == [
        ("Acme Corp", "big antenna array"), ("big antenna array", "Acme Corp")]


def test_relations_follow_merges_and_splits(nlp):
    doc = make_doc(nlp, "New York is in the United States .", [(0, 8, "LOC"), (19, 32, "LOC")], [(0, 1, "in")])
    with doc.retokenize() as retokenizer:
        retokenizer.merge(doc[5:7])
    assert [(r.head.text, r.tail.text, r.tail.start) for r in doc._.relations] == [("New York", "United States", 5)]
    with doc.retokenize() as retokenizer:  # same length as before, other boundaries
        retokenizer.merge(doc[0:2])
        retokenizer.split(doc[3], ["i", "n"], heads=[(doc[3], 1), doc[2]])
    assert len(doc) == 7
    assert [(r.head.text, r.tail.text) for r in doc._.relations] == [("New York", "United States")]
    assert relation_keys(doc) == [(0, 1, 5, 6, "in")]


def test_merge_cutting_through_an_entity_is_a_clear_error(nlp):
    doc = make_doc(nlp, "Ada Lovelace met Babbage .", [(0, 12, "PER"), (17, 24, "PER")], [(0, 1, "met")])
    with doc.retokenize() as retokenizer:
        retokenizer.merge(doc[1:3])  # "Lovelace met": the head's end is now inside a token
    with pytest.raises(ValueError, match=r"head \(characters 0:12, 'Ada Lovelace'\) no longer starts and ends on "
                                         r"token boundaries.*before='relation_extractor'"):
        doc._.relations


def test_rows_without_char_offsets_are_still_read(nlp):
    """Rows stored before character offsets were kept (9 fields)."""
    doc = nlp.make_doc("Alice met Bob .")
    doc.user_data[RELATIONS_KEY] = [[0, 1, "PER", 2, 3, "PER", "met", 0.5, None]]
    assert [(r.head.text, r.label, r.tail.text, r.score) for r in doc._.relations] == [("Alice", "met", "Bob", 0.5)]
    short = nlp.make_doc("Alice met")
    short.user_data[RELATIONS_KEY] = [[0, 1, "PER", 2, 3, "PER", "met", 0.5, None]]
    with pytest.raises(ValueError, match=r"tail \(tokens 2:3\) is outside the doc's 2 tokens.*retokenized"):
        short._.relations


# --- the extension's value (issue 18, item 9) -------------------------------------


def test_relations_are_read_only_and_assigning_none_is_explained(gold_docs):
    doc = gold_docs[1]
    rels = doc._.relations
    assert rels == list(rels) and len(rels) == 2
    for change in (lambda r: r.append(r[0]), lambda r: r.sort(), lambda r: r.__setitem__(0, r[1]),
                   lambda r: r.clear(), lambda r: r.pop()):
        with pytest.raises(TypeError, match=r"read-only.*Assign a new list"):
            change(rels)
    assert len(doc._.relations) == 2
    doc._.relations += [Relation(doc.ents[0], doc.ents[1], "knows")]  # a new list, assigned
    assert [r.label for r in doc._.relations] == ["knows", "sibling", "sibling"]
    with pytest.raises(TypeError, match=r"got NoneType; assign \[\] to clear"):
        doc._.relations = None
    with pytest.raises(TypeError, match="wrap the single Relation in a list"):
        doc._.relations = Relation(doc.ents[0], doc.ents[1], "knows")
    with pytest.raises(ValueError, match="score must be a finite number"):
        doc._.relations = [(doc.ents[0], doc.ents[1], "knows", "high")]
    with pytest.raises(ValueError, match="must be a non-empty string"):  # found by tests/test_fuzz.py:
        doc._.relations = [(doc.ents[0], doc.ents[1], "knows\ud800")]  # DocBin could not write it
    with pytest.raises(ValueError, match="is not valid text"):
        doc._.relations = [(doc.ents[0], doc.ents[1], "knows", 1.0, "\udc80")]
    doc._.relations = []
    assert doc._.relations == []
