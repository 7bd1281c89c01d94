"""One policy for tests that need a real dataset (imported by the test modules; tests/ is on sys.path).

A test that needs, say, MNIST runs wherever the package can load it: from the offline mirror
(``SPLITNN_DATA_DIR``) or by a download. It is skipped when no mirror is set and the download fails (a
machine without network), or when the mirror has no folder for that dataset at all. A dataset folder that
is incomplete or corrupt is an error, not a skip, so that a broken CI mirror cannot pass as green.
"""
import functools

import pytest

from splitnn import data


@functools.lru_cache(maxsize=None)
def unavailable(name):
    """None when dataset ``name`` loads, else why it cannot."""
    try:
        data.load_raw(name)
    except data.MissingDataError as err:
        root = data.data_dir()
        if root is None:
            why = str(err.__cause__ or err).splitlines()[0][:160]
            return f"{name}: no offline mirror ({data.DATA_DIR_ENV}) and the download failed: {why}"
        folder = root / data.MIRROR[data.canonical_name(name)][0]
        if not folder.is_dir():
            return f"{name}: the offline mirror {root} has no {folder.name}/"
        raise
    return None


def needs(name):
    """``@needs('mnist')`` (or ``pytestmark = needs('mnist')``): skip when :func:`unavailable` says why."""
    reason = unavailable(name)
    return pytest.mark.skipif(reason is not None, reason=reason or "")
