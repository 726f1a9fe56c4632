"""The generated references are up to date, and the docs link to what exists."""

from __future__ import annotations

import re

from projects import REPO
from daedalus import docgen
from daedalus.definitions import AggregationsConfig, FeatureService, FeatureView, RuntimeConfig


def test_generated_references_are_up_to_date():
    for path, text in docgen.outputs().items():
        assert path.read_text() == text, f"{path.name} is out of date: run `python -m daedalus.docgen`"


def test_reference_covers_every_field():
    ref = (REPO / "docs/reference.md").read_text()
    for model in (FeatureView, FeatureService, AggregationsConfig, RuntimeConfig):
        for name in model.model_fields:
            assert f"| `{name}` |" in ref, (model.__name__, name)


def test_local_links_resolve():
    for doc in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", doc.read_text()):
            if "://" in target:
                continue
            assert (doc.parent / target).exists(), f"{doc.name}: broken link {target}"


def test_readme_shows_the_dag():
    readme = (REPO / "README.md").read_text()
    assert "![" in readme and "docs/dag.svg" in readme
    assert (REPO / "docs/dag.svg").read_text().lstrip().startswith("<svg")
