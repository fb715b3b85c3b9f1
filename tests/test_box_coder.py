"""Box coding: the paper's formula on a known case, and encode/decode as inverses."""
from __future__ import annotations

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ssd_zoo.ops.box_coder import decode, encode


def test_known_offsets() -> None:
    default = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    box = torch.tensor([[1.0, 2.0, 21.0, 12.0]])  # centre (11, 7), size 20 x 10
    expected = torch.tensor([[(11 - 5) / (0.1 * 10), (7 - 5) / (0.1 * 10), math.log(2) / 0.2, 0.0]])
    torch.testing.assert_close(encode(box, default), expected)


# Sizes within a factor 60 of each other: decode caps the log-size ratio at log(1000 / 16) as torchvision does.
boxes = st.tuples(
    st.floats(0, 500), st.floats(0, 500), st.floats(5, 300), st.floats(5, 300)
).map(lambda t: [t[0], t[1], t[0] + t[2], t[1] + t[3]])


@settings(max_examples=50, deadline=None, derandomize=True)
@given(st.lists(st.tuples(boxes, boxes), min_size=1, max_size=8))
def test_round_trip(pairs: list) -> None:
    gt = torch.tensor([p[0] for p in pairs], dtype=torch.float64)
    default = torch.tensor([p[1] for p in pairs], dtype=torch.float64)
    torch.testing.assert_close(decode(encode(gt, default), default), gt, atol=1e-6, rtol=1e-9)


def test_batched_broadcast() -> None:
    default = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 25.0, 15.0]])
    gt = torch.rand(3, 2, 2) * 10
    gt = torch.cat([gt, gt + 1 + torch.rand(3, 2, 2) * 20], -1)
    assert encode(gt, default).shape == (3, 2, 4)
    torch.testing.assert_close(decode(encode(gt, default), default), gt, atol=1e-4, rtol=1e-5)
