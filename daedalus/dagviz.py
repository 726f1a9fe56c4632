"""`daeda pipeline dag`: the compiled operator DAG as a picture.

The graph: the plan's sources (with their paths and look-back), its operators (name, kind,
engine, number of output columns; filled by engine) and the files the run writes. DOT is
always available; SVG and PNG come from Graphviz's `dot` when it is installed, otherwise
from a small layered layout drawn here (SVG by hand, PNG with Pillow), so the command works
with nothing beyond what the quickstart installs.
"""

from __future__ import annotations

import io
import math
import shutil
import subprocess
from dataclasses import dataclass, field
from xml.sax.saxutils import escape

from daedalus.errors import DaedalusError
from daedalus.plan import Plan

FORMATS = ("svg", "png", "dot")
# Engine -> (fill, border): the legend of every picture.
ENGINE_COLORS = {
    "sql": ("#dbe7f5", "#4c78a8"),
    "sql_arrow_udf": ("#fde3c8", "#e0701b"),
    "pythonic": ("#dcefd9", "#3f8f36"),
}
KIND_COLORS = {"source": ("#eeeeee", "#777777"), "output": ("#fff5bf", "#b59a00")}
FONT_SIZE = 12
LINE_HEIGHT = 16
CHAR_WIDTH = 7.0  # an estimate for a 12px sans-serif font (no font metrics without a renderer)
BOLD_WIDTH = 7.9  # the same, bold (each node's first line)
PAD_X, PAD_Y = 10, 6
GAP_X, GAP_Y = 70, 18
MARGIN = 20


@dataclass
class Node:
    id: str
    lines: list[str]
    kind: str  # source | operator | output
    engine: str | None = None

    @property
    def colors(self) -> tuple[str, str]:
        return ENGINE_COLORS[self.engine] if self.engine else KIND_COLORS[self.kind]


@dataclass
class Graph:
    title: str
    nodes: list[Node] = field(default_factory=list)
    edges: list[tuple[str, str]] = field(default_factory=list)

    def node(self, node_id: str) -> Node:
        return next(n for n in self.nodes if n.id == node_id)


def plan_graph(plan: Plan, root: str) -> Graph:
    """Sources -> operators -> output files of a plan."""
    g = Graph(title=f"{plan.service}: operator DAG")
    for sid, spec in plan.sources.items():
        back = "every earlier day" if spec.lookback_days is None else f"look-back {spec.lookback_days} d"
        if ahead := plan.lookahead_days(sid):
            back += f", look-ahead {ahead} d"
        g.nodes.append(Node(f"source:{sid}", [f"source {sid}", spec.path, back], "source"))
    for op in plan.operators:
        cols = f"{len(op.outputs)} column{'s' if len(op.outputs) != 1 else ''}" if op.outputs else "join rows"
        g.nodes.append(Node(op.name, [op.name, f"{op.kind} | {op.engine}", cols], "operator", op.engine))
        g.edges += [(i, op.name) for i in op.inputs]
    g.nodes.append(Node("out:skeleton", ["skeleton output", f"{root}/dt=*/part-N-0.parquet"], "output"))
    g.edges.append(("write_parts", "out:skeleton"))
    if plan.ops("qid"):
        g.nodes.append(Node("out:qid_map", ["qid map", f"{root}/qid_map.parquet"], "output"))
        g.edges.append(("write_parts", "out:qid_map"))
    if plan.ops("embed"):
        g.nodes.append(Node("out:enriched", ["enriched output", f"{root}_enriched/dt=*/*.parquet"], "output"))
        g.edges += [(op.name, "out:enriched") for op in plan.ops("embed")]
    return g


# -- DOT ----------------------------------------------------------------------------------


