"""`python -m spacy_mlre assets`: a pinned git tree from the mirror or from its
commit, verified with weasel's folder checksum over the included entries."""
import shutil
import subprocess
from pathlib import Path
from typing import Optional, Sequence

import pytest
import srsly
from typer.testing import CliRunner
from weasel.util import get_checksum

from spacy_mlre.cli import app
from spacy_mlre.cli.assets import fetch_assets, load_assets


def _write_tree(root: Path, files: dict) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def _checksum(files: dict, tmp_path: Path) -> str:
    """weasel's checksum of a folder holding exactly these files."""
    folder = tmp_path / "expected"
    _write_tree(folder, files)
    checksum = get_checksum(folder)
    shutil.rmtree(folder)
    return checksum


def _project(tmp_path: Path, checksum: str, repo: str = "https://example.invalid/data.git",
             commit: str = "0" * 40, include: Optional[Sequence[str]] = ("en", "README")) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    git = {"repo": repo, "branch": "main", "commit": commit, "path": "data"}
    if include:
        git["include"] = list(include)
    srsly.write_yaml(project / "project.yml",
                     {"assets": [{"dest": "assets/corpus/data", "git": git, "checksum": checksum}]})
    return project


PINNED = {"en/train.json": '{"text": "x"}\n', "en/dev.json": '{"text": "y"}\n', "README": "r\n"}


def test_fetch_copies_the_included_entries_from_the_mirror_and_verifies_them(tmp_path):
    mirror = tmp_path / "mirror"
    _write_tree(mirror / "corpus" / "data", {**PINNED, "fr/train.json": "not pinned\n"})
    project = _project(tmp_path, _checksum(PINNED, tmp_path))
    done = fetch_assets(project, mirror)
    assert done == [{"dest": "assets/corpus/data", "source": f"mirror {mirror / 'corpus' / 'data'}"}]
    dest = project / "assets" / "corpus" / "data"
    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file()) == sorted(PINNED)
    # what weasel's `spacy project assets` compares, so it skips this asset too
    assert get_checksum(dest) == load_assets(project)[0].checksum
    assert fetch_assets(project, mirror)[0]["source"] == "cached"


def test_a_tampered_mirror_copy_fails_and_leaves_dest_alone(tmp_path):
    mirror = tmp_path / "mirror"
    _write_tree(mirror / "corpus" / "data", {**PINNED, "en/dev.json": '{"text": "tampered"}\n'})
    project = _project(tmp_path, _checksum(PINNED, tmp_path))
    with pytest.raises(ValueError, match="assets/corpus/data .*checksum mismatch"):
        fetch_assets(project, mirror)
    assert not (project / "assets" / "corpus" / "data").exists()
    assert not (project / "assets" / "corpus" / "data.partial").exists()


def _git(*args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
                          check=True, capture_output=True, text=True).stdout.strip()


@pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")
def test_fetch_without_a_mirror_checks_out_the_pinned_commit_not_the_branch_head(tmp_path):
    repo = tmp_path / "upstream"
    _write_tree(repo / "data", {**PINNED, "fr/train.json": "not pinned\n"})
    _write_tree(repo, {"code.py": "pass\n"})
    _git("init", "-q", "-b", "main", str(repo))
    _git("-C", str(repo), "config", "uploadpack.allowFilter", "true")
    _git("-C", str(repo), "add", "-A")
    _git("-C", str(repo), "commit", "-q", "-m", "pinned")
    commit = _git("-C", str(repo), "rev-parse", "HEAD")
    _write_tree(repo / "data", {"en/train.json": "changed later\n"})
    _git("-C", str(repo), "commit", "-q", "-am", "later")
    project = _project(tmp_path, _checksum(PINNED, tmp_path), repo=repo.as_uri(), commit=commit)
    done = fetch_assets(project, mirror=tmp_path / "no-mirror")
    assert done[0]["source"] == f"{repo.as_uri()} at {commit}"
    dest = project / "assets" / "corpus" / "data"
    assert (dest / "en" / "train.json").read_text() == PINNED["en/train.json"]
    assert not (dest / "fr").exists() and not (dest / ".git").exists()


def test_verify_command_reports_assets_that_differ(tmp_path):
    project = _project(tmp_path, _checksum(PINNED, tmp_path))
    runner = CliRunner()
    result = runner.invoke(app, ["assets", "verify", str(project)])
    assert result.exit_code == 1 and "not found: fetch it first" in result.output
    _write_tree(project / "assets" / "corpus" / "data", PINNED)
    assert runner.invoke(app, ["assets", "verify", str(project)]).exit_code == 0
    _write_tree(project / "assets" / "corpus" / "data", {"README": "edited\n"})
    result = runner.invoke(app, ["assets", "verify", str(project)])
    assert result.exit_code == 1 and "checksum mismatch" in result.output


def test_an_asset_must_name_its_commit_and_only_must_name_assets(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    srsly.write_yaml(project / "project.yml", {"assets": [
        {"dest": "assets/x", "git": {"repo": "https://example.invalid/x", "branch": "main", "path": ""},
         "checksum": "0" * 32}]})
    with pytest.raises(ValueError, match="assets/x: no commit"):
        load_assets(project)
    entry = srsly.read_yaml(project / "project.yml")
    entry["assets"][0]["git"]["commit"] = "1" * 40
    srsly.write_yaml(project / "project.yml", entry)
    with pytest.raises(ValueError, match="No asset with dest assets/y; the assets are: assets/x"):
        load_assets(project, only=["assets/y"])
