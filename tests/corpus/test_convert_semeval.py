"""SemEval-2010 Task 8, KBP37 and RELX blocks: one parser, inline samples and real files."""
import pytest

from corpus_helpers import dataset_path, load_docs, run, triples
from spacy_mlre.corpus.converter import ConversionError
from spacy_mlre.corpus.semeval import REPAIR_NO_TAG

SEMEVAL = (
    '1\t"The system as described above has its greatest application in an arrayed '
    '<e1>configuration</e1> of antenna <e2>elements</e2>."\r\n'
    "Component-Whole(e2,e1)\r\nComment: Not a collection: there is structure here, organisation.\r\n\r\n"
    '2\t"The <e1>child</e1> was carefully wrapped and bound into the <e2>cradle</e2> by means of a cord."\r\n'
    "Other\r\nComment:\r\n\r\n"
    '3\t"The <e1>author</e1> of a keygen uses a <e2>disassembler</e2> to look at the raw assembly code."\r\n'
    "Instrument-Agency(e2,e1)\r\nComment:\r\n\r\n"
)
KBP37 = (
    '0\t" <e1> Thom Yorke </e1> of <e2> Radiohead </e2> has included the + for many of his signature sounds . "\n'
    "per:employee_of(e1,e2)\n\n\n"
    '1\t" Dutch league ( <e1> Eredivisie </e1> ) champions <e2> PSV Eindhoven </e2> announced on Monday . "\n'
    "no_relation\n\n\n"
)


def test_semeval_sample(write, tmp_path):
    path = write("TRAIN_FILE.TXT", SEMEVAL)
    stats = run("semeval2010", path, tmp_path / "out")[""]["train"]
    docs = load_docs(tmp_path / "out" / "train.spacy")
    assert [d._.doc_id for d in docs] == ["1", "2", "3"]
    assert docs[0].text == (
        "The system as described above has its greatest application in an arrayed configuration of antenna elements."
    )
    # direction in head/tail order, label without its (e2,e1) suffix
    assert triples(docs[0]) == [("elements", "Component-Whole", "configuration")]
    assert [(e.text, e.label_) for e in docs[0].ents] == [("configuration", "ENT"), ("elements", "ENT")]
    # Other: no relation stored, entities kept as a negative pair
    assert triples(docs[1]) == [] and [e.text for e in docs[1].ents] == ["child", "cradle"]
    assert triples(docs[2]) == [("disassembler", "Instrument-Agency", "author")]
    assert stats.no_relation == {"Other": 1} and stats.relations_read == 3
    assert sum(stats.relations.values()) == 2


def test_kbp37_sample_markers_with_spaces(write, tmp_path):
    path = write("dev.txt", KBP37)
    stats = run("kbp37", path, tmp_path / "out")[""]["dev"]
    docs = load_docs(tmp_path / "out" / "dev.spacy")
    assert docs[0].text == "Thom Yorke of Radiohead has included the + for many of his signature sounds ."
    assert triples(docs[0]) == [("Thom Yorke", "per:employee_of", "Radiohead")]
    assert docs[1].text.startswith("Dutch league ( Eredivisie ) champions PSV Eindhoven")
    assert triples(docs[1]) == [] and stats.no_relation == {"no_relation": 1}
    assert docs[0]._.lang == "en"


def test_relx_language_from_file_name(write, tmp_path):
    text = ('17647\t"Die <e1> Sacramento Heatwave </e1> ist ein Team in Sacramento, <e2> Kalifornien </e2>."\n'
            "org:stateorprovince_of_headquarters(e1,e2)\n\n\n"
            '17931\t"Die beiden für das <e1> Seventeen </e1>-Magazin und <e2> Ann Shoket </e2>."\n'
            "org:top_members/employees\n\n\n")
    stats = run("kbp37", write("RELX_de.txt", text), tmp_path / "out")[""]["RELX_de"]
    docs = load_docs(tmp_path / "out" / "RELX_de.spacy")
    assert docs[0]._.lang == "de"
    assert docs[0].text == "Die Sacramento Heatwave ist ein Team in Sacramento, Kalifornien."
    assert triples(docs[0]) == [("Sacramento Heatwave", "org:stateorprovince_of_headquarters", "Kalifornien")]
    # whitespace inside a marker belongs to the markup: "Seventeen-Magazin" stays one word
    assert "Seventeen-Magazin" in docs[1].text
    assert triples(docs[1]) == [("Seventeen", "org:top_members/employees", "Ann Shoket")]
    assert stats.repaired == {REPAIR_NO_TAG: 1}