def _dot_str(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_dot(g: Graph) -> str:
    out = [
        f"digraph {_dot_str(g.title)} {{",
        "  rankdir=LR;",
        f"  graph [label={_dot_str(g.title)}, labelloc=t, fontname=sans, fontsize=14];",
        '  node [shape=box, style="rounded,filled", fontname=sans, fontsize=11];',
        '  edge [color="#888888"];',
    ]
    for n in g.nodes:
        fill, border = n.colors
        shape = ", shape=cylinder" if n.kind == "source" else ", shape=note" if n.kind == "output" else ""
        label = "\\n".join(x.replace("\\", "\\\\").replace('"', '\\"') for x in n.lines)
        out.append(f'  {_dot_str(n.id)} [label="{label}", fillcolor="{fill}", color="{border}"{shape}];')
    for a, b in g.edges:
        out.append(f"  {_dot_str(a)} -> {_dot_str(b)};")
    out.append("}")
    return "\n".join(out) + "\n"


# -- layout -------------------------------------------------------------------------------


@dataclass
class Box:
    x: float
    y: float
    w: float
    h: float


def layout(g: Graph) -> tuple[dict[str, Box], float, float]:
    """Columns by longest path from the sources, rows ordered by the barycenter of neighbours."""
    preds: dict[str, list[str]] = {n.id: [] for n in g.nodes}
    succs: dict[str, list[str]] = {n.id: [] for n in g.nodes}
    for a, b in g.edges:
        preds[b].append(a)
        succs[a].append(b)
    rank: dict[str, int] = {}

    def rank_of(nid: str) -> int:
        if nid not in rank:
            rank[nid] = 1 + max((rank_of(p) for p in preds[nid]), default=-1)
        return rank[nid]

    for n in g.nodes:
        rank_of(n.id)
    # Then operators as late as possible: each just before its first consumer (shorter
    # edges); sources stay in the first column.
    for nid in sorted(rank, key=lambda k: -rank[k]):
        if succs[nid] and preds[nid]:
            rank[nid] = min(rank[s] for s in succs[nid]) - 1
    columns: list[list[str]] = [[] for _ in range(max(rank.values()) + 1)]
    for n in g.nodes:  # plan order first: a stable, meaningful start
        columns[rank[n.id]].append(n.id)
    order = {nid: i for col in columns for i, nid in enumerate(col)}
    for sweep in range(8):  # barycenter heuristic, alternating directions
        seq = columns[1:] if sweep % 2 == 0 else columns[-2::-1]
        for col in seq:
            nbrs = preds if sweep % 2 == 0 else succs

            def centre(nid: str, nbrs: dict[str, list[str]] = nbrs) -> float:
                ns = nbrs[nid]
                return sum(order[x] for x in ns) / len(ns) if ns else order[nid]

            col.sort(key=lambda nid: (centre(nid), order[nid]))
            for i, nid in enumerate(col):
                order[nid] = i
    size = {
        n.id: (
            max([len(n.lines[0]) * BOLD_WIDTH] + [len(x) * CHAR_WIDTH for x in n.lines[1:]]) + 2 * PAD_X,
            len(n.lines) * LINE_HEIGHT + 2 * PAD_Y,
        )
        for n in g.nodes
    }
    heights = [sum(size[n][1] for n in col) + GAP_Y * (len(col) - 1) for col in columns]
    total_h = max(heights)
    boxes: dict[str, Box] = {}
    x: float = MARGIN
    top = MARGIN + 28  # the title
    for col, h in zip(columns, heights):
        w = max(size[n][0] for n in col)
        y = top + (total_h - h) / 2
        for nid in col:
            nw, nh = size[nid]
            boxes[nid] = Box(x + (w - nw) / 2, y, nw, nh)
            y += nh + GAP_Y
        x += w + GAP_X
    legend_h = 30
    return boxes, x - GAP_X + MARGIN, top + total_h + legend_h + MARGIN


def _edge_points(a: Box, b: Box) -> tuple[tuple[float, float], ...]:
    x1, y1 = a.x + a.w, a.y + a.h / 2
    x2, y2 = b.x, b.y + b.h / 2
    dx = max(30.0, (x2 - x1) / 2)
    return (x1, y1), (x1 + dx, y1), (x2 - dx, y2), (x2, y2)


def _legend(g: Graph) -> list[tuple[str, tuple[str, str]]]:
    engines = [e for e in ENGINE_COLORS if any(n.engine == e for n in g.nodes)]
    return [(f"engine {e}", ENGINE_COLORS[e]) for e in engines] + [
        ("source", KIND_COLORS["source"]),
        ("output", KIND_COLORS["output"]),
    ]


# -- SVG ----------------------------------------------------------------------------------


def to_svg(g: Graph) -> str:
    boxes, width, height = layout(g)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="DejaVu Sans, Arial, sans-serif" '
        f'font-size="{FONT_SIZE}">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#888888"/></marker></defs>',
        '<rect width="100%" height="100%" fill="white"/>',
        f'<text x="{MARGIN}" y="{MARGIN + 12}" font-size="15" font-weight="bold">{escape(g.title)}</text>',
    ]
    for src, dst in g.edges:
        (x1, y1), (c1x, c1y), (c2x, c2y), (x2, y2) = _edge_points(boxes[src], boxes[dst])
        out.append(
            f'<path d="M {x1:.1f} {y1:.1f} C {c1x:.1f} {c1y:.1f}, {c2x:.1f} {c2y:.1f}, {x2:.1f} {y2:.1f}" '
            'fill="none" stroke="#888888" stroke-width="1.3" marker-end="url(#arrow)"/>'
        )
    for n in g.nodes:
        b = boxes[n.id]
        fill, border = n.colors
        radius = 12 if n.kind == "source" else 2 if n.kind == "output" else 6
        out.append(
            f'<g><title>{escape(n.id)}</title><rect x="{b.x:.1f}" y="{b.y:.1f}" width="{b.w:.1f}" '
            f'height="{b.h:.1f}" rx="{radius}" fill="{fill}" stroke="{border}" stroke-width="1.5"/>'
        )
        for i, line in enumerate(n.lines):
            weight = ' font-weight="bold"' if i == 0 else ' fill="#333333"'
            out.append(
                f'<text x="{b.x + b.w / 2:.1f}" y="{b.y + PAD_Y + (i + 1) * LINE_HEIGHT - 4:.1f}" '
                f'text-anchor="middle"{weight}>{escape(line)}</text>'
            )
        out.append("</g>")
    x: float = MARGIN
    y = height - MARGIN - 14
    for label, (fill, border) in _legend(g):
        out.append(
            f'<rect x="{x}" y="{y}" width="14" height="14" rx="3" fill="{fill}" stroke="{border}"/>'
            f'<text x="{x + 20}" y="{y + 11}">{escape(label)}</text>'
        )
        x += 34 + len(label) * CHAR_WIDTH
    out.append("</svg>")
    return "\n".join(out) + "\n"


