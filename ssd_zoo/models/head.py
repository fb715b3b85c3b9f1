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
                f"SSDHead: {len(in_channels)} feature maps but default boxes for {len(boxes_per_location)} levels"
            )
        self.num_classes = num_classes
        self.classification = nn.ModuleList(
            nn.Conv2d(c, k * num_classes, 3, padding=1) for c, k in zip(in_channels, boxes_per_location)
        )
        self.regression = nn.ModuleList(nn.Conv2d(c, k * 4, 3, padding=1) for c, k in zip(in_channels, boxes_per_location))
        for conv in [*self.classification, *self.regression]:
            nn.init.xavier_uniform_(conv.weight)
            nn.init.zeros_(conv.bias)

    def forward(self, features: list[Tensor]) -> tuple[Tensor, Tensor]:
        """Returns ``cls_logits`` ``[B, A, C]`` and ``box_regression`` ``[B, A, 4]``."""
        cls_logits = [flatten_level(conv(f), self.num_classes) for conv, f in zip(self.classification, features)]
        box_regression = [flatten_level(conv(f), 4) for conv, f in zip(self.regression, features)]
        return torch.cat(cls_logits, dim=1), torch.cat(box_regression, dim=1)
