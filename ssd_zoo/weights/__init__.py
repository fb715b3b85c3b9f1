"""Weights: what a ``weights=`` argument means, the published entries, other projects' layouts, and loading.

    resolve.py       a name, a ``WeightsEnum`` member, a path or a URL -> a :class:`Checkpoint` -> a model
    published.py     the published entries (``WeightsEnum`` per model), looked up by name (or a file by its SHA-256)
    file_classes.py  which class each row of a file is, where the file records no names
    convert.py       state-dict layouts (ssd_zoo, torchvision, ssd.pytorch and each publisher's), recognised and converted
    publishers/      one module per publisher: its layout, registered models, default boxes and entries

Files are read, downloaded and written by :mod:`ssd_zoo.files`; weights for other classes go through head
surgery (:mod:`ssd_zoo.finetune.surgery`).
"""
from ssd_zoo.weights.published import get_model_weights, get_weights, list_weights
from ssd_zoo.weights.resolve import Checkpoint, load_weights, read_weights, resolve_weights

__all__ = ["Checkpoint", "get_model_weights", "get_weights", "list_weights", "load_weights", "read_weights",
           "resolve_weights"]
