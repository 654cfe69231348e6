"""``moalign report``: one self-contained HTML page, one marker per point, replies side by side."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import re
from pathlib import Path

import pytest

from moalign.cli import main
from moalign.pareto.front import FrontPoint, ParetoFront

ROOT = Path(__file__).resolve().parents[2]
OBJ = ["helpfulness", "harmlessness"]


def _run(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


def _front(folder, method, n):
    points = []
    for i in range(n):
        w = [i / (n - 1), 1 - i / (n - 1)]
        s = {"helpfulness": 0.5 + 0.1 * w[0], "harmlessness": 0.5 + 0.1 * w[1]}
        points.append(FrontPoint(id=f"w{w[0]:.2f}-{w[1]:.2f}", weights=w, scores=s,
                                 stderr={o: 0.01 for o in OBJ},
                                 ci={o: [s[o] - 0.02, s[o] + 0.02] for o in OBJ},
                                 delta_ci={o: [s[o] - 0.52, s[o] - 0.48] for o in OBJ}))
    front = ParetoFront(objectives=OBJ, points=points, method=method, reference_point=[0.5, 0.5],
                        cost={"train_seconds": 12.0, "eval_seconds": 3.0, "train_steps": 4},
                        metadata={"baseline": {"scores": {o: 0.5 for o in OBJ}}})
    folder.mkdir(parents=True)
    front.save(folder / "front.json")
    prompt = [{"role": "user", "content": "Say <hi> & bye"}]
    for pid in ["start"] + [p.id for p in points]:
        where = folder / ("baseline" if pid == "start" else f"points/{pid}")
        where.mkdir(parents=True, exist_ok=True)
        (where / "replies.jsonl").write_text(json.dumps({"prompt": prompt,
                                                         "reply": f"reply of {pid}"}) + "\n")
    return front


@pytest.fixture
def report(tmp_path):
    _front(tmp_path / "soup", "soup", 3)
    _front(tmp_path / "sweep", "sweep", 4)
    out = tmp_path / "report.html"
    rc, stdout, err = _run(["report", str(tmp_path / "soup"), str(tmp_path / "sweep" / "front.json"),
                            "-o", str(out)])
    assert rc == 0, err
    assert "self-contained" in stdout
    return out


def test_report_is_one_offline_file_with_one_marker_per_point(report, tmp_path):
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html", "soup", "sweep"]
    page = report.read_text(encoding="utf-8")
    tags = re.findall(r"<(?:script|link|img|iframe)\b[^>]*>", page)
    assert not [t for t in tags if re.search(r"(src|href)\s*=", t)]  # nothing fetched
    assert "Plotly.newPlot" in page and "<script>" in page
    fig = json.loads(re.search(r"<script type='application/json' id='front-data'>(.*?)</script>",
                               page, re.S).group(1).replace("<\\/", "</"))
    points = [t for t in fig["data"] if t["meta"]["kind"] == "points"]
    assert [len(t["x"]) for t in points] == [3, 4]
    assert [len(t["customdata"]) for t in points] == [3, 4]
    assert len([t for t in fig["data"] if t["meta"]["kind"] == "start"]) == 2
    hover = points[0]["hovertext"][0]
    assert "weights: helpfulness 0" in hover and "[0.480, 0.520]" in hover
    assert "vs start +0.0000" in hover


def test_report_tables_and_replies(report):
    page = report.read_text(encoding="utf-8")
    assert "hypervolume" in page and "12.0 s training" in page and "4 training steps" in page
    assert "no paired comparison" in page  # these fronts store no per-example scores
    assert page.count("<tr data-reply") == 3 + 1 + 4 + 1  # start and every point, per front
    assert "reply of w0.50-0.50" in page and "Say &lt;hi&gt; &amp; bye" in page


def test_report_refuses_bad_options(tmp_path):
    _front(tmp_path / "soup", "soup", 3)
    rc, _, err = _run(["report", str(tmp_path / "soup"), "-o", str(tmp_path / "r.png")])
    assert rc == 2 and "must end in .html" in err


@pytest.mark.slow
def test_report_opens_in_a_headless_browser(report):
    """The page in a real Chromium: every marker drawn, a click on a point shows its replies
    next to the start's, no console error, no request but the page itself."""
    browser_tool = _browser_tool()
    chromium = browser_tool.find_chromium()
    if chromium is None:
        pytest.skip("chromium is not installed (.ci/run installs Debian's chromium): the page "
                    "is not checked in a real browser")
    with browser_tool.Browser(chromium) as browser:
        seen = browser_tool.report_checks(browser, report, select="w0.33-0.67", front=1)
    points = [t for t in seen["traces"] if t["meta"]["kind"] == "points"]
    assert [(t["markers"], len(t["ids"])) for t in points] == [(3, 3), (4, 4)]
    assert [t["markers"] for t in seen["traces"] if t["meta"]["kind"] == "start"] == [1, 1]
    assert "reply of w0.33-0.67" in seen["selected"] and "reply of start" in seen["selected"]
    assert "Say <hi> & bye" in seen["selected"]  # text, not markup
    assert sorted(seen["marked"]) == ["1/start", "1/w0.33-0.67"]
    assert seen["console_errors"] == []
    assert seen["requests"] == []


def _browser_tool():
    spec = importlib.util.spec_from_file_location("report_browser", ROOT / "scripts" /
                                                  "report_browser.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
