import json
import sys

import pytest
import spacy
from spacy.tokens import DocBin
from typer.testing import CliRunner

from spacy_mlre.cli import _load_commands, app

from spacy_mlre.cli._machine import machine_info
from spacy_mlre.cli.benchmark import (
    benchmark_inference,
    benchmark_memory,
    benchmark_scaling,
    benchmark_training,
    load_docs,
    plot_scaling,
    profile_pipe,
    synthetic_docs,
)

from mlre_testing import ROOT

POINT_FIELDS = (
    "entities_per_doc", "docs", "words_per_doc", "candidate_pairs", "candidate_pairs_per_doc", "all_pairs_per_doc",
    "relations_per_doc", "seconds", "ms_per_doc", "docs_per_second", "words_per_second", "pairs_per_second",
    "encoder_ms_per_doc", "head_ms_per_doc", "encoder_share", "head_share", "rss_mb",
)


def _pairs_within(doc, max_distance):
    """Ordered pairs of distinct entities at most max_distance tokens apart, counted one by one."""
    ents = list(doc.ents)
    return sum(
        1 for a in ents for b in ents if a is not b and max(b.start - a.end, a.start - b.end) <= max_distance
    )


def _invoke(*args):
    """`python -m spacy_mlre benchmark ARGS`, in this process."""
    _load_commands()
    return CliRunner().invoke(app, ["benchmark", *map(str, args)], env={"COLUMNS": "200"})  # error boxes unwrapped


def _cli(*args):
    result = _invoke(*args)
    assert result.exit_code == 0, (result.output[-3000:], result.exception)
    return result.output


def _predicted_relations(nlp, docs):
    """Relations the pipeline predicts on copies of `docs`, counted here, one doc at a time."""
    return sum(len(nlp(doc.copy())._.relations) for doc in docs)


def test_benchmark_inference_fields(trained_pipeline, tiny_corpus):
    result = benchmark_inference(str(trained_pipeline), tiny_corpus / "dev.spacy", repeat=2)
    assert result["docs"] == 8 and result["candidate_pairs"] == 16
    assert result["relations"] > 0 and len(result["seconds"]) == 2
    for key in ("docs_per_second", "words_per_second", "pairs_per_second", "relations_per_second",
                "encoder_seconds", "head_seconds", "encoder_share", "head_share", "peak_memory_mb"):
        assert result[key] > 0, key
    assert result["encoder_share"] + result["head_share"] == pytest.approx(1.0)
    nlp = spacy.load(trained_pipeline)
    assert result["relations"] == _predicted_relations(nlp, load_docs(nlp, tiny_corpus / "dev.spacy"))
    assert set(result["machine"]) == set(machine_info()) and result["machine"]["cores"] >= 1
    json.dumps(result)


def test_benchmark_two_processes_same_output(trained_pipeline, tiny_corpus):
    one = benchmark_inference(str(trained_pipeline), tiny_corpus / "dev.spacy", repeat=1, batch_size=2)
    two = benchmark_inference(str(trained_pipeline), tiny_corpus / "dev.spacy", repeat=1, batch_size=2, n_process=2)
    assert two["n_process"] == 2
    for key in ("docs", "words", "candidate_pairs", "relations"):
        assert two[key] == one[key], key
    assert two["docs_per_second"] > 0


def test_benchmark_long_and_empty_docs(trained_pipeline, tmp_path):
    nlp = spacy.load(trained_pipeline)
    docs = synthetic_docs(nlp, 3, 0, 20) + synthetic_docs(nlp, 1, 300, 10000, seed=1)
    DocBin(store_user_data=True, docs=docs).to_disk(tmp_path / "data.spacy")
    result = benchmark_inference(str(trained_pipeline), tmp_path / "data.spacy", repeat=1)
    assert result["docs"] == 4 and result["words"] == 3 * 20 + 10000
    assert result["candidate_pairs"] == _pairs_within(docs[-1], 100) > 0
    only_empty = tmp_path / "empty.spacy"
    DocBin(store_user_data=True, docs=docs[:3]).to_disk(only_empty)
    result = benchmark_inference(str(trained_pipeline), only_empty, repeat=1)
    assert result["candidate_pairs"] == 0 and result["relations"] == 0 and result["encoder_seconds"] == 0


