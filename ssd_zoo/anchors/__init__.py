"""Default boxes fitted to the data: how well an SSD's default boxes cover a dataset, and better ones.

    >>> from ssd_zoo.anchors import coverage, fit, load_boxes
    >>> truth = load_boxes("data/shapes", model.input_size, pad_to_square=True)   # VOC root or COCO .json
    >>> print(coverage(model, truth))             # per class and size: share of boxes a default box matches
    >>> print(fit(model, truth).yaml())           # box_sizes / aspect_ratios to paste into model_kwargs
"""
from .boxes import GroundTruth, load_boxes, to_input
from .coverage import SIZE_EDGES, SIZE_NAMES, Coverage, anchor_boxes, coverage, spec_of
from .fit import FitResult, fit
from .plot import draw_coverage

__all__ = ["SIZE_EDGES", "SIZE_NAMES", "Coverage", "FitResult", "GroundTruth", "anchor_boxes", "coverage", "draw_coverage", "fit", "load_boxes",
           "spec_of", "to_input"]
