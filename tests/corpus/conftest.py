"""Fixtures of the converter tests."""
from pathlib import Path
from typing import Callable

import pytest


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str, str], Path]:
    """Write an inline sample file and return its path."""

    def _write(name: str, content: str) -> Path:
        path = tmp_path / "in" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf8")
        return path

    return _write
