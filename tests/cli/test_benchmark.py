import json

from spacy_mlre.cli.benchmark import benchmark_inference, benchmark_training

from mlre_testing import ROOT


def test_benchmark_inference_fields(trained_pipeline, tiny_corpus):
    result = benchmark_inference(str(trained_pipeline), tiny_corpus / "dev.spacy", repeat=2)
    assert result["docs"] == 8 and result["candidate_pairs"] == 16
    assert result["relations"] > 0 and len(result["seconds"]) == 2
    for key in ("docs_per_second", "words_per_second", "pairs_per_second", "relations_per_second",
                "encoder_seconds", "encoder_share", "peak_memory_mb"):
        assert result[key] > 0, key
    assert result["machine"]["cores"] >= 1
    json.dumps(result)


def test_benchmark_training_fields(tiny_corpus):
    result = benchmark_training(ROOT / "configs" / "pair_tok2vec.cfg", tiny_corpus / "train.spacy", steps=3, batch_size=8)
    assert result["examples"] == 24 and result["examples_per_second"] > 0
