"""Wrong input stops with `file:line: reason` (issue 18): encodings, JSON
booleans, empty files, unwritable output, no partial output."""
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import spacy_mlre.cli.convert  # noqa: F401  (registers the command)
from corpus_helpers import load_docs, run
from spacy_mlre.cli import app
from spacy_mlre.corpus.converter import ConversionError, OutputNotWritable

RECORD = {"text": "Café Müller liegt in Köln.", "lang": "de",
          "entities": [[0, 11, "ORG"], [21, 25, "LOC"]], "relations": [[0, 1, "in"]]}
ASCII = {**RECORD, "text": "Cafe Mueller liegt in Koeln.", "entities": [[0, 12, "ORG"], [22, 27, "LOC"]]}

# one record with non-ASCII text per format, and its file name
SAMPLES = {
    "jsonl": ("train.jsonl", json.dumps(RECORD, ensure_ascii=False) + "\n"),
    "crossre": ("ai-train.json", json.dumps({"doc_key": "ai-train-1", "sentence": ["Café", "Müller", "."],
                                             "ner": [[0, 1, "org"]], "relations": []}, ensure_ascii=False) + "\n"),
    "semeval2010": ("train.txt", '1\t"The <e1>café</e1> is in <e2>Köln</e2>."\nOther\n\n'),
    "smiler": ("de_train.tsv", "1\tCafé\tKöln\tin\t<e1>Café</e1> in <e2>Köln</e2>.\tde\n"),
    "casrel": ("train.json", json.dumps([{"text": "Café Müller is in Köln .",
                                          "triple_list": [["Café Müller", "in", "Köln"]]}], ensure_ascii=False)),
}
ASCII_SAMPLES = {
    "jsonl": json.dumps(ASCII) + "\n",
    "crossre": json.dumps({"doc_key": "ai-train-2", "sentence": ["Cafe", "."], "ner": [[0, 0, "org"]],
                           "relations": []}) + "\n",
    "semeval2010": '2\t"The <e1>cafe</e1> is in <e2>Koeln</e2>."\nOther\n\n',
    "smiler": "2\tCafe\tKoeln\tin\t<e1>Cafe</e1> in <e2>Koeln</e2>.\tde\n",
}