def test_benchmark_training_fields_and_profile(tiny_corpus, tmp_path):
    result = benchmark_training(ROOT / "configs" / "pair_tok2vec.cfg", tiny_corpus / "train.spacy", steps=3, batch_size=8,
                                profile_path=tmp_path / "update.txt")
    assert result["examples"] == 24 and result["examples_per_second"] > 0
    text = (tmp_path / "update.txt").read_text()
    assert "relation_extractor.py" in text and "(update)" in text
    assert (tmp_path / "update.prof").exists()


def test_synthetic_docs_have_exactly_n_entities(nlp):
    for n, length in ((0, 10), (1, 10), (5, 100), (64, 100), (30, 30)):
        docs = synthetic_docs(nlp, 3, n, length, labels=["PER", "ORG"])
        for doc in docs:
            assert len(doc) == length and len(doc.ents) == n
            assert {e.label_ for e in doc.ents} <= {"PER", "ORG"}


def test_scaling_fields_and_pair_counts(trained_pipeline):
    counts = [0, 1, 2, 5, 12]
    result = benchmark_scaling([str(trained_pipeline)], counts, docs_per_point=4, words_per_doc=60, repeat=1, batch_size=3,
                               max_batch_pairs=40)
    assert result["mode"] == "scaling" and len(result["pipelines"]) == 1
    pipeline = result["pipelines"][0]
    assert pipeline["name"] == "PairClassifier" and pipeline["max_distance"] == 100
    assert [p["entities_per_doc"] for p in pipeline["points"]] == counts
    for point in pipeline["points"]:
        n = point["entities_per_doc"]
        assert set(POINT_FIELDS) <= set(point), n
        assert point["docs"] == 4 and point["words_per_doc"] == 60
        # batches sized by pairs: as many docs as fit in 40 pairs, between 1 and 3
        assert point["batch_size"] == {0: 3, 1: 3, 2: 3, 5: 2, 12: 1}[n]
        # 60 tokens < max_distance: every ordered pair of distinct entities is a candidate
        assert point["candidate_pairs_per_doc"] == n * (n - 1) == point["all_pairs_per_doc"]
        assert point["ms_per_doc"] > 0 and point["docs_per_second"] > 0
        if n >= 2:
            assert point["pairs_per_second"] > 0 and point["encoder_ms_per_doc"] > 0 and point["head_ms_per_doc"] > 0
            assert point["encoder_share"] + point["head_share"] == pytest.approx(1.0)
    json.dumps(result)


def test_scaling_pairs_bounded_by_distance(trained_pipeline):
    nlp = spacy.load(trained_pipeline)
    nlp.get_pipe("relation_extractor").cfg["max_distance"] = 5
    result = benchmark_scaling([nlp], [8, 30], docs_per_point=2, words_per_doc=60, repeat=1)
    for point in result["pipelines"][0]["points"]:
        n = point["entities_per_doc"]
        expected = _pairs_within(synthetic_docs(nlp, 1, n, 60)[0], 5)
        assert 0 < expected < n * (n - 1)
        assert point["candidate_pairs_per_doc"] == expected


