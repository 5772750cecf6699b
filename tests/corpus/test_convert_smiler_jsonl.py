"""SMiLER TSV and the project's own jsonl format, written inline (SMiLER's data is not shipped)."""
import json

import pytest

from corpus_helpers import load_docs, run, triples
from spacy_mlre.corpus.converter import ConversionError
from spacy_mlre.corpus.jsonl import REPAIR_TRIMMED
from spacy_mlre.corpus.smiler import REPAIR_COLUMN

SMILER = (
    "id\tentity_1\tentity_2\tlabel\ttext\tlang\n"
    "1\tSergio Ramos\tReal Madrid\tis-member-of\t<e1>Sergio Ramos</e1> spielt für <e2>Real Madrid</e2>.\tde\n"
    "2\tParis\tFrance\tno_relation\t<e2>France</e2> et <e1>Paris</e1> .\tfr\n"
    "3\tKim\tSeoul\thas-lives-in\t<e1>김연아</e1>는 <e2>서울</e2>에 산다.\tko\n"
)


def test_smiler_sample(write, tmp_path):
    stats = run("smiler", write("multi_corpora_train.tsv", SMILER), tmp_path / "out")[""]["train"]
    docs = load_docs(tmp_path / "out" / "train.spacy")
    assert [d._.lang for d in docs] == ["de", "fr", "ko"]
    assert [d._.doc_id for d in docs] == ["1", "2", "3"]
    assert docs[0].text == "Sergio Ramos spielt für Real Madrid."
    assert triples(docs[0]) == [("Sergio Ramos", "is-member-of", "Real Madrid")]
    assert triples(docs[1]) == [] and [e.text for e in docs[1].ents] == ["France", "Paris"]
    # no spaces between entity and particle: the markup still makes the entity its own token
    assert docs[2].text == "김연아는 서울에 산다."
    assert triples(docs[2]) == [("김연아", "has-lives-in", "서울")]
    assert stats.no_relation == {"no_relation": 1}
    assert stats.docs_per_lang == {"de": 1, "fr": 1, "ko": 1}
    assert stats.repaired == {REPAIR_COLUMN: 2}  # "Kim", "Seoul" differ from the marked text


def test_smiler_malformed(write, tmp_path):
    path = write("en_corpora_test.tsv", SMILER + "4\tA\tB\tr\t<e1>A</e1> and B\ten\n" + "5\tonly\tfour\tcolumns\n")
    with pytest.raises(ConversionError) as err:
        run("smiler", path, tmp_path / "out")
    assert str(err.value).startswith(f"{path}:5: bad entity markup")
    stats = run("smiler", path, tmp_path / "out", skip_invalid=True)[""]["test"]
    assert stats.skipped == {"bad entity markup": 1, "wrong number of columns": 1} and stats.docs == 3


RECORD = {
    "id": "de-17", "lang": "de",
    "text": "Angela Merkel wurde in Hamburg geboren.",
    "entities": [{"start": 0, "end": 13, "label": "PER", "kb_id": "Q567"}, {"start": 22, "end": 30, "label": "LOC"}],
    "relations": [{"head": 0, "tail": 1, "label": "born_in", "bag_key": "Q567|Q1055"}],
}


def test_jsonl_sample(write, tmp_path):
    lists = {"text": "北京是中国的首都。", "entities": [[0, 2, "LOC"], [3, 5, "LOC"]], "relations": [[0, 1, "capital_of"]]}
    path = write("train.jsonl", json.dumps(RECORD) + "\n" + json.dumps(lists, ensure_ascii=False) + "\n")
    stats = run("jsonl", path, tmp_path / "out", lang="zh")[""]["train"]
    de, zh = load_docs(tmp_path / "out" / "train.spacy")
    assert de.text == RECORD["text"] and de._.lang == "de" and de._.doc_id == "de-17"
    # offsets 22:30 include the space before "Hamburg": trimmed and counted
    assert triples(de) == [("Angela Merkel", "born_in", "Hamburg")]
    assert de._.relations[0].bag_key == "Q567|Q1055"
    assert de.spans["entities"][0].kb_id_ == "Q567"
    assert stats.repaired == {REPAIR_TRIMMED: 1}
    # no spaces in Chinese: entity boundaries still become token boundaries; lang from --lang
    assert zh.text == "北京是中国的首都。" and zh._.lang == "zh"
    assert triples(zh) == [("北京", "capital_of", "中国")]
    assert zh._.doc_id == "train:2"


@pytest.mark.parametrize(
    "change,reason",
    [
        ({"entities": [{"start": 0, "end": 99, "label": "PER"}]}, "entity offsets outside the text"),
        ({"relations": [{"head": 0, "tail": 5, "label": "born_in"}]}, "relation names a missing entity"),
        ({"text": 5}, "wrong field type"),
        ({"lang": None}, "missing language"),
    ],
)
def test_jsonl_malformed(write, tmp_path, change, reason):
    path = write("dev.jsonl", json.dumps(RECORD) + "\n\n" + json.dumps({**RECORD, **change}) + "\n")
    with pytest.raises(ConversionError) as err:
        run("jsonl", path, tmp_path / "out")
    assert str(err.value).startswith(f"{path}:3: {reason}")
    stats = run("jsonl", path, tmp_path / "out", skip_invalid=True)[""]["dev"]
    assert stats.docs == 1 and stats.skipped == {reason: 1}


def test_jsonl_bad_json_and_duplicates(write, tmp_path):
    dup = {**RECORD, "relations": RECORD["relations"] * 2 + [{"head": 1, "tail": 1, "label": "x"}]}
    path = write("test.jsonl", json.dumps(dup) + "\n{not json\n")
    with pytest.raises(ConversionError, match=r"test.jsonl:2: bad JSON"):
        run("jsonl", path, tmp_path / "out")
    stats = run("jsonl", path, tmp_path / "out", skip_invalid=True)[""]["test"]
    assert sum(stats.relations.values()) == 1 and sum(stats.dropped.values()) == 2
