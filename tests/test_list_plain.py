"""`distilens list` prints docstring lines as plain text."""

from __future__ import annotations


def test_list_prints_docstrings_without_markup() -> None:
    from distilens.cli import plain

    assert plain("``width`` sets :func:`~distilens.explain.attribute`, see :class:`Foo`") == "width sets attribute, see Foo"
