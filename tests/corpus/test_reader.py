"""The corpus reader of the configs (spacy_mlre.Corpus.v1)."""
import pytest
import spacy

from spacy_mlre.corpus.reader import RelationCorpus


def test_several_paths_are_read_in_order_and_filtered(tiny_corpus):
    """Comma-separated paths: how the workflow trains on the splits of two languages."""
    nlp = spacy.blank("xx")
    train = list(RelationCorpus(tiny_corpus / "train.spacy")(nlp))
    dev = list(RelationCorpus(tiny_corpus / "dev.spacy")(nlp))
    both = list(RelationCorpus(f"{tiny_corpus / 'train.spacy'}, {tiny_corpus / 'dev.spacy'}")(nlp))
    assert [eg.reference.text for eg in both] == [eg.reference.text for eg in train + dev]
    assert len(both[0].reference._.relations) > 0 and len(both[0].predicted._.relations) == 0
    # the folder holds both files: read once each
    assert len(list(RelationCorpus(tiny_corpus)(nlp))) == len(both)
    # a glob (project.yml's commands run without a shell, so the reader expands it)
    assert len(list(RelationCorpus(str(tiny_corpus / "*.spacy"))(nlp))) == len(both)
    only_de = list(RelationCorpus(f"{tiny_corpus / 'train.spacy'},{tiny_corpus / 'dev.spacy'}", langs=["de"])(nlp))
    assert only_de and all(eg.reference._.lang == "de" for eg in only_de)
    assert len(only_de) < len(both)


def test_missing_path_is_named(tiny_corpus):
    nlp = spacy.blank("xx")
    with pytest.raises(ValueError, match="nowhere.spacy does not exist"):
        list(RelationCorpus(f"{tiny_corpus / 'train.spacy'},{tiny_corpus / 'nowhere.spacy'}")(nlp))
    with pytest.raises(ValueError, match="nothing matches .*nowhere"):
        list(RelationCorpus(str(tiny_corpus / "nowhere*" / "train.spacy"))(nlp))
    with pytest.raises(ValueError, match="needs a path"):
        list(RelationCorpus(None)(nlp))
