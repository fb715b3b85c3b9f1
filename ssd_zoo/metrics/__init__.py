"""Detection metrics: Pascal VOC mAP (VOC2007 11-point or VOC2010+ area) and COCO AP.

``VOCEvaluator`` is pure numpy; ``COCOEvaluator`` needs pycocotools (``pip install ssd_zoo[coco]``),
imported only when it computes.
"""

from ssd_zoo.metrics.coco import STAT_NAMES, COCOEvaluator
from ssd_zoo.metrics.voc import VOCEvaluator, average_precision

__all__ = ["COCOEvaluator", "STAT_NAMES", "VOCEvaluator", "average_precision"]