def test_scaling_cli_plot_and_merge(trained_pipeline, tiny_corpus, tmp_path):
    first = tmp_path / "first.json"
    out = _cli("scaling", trained_pipeline, "--data", tiny_corpus / "dev.spacy", "--entities", "0,2,4",
               "--docs-per-point", "3", "--repeat", "1", "-o", first, "--plot", tmp_path / "first.png")
    assert "| PairClassifier | 4 | 12 |" in out
    assert first.with_suffix(".md").read_text() in out
    data = json.loads(first.read_text())
    assert data["text"] == "corpus words" and data["data"].endswith("dev.spacy")
    assert [p["entities_per_doc"] for p in data["pipelines"][0]["points"]] == [0, 2, 4]
    merged = tmp_path / "merged.json"
    _cli("scaling", first, trained_pipeline, "-e", "2,3", "--docs-per-point", "2", "--repeat", "1", "-o", merged,
         "--plot", tmp_path / "merged.png")
    pipelines = json.loads(merged.read_text())["pipelines"]
    names = [p["name"] for p in pipelines]
    assert len(names) == 2 and len(set(names)) == 2 and names[0] == "PairClassifier"
    assert pipelines[0]["points"] == data["pipelines"][0]["points"]  # the earlier run, merged in as it was
    assert [p["entities_per_doc"] for p in pipelines[1]["points"]] == [2, 3]
    pytest.importorskip("matplotlib")
    assert (tmp_path / "first.png").stat().st_size > 0 and (tmp_path / "merged.png").stat().st_size > 0