# -- PNG (Pillow) ---------------------------------------------------------------------------


def to_png(g: Graph, scale: float = 2.0) -> bytes:
    try:
        from PIL import Image, ImageDraw, ImageFont
    except ImportError:  # pragma: no cover - pillow is a dependency
        raise DaedalusError("--format", "png needs Graphviz (`dot`) or the pillow package") from None
    boxes, width, height = layout(g)
    s = scale
    img = Image.new("RGB", (math.ceil(width * s), math.ceil(height * s)), "white")
    d = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=FONT_SIZE * s * 0.95)
    bold = ImageFont.load_default(size=FONT_SIZE * s)
    d.text((MARGIN * s, MARGIN * s), g.title, fill="black", font=ImageFont.load_default(size=15 * s))
    for src, dst in g.edges:
        p0, p1, p2, p3 = _edge_points(boxes[src], boxes[dst])
        pts = []
        for i in range(25):
            t = i / 24
            pts.append(
                tuple(
                    s
                    * ((1 - t) ** 3 * p0[k] + 3 * (1 - t) ** 2 * t * p1[k] + 3 * (1 - t) * t**2 * p2[k] + t**3 * p3[k])
                    for k in (0, 1)
                )
            )
        d.line(pts, fill="#888888", width=max(1, round(1.3 * s)))
        x2, y2 = p3[0] * s, p3[1] * s
        d.polygon([(x2, y2), (x2 - 8 * s, y2 - 4 * s), (x2 - 8 * s, y2 + 4 * s)], fill="#888888")
    for n in g.nodes:
        b = boxes[n.id]
        fill, border = n.colors
        radius = 12 if n.kind == "source" else 2 if n.kind == "output" else 6
        d.rounded_rectangle(
            [b.x * s, b.y * s, (b.x + b.w) * s, (b.y + b.h) * s],
            radius=radius * s,
            fill=fill,
            outline=border,
            width=max(1, round(1.5 * s)),
        )
        for i, line in enumerate(n.lines):
            cy = (b.y + PAD_Y + i * LINE_HEIGHT + LINE_HEIGHT / 2) * s
            d.text(
                ((b.x + b.w / 2) * s, cy),
                line,
                fill="black" if i == 0 else "#333333",
                font=bold if i == 0 else font,
                anchor="mm",
            )
    x: float = MARGIN
    y = height - MARGIN - 14
    for label, (fill, border) in _legend(g):
        d.rounded_rectangle([x * s, y * s, (x + 14) * s, (y + 14) * s], radius=3 * s, fill=fill, outline=border)
        d.text(((x + 20) * s, (y + 7) * s), label, fill="black", font=font, anchor="lm")
        x += 34 + len(label) * CHAR_WIDTH
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


# -- entry point --------------------------------------------------------------------------


def graphviz_available() -> bool:
    return shutil.which("dot") is not None


def render(g: Graph, fmt: str, *, use_graphviz: bool | None = None) -> bytes:
    """The picture in `fmt` (svg, png, dot): Graphviz when present (or asked), else our own."""
    if fmt not in FORMATS:
        raise DaedalusError("--format", f"unknown format {fmt!r} (choose one of: {', '.join(FORMATS)})")
    dot = to_dot(g)
    if fmt == "dot":
        return dot.encode()
    if use_graphviz is None:
        use_graphviz = graphviz_available()
    if use_graphviz:
        res = subprocess.run(["dot", f"-T{fmt}"], input=dot.encode(), capture_output=True)
        if res.returncode != 0:
            raise DaedalusError("dot", f"graphviz failed: {res.stderr.decode(errors='replace').strip()}")
        return res.stdout
    return to_svg(g).encode() if fmt == "svg" else to_png(g)