def write_bytes(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / "in" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# --- item 5: input that is not UTF-8 --------------------------------------------


@pytest.mark.parametrize("fmt", sorted(ASCII_SAMPLES))
def test_latin1_line_names_file_line_and_byte(tmp_path, fmt):
    """A Latin-1 line used to raise UnicodeDecodeError without file or line,
    also with --skip-invalid; now it is a malformed record like any other."""
    name, text = SAMPLES[fmt]
    path = write_bytes(tmp_path, name, ASCII_SAMPLES[fmt].encode() + text.encode("latin-1"))
    line = 1 + ASCII_SAMPLES[fmt].count("\n")
    with pytest.raises(ConversionError) as err:
        run(fmt, path, tmp_path / "out", lang="de")
    assert str(err.value).startswith(f"{path}:{line}: not UTF-8: byte 0xe9 at column ")
    assert "re-encode the file as UTF-8" in str(err.value) and err.value.skippable
    stats = run(fmt, path, tmp_path / "out", lang="de", skip_invalid=True)[""]["train"]
    assert (stats.docs, stats.skipped) == (1, {"not UTF-8": 1})


def test_casrel_array_skips_the_record_with_latin1_bytes(tmp_path):
    good = json.dumps({"text": "Paris is in France .", "triple_list": [["Paris", "in", "France"]]})
    bad = SAMPLES["casrel"][1][1:-1].encode("latin-1")  # the record without the array's brackets
    path = write_bytes(tmp_path, "test.json", b"[\n" + good.encode() + b",\n" + bad + b"\n]")
    with pytest.raises(ConversionError, match=r"test.json:3: not UTF-8: byte 0xe9"):
        run("casrel", path, tmp_path / "out")
    assert run("casrel", path, tmp_path / "out", skip_invalid=True)[""]["test"].skipped == {"not UTF-8": 1}


@pytest.mark.parametrize(
    "encoding,found",
    [("utf-16", "byte-order mark of UTF-16 (little-endian)"), ("utf-32", "byte-order mark of UTF-32"),
     ("utf-16-le", "NUL byte at byte 1 (binary data, or UTF-16 / UTF-32 text without a byte-order mark)")],
)
@pytest.mark.parametrize("fmt", sorted(SAMPLES))
def test_file_that_is_not_utf8_text_is_named(tmp_path, fmt, encoding, found):
    name, text = SAMPLES[fmt]
    path = write_bytes(tmp_path, name, text.encode(encoding))
    for skip in (False, True):  # not a record to skip: the whole file is unreadable
        with pytest.raises(ConversionError) as err:
            run(fmt, path, tmp_path / "out", lang="de", skip_invalid=skip)
        assert str(err.value).startswith(f"{path}:1: not a UTF-8 text file") and found in str(err.value)
        assert not err.value.skippable


def test_utf8_byte_order_mark_is_read(tmp_path):
    path = write_bytes(tmp_path, "train.jsonl", SAMPLES["jsonl"][1].encode("utf-8-sig"))
    run("jsonl", path, tmp_path / "out")
    (doc,) = load_docs(tmp_path / "out" / "train.spacy")
    assert doc.text == RECORD["text"]


def test_binary_file(tmp_path):
    path = write_bytes(tmp_path, "dev.jsonl", bytes(range(256)) * 4)
    with pytest.raises(ConversionError, match=r"dev.jsonl:1: not a UTF-8 text file: NUL byte at byte 0"):
        run("jsonl", path, tmp_path / "out", skip_invalid=True)


# --- item 8: a JSON bool is not an integer --------------------------------------


@pytest.mark.parametrize(
    "change,detail",
    [
        ({"relations": [{"head": True, "tail": 0, "label": "in"}]}, "relation 0: head must be an entity index"),
        ({"relations": [[0, False, "in"]]}, "relation 0: tail must be an entity index"),
        ({"entities": [[True, 5, "ORG"]], "relations": []}, "entity 0: start and end must be integers"),
        ({"id": False}, "field 'id' should be a string or integer"),
        ({"lang": True}, "field 'lang': expected a code such as 'de'"),
    ],
)
def test_json_bool_is_not_an_index(write, tmp_path, change, detail):
    """`"head": true` was read as entity 1."""
    path = write("test.jsonl", json.dumps({**ASCII, **change}) + "\n")
    with pytest.raises(ConversionError) as err:
        run("jsonl", path, tmp_path / "out")
    assert str(err.value).startswith(f"{path}:1: ") and detail in str(err.value)


# --- item 9: empty input gives no empty DocBin ----------------------------------


@pytest.mark.parametrize("content", ["", "\n  \n"])
def test_empty_file_is_an_error(write, tmp_path, content):
    path = write("train.jsonl", content)
    for skip in (False, True):
        with pytest.raises(ConversionError, match=r"train.jsonl:1: no records: the file is empty or blank"):
            run("jsonl", path, tmp_path / "out", skip_invalid=skip)
    assert not list((tmp_path / "out").glob("*.spacy*"))


def test_file_of_only_invalid_records_is_an_error(write, tmp_path):
    """With --skip-invalid: zero docs from a non-empty file (the wrong format, usually)."""
    path = write("train.jsonl", json.dumps(ASCII) + "\n")
    with pytest.raises(ConversionError, match=r"train.jsonl:1: none of the file's 1 records converted.*"
                                              r"the first: missing field.*is it a casrel file\?"):
        run("casrel", path, tmp_path / "out", skip_invalid=True)


def test_cli_empty_file_exits_with_error(write, tmp_path):
    path = write("train.jsonl", "")
    result = CliRunner().invoke(app, ["convert", "jsonl", str(path), str(tmp_path / "out"), "--lang", "en"])
    assert result.exit_code == 1 and "no records" in result.output
    assert "--skip-invalid" not in result.output  # skipping would not help


# --- item 7: the output folder is checked first, and never left half-written ----


def test_output_that_is_a_file_fails_before_reading_input(write, tmp_path):
    path = write("train.jsonl", "{broken\n")  # would fail on reading: the output check comes first
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputNotWritable, match=r"to .*file: it is a file, not a folder"):
        run("jsonl", path, blocker)
    with pytest.raises(OutputNotWritable, match=r"to .*file/sub: .*file is a file, not a folder"):
        run("jsonl", path, blocker / "sub")
    (tmp_path / "out" / "train.spacy").mkdir(parents=True)
    with pytest.raises(OutputNotWritable, match=r"train.spacy: a folder of that name is in the way"):
        run("jsonl", path, tmp_path / "out")


