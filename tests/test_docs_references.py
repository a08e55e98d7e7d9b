"""The repository stands alone: every reference in it resolves inside it.

* every relative link of README.md and docs/*.md names a file of the repository (and, with an
  anchor, a heading of that file), and none leaves the repository;
* every "spec N", "spec section N", "METHODS.md section N" citation in compress_bench/**/*.py,
  conf/**/*.yaml and README.md names a section heading of docs/METHODS.md.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
METHODS = REPO / "docs" / "METHODS.md"
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

# --- citations of the method reference --------------------------------------------------------

NUMBER = r"\d+(?:\.\d+)?"
# "spec 0.6", "spec section 25", "spec sections 20, 21", "spec 8-10", "spec 0.6 and 21",
# "spec table 26.2", "spec's 12", "METHODS.md sections 2-3" (case-insensitive; a citation may
# run over a line break)
CITATION = re.compile(
    rf"\b(?:spec|METHODS\.md)(?:'s)?\s+(?:(?:sections?|table|§)\s*)?"
    rf"(?P<numbers>{NUMBER}(?:\s*(?:-|–|,|and)\s*{NUMBER}\b)*)",
    re.IGNORECASE,
)
HEADING_NUMBER = re.compile(rf"^#{{1,6}}\s+(?P<number>{NUMBER})\.?\s", re.MULTILINE)


def cited_sections(text: str) -> list[str]:
    """The section numbers a text cites; a range "8-10" cites 8, 9 and 10."""
    cited = []
    for match in CITATION.finditer(text):
        for part in re.split(r"\s*(?:,|and)\s*", match["numbers"]):
            ends = re.split(r"\s*[-–]\s*", part)
            if len(ends) == 2 and "." not in part:
                cited += [str(n) for n in range(int(ends[0]), int(ends[1]) + 1)]
            else:
                cited += ends
    return cited


def section_headings(text: str) -> set[str]:
    return {m["number"] for m in HEADING_NUMBER.finditer(text)}


def citing_files() -> list[Path]:
    return [
        *sorted((REPO / "compress_bench").rglob("*.py")),
        *sorted((REPO / "conf").rglob("*.yaml")),
        REPO / "README.md",
    ]


def test_the_citation_pattern_reads_every_form() -> None:
    text = (
        "bits (spec 0.6: float32), spec section 25, spec sections 20, 21 and spec 8-10;\n"
        "Spec 0.8 (thesis), METHODS.md sections 2-3, spec table 26.2, spec 10's zeta, spec\n"
        "    12 across a line, spec 4 and 0.3; a spec bit and spec-free text cite nothing"
    )
    assert cited_sections(text) == [
        *["0.6", "25", "20", "21", "8", "9", "10"],
        *["0.8", "2", "3", "26.2", "10", "12", "4", "0.3"],
    ]


def test_the_method_reference_keeps_the_spec_numbering() -> None:
    """Sections 0.1-0.8 and 1-28 (with 26.1, 26.2 and the decisions 27.1-27.8), in order."""
    found = [m["number"] for m in HEADING_NUMBER.finditer(METHODS.read_text())]
    expected = ["0", *[f"0.{i}" for i in range(1, 9)]]
    for n in range(1, 29):
        expected.append(str(n))
        if n == 26:
            expected += ["26.1", "26.2"]
        if n == 27:
            expected += [f"27.{i}" for i in range(1, 9)]
    assert found == expected


@pytest.mark.parametrize("path", citing_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_spec_citation_names_a_section_of_the_method_reference(path: Path) -> None:
    sections = section_headings(METHODS.read_text())
    missing = sorted({n for n in cited_sections(path.read_text()) if n not in sections})
    assert not missing, f"{path.name} cites sections {missing}, absent from docs/METHODS.md"


def test_built_sections_do_not_say_unbuilt() -> None:
    """The operators of sections 17-19 and the simulated time of section 28 are built: no
    heading calls them unimplemented."""
    text = METHODS.read_text()
    for number in ("17", "18", "19", "28"):
        heading = re.search(rf"^## {number}\. .*$", text, re.MULTILINE)
        assert heading is not None
        assert "not implemented yet" not in heading[0], heading[0]


# --- links ------------------------------------------------------------------------------------

FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"`[^`\n]*`")
INLINE_LINK = re.compile(r"!?\[[^\]]*\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)")
REFERENCE_LINK = re.compile(r"^\s*\[[^\]]+\]:\s*(?P<target>\S+)", re.MULTILINE)
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)  # https:, mailto:, ...


def link_targets(markdown: str) -> list[str]:
    """The targets of the inline and reference links outside code."""
    prose = CODE_SPAN.sub("", FENCE.sub("", markdown))
    return [m["target"] for m in INLINE_LINK.finditer(prose)] + [
        m["target"] for m in REFERENCE_LINK.finditer(prose)
    ]


def anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, a
    repeated anchor suffixed -1, -2, ..."""
    seen: dict[str, int] = {}
    out = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", FENCE.sub("", markdown), re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        out.add(slug if count == 0 else f"{slug}-{count}")
    return out


def broken_links(page: Path) -> list[str]:
    problems = []
    for target in link_targets(page.read_text()):
        if EXTERNAL.match(target):
            continue
        path_part, _, anchor = target.partition("#")
        resolved = (page.parent / path_part).resolve() if path_part else page
        if not resolved.is_relative_to(REPO):
            problems.append(f"{target}: leaves the repository")
        elif not resolved.exists():
            problems.append(f"{target}: no such file")
        elif anchor and (resolved.suffix != ".md" or anchor not in anchors(resolved.read_text())):
            problems.append(f"{target}: no heading with anchor #{anchor}")
    return problems


def test_link_checks_catch_what_they_should(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(f"{__name__}.REPO", tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "A.md").write_text("# Top\n## 0.6 Bit accounting\n")
    page = tmp_path / "README.md"
    page.write_text(
        "# Top\n[ok](docs/A.md) [anchor](docs/A.md#06-bit-accounting) ![fig](docs/A.md)\n"
        "[out](../shared/spec/METHODS.md) [gone](docs/B.md) [bad](docs/A.md#nowhere)\n"
        "[web](https://example.org) `[code](nowhere.md)` [self](#top)\n"
        "```\n[fenced](nowhere.md)\n```\n[ref]: docs/C.md\n"
    )
    assert broken_links(page) == [
        "../shared/spec/METHODS.md: leaves the repository",
        "docs/B.md: no such file",
        "docs/A.md#nowhere: no heading with anchor #nowhere",
        "docs/C.md: no such file",
    ]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves_inside_the_repository(page: Path) -> None:
    assert broken_links(page) == []


def test_the_readme_points_to_the_reference_and_the_architecture() -> None:
    readme = link_targets((REPO / "README.md").read_text())
    assert "docs/METHODS.md" in readme and "docs/ARCHITECTURE.md" in readme
    for page in (REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))):
        text = page.read_text()
        assert "shared/spec" not in text, f"{page.name} names the spec outside the repository"
