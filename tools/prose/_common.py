"""What the prose scripts share: rewriting one span of one markdown cell."""
from fedshield.reproduce import read_notebook, write_notebook


def set_between(path, start, end, text, *, end_in_cell: bool = True) -> None:
    """In the first markdown cell of notebook ``path`` that contains ``start`` (and ``end`` when
    ``end_in_cell``), replace the span from ``start`` up to ``end`` (``None``: the cell's end) by
    ``text``; ``KeyError`` when no cell matches, so a chapter edited by hand fails loudly."""
    nb = read_notebook(path)
    for c in nb["cells"]:
        s = "".join(c["source"])
        if c["cell_type"] == "markdown" and start in s and (not end_in_cell or end is None or end in s):
            i = s.index(start)
            j = s.index(end, i) if end else len(s)
            c["source"] = (s[:i] + text + s[j:]).splitlines(keepends=True)
            write_notebook(nb, path)
            return
    raise KeyError(start)