def test_cli_unwritable_output_is_one_clear_line(write, tmp_path):
    path = write("train.jsonl", json.dumps(ASCII) + "\n")
    (tmp_path / "out").write_text("x")
    result = CliRunner().invoke(app, ["convert", "jsonl", str(path), str(tmp_path / "out")])
    assert result.exit_code == 1 and "it is a file, not a folder" in " ".join(result.output.split())
    assert result.exception is None or isinstance(result.exception, SystemExit)
    (tmp_path / "out2" / "summary.json").mkdir(parents=True)
    result = CliRunner().invoke(app, ["convert", "jsonl", str(path), str(tmp_path / "out2")])
    assert result.exit_code == 1 and "summary.json: a folder of that name is in the way" in " ".join(result.output.split())


def test_failed_conversion_leaves_no_spacy_file(write, tmp_path):
    """Groups are written as they finish; a later group's error removes them all,
    so no .spacy file reads as a complete conversion."""
    write("english/train.jsonl", json.dumps(ASCII) + "\n")
    write("german/train.jsonl", json.dumps(ASCII) + "\n{broken\n")
    with pytest.raises(ConversionError, match=r"german/train.jsonl:2: bad JSON"):
        run("jsonl", tmp_path / "in", tmp_path / "out")
    assert [p for p in (tmp_path / "out").rglob("*") if p.is_file()] == []
    run("jsonl", tmp_path / "in", tmp_path / "out", skip_invalid=True)
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*") if p.is_file()) == [
        "de/train.spacy", "en/train.spacy"]


# --- found by the fuzz campaign ---------------------------------------------------


@pytest.mark.parametrize("fmt,name", [("jsonl", "train.jsonl"), ("casrel", "train.json")])
def test_lone_surrogate_escape_is_a_malformed_record(write, tmp_path, fmt, name):
    """JSON's "\\ud800" alone is no character; spaCy's string store raised
    UnicodeEncodeError on it."""
    if fmt == "jsonl":
        bad = {**ASCII, "relations": [[0, 1, "in\ud800"]]}
        content = json.dumps(ASCII) + "\n" + json.dumps(bad) + "\n"
    else:
        good = {"text": "Paris is in France .", "triple_list": [["Paris", "in", "France"]]}
        content = json.dumps([good, {**good, "text": "Paris\udc00 is ."}], indent=1)
    path = write(name, content)
    line = 2 if fmt == "jsonl" else content.splitlines().index(" {", 2) + 1
    with pytest.raises(ConversionError) as err:
        run(fmt, path, tmp_path / "out")
    assert str(err.value).startswith(f"{path}:{line}: bad JSON: \\u")
    assert "half of a surrogate pair" in str(err.value)
    assert run(fmt, path, tmp_path / "out", skip_invalid=True)[""]["train"].skipped == {"bad JSON": 1}
