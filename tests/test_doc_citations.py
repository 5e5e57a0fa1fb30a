"""Docstrings and comments cite the project's own documents (issue 20, step 5): every
``README, "Title"`` or ``docs/api-guide.md, "Title"`` names a heading or a bold lead-in of that
document, so a citation cannot outlive the section it points at, and nothing cites a document
that is not in the repository."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = {"README": ROOT / "README.md", "docs/api-guide.md": ROOT / "docs" / "api-guide.md"}
# a citation: the document, then one or more quoted titles (a title may wrap onto a comment line)
CITATION = re.compile(r'(README|docs/api-guide\.md),((?:\s*(?:#\s*)?"[^"]+"[,;]?)+)')
TITLE = re.compile(r'"([^"]+)"')


def _titles(doc: Path) -> set[str]:
    text = doc.read_text(encoding="utf-8")
    found = {m.group(1).strip() for m in re.finditer(r"^#{2,4}\s+(.+?)\s*$", text, re.M)}
    for line in text.splitlines():  # bold lead-ins, line by line (a glob's ** elsewhere pairs nothing)
        found |= {m.group(1).strip().rstrip(".:") for m in re.finditer(r"\*\*([^*]+?)\*\*", line)}
    return {" ".join(t.split()) for t in found}


def _sources() -> list[Path]:
    return sorted(p for p in [*ROOT.glob("authsvc/**/*.py"), *ROOT.glob("tests/**/*.py")]
                  if p.name != "test_doc_citations.py" and "node_modules" not in p.parts)


def test_citations_name_sections_that_exist():
    titles = {name: _titles(path) for name, path in DOCS.items()}
    missing = []
    cited = 0
    for path in _sources():
        text = path.read_text(encoding="utf-8")
        for m in CITATION.finditer(text):
            for t in TITLE.finditer(m.group(2)):
                title = " ".join(t.group(1).replace("#", " ").split())
                cited += 1
                if title not in titles[m.group(1)] and not any(h.startswith(title) for h in titles[m.group(1)]):
                    missing.append(f"{path.relative_to(ROOT)}: {m.group(1)}, {title!r}")
    assert cited > 20  # the check sees the citations
    assert not missing, "\n".join(missing)


def test_nothing_cites_a_document_outside_the_repository():
    offenders = [str(p.relative_to(ROOT)) for p in _sources()
                 if re.search(r"API contract|api-contract\.md", p.read_text(encoding="utf-8"))]
    assert not offenders, offenders