def test_scaling_plot_is_skipped_without_matplotlib(tmp_path, monkeypatch):
    """Without matplotlib the plot is left out, not an error: no file, None back."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now raises ImportError
    result = {"pipelines": [{"name": "x", "points": [{"entities_per_doc": 2, "ms_per_doc": 1.0, "head_share": 0.5}]}],
              "docs_per_point": 1, "words_per_doc": 1, "batch_size": 1}
    assert plot_scaling(result, tmp_path / "plot.png") is None
    assert not (tmp_path / "plot.png").exists()


def test_memory_checks(trained_pipeline):
    result = benchmark_memory(str(trained_pipeline), stream_docs=300, sample_every=100, long_doc_tokens=10000,
                              long_doc_entities=300, batch_size=32)
    stream, long_doc = result["stream"], result["long_doc"]
    assert stream["docs"] == 300 and [s["docs"] for s in stream["samples"]] == [100, 200, 300]
    assert all(s["rss_mb"] > 0 for s in stream["samples"]) and stream["relations"] > 0
    assert long_doc["in_subprocess"] and long_doc["tokens"] == 10000 and long_doc["entities"] == 300
    nlp = spacy.load(trained_pipeline)
    assert long_doc["candidate_pairs"] == _pairs_within(synthetic_docs(nlp, 1, 300, 10000)[0], 100)
    assert 0 < long_doc["candidate_pairs"] < long_doc["all_pairs"] == 300 * 299
    # the child process reports what the pipeline predicts on the same doc here
    spans_key = nlp.get_pipe("relation_extractor").cfg.get("spans_key")
    doc = synthetic_docs(nlp, 1, 300, 10000, spans_key=spans_key)[0]
    assert long_doc["relations"] == _predicted_relations(nlp, [doc]) > 0
    assert long_doc["peak_memory_mb"] > 0
    json.dumps(result)


def test_profile_shows_the_pipes_predict(trained_pipeline, tmp_path):
    nlp = spacy.load(trained_pipeline)
    docs = synthetic_docs(nlp, 8, 6, 30)
    report = profile_pipe(nlp, docs, top=40)
    assert report["docs"] == 8 and report["tokens"] == 240 and report["candidate_pairs"] == 8 * 30
    lines = report["text"].splitlines()
    assert any("relation_extractor.py" in line and "(predict)" in line for line in lines)
    assert any(row["function"].endswith("(predict)") for row in report["top"])
    # through the command line: printed and saved
    data = tmp_path / "data.spacy"
    DocBin(store_user_data=True, docs=docs).to_disk(data)
    out = _cli("speed", trained_pipeline, data, "--repeat", "1", "--profile", tmp_path / "profile.txt", "-o", tmp_path / "r.json")
    assert "(predict)" in out and "(predict)" in (tmp_path / "profile.txt").read_text()
    assert json.loads((tmp_path / "r.json").read_text())["profile"]["candidate_pairs"] == 240


def test_memory_and_train_subcommands(trained_pipeline, tiny_corpus, tmp_path):
    out = _cli("memory", trained_pipeline, "--data", tiny_corpus / "dev.spacy", "--stream-docs", "50",
               "--long-doc", "0", "-b", "16", "-o", tmp_path / "memory.json")
    memory = json.loads((tmp_path / "memory.json").read_text())
    assert memory["mode"] == "memory" and memory["data"].endswith("dev.spacy") and memory["long_doc"] is None
    assert memory["stream"]["docs"] == 50 and memory["batch_size"] == 16
    assert out.startswith("stream rss_mb: ") and "rss_slope_mb_per_1000_docs" in out
    _cli("train", ROOT / "configs" / "pair_tok2vec.cfg", tiny_corpus / "train.spacy", "--steps", "2", "-b", "8",
         "-o", tmp_path / "train.json")
    train = json.loads((tmp_path / "train.json").read_text())
    assert train["mode"] == "training" and train["examples"] == 16 and train["profile"] is None


@pytest.mark.parametrize(
    "args,message",
    [
        (["speed", "PIPELINE"], "Missing argument 'DATA'"),
        (["speed"], "Missing argument 'PIPELINE'"),
        (["train", ROOT / "configs" / "pair_tok2vec.cfg"], "Missing argument 'DATA'"),
        (["speed", "PIPELINE", "no-such.spacy"], "no-such.spacy does not exist"),
        (["speed", "PIPELINE", __file__], "is not a .spacy file or a folder of them"),
        (["scaling", "earlier.json"], "earlier.json does not exist"),
        (["scaling", "PIPELINE", "--entities", "2,x"], "comma-separated non-negative integers"),
        (["memory", "PIPELINE", "--long-doc", "many"], "takes TOKENS,ENTITIES or 0"),
        (["PIPELINE", "DATA"], "No such command 'PIPELINE'"),
    ],
)
def test_bad_calls_are_usage_errors(args, message):
    """Caught before any pipeline loads (PIPELINE names none), with what is wrong."""
    result = _invoke(*args)
    assert result.exit_code == 2 and message in result.output, result.output


def test_benchmark_lists_its_subcommands():
    result = _invoke()
    for name in ("speed", "scaling", "memory", "train"):
        assert f" {name} " in result.output, result.output


def test_every_timed_pass_runs_the_frozen_encoder(tiny_bert, tiny_corpus, monkeypatch):
    """FrozenEncoder.v1 caches each doc's vectors: without clearing, the second
    pass of `speed --repeat` would time cache lookups instead of the encoder."""
    import spacy_mlre.ml.layers.frozen_encoder as frozen_encoder
    from spacy_mlre.cli.benchmark._common import measure_pipe
    from spacy_mlre.corpus.reader import RelationCorpus

    nlp = spacy.blank("xx")
    encoder = {"@architectures": "spacy_mlre.FrozenEncoder.v1", "name": str(tiny_bert), "n_layers": 2}
    nlp.add_pipe("relation_extractor", config={"model": {"@architectures": "spacy_mlre.PairClassifier.v1", "hidden_width": 16, "tok2vec": encoder}})
    examples = list(RelationCorpus(tiny_corpus / "dev.spacy")(nlp))
    nlp.initialize(lambda: examples)
    docs = [eg.predicted for eg in examples]
    encoded = []
    real = frozen_encoder.encode_docs
    monkeypatch.setattr(frozen_encoder, "encode_docs", lambda model, batch: encoded.extend(batch) or real(model, batch))
    measured = measure_pipe(nlp, docs, batch_size=4, n_process=1, repeat=2, component="relation_extractor")
    # two timed passes and the time split's pass, each encoding every doc
    assert len(encoded) == 3 * len(docs) and len(measured["seconds"]) == 2
