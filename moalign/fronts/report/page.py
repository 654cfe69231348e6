"""One self-contained HTML page for one or several traced fronts.

Everything the page needs is in the file: plotly.js inline (``plotly.offline.get_plotlyjs``),
the figure's data as JSON in the page, a little inline script that draws it and shows a
point's replies when the point is clicked; no script, style or image is fetched from anywhere.
Sections: the interactive front (:mod:`~moalign.fronts.report.figure`), per front its
hypervolume, spans and cost with their intervals and a table of its points, the paired
hypervolume difference of each further front with the first (when they were scored on the same
held-out examples), and the replies of the start and every point to a few held-out prompts
(:mod:`~moalign.fronts.report.replies`).
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from moalign.fronts.report.figure import front_figure

__all__ = ["render_report", "write_report"]

STYLE = """
body{font-family:system-ui,sans-serif;margin:24px auto;padding:0 16px;max-width:1200px;
color:#222}
table{border-collapse:collapse;margin:8px 0 16px}td,th{border:1px solid #ccc;padding:4px 8px;
vertical-align:top;text-align:left}th{background:#f3f3f3}.num{font-variant-numeric:tabular-nums}
.reply{white-space:pre-wrap;max-width:520px;font-family:ui-monospace,monospace;font-size:12px}
tr.selected td{background:#fff3c4}.muted{color:#777}
"""

SCRIPT = """
(function(){
  function data(id){ return JSON.parse(document.getElementById(id).textContent); }
  var fig = data('front-data'), replies = data('replies-data');
  var el = document.getElementById('front');
  Plotly.newPlot(el, fig.data, fig.layout, {displaylogo:false, responsive:true});
  function cell(tr, tag, text){
    var c = document.createElement(tag); c.textContent = text; c.className = 'reply';
    tr.appendChild(c);
  }
  function show(front, pid){
    var box = document.getElementById('selected-replies'), r = replies[front] || {};
    var policies = pid === 'start' ? ['start'] : ['start', pid];
    box.textContent = '';
    var h = document.createElement('h3');
    h.textContent = (r.label ? r.label + ': ' : '') + 'replies of ' + pid +
                    (pid === 'start' ? '' : ' and of the start');
    box.appendChild(h);
    if (!r.prompts || !r.prompts.length || !(r.replies || {})[pid]) {
      var p = document.createElement('p'); p.className = 'muted';
      p.textContent = 'No replies stored for ' + pid + ': moalign report --replies N ' +
                      'generates them.';
      box.appendChild(p); return;
    }
    var table = document.createElement('table'), head = document.createElement('tr');
    cell(head, 'th', 'prompt');
    policies.forEach(function(q){ cell(head, 'th', q); });
    table.appendChild(head);
    r.prompts.forEach(function(prompt, j){
      var tr = document.createElement('tr');
      cell(tr, 'td', prompt);
      policies.forEach(function(q){ cell(tr, 'td', ((r.replies[q] || [])[j]) || ''); });
      table.appendChild(tr);
    });
    box.appendChild(table);
  }
  el.on('plotly_click', function(ev){
    if (!ev.points.length) return;
    var p = ev.points[0], meta = p.data.meta || {};
    var key = meta.front + '/' + p.customdata;
    document.querySelectorAll('tr[data-point]').forEach(function(tr){
      tr.classList.toggle('selected', tr.getAttribute('data-point') === key ||
                          tr.getAttribute('data-point') === meta.front + '/start');
    });
    document.getElementById('selected').textContent = 'selected: ' + p.customdata;
    show(meta.front, p.customdata);
  });
})();
"""

def _e(x: Any) -> str:
    return html.escape(str(x))


def _iv(v: Any, digits: int = 4) -> str:
    return f"[{v[0]:+.{digits}f}, {v[1]:+.{digits}f}]" if v else ""


def _summary(front: Any, label: str, i: int) -> str:
    rows = []
    hv = front.hypervolume()
    rows.append(("hypervolume", f"{hv:.6g} {_iv(front.hypervolume_ci, 6)}"
                 if hv is not None else "n/a"))
    if front.hypervolume_gain:
        g = front.hypervolume_gain
        rows.append(("hypervolume gain over the start", f"{g['value']:+.6g} {_iv(g['ci'], 6)}"))
    for o, e in (front.tradeoff or {}).items():
        rows.append((f"span of {o}", f"{e['span']:+.4f} {_iv(e['ci'])} (from {e.get('from')} "
                                     f"to {e.get('to')})"))
    cost = front.cost or {}
    rows.append(("cost", f"{cost.get('train_steps', '?')} training steps, "
                         f"{float(cost.get('train_seconds', 0)):.1f} s training, "
                         f"{float(cost.get('eval_seconds', 0)):.1f} s evaluation"))
    meta = front.metadata or {}
    rows.append(("method", f"{front.method} (trainer {meta.get('trainer', '?')}, model "
                           f"{meta.get('model', '?')}, {meta.get('precision', '?')})"))
    body = "".join(f"<tr><th>{_e(k)}</th><td class=num>{_e(v)}</td></tr>" for k, v in rows)
    return f"<h3>{_e(label)}</h3><table>{body}</table>" + _points_table(front, i)


def _points_table(front: Any, i: int) -> str:
    base = ((front.metadata or {}).get("baseline") or {}).get("scores") or {}
    head = "".join(f"<th>{_e(o)} [interval]</th><th>vs start [interval]</th>"
                   for o in front.objectives)
    rows = []
    if base:
        cells = "".join(f"<td class=num>{base[o]:.4f}</td><td></td>" for o in front.objectives)
        rows.append(f"<tr data-point='{i}/start'><td>start</td><td></td>{cells}<td></td></tr>")
    for p, nd in zip(front.points, front.nondominated):
        cells = ""
        for o in front.objectives:
            delta = f"{p.scores[o] - base[o]:+.4f} {_iv(p.delta_ci.get(o))}" if o in base else ""
            cells += (f"<td class=num>{p.scores[o]:.4f} {_iv(p.ci.get(o))}</td>"
                      f"<td class=num>{delta}</td>")
        w = ", ".join(f"{x:.3g}" for x in p.weights) if p.weights is not None else ""
        rows.append(f"<tr data-point='{i}/{_e(p.id)}'><td>{_e(p.id)}</td><td>{w}</td>{cells}"
                    f"<td>{'yes' if nd else ''}</td></tr>")
    return (f"<table><tr><th>point</th><th>weights</th>{head}<th>non-dominated</th></tr>"
            + "".join(rows) + "</table>")


def _prompt_text(prompt: Any) -> str:
    if isinstance(prompt, str):
        return prompt
    return "\n".join(f"{m.get('role')}: {m.get('content')}" for m in prompt)


def _replies(label: str, i: int, replies: dict[str, list[dict[str, Any]]],
             order: list[str]) -> str:
    if not replies:
        return (f"<p class=muted>{_e(label)}: no replies stored; <code>moalign report "
                "--replies N</code> generates them.</p>")
    first = next(iter(replies.values()))
    out = [f"<h3>Replies: {_e(label)}</h3>"]
    for j, row in enumerate(first):
        out.append(f"<p><b>prompt {j + 1}</b></p><div class=reply>{_e(_prompt_text(row['prompt']))}"
                   "</div><table><tr><th>policy</th><th>reply</th></tr>")
        for pid in order:
            if pid in replies and j < len(replies[pid]):
                out.append(f"<tr data-reply data-point='{i}/{_e(pid)}'><td>{_e(pid)}</td>"
                           f"<td class=reply>{_e(replies[pid][j]['reply'])}</td></tr>")
        out.append("</table>")
    return "".join(out)


def _differences(fronts: Sequence[Any], labels: Sequence[str]) -> str:
    from moalign.errors import MoalignError
    from moalign.pareto.front import hypervolume_difference

    lines = []
    for front, label in zip(fronts[1:], labels[1:]):
        try:
            d = hypervolume_difference(fronts[0], front)
        except (MoalignError, ValueError, KeyError) as exc:
            lines.append(f"<li>{_e(label)} vs {_e(labels[0])}: no paired comparison "
                         f"({_e(exc)})</li>")
            continue
        lines.append(f"<li>hypervolume of {_e(label)} minus {_e(labels[0])}: "
                     f"{d['value']:+.6g} {_iv(d['ci'], 6)} (paired bootstrap)</li>")
    return f"<h2>Comparison</h2><ul>{''.join(lines)}</ul>" if lines else ""


def _script_json(text: str) -> str:
    """JSON to put inside a script element: every ``<`` (only ever inside a JSON string) as
    ``\\u003c``, so no ``</script>`` or ``<!--`` in a reply can end or change the element."""
    return text.replace("<", "\\u003c")


def _replies_data(labels: Sequence[str],
                  replies: Sequence[dict[str, list[dict[str, Any]]]]) -> str:
    """Per front: its label, the prompts' text and each policy's replies, for the page's
    script (JSON that cannot close its script element)."""
    out = []
    for label, r in zip(labels, replies):
        first = next(iter(r.values()), [])
        out.append({"label": label, "prompts": [_prompt_text(row["prompt"]) for row in first],
                    "replies": {pid: [row["reply"] for row in rows] for pid, rows in r.items()}})
    return _script_json(json.dumps(out, ensure_ascii=False))


def render_report(fronts: Sequence[Any], labels: Sequence[str],
                  replies: Sequence[dict[str, list[dict[str, Any]]]] | None = None,
                  title: str = "moalign report") -> str:
    """The page (a string) for loaded :class:`~moalign.pareto.front.ParetoFront` objects."""
    from plotly.offline import get_plotlyjs

    fig = front_figure(fronts, labels)
    data = _script_json(fig.to_json())
    replies = list(replies or [{} for _ in fronts])
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{_e(title)}</title>"
             f"<style>{STYLE}</style><script>{get_plotlyjs()}</script></head><body>",
             f"<h1>{_e(title)}</h1><p class=muted>Objectives: {_e(', '.join(fronts[0].objectives))}"
             " (higher is better). Hover a point for its weights, scores and intervals; click it "
             "for its replies next to the start's. <span id=selected></span></p>",
             "<div id=front></div><div id=selected-replies></div>",
             f"<script type='application/json' id='front-data'>{data}</script>",
             "<script type='application/json' id='replies-data'>"
             f"{_replies_data(labels, replies)}</script>",
             "<h2>Fronts</h2>"]
    parts += [_summary(f, label, i) for i, (f, label) in enumerate(zip(fronts, labels))]
    parts.append(_differences(fronts, labels))
    parts.append("<h2>Replies to held-out prompts</h2>")
    for i, (f, label, r) in enumerate(zip(fronts, labels, replies)):
        parts.append(_replies(label, i, r, ["start"] + [p.id for p in f.points]))
    parts.append(f"<script>{SCRIPT}</script></body></html>")
    return "".join(parts)


def write_report(paths: Sequence[str | Path], output: str | Path, *,
                 labels: Sequence[str] | None = None, replies: int = 0,
                 progress: Any = None) -> Path:
    """Write the report of the fronts at ``paths`` (trace folders or ``front.json`` files) to
    ``output``; ``replies``: generate the replies to that many held-out prompts where they are
    not stored yet."""
    from moalign.fronts.report.replies import ensure_replies, read_replies
    from moalign.pareto.front import ParetoFront
    from moalign.storage.files import atomic_write_text

    files = [Path(p) / "front.json" if Path(p).is_dir() else Path(p) for p in paths]
    fronts = [ParetoFront.load(f) for f in files]
    if labels is None:
        names = [f.parent.name for f in files]
        labels = [f"{fr.method} ({n})" for fr, n in zip(fronts, names)]
    stored = [ensure_replies(f, replies, progress=progress) if replies else read_replies(f)
              for f in files]
    output = Path(output)
    atomic_write_text(output, render_report(fronts, labels, stored))
    return output
