"""Every notebook runs top to bottom in quick mode and writes its figures."""
import time

import pytest

from splitnn.run_notebooks import REPO, all_notebooks, execute

NOTEBOOKS = all_notebooks()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_in_quick_mode(path, tmp_path):
    start = time.time()
    nb = execute(path, timeout=900, save=False,
                 env={"SPLITNN_MODE": "quick", "SPLITNN_RESULTS_DIR": str(tmp_path)})
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
    figures = list(tmp_path.rglob("*.png"))
    assert figures, f"{path.relative_to(REPO)} wrote no PNG under the results folder"
    print(f"{path.name}: {time.time() - start:.0f} s, {len(figures)} figures")


def test_every_notebook_starts_with_a_parameters_cell():
    import nbformat

    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        first_code = next(c for c in nb.cells if c.cell_type == "code")
        assert "params(" in first_code.source, f"{path.name}: first code cell must call splitnn.notebook.params"
