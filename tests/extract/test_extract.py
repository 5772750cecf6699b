"""`extract`: the same bytes from every engine, resume after a stop, malformed
records skipped and counted (or stopping the run with --strict)."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import spacy
from spacy.tokens import DocBin
from typer.testing import CliRunner

from spacy_mlre.cli import _load_commands, app
from spacy_mlre.extract import COLUMNS, ExtractError, extract
from spacy_mlre.extract import writers

from mlre_testing import ROOT

PEOPLE = ["Alice", "Bob", "Dieter", "Zofia", "Émile", "Carol"]
ORGS = ["Acme", "Siemens", "Orlen", "Renault", "Fiat"]


def _record(i, with_ents=True):
    """A doc like the training data of `trained_pipeline`, as a JSONL record."""
    p, o = PEOPLE[i % len(PEOPLE)], ORGS[(i // 2) % len(ORGS)]
    if i % 2:
        text = f"{p} works for {o} ."
        ents = [[0, len(p), "PER"], [len(p) + 11, len(p) + 11 + len(o), "ORG"]]
    else:
        text = f"{o} hired {p} ."
        ents = [[0, len(o), "ORG"], [len(o) + 7, len(o) + 7 + len(p), "PER"]]
    record = {"id": f"d{i}", "lang": ["en", "de", "pl"][i % 3], "text": text}
    if with_ents:
        record["entities"] = ents
    return record


def _write_jsonl(path, records):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in records),
                    encoding="utf8")
    return path


def _files(folder):
    """Every shard's name and bytes."""
    return {p.name: p.read_bytes() for p in sorted(Path(folder).glob("part-*"))}


def _rows(folder):
    return [json.loads(line) for data in _files(folder).values() for line in data.decode("utf8").splitlines()]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """30 records in two files of a folder (shards cross the file boundary)."""
    folder = tmp_path_factory.mktemp("extract-input")
    _write_jsonl(folder / "a.jsonl", [_record(i) for i in range(17)])
    _write_jsonl(folder / "b.jsonl", [_record(i) for i in range(17, 30)])
    return folder


@pytest.fixture(scope="module")
def reference(trained_pipeline, corpus, tmp_path_factory):
    """One uninterrupted run in this process: what every other run must write."""
    out = tmp_path_factory.mktemp("reference") / "out"
    summary = extract(trained_pipeline, corpus, out, shard_size=7, batch_size=3)
    assert summary.docs == 30 and summary.relations > 0 and summary.shards_written == 5
    return out


@pytest.fixture(scope="module")
def ner_pipeline(trained_pipeline, tmp_path_factory):
    """The trained pipeline with an entity ruler before it: finds the entities of raw text."""
    nlp = spacy.load(trained_pipeline)
    ruler = nlp.add_pipe("entity_ruler", before="relation_extractor")
    ruler.add_patterns([{"label": "PER", "pattern": p} for p in PEOPLE] + [{"label": "ORG", "pattern": o} for o in ORGS])
    path = tmp_path_factory.mktemp("ner") / "pipeline"
    nlp.to_disk(path)
    return path


def test_rows_are_the_pipelines_relations(trained_pipeline, reference):
    nlp = spacy.load(trained_pipeline)
    rows = _rows(reference)
    assert all(list(row) == list(COLUMNS) for row in rows)
    expected = []
    for i in range(30):
        record = _record(i)
        doc = nlp.make_doc(record["text"])
        doc.ents = [doc.char_span(a, b, label=label) for a, b, label in record["entities"]]
        doc = nlp(doc)
        for r in doc._.relations:
            expected.append([record["id"], record["lang"], r.head.text, r.head.label_, r.head.start_char,
                             r.head.end_char, r.tail.text, r.tail.label_, r.tail.start_char, r.tail.end_char,
                             r.label, round(r.score, 6)])
    assert [list(row.values()) for row in rows] == expected


def test_engines_write_the_same_bytes(trained_pipeline, corpus, reference, tmp_path):
    """Two local processes and a Dask LocalCluster of two worker processes."""
    distributed = pytest.importorskip("distributed")
    two = extract(trained_pipeline, corpus, tmp_path / "two", n_process=2, shard_size=7, batch_size=3)
    assert two.workers == 2 and two.docs == 30
    assert _files(tmp_path / "two") == _files(reference)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        summary = extract(trained_pipeline, corpus, tmp_path / "dask", engine="dask", scheduler=cluster.scheduler_address,
                          shard_size=7, batch_size=3)
    assert summary.workers == 2 and summary.docs == 30
    assert _files(tmp_path / "dask") == _files(reference)


