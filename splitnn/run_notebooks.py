"""Execute the package's notebooks top to bottom with nbclient.

``python -m splitnn.run_notebooks`` runs every notebook in place (saving outputs), in the mode given by
``SPLITNN_MODE`` (``quick`` by default; ``full`` for the papers' budgets on a GPU). Pass paths to run a subset,
``--no-save`` to leave the files untouched.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK_GLOBS = ("notebooks/*.ipynb", "ClientSideAttack/*.ipynb")


def all_notebooks() -> list[Path]:
    return sorted(p for g in NOTEBOOK_GLOBS for p in REPO.glob(g) if ".ipynb_checkpoints" not in p.parts)


def execute(path, timeout: int = 3600, save: bool = True, env: dict | None = None):
    """Run one notebook in its own folder; returns the executed notebook node. Raises on a failing cell."""
    import nbformat
    from nbclient import NotebookClient

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    old = dict(os.environ)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    os.environ.update(env or {})
    try:
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": str(path.parent)}})
        client.execute()
    finally:
        os.environ.clear()
        os.environ.update(old)
    if save:
        nbformat.write(nb, path)
    return nb


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="*", help="notebooks to run (default: all)")
    parser.add_argument("--no-save", action="store_true", help="do not write outputs back")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per cell")
    args = parser.parse_args(argv)
    paths = [Path(p).resolve() for p in args.paths] or all_notebooks()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # inherited by the kernels, unless the caller chose a level
    from splitnn.notebook import RESULTS_ENV

    results = Path(os.environ.get(RESULTS_ENV) or REPO / "notebooks" / "results").resolve()
    failed = []
    for path in paths:
        start = time.time()
        try:
            execute(path, timeout=args.timeout, save=not args.no_save)
            print(f"ok      {path} ({time.time() - start:.0f} s)" + ("" if args.no_save else ", outputs saved"))
        except Exception as exc:  # report every notebook, then fail
            failed.append(path)
            print(f"FAILED  {path}: {type(exc).__name__}: {str(exc)[-2000:]}", file=sys.stderr)
        for written in sorted(f for f in results.rglob("*") if f.is_file() and f.stat().st_mtime >= start):
            print(f"        wrote {written}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
