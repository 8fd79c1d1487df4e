"""The docs cite what the repository holds: every "DESIGN §n" is docs/DESIGN.md's section n, nothing
points outside the repository, and the README's plugin section gives the real signatures."""

from __future__ import annotations

import inspect
import re
import subprocess
from pathlib import Path

import jestbench

REPO = Path(__file__).resolve().parents[1]
DESIGN = REPO / "docs" / "DESIGN.md"
# Files being split by another branch while the citations moved: the integrator points theirs at
# docs/DESIGN.md after the merge and empties this set.


def _tracked(*patterns: str) -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", *patterns], cwd=REPO, capture_output=True, text=True, check=True
    )
    return [REPO / line for line in listed.stdout.splitlines()]


def _citations() -> list[tuple[str, str, str]]:
    """(file, what precedes "DESIGN", section) for every "DESIGN §n" in tracked sources and docs."""
    found = []
    for path in _tracked("*.py", "*.md", "*.toml"):
        for match in re.finditer(r"(\S*)DESIGN(?:\.md)?\S* §(\d+)", path.read_text()):
            found.append((str(path.relative_to(REPO)), match.group(0), match.group(2)))
    return found


def test_the_design_page_has_the_ten_numbered_sections_citations_use():
    headings = re.findall(r"^## (\d+)\. ", DESIGN.read_text(), flags=re.MULTILINE)
    assert headings == [str(n) for n in range(1, 11)]


def test_every_design_citation_is_to_docs_design_and_to_a_section_it_has():
    citations = _citations()
    assert citations  # the pattern finds them
    for path, text, section in citations:
        assert 1 <= int(section) <= 10, (path, text)
        assert "docs/DESIGN.md §" in text, f"{path}: {text!r} should cite docs/DESIGN.md"


def test_no_doc_points_at_a_design_file_outside_the_repository():
    outside = "shared/" + "DESIGN"  # spelt apart, so that this file does not match itself
    for path in _tracked("*.py", "*.md", "*.toml", "*.ini"):
        assert outside not in path.read_text(), path


def test_the_readme_gives_the_sampling_primitives_real_signatures():
    readme = (REPO / "README.md").read_text()
    for function in (jestbench.gumbel_noise, jestbench.gumbel_top_k, jestbench.joint_sample):
        names = ", ".join(inspect.signature(function).parameters)
        assert f"`jestbench.{function.__name__}({names})" in readme
    for method in ("score_rows", "score_columns"):
        assert f"`view.{method}(kind, index)` | `M[" in readme
    assert "`M` is the `B x B` score matrix" in readme