@pytest.mark.parametrize(
    "block,reason",
    [
        ('9\t"A <e1>b</e1> c <e2>d</e2>."\nCause-Effect(e1,e3)\n\n', "unknown direction tag"),
        ('9\t"A <e1>b</e1> c <e2>d</e2>."\n\n', "missing label line"),
        ('9\t"A <e1>b</e1> c d."\nCause-Effect(e1,e2)\n\n', "bad entity markup"),
        ('9\t"A <e1> </e1> c <e2>d</e2>."\nCause-Effect(e1,e2)\n\n', "empty entity"),
    ],
)
def test_malformed_block(write, tmp_path, block, reason):
    path = write("test.txt", KBP37 + block + KBP37.replace("0\t", "5\t").replace("1\t", "6\t"))
    with pytest.raises(ConversionError) as err:
        run("kbp37", path, tmp_path / "out")
    assert err.value.line == 9 and str(err.value).startswith(f"{path}:9: {reason}")
    stats = run("kbp37", path, tmp_path / "out", skip_invalid=True)[""]["test"]
    assert stats.docs == 4 and stats.skipped == {reason: 1}


# --- the real files -------------------------------------------------------------


def test_real_semeval(tmp_path):
    results = run("semeval2010", dataset_path("semeval2010_task8"), tmp_path)[""]
    train, test = results["train"], results["test"]
    assert (train.docs, test.docs) == (8000, 2717)
    assert (train.no_relation["Other"], test.no_relation["Other"]) == (1410, 454)
    assert sum(train.relations.values()) == 8000 - 1410
    # the official TRAIN_DISTRIB.TXT: direction lives in head/tail, so 9 label names
    assert train.relations == {
        "Cause-Effect": 1003, "Component-Whole": 941, "Entity-Destination": 845, "Product-Producer": 717,
        "Entity-Origin": 716, "Member-Collection": 690, "Message-Topic": 634, "Content-Container": 540,
        "Instrument-Agency": 504,
    }
    assert not train.skipped and not train.dropped and not train.repaired
    docs = load_docs(tmp_path / "train.spacy", limit=1)
    assert triples(docs[0]) == [("elements", "Component-Whole", "configuration")]
    test_docs = load_docs(tmp_path / "test.spacy", limit=1)
    assert test_docs[0]._.doc_id == "8001"
    assert triples(test_docs[0]) == [("audits", "Message-Topic", "waste")]


def test_real_kbp37(tmp_path):
    path = dataset_path("kbp37")
    with pytest.raises(ConversionError, match=r"train.txt:549: empty entity"):
        run("kbp37", path, tmp_path / "strict")
    results = run("kbp37", path, tmp_path / "out", skip_invalid=True)[""]
    # published 15,917 / 1,724 / 3,405 records; those with an empty <e1> </e1> or <e2> </e2> are skipped, counted
    for split, published, empty in (("train", 15917, 110), ("dev", 1724, 10), ("test", 3405, 26)):
        stats = results[split]
        assert (stats.docs, stats.skipped) == (published - empty, {"empty entity": empty})
        assert sum(stats.relations.values()) + sum(stats.no_relation.values()) == published - empty
    assert results["train"].no_relation == {"no_relation": 1532}
    docs = load_docs(tmp_path / "out" / "train.spacy", limit=3)
    assert docs[0]._.doc_id == "0"
    assert triples(docs[0]) == [("Thom Yorke", "per:employee_of", "Radiohead")]
    assert triples(docs[2]) == [("NCAA", "org:members", "Ohio University")]
