"""configs/mere_stage1_e5.cfg and mere_stage2_e5.cfg: mERE on the frozen
multilingual encoder (FrozenEncoder.v1 in the tok2vec slot). Both stages are
trained with spaCy's train command (spacy.cli.train.train, in process) on the
tiny BERT and the tiny corpus; stage 2 starts from the saved stage 1. Checked:
both pipelines save, load and predict; stage 2 keeps the stage-1 encoder, its
weights unchanged, stored once in the saved pipeline; the ablation switches
(aggregator null, switcher null) still build with the encoder."""
import pytest
import spacy
from spacy.cli.train import train
from spacy.util import load_config, load_model_from_config

from mlre_testing import ROOT, make_doc

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from spacy_mlre.ml.layers.frozen_encoder import get_shim  # noqa: E402

WIDTH = 32  # the tiny BERT's hidden size


def _overrides(tiny_corpus, tiny_bert, **extra):
    overrides = {
        "paths.train": str(tiny_corpus / "train.spacy"),
        "paths.dev": str(tiny_corpus / "dev.spacy"),
        "paths.transformer": str(tiny_bert),
        "components.relation_extractor.model.tok2vec.n_layers": 1,
        "components.relation_extractor.model.tok2vec.last_layer": 1,
        # one setting: encoder, LA and LS widths follow the model's width
        "components.relation_extractor.model.width": WIDTH,
        "training.max_steps": 30,
        "training.eval_frequency": 15,
    }
    overrides.update(extra)
    return overrides


def _encoders(nlp):
    model = nlp.get_pipe("relation_extractor").model
    return [node for node in model.walk() if node.name == "frozen_encoder"], model


@pytest.fixture(scope="module")
def stages(tiny_corpus, tiny_bert, tmp_path_factory):
    out = tmp_path_factory.mktemp("mere-e5")
    train(ROOT / "configs" / "mere_stage1_e5.cfg", out / "stage1", overrides=_overrides(tiny_corpus, tiny_bert))
    train(ROOT / "configs" / "mere_stage2_e5.cfg", out / "stage2",
          overrides=_overrides(tiny_corpus, tiny_bert, **{"paths.stage1": str(out / "stage1" / "model-last")}))
    return out / "stage1" / "model-last", out / "stage2" / "model-last"


def test_both_stages_train_save_load_and_predict(stages):
    for path, stage in zip(stages, (1, 2)):
        assert "rel_micro_f" in spacy.util.load_meta(path / "meta.json")["performance"]
        loaded = spacy.load(path)
        encoders, model = _encoders(loaded)
        assert len(encoders) == 1 and encoders[0].get_dim("nO") == WIDTH
        assert model.attrs["stage"] == stage and model.has_ref("aggregator")
        assert model.has_ref("switcher") == (stage == 2)
        doc = make_doc(loaded, "Dieter works for Siemens .", [(0, 6, "PER"), (17, 24, "ORG")], [], "de")
        doc = loaded(doc)
        ents = {(e.start, e.end) for e in doc.ents}
        for rel in doc._.relations:  # the pointers choose among the given entities
            assert (rel.head.start, rel.head.end) in ents and (rel.tail.start, rel.tail.end) in ents
            assert rel.label in loaded.get_pipe("relation_extractor").labels


def test_stage2_keeps_the_stage1_encoder_and_stores_it_once(stages):
    stage1, stage2 = (spacy.load(path) for path in stages)
    (enc1,), model1 = _encoders(stage1)
    (enc2,), model2 = _encoders(stage2)
    state1, state2 = get_shim(enc1)._model.state_dict(), get_shim(enc2)._model.state_dict()
    assert state1.keys() == state2.keys() and all(torch.equal(state1[k], state2[k]) for k in state1)
    assert model1.get_ref("aggregator").to_bytes() == model2.get_ref("aggregator").to_bytes()  # LA frozen in stage 2
    # one shim in the whole stage-2 model: the encoder's weights are saved once,
    # the rest (LA, LS, classifier, pointers) is small next to them
    assert sum(len(node.shims) for node in model2.walk()) == 1
    encoder_bytes = len(get_shim(enc2).to_bytes())
    assert encoder_bytes < len(model2.to_bytes()) < 2 * encoder_bytes + 1_000_000


@pytest.mark.parametrize("config,switch,ref", [
    ("mere_stage1_e5.cfg", "components.relation_extractor.model.aggregator", "aggregator"),  # mERE-LS-LA
    ("mere_stage2_e5.cfg", "components.relation_extractor.model.switcher", "switcher"),  # stage 2 without LS
])
def test_ablation_switches_build_on_the_encoder(tiny_bert, config, switch, ref):
    overrides = {"paths.transformer": str(tiny_bert), "components.relation_extractor.model.width": WIDTH, switch: None}
    nlp = load_model_from_config(load_config(ROOT / "configs" / config, overrides=overrides, interpolate=True),
                                 auto_fill=True)
    model = nlp.get_pipe("relation_extractor").model
    assert not model.has_ref(ref) and model.get_dim("nI") == WIDTH
    assert model.get_ref("tok2vec").attrs["width"] == WIDTH
