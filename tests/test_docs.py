"""The README is a front door and the docs stay true: the generated suite reference matches the code,
every link resolves, and the README keeps its two set-up commands where users and CI find them."""

from __future__ import annotations

import re
from pathlib import Path

from harness.config.reference import suite_reference

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"


def test_the_suite_reference_is_generated_from_the_current_code():
    shipped = (DOCS / "suites.md").read_text(encoding="utf-8")
    assert shipped == suite_reference(), "docs/suites.md is stale: harness schema --markdown > docs/suites.md"
    # every key of the data section, the checks' own included, is documented with its meaning
    for key in ("on_bad_rows", "allow_unseen_labels", "columns", "train_size"):
        assert re.search(rf"^\| `{key}` \|.*\| \S.* \|$", shipped, re.M), key


def test_readme_is_a_front_door_with_both_setup_commands():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    lines = text.splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines"
    setup = [line for line in lines if line.startswith("python3 -m venv .venv")]
    assert len(setup) == 2
    assert setup[0].endswith("harness run suites/quickstart.yaml") and setup[1].endswith("python -m pytest -q")
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert "python -m pytest -q" in ci and "pip install --quiet torch==2.13.0 -e '.[test]'" in ci


def test_every_relative_link_in_the_readme_and_docs_resolves():
    pages = [REPO / "README.md", *sorted(DOCS.glob("*.md"))]
    index = (DOCS / "index.md").read_text(encoding="utf-8")
    for page in sorted(DOCS.glob("*.md")):
        assert page.name == "index.md" or f"]({page.name})" in index, f"{page.name} is not in docs/index.md"
    for page in pages:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            assert (page.parent / target).exists(), f"{page.relative_to(REPO)} links to missing {target}"