def test_resume_after_a_crash(trained_pipeline, corpus, reference, tmp_path, monkeypatch):
    out = tmp_path / "out"
    write = writers.write_shard
    written = []

    def crash_on_third(folder, index, rows, fmt):
        if len(written) == 2:  # dies mid-write: a temporary file is left, no shard
            (folder / f".part-{index:05d}.jsonl.partial").write_text("half a shard")
            raise KeyboardInterrupt
        written.append(index)
        return write(folder, index, rows, fmt)

    monkeypatch.setattr("spacy_mlre.extract.run.write_shard", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        extract(trained_pipeline, corpus, out, shard_size=7, batch_size=3)
    assert len(_files(out)) == 2 and any(out.glob(".part-*"))
    monkeypatch.setattr("spacy_mlre.extract.run.write_shard", write)
    with pytest.raises(ExtractError, match="--resume"):
        extract(trained_pipeline, corpus, out, shard_size=7, batch_size=3)
    with pytest.raises(ExtractError, match="shard_size"):
        extract(trained_pipeline, corpus, out, shard_size=8, batch_size=3, resume=True)
    summary = extract(trained_pipeline, corpus, out, shard_size=7, batch_size=3, resume=True)
    assert summary.shards_resumed == 2 and summary.shards_written == 3 and summary.docs == 30 - 14
    assert _files(out) == _files(reference) and not any(out.glob(".part-*"))


def test_resume_after_a_killed_process(trained_pipeline, tmp_path):
    """SIGKILL a real run as soon as its first shard is written, then resume."""
    data = _write_jsonl(tmp_path / "in.jsonl", [_record(i) for i in range(600)])
    args = [str(trained_pipeline), str(data)]
    options = ["--shard-size", "5", "--batch-size", "5"]
    killed = tmp_path / "killed"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "spacy_mlre", "extract", *args, str(killed), *options],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not (killed / "part-00000.jsonl").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_done = len(_files(killed))
    if n_done == 120:
        pytest.skip("the run finished before it was killed")
    assert n_done >= 1
    summary = extract(*args, killed, shard_size=5, batch_size=5, resume=True)
    assert summary.shards_resumed == n_done and summary.shards_written == 120 - n_done
    whole = tmp_path / "whole"
    extract(*args, whole, shard_size=5, batch_size=5)
    assert _files(killed) == _files(whole)


def test_malformed_records_are_counted(trained_pipeline, tmp_path):
    good = [_record(i) for i in range(6)]
    bad_boundary = {"text": "Alicework for Acme .", "entities": [[0, 5, "PER"], [14, 18, "ORG"]]}
    lines = [good[0], "{not json", good[1], {"text": "Bob works .", "entities": [[0, 30, "PER"]]}, good[2],
             bad_boundary, {"entities": []}, good[3], good[4], good[5]]
    data = _write_jsonl(tmp_path / "in.jsonl", lines)
    summary = extract(trained_pipeline, data, tmp_path / "out", shard_size=4, batch_size=2)
    assert summary.docs == 6 and summary.records == 10
    assert summary.skipped == {
        "bad JSON": 1, "entity offsets outside the text": 1, "entity boundary inside a token": 1, "missing field": 1,
    }
    where = sorted(example.split(": ")[0] for example in summary.skipped_examples)
    assert where == ["in.jsonl:2", "in.jsonl:4", "in.jsonl:6", "in.jsonl:7"]
    assert {row["doc_id"] for row in _rows(tmp_path / "out")} <= {r["id"] for r in good}
    # --strict: a malformed record found while reading stops before any work
    with pytest.raises(ExtractError, match=r"in.jsonl:2: bad JSON"):
        extract(trained_pipeline, data, tmp_path / "strict", strict=True)
    assert not _files(tmp_path / "strict")
    # ... and one found by the worker (the entity is not on the pipeline's tokens) writes no shard of its own
    data = _write_jsonl(tmp_path / "boundary.jsonl", good[:4] + [bad_boundary] + good[4:])
    with pytest.raises(ExtractError, match=r"boundary.jsonl:5: entity boundary inside a token"):
        extract(trained_pipeline, data, tmp_path / "strict2", strict=True, shard_size=4, batch_size=2)
    assert list(_files(tmp_path / "strict2")) == ["part-00000.jsonl"]


