"""The README and the documents under docs/ point only at files that exist, and the README stays
a README (short enough to read; measured results live in docs/RESULTS.md).

Every relative link, ``[text](path)`` or ``![alt](path)`` (and reference definitions
``[label]: path``), with its ``#anchor`` or ``?query`` part removed, must name an existing file
or folder inside the repository. Links with a scheme (``https:``, ``mailto:``) and links to an
anchor of the same page are not checked; text inside code (fenced blocks and inline code spans)
is not a link."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README_MAX_BYTES = 12_500

_FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.S | re.M)
_CODE_SPAN = re.compile(r"(`+)(?!`).*?(?<!`)\1(?!`)", re.S)
_INLINE = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+[\"'(][^)]*)?\)")
_REFERENCE = re.compile(r"^[ ]{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.M)
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def relative_links(text: str) -> list[str]:
    """The relative link targets of a markdown text, without their anchor or query."""
    text = _CODE_SPAN.sub("", _FENCE.sub("", text))
    targets = _INLINE.findall(text) + _REFERENCE.findall(text)
    found = []
    for target in targets:
        if _SCHEME.match(target) or target.startswith(("#", "//")):
            continue
        path = target.split("#", 1)[0].split("?", 1)[0]
        if path:
            found.append(path)
    return found


def dead_links(doc: Path, root: Path = ROOT) -> list[str]:
    dead = []
    for link in relative_links(doc.read_text(encoding="utf-8")):
        target = (doc.parent / link).resolve()
        inside = target == root or root in target.parents
        if not inside or not target.exists():
            dead.append(link)
    return dead


def test_the_link_finder_reads_markdown(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text(
        "See [the guide](guide.md#install) and ![a plot](img/front.png).\n"
        "[web](https://example.org) [here](#top) [mail](mailto:a@b.c)\n"
        "`[not a link](nowhere.md)`\n"
        "```\n[nor this](nowhere.md)\n```\n"
        "[a [nested] label](sub/) and [ref]: other.md \"title\"\n"
        "[def]: defined.md\n",
        encoding="utf-8")
    assert relative_links(doc.read_text(encoding="utf-8")) == [
        "guide.md", "img/front.png", "sub/", "defined.md"]
    (tmp_path / "guide.md").write_text("", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    assert dead_links(doc, root=tmp_path) == ["img/front.png", "defined.md"]


def test_a_link_that_leaves_the_repository_is_dead(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    (tmp_path / "outside.md").write_text("", encoding="utf-8")
    doc = repo / "README.md"
    doc.write_text("[out](../outside.md)\n", encoding="utf-8")
    assert dead_links(doc, root=repo) == ["../outside.md"]


def test_every_relative_link_resolves():
    docs = documents()
    assert (ROOT / "README.md") in docs and len(docs) > 1
    dead = {str(doc.relative_to(ROOT)): links for doc in docs if (links := dead_links(doc))}
    assert not dead, f"links to files that do not exist: {dead}"


_PARENT_PATH = re.compile(r"(?:\.\./)+[\w.-]+(?:/[\w.-]+)*")


def paths_outside(doc: Path, root: Path = ROOT) -> list[str]:
    """Relative paths named anywhere in ``doc`` (links, code, prose) that climb out of ``root``."""
    found = []
    for path in _PARENT_PATH.findall(doc.read_text(encoding="utf-8")):
        target = (doc.parent / path).resolve()
        if target != root and root not in target.parents:
            found.append(path)
    return found


def test_no_document_points_outside_the_repository():
    """Users have the repository only: a document may not send them to a sibling folder."""
    outside = {str(doc.relative_to(ROOT)): paths for doc in documents()
               if (paths := paths_outside(doc))}
    assert not outside, f"documents that point outside the repository: {outside}"


def test_a_path_named_in_code_that_climbs_out_is_found(tmp_path):
    repo = tmp_path / "repo"
    (repo / "docs").mkdir(parents=True)
    doc = repo / "docs" / "A.md"
    doc.write_text("see `../../notes/x.md` and ../README.md\n", encoding="utf-8")
    assert paths_outside(doc, root=repo) == ["../../notes/x.md"]


def test_the_readme_is_short():
    size = (ROOT / "README.md").stat().st_size
    assert size <= README_MAX_BYTES, (
        f"README.md is {size} bytes (at most {README_MAX_BYTES}): move measured results to "
        "docs/RESULTS.md and reference material to the docs/ it belongs to")
