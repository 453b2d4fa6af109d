"""Sections of RESULTS.md that a benchmark script owns: replaced in place between its markers, or added at the end."""

from __future__ import annotations

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
