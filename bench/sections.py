"""
Sections of RESULTS.md that a benchmark script owns, between its markers: replaced in place or added at
the end by that script, and carried over by ``run.py`` when a full run rewrites the rest of the file.
"""

from __future__ import annotations

import re
from pathlib import Path


def write_section(path: Path, section: str, start_mark: str, end_mark: str) -> None:
    """
    Put ``section`` (which begins with ``start_mark`` and ends with ``end_mark``) into ``path``.

    The text between the markers is replaced; without them the section is appended.
    """
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    if start_mark in text and end_mark in text:
        before, rest = text.split(start_mark, 1)
        after = rest.split(end_mark, 1)[1].lstrip("\n")
        text = before + section.rstrip("\n") + "\n" + ("\n" + after if after else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section.rstrip("\n") + "\n"
    path.write_text(text)


MARKED = re.compile(r"^<!-- ([\w-]+):start -->$.*?^<!-- \1:end -->$", re.DOTALL | re.MULTILINE)


def marked_sections(text: str) -> list[str]:
    """Every section of ``text`` between a ``<!-- name:start -->`` and its ``<!-- name:end -->``, markers included, in order."""
    return [match.group(0) for match in MARKED.finditer(text)]
