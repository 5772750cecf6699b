import subprocess
import sys

import pytest
import spacy
from spacy.tokens import DocBin

from spacy_mlre.cli.split import split_docbin


def _docs(path):
    return list(DocBin().from_disk(path).get_docs(spacy.blank("xx").vocab))


def _key(doc):
    return doc.text, doc._.lang, [(r.head.text, r.tail.text, r.label) for r in doc._.relations]


def test_split_holds_out_dev_and_keeps_every_doc_with_its_relations(tiny_corpus, tmp_path):
    n_train, n_dev = split_docbin(tiny_corpus / "train.spacy", tmp_path, 7, seed=3)
    original = [_key(doc) for doc in _docs(tiny_corpus / "train.spacy")]
    train, dev = [_key(d) for d in _docs(tmp_path / "train.spacy")], [_key(d) for d in _docs(tmp_path / "dev.spacy")]
    assert (n_train, n_dev) == (len(train), len(dev)) == (23, 7)
    assert sorted(train + dev) == sorted(original)
    assert train == [k for k in original if k in train]  # the training docs keep their order
    assert all(rels for _, _, rels in train + dev)


def test_split_is_the_same_for_the_same_seed(tiny_corpus, tmp_path):
    dev_texts = []
    for seed, out in ((0, "a"), (0, "b"), (1, "c")):
        split_docbin(tiny_corpus / "train.spacy", tmp_path / out, 7, seed=seed)
        dev_texts.append([_key(d) for d in _docs(tmp_path / out / "dev.spacy")])
    assert dev_texts[0] == dev_texts[1] != dev_texts[2]


@pytest.mark.parametrize("n_dev", [0, 30])
def test_split_with_no_doc_left_on_one_side_names_the_counts_and_writes_nothing(tiny_corpus, tmp_path, n_dev):
    result = subprocess.run(
        [sys.executable, "-m", "spacy_mlre", "split", str(tiny_corpus / "train.spacy"), str(tmp_path / "out"), "--dev", str(n_dev)],
        capture_output=True, text=True,
    )
    assert result.returncode == 1
    out = " ".join(result.stdout.split())
    assert f"--dev {n_dev}:" in out and "train.spacy has 30 docs" in out
    assert not (tmp_path / "out").exists()


def test_split_of_a_file_that_is_not_a_docbin_names_it(tmp_path):
    bad = tmp_path / "train.jsonl"
    bad.write_text('{"text": "not a DocBin"}\n')
    with pytest.raises(ValueError, match="train.jsonl: .*DocBin"):
        split_docbin(bad, tmp_path / "out", 1)
