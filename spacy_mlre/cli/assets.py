"""`python -m spacy_mlre assets`: fetch a project's assets from a local mirror
or their pinned URLs, verifying checksums.

`spacy project assets` downloads from the URLs only; machines without internet
(and anyone with a copy of the datasets) point `--mirror` at a folder laid out
like the assets' `dest` paths below `assets/`. A file is taken from the mirror
when present there, else downloaded; either way its MD5 must match the
checksum in project.yml (weasel's own checksum), or the command fails.
"""
import hashlib
import shutil
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Optional

import srsly
import typer

from . import app


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch_assets(
    project_dir: Path, mirror: Optional[Path] = None, only: Optional[List[str]] = None
) -> List[Dict[str, Any]]:
    """Fetch every asset of project.yml (or those whose dest starts with one of
    `only`) and return what was done for each."""
    project = srsly.read_yaml(project_dir / "project.yml")
    done = []
    for asset in project.get("assets", []):
        dest = Path(asset["dest"])
        if only and not any(str(dest).startswith(prefix) for prefix in only):
            continue
        target = project_dir / dest
        relative = Path(*dest.parts[1:]) if dest.parts and dest.parts[0] == "assets" else dest
        source = "cached"
        if not (target.exists() and _md5(target) == asset.get("checksum")):
            target.parent.mkdir(parents=True, exist_ok=True)
            if mirror is not None and (mirror / relative).exists():
                shutil.copyfile(mirror / relative, target)
                source = f"mirror {mirror / relative}"
            elif "url" in asset:
                urllib.request.urlretrieve(asset["url"], target)  # noqa: S310 (pinned URL)
                source = asset["url"]
            else:
                raise ValueError(f"Asset {dest}: not in the mirror {mirror} and no URL to download it from.")
        checksum = asset.get("checksum")
        if checksum and _md5(target) != checksum:
            raise ValueError(
                f"Checksum mismatch for asset {dest} (from {source}): expected MD5 {checksum}, "
                f"got {_md5(target)}. The file differs from the pinned version."
            )
        done.append({"dest": str(dest), "source": source})
    return done


@app.command("assets")
def assets_cli(
    project_dir: Path = typer.Argument(Path("."), help="Folder with project.yml", exists=True, file_okay=False),
    mirror: Optional[Path] = typer.Option(None, "--mirror", help="Local copy laid out like assets/ (e.g. ../shared/datasets)"),
    only: str = typer.Option("", "--only", help="Only assets whose dest starts with one of these prefixes, comma-separated"),
) -> None:
    """Fetch and verify the project's assets (mirror first, then the pinned URL)."""
    if mirror is not None and not mirror.exists():
        typer.echo(f"Mirror {mirror} not found: downloading from the pinned URLs.")
        mirror = None
    prefixes = [p for p in only.split(",") if p] or None
    done = fetch_assets(project_dir, mirror, prefixes)
    for item in done:
        typer.echo(f"✔ {item['dest']} ({item['source']})")
    typer.echo(f"{len(done)} assets verified.")
