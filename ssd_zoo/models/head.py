"""SSD heads: per feature level, one conv predicting class scores and one predicting box offsets.

For a level with ``k`` default boxes per location and ``C`` classes the classification conv has ``k * C``
output channels and the regression conv ``k * 4``; both outputs are flattened to ``[B, H*W*k, C]`` (row,
column, box) and concatenated over levels, the order in which the default boxes are generated.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


def flatten_level(x: Tensor, per_box: int) -> Tensor:
    """``[B, k*per_box, H, W]`` -> ``[B, H*W*k, per_box]``."""
    batch, _, height, width = x.shape
    x = x.view(batch, -1, per_box, height, width)  # (B, k, per_box, H, W)
    return x.permute(0, 3, 4, 1, 2).reshape(batch, -1, per_box)  # (B, H*W*k, per_box)


class SSDHead(nn.Module):
    """3x3 conv predictors (the paper's "convolutional predictors", Xavier init, zero bias).

    Args:
        in_channels: channels of each feature map.
        boxes_per_location: default boxes per location on each map.
        num_classes: classes including background.
    """

    def __init__(self, in_channels: list[int], boxes_per_location: list[int], num_classes: int) -> None:
        super().__init__()
        if len(in_channels) != len(boxes_per_location):
            raise ValueError(
                f"{type(self).__name__}: {len(in_channels)} feature maps but default boxes for "
                f"{len(boxes_per_location)} levels"
            )
        self.num_classes = num_classes
        pairs = list(zip(in_channels, boxes_per_location))
        self.classification = nn.ModuleList(self.predictor(c, k * num_classes) for c, k in pairs)
        self.regression = nn.ModuleList(self.predictor(c, k * 4) for c, k in pairs)
        self.reset_parameters()

    def predictor(self, in_channels: int, out_channels: int) -> nn.Module:
        """One level's predictor: a 3x3 conv (subclasses such as SSDLite's head swap in their own)."""
        return nn.Conv2d(in_channels, out_channels, 3, padding=1)

    def reset_parameters(self) -> None:
        """Xavier-uniform weights and zero biases, as Caffe SSD and torchvision."""
        for conv in [*self.classification, *self.regression]:
            nn.init.xavier_uniform_(conv.weight)
            nn.init.zeros_(conv.bias)

    def forward(self, features: list[Tensor]) -> tuple[Tensor, Tensor]:
        """Returns ``cls_logits`` ``[B, A, C]`` and ``box_regression`` ``[B, A, 4]``."""
        cls_logits = [flatten_level(block(f), self.num_classes) for block, f in zip(self.classification, features)]
        box_regression = [flatten_level(block(f), 4) for block, f in zip(self.regression, features)]
        return torch.cat(cls_logits, dim=1), torch.cat(box_regression, dim=1)
