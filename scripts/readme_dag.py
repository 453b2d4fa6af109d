"""
Print the complete DAG file that README.md shows: the ``python`` block right after ``<!-- readme-dag -->``.

``tests/integration/test_readme_dag.py`` and ``make try-as-new-user`` both run exactly this code, so the
DAG a newcomer copies is the DAG that is tested. Standard library only: it runs before any venv exists.

Usage: ``python scripts/readme_dag.py [README.md]`` prints the file; ``--dag-id`` prints its DAG id instead.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

#: The HTML comment (invisible on GitHub and PyPI) that marks the README's complete DAG.
MARKER = "<!-- readme-dag -->"
_FENCE = "```"


def extract(markdown: str) -> str:
    """
    Return the code of the first fenced ``python`` block after :data:`MARKER`.

    :param markdown: The README's text.
    :raises ValueError: when the marker is missing or no ``python`` block follows it directly.
    """
    _, found, after = markdown.partition(MARKER)
    if not found:
        raise ValueError(f"the README has no {MARKER} marker")
    lines = after.lstrip("\n").splitlines()
    if not lines or lines[0].strip() != _FENCE + "python":
        raise ValueError(f"the line after {MARKER} must open a ```python block")
    try:
        end = next(i for i, line in enumerate(lines[1:], start=1) if line.strip() == _FENCE)
    except StopIteration:
        raise ValueError(f"the ```python block after {MARKER} is never closed") from None
    return "\n".join(lines[1:end]) + "\n"


def dag_id_of(code: str) -> str:
    """
    Return the ``dag_id`` of the one ``DAG(...)`` (or ``@dag``) call in ``code``, read without running it.

    :param code: A DAG file's source.
    :raises ValueError: when there is not exactly one literal ``dag_id``.
    """
    ids = [
        keyword.value.value
        for node in ast.walk(ast.parse(code))
        if isinstance(node, ast.Call)
        for keyword in node.keywords
        if keyword.arg == "dag_id" and isinstance(keyword.value, ast.Constant)
    ]
    if len(ids) != 1:
        raise ValueError(f"expected one literal dag_id in the README's DAG, found {ids!r}")
    return str(ids[0])


def main(argv: list[str] | None = None) -> int:
    """Print the README's DAG file (or its id) to stdout."""
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("readme", nargs="?", type=Path, default=Path(__file__).resolve().parent.parent / "README.md")
    parser.add_argument("--dag-id", action="store_true", help="print the DAG id instead of the file")
    args = parser.parse_args(argv)
    code = extract(args.readme.read_text(encoding="utf-8"))
    sys.stdout.write(dag_id_of(code) + "\n" if args.dag_id else code)
    return 0


if __name__ == "__main__":
    sys.exit(main())