def test_text_needs_a_pipeline_that_finds_entities(trained_pipeline, ner_pipeline, reference, tmp_path):
    texts = tmp_path / "in.txt"
    texts.write_text("".join(_record(i)["text"] + "\n" + ("\n" if i == 3 else "") for i in range(30)), encoding="utf8")
    with pytest.raises(ExtractError, match=r"in.txt:1: the record has no entities"):
        extract(trained_pipeline, texts, tmp_path / "no-ner")
    assert not _files(tmp_path / "no-ner")
    summary = extract(ner_pipeline, texts, tmp_path / "ner")
    assert summary.docs == 30
    # the ruler finds the gold entities, so the relations are the reference's (doc ids: file:line; a blank line 5)
    line = lambda i: i + 1 + (i > 3)  # noqa: E731
    expected = [{**row, "doc_id": f"in.txt:{line(int(row['doc_id'][1:]))}", "lang": "xx"} for row in _rows(reference)]
    assert _rows(tmp_path / "ner") == expected


def test_docbin_input(trained_pipeline, tiny_corpus, tmp_path):
    summary = extract(trained_pipeline, tiny_corpus / "dev.spacy", tmp_path / "out")
    nlp = spacy.load(trained_pipeline)
    docs = list(DocBin().from_disk(tiny_corpus / "dev.spacy").get_docs(nlp.vocab))
    rows = _rows(tmp_path / "out")
    assert summary.docs == len(docs) and len(rows) == sum(len(nlp(d.copy())._.relations) for d in docs)
    texts = {d._.doc_id or f"dev.spacy:{i}": d.text for i, d in enumerate(docs, 1)}
    for row in rows:
        text = texts[row["doc_id"]]
        assert text[row["head_start"]:row["head_end"]] == row["head_text"]
        assert text[row["tail_start"]:row["tail_end"]] == row["tail_text"]
        assert row["lang"] in ("en", "de", "pl")


def test_parquet_has_the_same_rows(trained_pipeline, corpus, reference, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    extract(trained_pipeline, corpus, tmp_path / "pq", shard_size=7, batch_size=3, fmt="parquet")
    table = pq.read_table(sorted((tmp_path / "pq").glob("part-*.parquet")))
    assert table.column_names == list(COLUMNS)
    assert table.to_pylist() == _rows(reference)


def _invoke(*args):
    _load_commands()
    return CliRunner().invoke(app, [*map(str, args)], env={"COLUMNS": "200"})


def test_cli(trained_pipeline, corpus, reference, tmp_path):
    result = _invoke("extract", trained_pipeline, corpus, tmp_path / "out", "--shard-size", 7, "--batch-size", 3)
    assert result.exit_code == 0, result.output
    assert "30 docs" in result.output and "5 of 5 shards" in result.output
    assert _files(tmp_path / "out") == _files(reference)
    for args, message in (
        ((corpus / "missing.jsonl",), "does not exist"),
        ((corpus, "--format", "csv"), "Unknown output format"),
        ((corpus, "--engine", "spark"), "Unknown engine"),
    ):
        result = _invoke("extract", trained_pipeline, args[0], tmp_path / "bad", *args[1:])
        output = " ".join(result.output.split())  # wasabi wraps long messages
        assert result.exit_code == 1 and message in output and "Traceback" not in output


def test_benchmark_extract(trained_pipeline, tiny_corpus, tmp_path):
    result = _invoke("benchmark", "extract", trained_pipeline, tiny_corpus / "train.spacy", "--runs", "local:1",
                     "-o", tmp_path / "bench.json")
    assert result.exit_code == 0, result.output
    bench = json.loads((tmp_path / "bench.json").read_text())
    (run,) = bench["runs"]
    assert run["engine"] == "local" and run["workers"] == 1 and run["docs"] == 30 and run["words_per_second"] > 0
    assert bench["identical"] is True


def test_a_stopped_check_leaves_the_output_as_it_was(trained_pipeline, corpus, tmp_path):
    texts = tmp_path / "in.txt"
    texts.write_text("Alice works for Acme .\n", encoding="utf8")
    with pytest.raises(ExtractError, match="no entities"):
        extract(trained_pipeline, texts, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []
    extract(trained_pipeline, corpus, tmp_path / "out")  # no --resume needed: nothing was started there
