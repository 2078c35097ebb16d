"""The dark time as a flame graph: folded stacks, a speedscope file, or one HTML page.

Each site's own dark time (``self_seconds``) is placed on its call path: the example
stack the snapshot keeps for the site (its first operation's, root first), or else the
chain of its most frequent callers. Frames are the application's functions only (the
sites and their callers); a frame's width is the dark time of everything below it.
Leaves are coloured by their cause (``no_span``, ``context_lost``), callers that ran dark
themselves by theirs.

The HTML page is self-contained (no script or style from elsewhere): the data, a small
script that lays the frames out as an icicle (root on top) and zooms into a frame on a
click, and the colours' legend.
"""

from __future__ import annotations

import html
import json
import os
from dataclasses import dataclass, field

from ..snapshot import SiteStats, Snapshot

_MAX_DEPTH = 64
SPEEDSCOPE_SCHEMA = "https://www.speedscope.app/file-format-schema.json"


@dataclass
class Frame:
    """One node of the flame graph: a function on some call path."""

    name: str
    cause: str = ""  # the cause of the dark time spent in this frame itself, if any
    self_seconds: float = 0.0
    children: dict[str, Frame] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return self.self_seconds + sum(c.total for c in self.children.values())

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "cause": self.cause,
            "self": round(self.self_seconds, 6),
            "total": round(self.total, 6),
            "children": [
                c.to_dict() for c in sorted(self.children.values(), key=lambda c: -c.total)
            ],
        }


def dark_paths(snapshot: Snapshot) -> list[tuple[list[str], float, str]]:
    """(call path root first, dark self seconds, cause) for each site with dark time."""
    by_site: dict[str, SiteStats] = {}
    for site in snapshot.sites:
        known = by_site.get(site.site)
        if known is None or site.count > known.count:
            by_site[site.site] = site
    # The application's functions: the sites and their callers (the example stacks also
    # hold the interpreter's, the launcher's and spangap's own frames).
    in_scope = set(by_site) | {c.name for s in snapshot.sites for c in s.callers}
    paths = []
    for site in snapshot.sites:
        if site.self_seconds <= 0:
            continue
        paths.append((_path_of(site, by_site, in_scope), site.self_seconds, site.cause))
    return paths


def _path_of(site: SiteStats, by_site: dict[str, SiteStats], in_scope: set[str]) -> list[str]:
    example = [entry.split(" (", 1)[0] for entry in site.example_stack]
    if example and example[-1] == site.site:
        return [name for name in example if name in in_scope][-_MAX_DEPTH:]
    path = [site.site]
    current = site
    while len(path) < _MAX_DEPTH and current.callers:
        caller = current.callers[0].name
        if caller in path:
            break  # recursion: the chain would never end
        path.insert(0, caller)
        parent = by_site.get(caller)
        if parent is None:
            break  # a caller that never ran dark: its own callers are not known
        current = parent
    return path


def flame_tree(snapshot: Snapshot) -> Frame:
    root = Frame("all dark time")
    for path, seconds, cause in dark_paths(snapshot):
        node = root
        for name in path:
            node = node.children.setdefault(name, Frame(name))
        node.self_seconds += seconds
        node.cause = cause if node.cause in ("", cause) else "mixed"
    return root


# --- formats ---------------------------------------------------------------------------


def render_folded(snapshot: Snapshot, shown: list[SiteStats], width: int) -> str:
    """Brendan Gregg's folded stacks, weights in microseconds of dark time: the input of
    flamegraph.pl, inferno and speedscope."""
    del shown, width  # a flame graph shows every site
    lines = []
    for path, seconds, _cause in dark_paths(snapshot):
        micros = round(seconds * 1e6)
        if micros > 0:
            lines.append(f"{';'.join(path)} {micros}")
    return "".join(f"{line}\n" for line in sorted(lines))


def render_speedscope(snapshot: Snapshot, shown: list[SiteStats], width: int) -> str:
    """A speedscope file (a "sampled" profile whose weights are dark seconds)."""
    del shown, width
    frames: list[dict[str, object]] = []
    index: dict[str, int] = {}
    files = {s.site: (s.file, s.line) for s in snapshot.sites}
    samples: list[list[int]] = []
    weights: list[float] = []
    for path, seconds, _cause in dark_paths(snapshot):
        stack = []
        for name in path:
            if name not in index:
                index[name] = len(frames)
                frame: dict[str, object] = {"name": name}
                if name in files and files[name][0]:
                    frame["file"], frame["line"] = files[name]
                frames.append(frame)
            stack.append(index[name])
        samples.append(stack)
        weights.append(seconds)
    document = {
        "$schema": SPEEDSCOPE_SCHEMA,
        "name": f"spangap: dark time of {_title(snapshot)}",
        "exporter": "spangap",
        "shared": {"frames": frames},
        "profiles": [
            {
                "type": "sampled",
                "name": "dark time (self seconds, in-scope frames)",
                "unit": "seconds",
                "startValue": 0,
                "endValue": sum(weights),
                "samples": samples,
                "weights": weights,
            }
        ],
    }
    return json.dumps(document, indent=1) + "\n"


