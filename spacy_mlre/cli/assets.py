"""`python -m spacy_mlre assets fetch | verify`: the project's datasets, one
pinned git tree per source, from a local mirror or from the source repository.

Each asset in project.yml is a weasel git asset (`git: {repo, branch, path}`)
with two keys weasel ignores: `commit`, the pinned commit (weasel's `branch`
cannot name one, it runs `git clone -b`), and `include`, the entries under
`path` that make up the asset where the repository holds more there (other
languages, a scorer). `checksum` is weasel's folder checksum (MD5 of the
files' bytes in sorted path order) over those entries, so `spacy project
assets` skips an asset fetched here instead of cloning it again.

`fetch` copies an asset from the mirror (a folder laid out like `assets/`,
e.g. ../shared/datasets) when the mirror has it, else checks `path` out at
`commit` with a shallow, partial, sparse git fetch; either way into a scratch
folder that replaces `dest` only once its checksum matches. `verify` checks
assets already in place, e.g. after `spacy project assets`, which fetches the
branch head rather than the pinned commit.
"""
import hashlib
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

import srsly
import typer
from wasabi import msg

from . import app

assets_app = typer.Typer(help="Fetch and verify the project's datasets (pinned git trees).", no_args_is_help=True)
app.add_typer(assets_app, name="assets")


def tree_checksum(files: Iterable[Path]) -> str:
    """MD5 of the files' bytes, read in sorted path order: weasel's
    `get_checksum` of a folder, restricted to these files."""
    digest = hashlib.md5()
    for path in sorted(files):
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class Asset:
    """One source's pinned files: `path` in `repo` at `commit` (only its
    `include` entries when given), copied to `dest`."""

    dest: str
    repo: str
    commit: str
    path: str
    checksum: str
    include: Tuple[str, ...] = ()

    @classmethod
    def from_config(cls, entry: Dict[str, Any]) -> "Asset":
        git = entry.get("git") or {}
        missing = [key for key in ("repo", "commit", "path") if key not in git]
        missing += [key for key in ("dest", "checksum") if key not in entry]
        if missing:
            raise ValueError(
                f"Asset {entry.get('dest', '?')}: no {', '.join(missing)}. Each asset is a git tree "
                "(git: repo, branch, commit, path, optional include) with a folder checksum."
            )
        return cls(entry["dest"], git["repo"], git["commit"], git["path"].strip("/"), entry["checksum"],
                   tuple(git.get("include", ())))

    @property
    def mirror_path(self) -> Path:
        """Where the mirror holds it: dest without its leading `assets/`."""
        parts = Path(self.dest).parts
        return Path(*parts[1:]) if parts and parts[0] == "assets" else Path(self.dest)

    def files(self, root: Path) -> List[Path]:
        """The asset's files in a copy of it at `root`."""
        tops = [root / name for name in self.include] if self.include else [root]
        found = [top for top in tops if top.is_file()]
        for top in tops:
            if top.is_dir():
                found.extend(p for p in top.rglob("*") if p.is_file() and ".git" not in p.relative_to(root).parts)
        return found

    def problem(self, root: Path) -> Optional[str]:
        """Why the copy at `root` is not the pinned one; None when it is."""
        if not root.is_dir():
            return f"{root} is not a folder" if root.exists() else f"{root} not found: fetch it first"
        missing = [name for name in self.include if not (root / name).exists()]
        if missing:
            return f"{root} lacks {', '.join(missing)}"
        got = tree_checksum(self.files(root))
        if got != self.checksum:
            return (f"checksum mismatch: expected MD5 {self.checksum}, got {got}; "
                    f"the files differ from {self.repo} at {self.commit}")
        return None

    def copy_from(self, root: Path, target: Path) -> None:
        """Copy the asset's entries from a folder holding them (the mirror's
        copy or a checkout) to `target`, which must not exist."""
        if not self.include:
            shutil.copytree(root, target, ignore=shutil.ignore_patterns(".git"))
            return
        target.mkdir(parents=True)
        for name in self.include:
            source = root / name
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            if source.is_dir():
                shutil.copytree(source, target / name)
            elif source.is_file():
                shutil.copy2(source, target / name)
            else:
                raise FileNotFoundError(f"Asset {self.dest}: {source} not found")

    def checkout(self, target: Path) -> None:
        """`path` at `commit` into `target`: a shallow fetch of that one commit
        without blobs, then a sparse checkout, so only the asset's files are
        downloaded (GitHub serves a commit by its hash)."""
        prefix = f"/{self.path}" if self.path else ""
        patterns = [f"{prefix}/{name}" for name in self.include] or [f"{prefix}/" if prefix else "/*"]
        with tempfile.TemporaryDirectory() as tmp:
            _git("init", "-q", tmp)
            _git("-C", tmp, "config", "core.sparseCheckout", "true")
            info = Path(tmp) / ".git" / "info"
            info.mkdir(exist_ok=True)
            (info / "sparse-checkout").write_text("\n".join(patterns) + "\n", encoding="utf8")
            _git("-C", tmp, "fetch", "-q", "--depth", "1", "--filter=blob:none", self.repo, self.commit)
            _git("-C", tmp, "checkout", "-q", "FETCH_HEAD")
            self.copy_from(Path(tmp) / self.path, target)


