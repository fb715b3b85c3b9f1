"""ssd_zoo: a torchvision-style model zoo for SSD, the Single Shot MultiBox Detector.

    >>> import ssd_zoo
    >>> model = ssd_zoo.build("ssd300_vgg16", num_classes=21).eval()
    >>> detections = model([image])  # image: float [3, H, W] in [0, 1]
    >>> model = ssd_zoo.load("runs/demo/best.pth")  # any checkpoint, any supported layout
"""
from ssd_zoo.models import zoo as _zoo  # noqa: F401  (registers the built-in models)
from ssd_zoo.models import zoo_timm as _zoo_timm  # noqa: F401  (registers the timm-backbone models)
from ssd_zoo.weights import publishers as _publishers  # noqa: F401  (registers the other projects' layouts, models, weights)
from ssd_zoo.models.head import SSDHead
from ssd_zoo.models.ssd import SSD
from ssd_zoo.models.ssdlite import SSDLiteHead
from ssd_zoo.models.timm_backbone import TimmBackbone
from ssd_zoo.models.vgg import VGG16Backbone
from ssd_zoo.ops.default_boxes import DefaultBoxGenerator, DefaultBoxSpec
from ssd_zoo.deploy.quantize import quantize  # the function; its helpers: from ssd_zoo.deploy.quantize import ...
from ssd_zoo.registry import build, list_models, register_model
from ssd_zoo.transform import SSDTransform
from ssd_zoo.registry import load
from ssd_zoo.weights import get_weights, list_weights

__all__ = [
    "SSD", "SSDHead", "SSDTransform", "VGG16Backbone", "DefaultBoxGenerator", "DefaultBoxSpec",
    "build", "list_models", "register_model", "SSDLiteHead", "TimmBackbone", "get_weights", "list_weights", "load",
    "quantize",
]
__version__ = "0.1.0"