def render_html(snapshot: Snapshot, shown: list[SiteStats], width: int) -> str:
    """One page, nothing loaded from elsewhere: the tree as JSON and the script that
    draws it."""
    del shown, width
    tree = flame_tree(snapshot)
    data = json.dumps(tree.to_dict()).replace("</", "<\\/")
    sites = len({s.site for s in snapshot.sites})
    heading = f"spangap: {tree.total:.2f} s of dark time at {sites} sites"
    page = _PAGE.replace("{{TITLE}}", html.escape(heading))
    return page.replace("{{PROGRAM}}", html.escape(_title(snapshot))).replace("{{DATA}}", data)


def _title(snapshot: Snapshot) -> str:
    argv = snapshot.program.get("argv")
    if not isinstance(argv, list) or not argv:
        return "a program"
    program = " ".join([os.path.basename(str(argv[0])), *(str(a) for a in argv[1:])])
    return program if len(program) <= 120 else program[:119] + "…"


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{{TITLE}}</title>
<style>
  body { font: 13px/1.4 system-ui, sans-serif; margin: 16px; color: #222; }
  h1 { font-size: 16px; margin: 0 0 2px; }
  #program { color: #666; font-size: 12px; margin-bottom: 6px; }
  #legend span { display: inline-block; padding: 1px 8px; margin-right: 8px; }
  #details { height: 1.4em; margin: 6px 0; }
  #graph { position: relative; width: 100%; }
  .frame { position: absolute; height: 20px; box-sizing: border-box; overflow: hidden;
           white-space: nowrap; text-overflow: ellipsis; padding: 2px 4px; cursor: pointer;
           border: 1px solid #fff; font-size: 12px; }
  .no_span { background: #f2a65a; } .context_lost { background: #b48ade; }
  .mixed { background: #e8c56f; } .caller { background: #d5d5d5; }
  .root { background: #9ab8d8; }
</style>
</head>
<body>
<h1>{{TITLE}}</h1>
<div id="program">{{PROGRAM}}</div>
<div id="legend"><span class="no_span">no_span</span><span class="context_lost">context_lost
</span><span class="caller">caller (no dark time of its own)</span>
Click a frame to zoom in; click the top bar to zoom out.</div>
<div id="details">&nbsp;</div>
<div id="graph"></div>
<script id="data" type="application/json">{{DATA}}</script>
<script>
"use strict";
const tree = JSON.parse(document.getElementById("data").textContent);
const graph = document.getElementById("graph");
const details = document.getElementById("details");
const ROW = 22;

function link(node, parent) {
  node.parent = parent;
  node.children.forEach(child => link(child, node));
}
link(tree, null);

function depth(node) {
  return node.children.reduce((deepest, c) => Math.max(deepest, depth(c) + 1), 0);
}

function describe(node) {
  const share = tree.total > 0 ? (100 * node.total / tree.total).toFixed(1) : "0";
  return node.name + ": " + node.total.toFixed(3) + " s dark (" + share + "%), "
    + node.self.toFixed(3) + " s in itself" + (node.cause ? ", " + node.cause : "");
}

let current = tree;

function draw(focus) {
  current = focus;
  graph.innerHTML = "";
  const width = graph.clientWidth || 1000;
  const ancestors = [];
  for (let n = focus.parent; n; n = n.parent) ancestors.unshift(n);
  let row = 0;
  for (const node of ancestors) {
    place(node, 0, width, row++, focus);
  }
  const scale = focus.total > 0 ? width / focus.total : 0;
  (function layout(node, x, r) {
    place(node, x, node.total * scale, r, focus);
    let offset = x;
    for (const child of node.children) {
      layout(child, offset, r + 1);
      offset += child.total * scale;
    }
  })(focus, 0, row);
  graph.style.height = (row + depth(focus) + 1) * ROW + "px";
}

function place(node, x, w, row, focus) {
  if (w < 1) return;
  const el = document.createElement("div");
  el.className = "frame " + (node.parent === null ? "root" : (node.cause || "caller"));
  el.style.left = x + "px";
  el.style.width = w + "px";
  el.style.top = row * ROW + "px";
  el.textContent = node.name;
  el.title = describe(node);
  el.dataset.name = node.name;
  el.addEventListener("click", () => draw(node === focus && node.parent ? node.parent : node));
  el.addEventListener("mouseenter", () => { details.textContent = describe(node); });
  graph.appendChild(el);
}

draw(tree);
window.addEventListener("resize", () => draw(current));
</script>
</body>
</html>
"""