def _git(*args: str) -> None:
    try:
        subprocess.run(["git", *args], check=True, capture_output=True, text=True)
    except FileNotFoundError:
        raise RuntimeError("git is needed to fetch an asset that is not in the mirror") from None
    except subprocess.CalledProcessError as err:
        raise RuntimeError(f"git {' '.join(args)} failed: {err.stderr.strip()}") from None


def load_assets(project_dir: Path, only: Optional[List[str]] = None) -> List[Asset]:
    """The assets of project.yml, or those whose dest is in `only`."""
    entries = srsly.read_yaml(project_dir / "project.yml").get("assets", [])
    assets = [Asset.from_config(entry) for entry in entries]
    if only:
        unknown = sorted(set(only) - {asset.dest for asset in assets})
        if unknown:
            raise ValueError(f"No asset with dest {', '.join(unknown)}; the assets are: "
                             f"{', '.join(asset.dest for asset in assets)}")
        assets = [asset for asset in assets if asset.dest in only]
    return assets


def fetch_asset(project_dir: Path, asset: Asset, mirror: Optional[Path] = None) -> str:
    """Put one asset at its dest, verified; return where it came from."""
    dest = project_dir / asset.dest
    if dest.exists() and asset.problem(dest) is None:
        return "cached"
    local = mirror / asset.mirror_path if mirror is not None else None
    scratch = dest.with_name(dest.name + ".partial")
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.parent.mkdir(parents=True, exist_ok=True)
    try:
        if local is not None and local.exists():
            source = f"mirror {local}"
            asset.copy_from(local, scratch)
        else:
            source = f"{asset.repo} at {asset.commit}"
            asset.checkout(scratch)
        problem = asset.problem(scratch)
        if problem:
            raise ValueError(f"Asset {asset.dest} (from {source}): {problem}")
        if dest.is_dir():
            shutil.rmtree(dest)
        elif dest.exists():
            dest.unlink()
        scratch.rename(dest)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return source


def fetch_assets(
    project_dir: Path, mirror: Optional[Path] = None, only: Optional[List[str]] = None
) -> List[Dict[str, str]]:
    """Fetch the assets of project.yml (those in `only`) and say where each came from."""
    return [{"dest": asset.dest, "source": fetch_asset(project_dir, asset, mirror)}
            for asset in load_assets(project_dir, only)]


def _split(only: str) -> Optional[List[str]]:
    return [p.strip().rstrip("/") for p in only.split(",") if p.strip()] or None


@assets_app.command("fetch")
def fetch_cli(
    project_dir: Path = typer.Argument(Path("."), help="Folder with project.yml", exists=True, file_okay=False),
    mirror: Optional[Path] = typer.Option(None, "--mirror", help="Local copy laid out like assets/ (e.g. ../shared/datasets)"),
    only: str = typer.Option("", "--only", help="Only the assets with these dests, comma-separated"),
) -> None:
    """Fetch and verify the project's assets: from the mirror when it has them, else from their pinned commits."""
    if mirror is not None and not mirror.exists():
        msg.info(f"Mirror {mirror} not found: fetching from the pinned commits.")
        mirror = None
    try:
        done = fetch_assets(project_dir, mirror, _split(only))
    except (ValueError, RuntimeError, FileNotFoundError) as err:
        msg.fail(str(err), exits=1)
    for item in done:
        msg.good(f"{item['dest']} ({item['source']})")


@assets_app.command("verify")
def verify_cli(
    project_dir: Path = typer.Argument(Path("."), help="Folder with project.yml", exists=True, file_okay=False),
    only: str = typer.Option("", "--only", help="Only the assets with these dests, comma-separated"),
) -> None:
    """Check the assets in place against their pinned checksums (e.g. after `spacy project assets`)."""
    try:
        assets = load_assets(project_dir, _split(only))
    except ValueError as err:
        msg.fail(str(err), exits=1)
    failed = 0
    for asset in assets:
        problem = asset.problem(project_dir / asset.dest)
        if problem:
            failed += 1
            msg.fail(f"{asset.dest}: {problem}")
        else:
            msg.good(asset.dest)
    if failed:
        msg.fail(f"{failed} of {len(assets)} assets differ from their pinned version", exits=1)
