"""Fine-tuning: head surgery (weights for other classes), freezing, and default boxes fitted to the data.

    surgery.py          weights trained for one set of classes, loaded into an SSD for another (by class name)
    freezing.py         parts of an SSD frozen for fine-tuning (no gradient, BatchNorm statistics kept)
    ground_truth.py     a dataset's boxes as the SSD sees them (VOC folder or COCO json, at the input size)
    anchor_coverage.py  how many of those boxes a default box matches, per class and size
    anchor_fit.py       box_sizes and aspect_ratios that raise the coverage
    coverage_plot.py    the coverage as a picture
    coverage_report.py  the one entry point: boxes read, coverage measured, optionally fitted (not imported here:
                        it builds models through ssd_zoo.registry, which imports surgery.py from this package)

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
