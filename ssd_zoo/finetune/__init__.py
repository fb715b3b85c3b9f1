"""Fine-tuning: head surgery (weights for other classes), freezing, and default boxes fitted to the data.

    >>> from ssd_zoo.finetune import coverage, fit, load_boxes
    >>> truth = load_boxes("data/shapes", model.input_size, pad_to_square=True)   # VOC root or COCO .json
    >>> print(coverage(model, truth))             # per class and size: share of boxes a default box matches
    >>> print(fit(model, truth).yaml())           # box_sizes / aspect_ratios to paste into model_kwargs
"""
from ssd_zoo.finetune.ground_truth import GroundTruth, load_boxes, to_input
from ssd_zoo.finetune.anchor_coverage import SIZE_EDGES, SIZE_NAMES, Coverage, anchor_boxes, coverage, spec_of
from ssd_zoo.finetune.anchor_fit import FitResult, fit
from ssd_zoo.finetune.coverage_plot import draw_coverage

__all__ = ["SIZE_EDGES", "SIZE_NAMES", "Coverage", "FitResult", "GroundTruth", "anchor_boxes", "coverage", "draw_coverage", "fit", "load_boxes",
           "spec_of", "to_input"]
