"""configs/amnre_e5.cfg: AMNRE whose CNN sentence encoders read a frozen
encoder's token vectors (FrozenEncoder.v1 in the `embed` slot), trained with
`spacy train` on the tiny BERT and the tiny three-language corpus. The run
takes the alternating adversarial steps, saves the encoder inside the
pipeline, and the loaded pipeline predicts the trained labels."""
import json
import subprocess
import sys

import pytest
import spacy
from spacy.tokens import DocBin

from spacy_mlre.corpus.reader import make_input_doc
from spacy_mlre.ml.layers.frozen_encoder import get_shim
from spacy_mlre.ml.models.amnre import get_net

from mlre_testing import ROOT

pytest.importorskip("torch")
pytest.importorskip("transformers")

WIDTH = 32  # the tiny BERT's hidden size


@pytest.fixture(scope="module")
def trained(tiny_corpus, tiny_bert, tmp_path_factory):
    out = tmp_path_factory.mktemp("amnre-e5")
    model = "--components.relation_extractor.model"
    cmd = [sys.executable, "-m", "spacy", "train", str(ROOT / "configs" / "amnre_e5.cfg"), "--output", str(out),
           "--paths.train", str(tiny_corpus / "train.spacy"), "--paths.dev", str(tiny_corpus / "dev.spacy"),
           "--paths.transformer", str(tiny_bert), f"{model}.embed.n_layers", "1", f"{model}.embed.last_layer", "1",
           f"{model}.embed.width", str(WIDTH), f"{model}.langs", '["en","de","pl"]',
           # small heads: the test is about the wiring, not the paper's sizes
           f"{model}.hidden_width", "32", f"{model}.discriminator_width", "32", f"{model}.dropout", "0.0",
           "--training.max_steps", "30", "--training.eval_frequency", "15"]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out, result.stdout


def test_trains_with_spacy_train_and_learns(trained):
    out, stdout = trained
    assert "REL_MICRO_F" in stdout
    meta = json.loads((out / "model-last" / "meta.json").read_text())
    # two directed labels whose direction depends on word order: 30 steps on
    # the tiny BERT's (random) vectors plus position features learn them
    assert meta["performance"]["rel_micro_f"] > 0.5


def test_saved_pipeline_carries_encoder_and_the_adversarial_game(trained):
    out, _ = trained
    nlp = spacy.load(out / "model-last")
    model = nlp.get_pipe("relation_extractor").model
    encoder = model.get_ref("embed")
    assert encoder.name == "frozen_encoder" and encoder.get_dim("nO") == WIDTH
    assert len(get_shim(encoder)._model.encoder.layer) == 1  # the config's last_layer, kept when saved
    net = get_net(model)
    # the CNN reads the encoder's vectors plus the two position embeddings
    assert net.cfg["word_width"] == WIDTH and net.cfg["langs"] == ["en", "de", "pl"]
    for enc in (*net.individual, *net.consistent):
        assert enc.conv_words.in_channels == WIDTH
    # the alternating discriminator / encoder steps ran and their Adams were saved
    assert net.discriminator is not None and net.adversarial_state() is not None


def test_loaded_pipeline_predicts(trained, tiny_corpus):
    out, _ = trained
    nlp = spacy.load(out / "model-last")
    gold = list(DocBin().from_disk(tiny_corpus / "dev.spacy").get_docs(nlp.vocab))
    docs = list(nlp.pipe(make_input_doc(g) for g in gold))
    found = [{(r.head.start, r.tail.start, r.label) for r in d._.relations} for d in docs]
    expected = [{(r.head.start, r.tail.start, r.label) for r in g._.relations} for g in gold]
    assert sum(len(f & e) for f, e in zip(found, expected)) > 0
    assert all(isinstance(r.score, float) for d in docs for r in d._.relations)
