"""`daeda pipeline dag`: the operator DAG as DOT, SVG and PNG (Graphviz or our own renderer)."""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET

import pytest
from projects import DAEDA, run

from daedalus.compile import compile_service
from daedalus.dagviz import ENGINE_COLORS, graphviz_available, plan_graph, render, to_dot
from daedalus.loading import DefinitionPaths


@pytest.fixture
def graph(project, monkeypatch):
    monkeypatch.chdir(project)
    compiled = compile_service("dssm_ranking", DefinitionPaths(), output_dir=None)
    return compiled.plan, plan_graph(compiled.plan, "data/training_output")


def test_graph_names_every_operator_source_and_output(graph):
    plan, g = graph
    ids = {n.id for n in g.nodes}
    assert {o.name for o in plan.operators} <= ids
    assert {f"source:{s}" for s in plan.sources} <= ids
    assert {"out:skeleton", "out:qid_map", "out:enriched"} <= ids
    for op in plan.operators:
        for i in op.inputs:
            assert (i, op.name) in g.edges
    dot = to_dot(g)
    assert dot.count(" -> ") == len(g.edges)
    assert 'fillcolor="#fde3c8"' in dot  # the udf operators' engine colour


def test_own_svg_is_valid_and_coloured_by_engine(graph):
    plan, g = graph
    svg = render(g, "svg", use_graphviz=False).decode()
    root = ET.fromstring(svg)  # well-formed XML
    assert root.tag.endswith("svg")
    texts = " ".join(t.text or "" for t in root.iter() if t.tag.endswith("text"))
    for op in plan.operators:
        assert op.name in texts
    assert "data/demo/sources/user_profile" in texts and "data/training_output/qid_map.parquet" in texts
    for engine in ("sql", "sql_arrow_udf", "pythonic"):
        assert f'fill="{ENGINE_COLORS[engine][0]}"' in svg and f"engine {engine}" in texts
    # Boxes do not overlap.
    rects = [
        tuple(float(r.get(k)) for k in ("x", "y", "width", "height"))
        for r in root.iter()
        if r.tag.endswith("rect") and r.get("rx") in ("2", "6", "12")
    ]
    for i, a in enumerate(rects):
        for b in rects[i + 1 :]:
            assert a[0] + a[2] <= b[0] or b[0] + b[2] <= a[0] or a[1] + a[3] <= b[1] or b[1] + b[3] <= a[1]


def test_cli_png_and_dot(project):
    from PIL import Image

    run(DAEDA + ["pipeline", "dag", "dssm_ranking", "--format", "png", "--output", "dag.png"], project)
    img = Image.open(io.BytesIO((project / "dag.png").read_bytes()))
    assert img.format == "PNG" and img.width > 1000 and img.height > 300
    res = run(DAEDA + ["pipeline", "dag", "dssm_ranking", "--format", "dot"], project)
    assert res.stdout.startswith("digraph") and re.search(r'"spine" -> "window_agg.user_engagement"', res.stdout)
    bad = run(DAEDA + ["pipeline", "dag", "dssm_ranking", "--format", "gif"], project, check=False)
    assert bad.returncode == 2 and bad.stderr.startswith("daeda: error: --format: unknown format 'gif'")


@pytest.mark.skipif(
    not graphviz_available(), reason="Graphviz `dot` is not installed (the pure-Python renderer is tested)"
)
def test_graphviz_svg(graph):
    _, g = graph
    svg = render(g, "svg", use_graphviz=True).decode()
    assert "<svg" in svg and "write_parts" in svg
