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


def test_json_schemas_accept_the_shipped_definitions_and_refuse_a_bad_one():
    """docs/schema/*.schema.json (generated from the models) validate what editors see."""
    import json

    import jsonschema
    import yaml

    def schema(name: str) -> dict:
        return json.loads((REPO / "docs/schema" / f"{name}.schema.json").read_text())

    pairs = [("FeatureView", p) for p in sorted((REPO / "feature_views").glob("*.yaml"))]
    pairs += [("FeatureService", p) for p in sorted((REPO / "feature_services").glob("*.yaml"))]
    pairs += [
        ("AggregationsConfig", REPO / "config/training/aggregations.yaml"),
        ("RuntimeConfig", REPO / "config/training/runtime.yaml"),
    ]
    for name, path in pairs:
        jsonschema.validate(yaml.safe_load(path.read_text()), schema(name))
    view = yaml.safe_load((REPO / "feature_views/user_profile.yaml").read_text())
    view["features"][0]["dtype"] = "int128"
    try:
        jsonschema.validate(view, schema("FeatureView"))
    except jsonschema.ValidationError as e:
        assert "int128" in e.message
    else:
        raise AssertionError("a dtype the models refuse passed the schema")
