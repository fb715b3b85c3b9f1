"""Published SSDs from other projects: one module per publisher, imported here so that each registers itself.

A publisher module holds, as data where it can: its state-dict layout (a key table and tensor permutations,
registered with :func:`ssd_zoo.weights.convert.register_layout`, whose ``model`` names the registered model a file
fits), its registered model builders (``@register_model``, built from torchvision/timm modules where the
architecture is exactly the publisher's), its default boxes (a :class:`~ssd_zoo.ops.default_boxes.DefaultBoxSpec`)
and its ``WeightsEnum`` entries (:func:`ssd_zoo.weights.published.register_weights`). Adding a publisher is adding
one module and one import line below; the loader (:func:`ssd_zoo.registry.load`) never changes.
"""

from ssd_zoo.weights.publishers import tv  # noqa: F401  torchvision's SSDLite320-MobileNetV3-Large
from ssd_zoo.weights.publishers import lufficc  # noqa: F401  lufficc/SSD's VGG16 SSD300/SSD512 (VOC, COCO) and its layout
from ssd_zoo.weights.publishers import lufficc_mobile  # noqa: F401  lufficc/SSD's MobileNetV2/V3 SSDLite320, EfficientNet-B3 SSD300 (VOC)
from ssd_zoo.weights.publishers import qfgaohao  # noqa: F401  qfgaohao/pytorch-ssd's vgg16-ssd, mb1-ssd, mb2-ssd-lite (VOC)
from ssd_zoo.weights.publishers import nvidia  # noqa: F401  NVIDIA DeepLearningExamples SSD300 v1.1 (ResNet-50)
from ssd_zoo.weights.publishers import tf_object_detection  # noqa: F401  TF Object Detection API frozen graphs (.pb)
