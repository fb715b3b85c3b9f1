"""Fine-tuning: ssd_zoo.finetune.freezing, the recipe's init_weights / freeze / head_lr_mult (with exact resume), and the
shapes generator's other classes (--classes) that docs/finetuning.md's experiment fine-tunes on."""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest
import torch
from test_recipes import tiny_args, weights

import ssd_zoo
from ssd_zoo.data import VOCDataset
from ssd_zoo.data.shapes import MORE_SHAPES, generate_shapes_voc, main as shapes_main
from ssd_zoo.finetune.freezing import freeze

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recipes import train_voc  # noqa: E402

NEW_CLASSES = ("circle", "star", "ring")


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def tiny_model() -> ssd_zoo.SSD:
    return ssd_zoo.build("ssd", backbone="resnet18", input_size=64, num_classes=3, extra_channels=[16, 16, 16],
                         timm_kwargs={"channels": [8, 8, 16, 16], "stem_width": 8})


def train_step(model: ssd_zoo.SSD) -> None:
    targets = [{"boxes": torch.tensor([[4.0, 6.0, 40.0, 30.0]]), "labels": torch.tensor([1])}] * 2
    sum(model.train()([torch.rand(3, 64, 64), torch.rand(3, 64, 64)], targets).values()).backward()


@pytest.mark.parametrize("part, frozen_prefixes, trained_prefixes", [
    ("backbone", ["backbone.body."], ["backbone.extras.", "head."]),
    ("backbone+extras", ["backbone.body.", "backbone.extras."], ["head."]),
])
def test_frozen_parts_get_no_gradient_and_keep_their_statistics(part: str, frozen_prefixes: list[str],
                                                                 trained_prefixes: list[str]) -> None:
    torch.manual_seed(0)
    model = tiny_model()
    names = freeze(model, part)
    assert names and all(n.startswith(tuple(frozen_prefixes)) for n in names)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train_step(model)
    norms = {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.BatchNorm2d)}
    for name, parameter in model.named_parameters():
        frozen = name.startswith(tuple(frozen_prefixes))
        assert parameter.requires_grad != frozen and (parameter.grad is None) == frozen, name
    for name, norm in norms.items():
        frozen = f"{name}.".startswith(tuple(frozen_prefixes))
        assert norm.training != frozen, name  # model.train() leaves the frozen ones in eval mode
        moved = not torch.equal(before[f"{name}.running_mean"], norm.running_mean)
        assert moved != frozen, name
    assert any(f"{n}.".startswith(tuple(trained_prefixes)) for n in norms) or part == "backbone+extras"
    plain = tiny_model()
    plain.load_state_dict(model.state_dict())  # frozen modules keep their state-dict keys
    assert freeze(tiny_model(), "none") == []
    expected = r"freeze: expected one of \('none', 'backbone', 'backbone\+extras'\), found 'head'"
    with pytest.raises(ValueError, match=expected):
        freeze(model, "head")


def test_shapes_classes_option(tmp_path: Path) -> None:
    root = generate_shapes_voc(tmp_path / "new", num_train=8, num_test=0, seed=1, classes=NEW_CLASSES)
    dataset = VOCDataset(root, "2007-trainval")
    assert dataset.class_names == NEW_CLASSES
    labels = torch.cat([dataset[i][1]["labels"] for i in range(len(dataset))])
    assert {2, 3} <= set(labels.tolist()) <= {1, 2, 3}
    shapes_main([str(tmp_path / "cli"), "--train", "8", "--test", "0", "--seed", "1",
                 "--classes", ",".join(NEW_CLASSES)])
    digest = [hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((tmp_path / "cli").rglob("*.*"))]
    assert digest == [hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*.*"))]
    generate_shapes_voc(tmp_path / "more", num_train=4, num_test=0, seed=2, classes=MORE_SHAPES)  # all new ones draw
    with pytest.raises(ValueError, match="classes: expected distinct names from"):
        generate_shapes_voc(tmp_path / "bad", 1, 0, classes=("circle", "blob"))
    with pytest.raises(ValueError, match="--classes: expected distinct names"):  # one line from the command line
        shapes_main([str(tmp_path / "bad"), "--classes", "circle,circle"])


def test_init_weights_freeze_and_head_lr_mult_resume_exactly(tmp_path: Path) -> None:
    """Fine-tune a tiny 6-class run on 3 other classes (circle carried), backbone frozen, heads at 10x lr:
    a run cut at 2 steps and resumed to 4 ends with the same weights as the run of 4."""
    source_root = generate_shapes_voc(tmp_path / "six", num_train=6, num_test=3, seed=0)
    train_voc.train(tiny_args(source_root, tmp_path / "source", "--max-iters", "2"))
    source = weights(tmp_path / "source/last.pth")
    new_root = generate_shapes_voc(tmp_path / "three", num_train=6, num_test=3, seed=1, classes=NEW_CLASSES)
    tune = ["--set", f"init_weights={tmp_path / 'source/last.pth'}", "--set", "freeze=backbone",
            "--set", "head_lr_mult=10"]
    with pytest.warns(ssd_zoo.finetune.surgery.HeadSurgeryWarning, match=r"\['star', 'ring'\] were initialised afresh"):
        whole = train_voc.train(tiny_args(new_root, tmp_path / "whole", *tune, "--max-iters", "4"))
    train_voc.train(tiny_args(new_root, tmp_path / "cut", *tune, "--max-iters", "2"))
    resumed = train_voc.train(["--resume", str(tmp_path / "cut/last.pth"), "--max-iters", "4"])
    assert whole.iteration == resumed.iteration == 4
    a, b = weights(tmp_path / "whole/last.pth"), weights(tmp_path / "cut/last.pth")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=lambda m, key=key: f"{key}: {m}")
    for key in source:  # the frozen body, its BatchNorm statistics included, is the source's
        if key.startswith("backbone.body."):
            assert torch.equal(a[key], source[key]), key
    assert not torch.equal(a["backbone.extras.0.reduce.conv.weight"], source["backbone.extras.0.reduce.conv.weight"])
    assert whole.model.class_names == ["__background__", *NEW_CLASSES]
    state = torch.load(tmp_path / "whole/last.pth", weights_only=True)
    lrs = {round(g["lr_mult"]): g["lr"] for g in state["optimizer"]["param_groups"]}
    assert lrs[10] == pytest.approx(10 * lrs[1])
    loaded = ssd_zoo.build("ssd", backbone="resnet18", weights=tmp_path / "whole/best.pth",
                           extra_channels=[16, 16, 16], timm_kwargs={"channels": [8, 8, 16, 16], "stem_width": 8})
    assert loaded.class_names == ["__background__", *NEW_CLASSES]
