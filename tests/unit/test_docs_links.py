"""The README and docs/ refer only to files that are in the repository (a reader has nothing else)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# [text](target) links, and `path/like/this.md` in code spans: both read as "see this file"
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
CODE_PATH = re.compile(r"`((?:[\w.-]+/)+[\w.-]+\.(?:md|toml|py|sh|json))`")


def referenced_files(page: Path) -> list[tuple[str, Path]]:
    text = page.read_text()
    refs = [(t, page.parent / t) for t in LINK.findall(text) if not re.match(r"^[a-z]+:", t)]
    # a path in code is relative to the repository, or to src/ for a module (`gcbridge/bridge/admin.py`)
    for t in CODE_PATH.findall(text):
        if not t.startswith(("/", "~")):
            refs.append((t, REPO / t if (REPO / t).exists() else REPO / "src" / t))
    return refs


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_referenced_file_exists(page: Path) -> None:
    missing = [text for text, path in referenced_files(page) if not path.exists()]
    assert not missing, f"{page.name} refers to files not in the repository: {missing}"


def test_the_check_sees_references(tmp_path: Path) -> None:
    readme = dict(referenced_files(REPO / "README.md"))
    assert "docs/genesys-behaviour.md" in readme
    page = tmp_path / "page.md"
    page.write_text("following `spec/genesys-cloud-api.md`, see [x](../shared/notes.md)\n")
    assert [t for t, path in referenced_files(page) if not path.exists()] == [
        "../shared/notes.md",
        "spec/genesys-cloud-api.md",
    ]
