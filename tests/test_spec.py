"""docs/spec.md is the specification the code cites: every cited section exists, nothing points
outside the repository.

A "§N" or "§N.M" anywhere in a tracked text file is a citation of docs/spec.md unless the name of
another document stands right before it (:data:`OTHER_DOCUMENTS`); the paper's sections are Roman
numerals ("paper §III-B") and never match.
"""

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "docs" / "spec.md"
#: Section numbers the code has cited since the start (the reference design's numbering).
SECTIONS = ("1", "1.1", "1.2", "1.3", "2", "2.1", "2.2", "3", "4", "5", "6", "7")
#: Documents other than the spec whose numbered sections the code cites.
OTHER_DOCUMENTS = ("OCP MX spec ",)
CITATION = re.compile(r"§\s?(\d+(?:\.\d+)*)")
HEADING = re.compile(r"^#{2,3} §(\d+(?:\.\d+)*)\s+\S", re.MULTILINE)


def tracked_text_files() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                             check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: the tracked files are unknown")
    files = []
    for name in out.decode().split("\0"):
        p = ROOT / name
        if not name or not p.is_file():
            continue
        raw = p.read_bytes()
        if b"\0" in raw[:8192]:
            continue  # binary (weights, captures, images)
        files.append(p)
    return files


def citations(text: str) -> list[str]:
    """The sections of docs/spec.md that ``text`` cites."""
    found = []
    for m in CITATION.finditer(text):
        before = text[max(0, m.start() - 20):m.start()]
        if any(before.endswith(doc) for doc in OTHER_DOCUMENTS):
            continue
        found.append(m.group(1))
    return found


def spec_sections() -> list[str]:
    return HEADING.findall(SPEC.read_text(encoding="utf-8"))


def test_spec_keeps_the_cited_numbering():
    assert spec_sections() == list(SECTIONS)


def test_every_citation_names_a_section_of_the_spec():
    have = set(spec_sections())
    missing = {}
    for p in tracked_text_files():
        if p in (SPEC, Path(__file__).resolve()):
            continue  # the spec itself, and this file's examples of a missing section
        for sec in citations(p.read_text(encoding="utf-8", errors="replace")):
            if sec not in have:
                missing.setdefault(sec, []).append(str(p.relative_to(ROOT)))
    assert not missing, f"citations of sections that docs/spec.md lacks: {missing}"
    # The check sees citations at all (a broken pattern would pass vacuously).
    assert len(citations((ROOT / "golden" / "mx.py").read_text())) >= 3


def test_the_citation_check_catches_a_missing_section():
    assert citations("see spec §9.4 and (§1.2, §2)") == ["9.4", "1.2", "2"]
    assert citations("OCP MX spec §5.3.3") == []
    assert "9.4" not in spec_sections()


def test_no_tracked_file_points_outside_the_repository():
    bad = re.compile(r"\.\./shared|/work/(?:shared|main|wt)\b|shared/DESIGN\.md")
    hits = []
    for p in tracked_text_files():
        for n, line in enumerate(p.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if bad.search(line) and p != Path(__file__).resolve():
                hits.append(f"{p.relative_to(ROOT)}:{n}")
    assert not hits, f"paths outside the repository: {hits}"


def test_readme_links_the_spec():
    assert "](docs/spec.md)" in (ROOT / "README.md").read_text()
