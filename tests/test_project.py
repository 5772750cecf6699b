"""The project workflow end to end on a tiny generated dataset: project.yml's
own commands run through `spacy project run` (dataset and budget overridden as
vars), then the model wheel it builds is installed, with the project's own
wheel, into a fresh venv and predicts relations there."""
import json
import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest
from spacy.tokens import DocBin

from mlre_testing import ROOT
from spacy_mlre.cli.assets import load_assets

VARS = ["--vars.dataset", "tiny", "--vars.max_steps", "60", "--vars.eval_frequency", "20",
        "--vars.package_name", "tiny"]


def _run(cmd, cwd, **kwargs):
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f"{' '.join(map(str, cmd))}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def project(tiny_corpus, tmp_path_factory):
    """A copy of the project (project.yml, configs) with the tiny corpus as dataset `tiny`."""
    path = tmp_path_factory.mktemp("project")
    shutil.copy(ROOT / "project.yml", path / "project.yml")
    shutil.copytree(ROOT / "configs", path / "configs")
    corpus = path / "corpus" / "tiny"
    corpus.mkdir(parents=True)
    for split, source in (("train", "train"), ("dev", "dev"), ("test", "dev")):
        shutil.copy(tiny_corpus / f"{source}.spacy", corpus / f"{split}.spacy")
    for command in ("train-pair", "tune-pair", "evaluate-pair", "results", "render-pair", "package-pair"):
        _run([sys.executable, "-m", "spacy", "project", "run", command, ".", *VARS], cwd=path)
    return path


def test_workflow_trains_evaluates_and_reports(project):
    scores = json.loads((project / "metrics" / "tiny" / "pair" / "scores.json").read_text())
    assert scores["rel_micro_f"] > 0.9
    thresholds = json.loads((project / "training" / "tiny" / "pair" / "model-tuned" / "relation_extractor" / "cfg")
                            .read_text())["thresholds"]
    assert set(thresholds) == {"works_for", "employs"}
    table = (project / "metrics" / "results.md").read_text()
    assert "| tiny | pair |" in table
    html = (project / "metrics" / "tiny" / "pair" / "relations.html").read_text()
    assert "works_for" in html and "employs" in html


def test_packaged_wheel_installs_and_predicts_in_a_fresh_venv(project, tmp_path):
    """The model wheel requires spacy-mlre; installed next to the project's own
    wheel it loads by name in a process that never imports spacy_mlre."""
    model_wheels = list((project / "packages").glob("xx_mlre_pair_tiny-0.1.0/dist/*.whl"))
    assert len(model_wheels) == 1
    meta = json.loads((project / "packages" / "xx_mlre_pair_tiny-0.1.0" / "meta.json").read_text())
    assert any(req.startswith("spacy-mlre") for req in meta["requirements"])
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(ROOT)], cwd=tmp_path)
    own_wheels = list(dist.glob("spacy_mlre-*.whl"))
    assert len(own_wheels) == 1
    env = tmp_path / "venv"
    venv.create(env, with_pip=True)
    python = env / "bin" / "python"
    # spaCy, torch & co. come from this environment's site-packages (a plain path
    # entry, so the editable install's .pth of spacy_mlre is not processed there)
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     cwd=tmp_path).stdout.strip())
    import sysconfig

    (site / "parent_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    probe = _run([str(python), "-c", "import importlib.util as u; print(u.find_spec('spacy_mlre') is None)"],
                 cwd=tmp_path)
    assert probe.stdout.strip() == "True", "spacy_mlre must come from the installed wheel only"
    _run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(own_wheels[0]),
          str(model_wheels[0])], cwd=tmp_path)
    script = (
        "import json, sys, spacy\n"
        "from spacy.tokens import Span\n"
        "assert 'spacy_mlre' not in sys.modules\n"
        "nlp = spacy.load('xx_mlre_pair_tiny')\n"
        "doc = nlp.make_doc('Zofia works for Acme .')\n"
        "doc.ents = [Span(doc, 0, 1, 'PER'), Span(doc, 3, 4, 'ORG')]\n"
        "doc = nlp(doc)\n"
        "print(json.dumps(sorted([r.head.text, r.label, r.tail.text] for r in doc._.relations)))\n"
    )
    result = _run([str(python), "-c", script], cwd=tmp_path)
    assert json.loads(result.stdout) == [["Acme", "employs", "Zofia"], ["Zofia", "works_for", "Acme"]]


