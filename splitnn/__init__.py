"""Code shared by the split-learning attacks: datasets, plots, metrics, split-model helpers."""
from splitnn.data import (KNOWN_DATASETS, MissingDataError, RawData, UnknownDatasetError, load_raw,  # noqa: F401
                          load_unsplit)

__version__ = "0.1.0"
