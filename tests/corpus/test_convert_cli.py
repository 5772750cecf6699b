"""The `convert` command line: output layout, summary, errors."""
import json

import srsly
from typer.testing import CliRunner

import spacy_mlre.cli.convert  # noqa: F401  (registers the command)
from corpus_helpers import load_docs
from spacy_mlre.cli import app

RECORD = {"text": "Ada Lovelace wrote notes on the Analytical Engine.",
          "entities": [[0, 12, "PER"], [32, 49, "MISC"]], "relations": [[0, 1, "wrote_about"]]}


def test_cli_writes_docbins_per_language_folder_and_summary(write, tmp_path):
    write("english/train.jsonl", json.dumps(RECORD) + "\n")
    write("english/test.jsonl", json.dumps(RECORD) + "\n")
    write("german/train.jsonl", json.dumps({**RECORD, "lang": "de"}) + "\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["convert", "jsonl", str(tmp_path / "in"), str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.spacy")) == [
        "de/train.spacy", "en/test.spacy", "en/train.spacy",
    ]
    (doc,) = load_docs(out / "en" / "train.spacy")
    assert doc._.lang == "en"
    assert [(r.head.text, r.label, r.tail.text) for r in doc._.relations] == [
        ("Ada Lovelace", "wrote_about", "Analytical Engine")]
    summary = srsly.read_json(out / "summary.json")
    assert summary["de"]["train"]["relations_per_label"] == {"wrote_about": 1}
    assert "total/train (2 groups)" in result.output and "wrote_about" in result.output


def test_cli_error_names_file_and_line(write, tmp_path):
    path = write("train.jsonl", json.dumps(RECORD) + "\n" + json.dumps({**RECORD, "entities": [[0, 99, "PER"]]}) + "\n")
    result = CliRunner().invoke(app, ["convert", "jsonl", str(path), str(tmp_path / "out"), "--lang", "en"])
    assert result.exit_code == 1
    assert f"{path}:2: entity offsets outside the text" in " ".join(result.output.split())
    result = CliRunner().invoke(app, ["convert", "jsonl", str(path), str(tmp_path / "out"), "--lang", "en", "--skip-invalid"])
    assert result.exit_code == 0, result.output
    assert "skipped (invalid): entity offsets outside the text: 1" in result.output