def test_project_pins_one_git_tree_per_source():
    """One git asset per source, pinned to a commit and one folder checksum;
    weasel accepts the file, and the assets-* commands fetch assets it names."""
    from weasel.util import load_project_config

    config = load_project_config(ROOT)
    assets = load_assets(ROOT)
    assert [a.dest for a in assets] == [
        "assets/crossre/crossre_data", "assets/crossre/multi-crossre_data/translation",
        "assets/semeval2010_task8/SemEval2010_task8_all_data", "assets/kbp37", "assets/casrel_nyt_webnlg/data",
    ]
    for entry, asset in zip(config["assets"], assets):
        assert set(entry["git"]) >= {"repo", "branch", "commit", "path"}
        assert re.fullmatch(r"[0-9a-f]{40}", asset.commit) and re.fullmatch(r"[0-9a-f]{32}", asset.checksum)
        assert asset.repo.startswith("https://github.com/")
    dests = {asset.dest for asset in assets}
    fetches = [cmd for cmd in config["commands"] if any("spacy_mlre assets fetch" in line for line in cmd["script"])]
    assert {cmd["name"] for cmd in fetches} >= {"assets-crossre", "assets-translation"}
    for cmd in fetches:
        for line in cmd["script"]:
            only = re.search(r"--only (\S+)", line)
            assert only and set(only.group(1).split(",")) <= dests, line


def test_project_assets_match_the_shared_mirror():
    """Every pinned tree is in the mirror with its checksum, from the repository
    and commit its files were copied from (MANIFEST.json)."""
    from mlre_testing import DATASETS

    if not (DATASETS / "MANIFEST.json").exists():
        pytest.skip("datasets mirror not available")
    manifest = json.loads((DATASETS / "MANIFEST.json").read_text())
    sources = {(f"https://github.com/{item['repo']}", item["commit"]) for item in manifest}
    for asset in load_assets(ROOT):
        assert (asset.repo, asset.commit) in sources, asset.dest
        assert asset.problem(DATASETS / asset.mirror_path) is None, asset.dest


def test_commands_survive_a_vars_override():
    """With any --vars override weasel writes every `$` of a script as `$$`, so a
    shell variable ($l) would become the shell's PID: scripts use none."""
    from weasel.util import load_project_config

    config = load_project_config(ROOT, overrides={"vars.supervised_langs": "zh hu"})
    for cmd in config["commands"]:
        for line in cmd["script"]:
            assert "$" not in line, (cmd["name"], line)
    script = next(c for c in config["commands"] if c["name"] == "supervised-pair-e5")["script"][0]
    assert "supervised/{}/pair-e5" in script and "echo zh hu |" in script


def test_multilingual_package_requires_the_transformers_extra():
    """The packaged raw-text pipeline runs a FrozenEncoder, which needs transformers,
    an optional dependency of spacy-mlre: its meta asks for the extra, with the
    version range spaCy would write for spacy-mlre itself."""
    import configparser

    from packaging.requirements import Requirement
    from spacy.util import get_minor_version_range
    from weasel.util import load_project_config

    from spacy_mlre import __version__

    meta_path = "configs/xx_mlre_multilingual_e5.meta.json"
    command = next(c for c in load_project_config(ROOT)["commands"] if c["name"] == "package-multilingual")
    assert f"--meta-path {meta_path}" in command["script"][0] and meta_path in command["deps"]
    requirements = [Requirement(r) for r in json.loads((ROOT / meta_path).read_text())["requirements"]]
    (own,) = [r for r in requirements if r.name == "spacy-mlre"]
    assert own.extras == {"transformers"}
    assert own.specifier == Requirement(f"spacy-mlre{get_minor_version_range(__version__)}").specifier
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    extra = [Requirement(line) for line in setup["options.extras_require"]["transformers"].split("\n") if line.strip()]
    assert "transformers" in {r.name for r in extra}
