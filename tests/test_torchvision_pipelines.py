"""ssd_zoo in torchvision's pipelines, with torchvision's real pieces: its VOC/COCO datasets wrapped for
transforms.v2 and its detection reference's SSD preset feeding an ssd_zoo model; v2 transforms on ssd_zoo's
datasets, box by box; the reference's training loop over ssd_zoo's datasets; torchmetrics' mAP on ssd_zoo's
outputs; torchvision's collate in ssd_zoo's recipes.

The data: four small images with one solid rectangle per object (a colour per class, grey background), written
as a VOCdevkit folder (JPEG + XML, which torchvision's VOCDetection reads) and as a COCO folder (PNG + JSON). A
box is where it should be when its inside has its class's colour.
"""
from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

import pytest
import torch
from helpers import tiny_model
from PIL import Image, ImageDraw
from torch.utils.data import DataLoader
from torchvision import tv_tensors
from torchvision.datasets import CocoDetection, VOCDetection, wrap_dataset_for_transforms_v2
from torchvision.transforms import v2

import ssd_zoo
from ssd_zoo.data import VOC_CLASSES, CocoDataset, SSDAugmentation, VOCDataset, collate, per_box_entries
from ssd_zoo.metrics import COCOEvaluator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the recipes package

COLOURS = {"dog": (220, 30, 30), "cat": (30, 200, 30), "person": (30, 30, 220)}
COCO_IDS = {"person": 1, "cat": 17, "dog": 18}  # COCO's own category ids (with gaps)
# (file id, (width, height), objects (class, VOC's 1-based inclusive xmin, ymin, xmax, ymax)); persons are difficult.
IMAGES = [
    ("000001", (64, 48), [("dog", (5, 7, 28, 30)), ("cat", (37, 11, 60, 40)), ("person", (9, 35, 20, 46))]),
    ("000002", (56, 64), [("cat", (7, 5, 30, 26)), ("dog", (11, 35, 50, 60))]),
    ("000003", (72, 52), [("person", (41, 5, 66, 48)), ("dog", (5, 9, 30, 30))]),
    ("000004", (60, 60), [("dog", (31, 31, 56, 56)), ("cat", (5, 5, 22, 40)), ("person", (31, 5, 50, 22))]),
]
pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


tuple_collate = lambda batch: tuple(zip(*batch))  # noqa: E731  torchvision's references/detection/utils.collate_fn


def draw(size: tuple[int, int], objects: list) -> Image.Image:
    image = Image.new("RGB", size, (128, 128, 128))
    for name, (x1, y1, x2, y2) in objects:
        ImageDraw.Draw(image).rectangle([x1 - 1, y1 - 1, x2 - 1, y2 - 1], fill=COLOURS[name])
    return image


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``root/VOCdevkit/VOC2007``: torchvision's VOCDetection takes ``root``, ssd_zoo's VOCDataset the VOCdevkit."""
    root = tmp_path_factory.mktemp("voc")
    year = root / "VOCdevkit" / "VOC2007"
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (year / sub).mkdir(parents=True)
    for file_id, size, objects in IMAGES:
        draw(size, objects).save(year / "JPEGImages" / f"{file_id}.jpg", quality=95)
        body = "".join(
            f"<object><name>{name}</name><difficult>{int(name == 'person')}</difficult><bndbox><xmin>{x1}</xmin>"
            f"<ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
            for name, (x1, y1, x2, y2) in objects)
        (year / "Annotations" / f"{file_id}.xml").write_text(
            f"<annotation><filename>{file_id}.jpg</filename><size><width>{size[0]}</width><height>{size[1]}"
            f"</height><depth>3</depth></size>{body}</annotation>")
    (year / "ImageSets" / "Main" / "trainval.txt").write_text("".join(f"{i}\n" for i, _, _ in IMAGES))
    return root


@pytest.fixture(scope="module")
def coco_root(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("coco")
    images, annotations = [], []
    for k, (file_id, size, objects) in enumerate(IMAGES):
        draw(size, objects).save(root / f"{file_id}.png")
        images.append({"id": 100 + k, "file_name": f"{file_id}.png", "width": size[0], "height": size[1]})
        for name, (x1, y1, x2, y2) in objects:
            w, h = x2 - x1 + 1, y2 - y1 + 1
            annotations.append({"id": len(annotations) + 1, "image_id": 100 + k, "category_id": COCO_IDS[name],
                                "bbox": [x1 - 1, y1 - 1, w, h], "area": w * h, "iscrowd": 0})
    categories = [{"id": i, "name": name} for name, i in COCO_IDS.items()]
    ann_file = root / "instances.json"
    ann_file.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return root, ann_file


def ssd_zoo_dataset(kind: str, voc_root: Path, coco_root: tuple[Path, Path], transforms: object = None):
    if kind == "voc":
        return VOCDataset(voc_root / "VOCdevkit", "2007-trainval", transforms=transforms)
    return CocoDataset(*coco_root, transforms=transforms)


def tiny_ssd(num_classes: int) -> ssd_zoo.SSD:
    """A 64 px SSD on an 8-channel ResNet-18 (timm, no pretrained weights)."""
    return tiny_model(num_classes)


def check_boxes_on_their_objects(image: torch.Tensor, target: dict, class_names: tuple[str, ...]) -> int:
    """Each box's inside has its class's colour and ``difficult`` is set exactly on persons (VOC; COCO has no
    difficult: all False); returns the number of boxes checked."""
    persons_difficult = class_names == VOC_CLASSES
    assert isinstance(target["boxes"], tv_tensors.BoundingBoxes)
    assert target["boxes"].canvas_size == tuple(image.shape[-2:])
    checked = 0
    for box, label, difficult in zip(target["boxes"].tolist(), target["labels"].tolist(), target["difficult"].tolist()):
        name = class_names[label - 1]
        assert difficult == (persons_difficult and name == "person")
        x1, y1, x2, y2 = (round(v) for v in box)
        inside = image[:, y1 + 2:y2 - 1, x1 + 2:x2 - 1]
        if inside.shape[-1] < 2 or inside.shape[-2] < 2:
            continue  # a sliver the crop left: too thin to tell its colour from JPEG ringing
        colour = inside.float().mean((1, 2)) * 255
        assert torch.allclose(colour, torch.tensor(COLOURS[name], dtype=torch.float32), atol=12), (name, box)
        checked += 1
    return checked


# --- 1. v2 transforms on ssd_zoo's datasets move the boxes with the image ----------------------------------------
def flipped(box: list[float], height: int, width: int) -> list[float]:
    return [width - box[2], box[1], width - box[0], box[3]]


def center_cropped(box: list[float], height: int, width: int) -> list[float]:
    top, left = int(round((height - 40) / 2.0)), int(round((width - 40) / 2.0))
    return [min(max(v - offset, 0), 40) for v, offset in zip(box, (left, top, left, top))]


def resized(box: list[float], height: int, width: int) -> list[float]:
    return [box[0] * 90 / width, box[1] * 30 / height, box[2] * 90 / width, box[3] * 30 / height]


@pytest.mark.parametrize("kind", ["voc", "coco"])
@pytest.mark.parametrize("transform, expected", [
    (v2.RandomHorizontalFlip(p=1.0), flipped),
    (v2.CenterCrop((40, 40)), center_cropped),
    (v2.Resize((30, 90)), resized),
], ids=["flip", "crop", "resize"])
def test_v2_transforms_move_boxes_box_by_box(kind, transform, expected, voc_root, coco_root):
    plain = ssd_zoo_dataset(kind, voc_root, coco_root)
    moved = ssd_zoo_dataset(kind, voc_root, coco_root, transforms=transform)
    checked = 0
    for index in range(len(plain)):
        image, target = plain[index]
        out_image, out = moved[index]
        height, width = image.shape[-2:]
        want = torch.tensor([expected(box, height, width) for box in target["boxes"].tolist()])
        assert torch.allclose(out["boxes"].float(), want, atol=1e-4), (index, out["boxes"], want)
        assert out["labels"].tolist() == target["labels"].tolist() and out["image_id"].item() == index
        keep = (want[:, 2] - want[:, 0] > 0) & (want[:, 3] - want[:, 1] > 0)  # the crop empties some
        kept = {"boxes": tv_tensors.wrap(out["boxes"][keep], like=out["boxes"]), "labels": out["labels"][keep],
                "difficult": out["difficult"][keep]}
        checked += check_boxes_on_their_objects(out_image, kept, plain.class_names)
    assert checked >= 8


@pytest.mark.parametrize("kind", ["voc", "coco"])
def test_a_random_v2_pipeline_keeps_boxes_labels_and_difficult_together(kind, voc_root, coco_root):
    """Zoom-out, IoU crop, flip, resize, then SanitizeBoundingBoxes with ssd_zoo's labels_getter."""
    pipeline = v2.Compose([
        v2.RandomZoomOut(fill={tv_tensors.Image: (0.5, 0.5, 0.5), "others": 0}, side_range=(1.0, 2.0), p=0.7),
        v2.RandomIoUCrop(), v2.RandomHorizontalFlip(), v2.Resize((80, 80)),
        v2.SanitizeBoundingBoxes(labels_getter=per_box_entries),
    ])
    dataset = ssd_zoo_dataset(kind, voc_root, coco_root, transforms=pipeline)
    torch.manual_seed(0)
    checked, dropped = 0, 0
    for _ in range(6):
        for index in range(len(dataset)):
            image, target = dataset[index]
            assert len(target["boxes"]) == len(target["labels"]) == len(target["difficult"])
            dropped += len(IMAGES[index][2]) - len(target["boxes"])
            checked += check_boxes_on_their_objects(image, target, dataset.class_names)
    assert checked > 30 and dropped > 0  # crops did drop boxes, and what stayed stayed aligned


# --- 2. torchvision's datasets and its SSD preset feed an ssd_zoo model --------------------------------------------
class DetectionPresetTrain:
    """torchvision's references/detection/presets.py, ``data_augmentation="ssd"``, ``use_v2=True``, PIL backend."""

    def __init__(self, *, hflip_prob: float = 0.5, mean: tuple[float, ...] = (123.0, 117.0, 104.0)) -> None:
        fill = defaultdict(lambda: mean, {tv_tensors.Mask: 0})
        self.transforms = v2.Compose([
            v2.RandomPhotometricDistort(),
            v2.RandomZoomOut(fill=fill),
            v2.RandomIoUCrop(),
            v2.RandomHorizontalFlip(p=hflip_prob),
            v2.ToImage(),
            v2.ToDtype(torch.float, scale=True),
            v2.ConvertBoundingBoxFormat(tv_tensors.BoundingBoxFormat.XYXY),
            v2.SanitizeBoundingBoxes(),
            v2.ToPureTensor(),
        ])

    def __call__(self, img, target):
        return self.transforms(img, target)


def train_one_epoch(model, optimizer, data_loader, device, strict: bool = True) -> list[float]:
    """torchvision's references/detection/engine.py ``train_one_epoch``, without logging and AMP.

    ``strict``: move targets as the reference long did, ``{k: v.to(device) ...}`` (every value a tensor); else as
    it does now, leaving non-tensor values (e.g. CocoDetection's int ``image_id``) where they are.
    """
    model.train()
    losses_seen = []
    for images, targets in data_loader:
        images = list(image.to(device) for image in images)
        if strict:
            targets = [{k: v.to(device) for k, v in t.items()} for t in targets]
        else:
            targets = [{k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in t.items()} for t in targets]
        loss_dict = model(images, targets)
        losses = sum(loss for loss in loss_dict.values())
        optimizer.zero_grad()
        losses.backward()
        optimizer.step()
        losses_seen.append(losses.item())
    return losses_seen


def check_training(model: torch.nn.Module, loader: DataLoader, strict: bool = True) -> None:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = model.to(device)
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    losses = train_one_epoch(model, optimizer, loader, device, strict) + train_one_epoch(model, optimizer, loader,
                                                                                          device, strict)
    assert len(losses) == 2 * len(loader) and all(torch.isfinite(torch.tensor(losses)))
    assert any(not torch.equal(a, b.detach()) for a, b in zip(before, model.parameters()))


def test_torchvision_voc_with_the_reference_ssd_preset_trains_an_ssd_zoo_model(voc_root):
    dataset = wrap_dataset_for_transforms_v2(
        VOCDetection(str(voc_root), year="2007", image_set="trainval", transforms=DetectionPresetTrain()))
    torch.manual_seed(0)
    _, target = dataset[0]
    assert target["boxes"].dtype == torch.int64  # VOC's XML holds integers: what ssd_zoo used to refuse
    model = tiny_ssd(num_classes=len(VOC_CLASSES) + 1)  # torchvision's VOC labels are 1..20 as ssd_zoo's
    check_training(model, DataLoader(dataset, batch_size=2, shuffle=True, collate_fn=tuple_collate))


def test_torchvision_coco_with_the_reference_ssd_preset_trains_an_ssd_zoo_model(coco_root):
    image_dir, ann_file = coco_root
    dataset = wrap_dataset_for_transforms_v2(CocoDetection(str(image_dir), str(ann_file),
                                                           transforms=DetectionPresetTrain()),
                                             target_keys=["boxes", "labels", "image_id"])  # as the reference's get_coco
    torch.manual_seed(0)
    model = tiny_ssd(num_classes=max(COCO_IDS.values()) + 1)  # raw category ids, as torchvision's 91 for COCO
    check_training(model, DataLoader(dataset, batch_size=2, shuffle=True, collate_fn=tuple_collate), strict=False)


# --- 3. torchvision's training loop over ssd_zoo's datasets ---------------------------------------------------------
@pytest.mark.parametrize("kind", ["voc", "coco"])
@pytest.mark.parametrize("collate_fn", [tuple_collate, collate], ids=["torchvision_collate", "ssd_zoo_collate"])
def test_the_reference_training_loop_over_ssd_zoo_datasets(kind, collate_fn, voc_root, coco_root):
    dataset = ssd_zoo_dataset(kind, voc_root, coco_root, transforms=SSDAugmentation())
    _, target = dataset[0]
    assert all(isinstance(v, torch.Tensor) for v in target.values())
    torch.manual_seed(0)
    model = tiny_ssd(num_classes=len(dataset.class_names) + 1)
    check_training(model, DataLoader(dataset, batch_size=2, shuffle=True, collate_fn=collate_fn), strict=True)


# --- 4. what the model accepts and what it still refuses --------------------------------------------------------------
def test_the_model_takes_integer_boxes_tv_tensors_and_extra_keys(voc_root):
    dataset = VOCDataset(voc_root / "VOCdevkit", "2007-trainval")
    model = tiny_ssd(num_classes=len(VOC_CLASSES) + 1)
    images, targets = collate([dataset[0], dataset[1]])  # tv_tensors, with difficult and image_id
    plain = [{"boxes": t["boxes"].as_subclass(torch.Tensor).round(), "labels": t["labels"]} for t in targets]
    reference = model([im.as_subclass(torch.Tensor) for im in images], plain)
    for dtype in (torch.int64, torch.int32, torch.float64):
        cast = [dict(t, boxes=tv_tensors.wrap(t["boxes"].round().to(dtype), like=t["boxes"])) for t in targets]
        losses = model(images, cast)
        assert all(torch.allclose(losses[k], reference[k]) for k in reference), dtype


@pytest.mark.parametrize("change, message", [
    (lambda t: dict(t, boxes=torch.tensor([[float("nan"), 1, 5, 5]])), r"targets\[1\]\['boxes'\]\[0\].*NaN"),
    (lambda t: dict(t, boxes=torch.tensor([[5, 1, 5, 9]])), r"targets\[1\]\['boxes'\]\[0\].*x2 > x1"),
    (lambda t: dict(t, labels=torch.tensor([len(VOC_CLASSES) + 1])), r"targets\[1\]\['labels'\]\[0\] = 21"),
    (lambda t: dict(t, boxes=torch.ones(1, 4, dtype=torch.bool)), r"targets\[1\]\['boxes'\]: expected a real"),
    (lambda t: dict(t, boxes=tv_tensors.BoundingBoxes([[1, 1, 4, 4]], format="XYWH", canvas_size=(48, 64))),
     r"targets\[1\]\['boxes'\]: expected XYXY boxes, found format XYWH"),
])
def test_the_model_still_refuses_what_is_wrong(change, message):
    model = tiny_ssd(num_classes=len(VOC_CLASSES) + 1)
    good = {"boxes": torch.tensor([[1, 1, 9, 9]]), "labels": torch.tensor([3]), "image_id": torch.tensor(0)}
    bad = change({"boxes": torch.tensor([[2, 2, 8, 8]]), "labels": torch.tensor([4]), "image_id": torch.tensor(1)})
    with pytest.raises(ValueError, match=message):
        model([torch.rand(3, 20, 20), torch.rand(3, 20, 20)], [good, bad])


# --- 5. ssd_zoo's outputs into torchmetrics' MeanAveragePrecision ---------------------------------------------------
def test_torchmetrics_mean_average_precision_on_ssd_zoo_outputs(voc_root):
    from torchmetrics.detection import MeanAveragePrecision

    dataset = VOCDataset(voc_root / "VOCdevkit", "2007-trainval")
    images, targets = collate([dataset[i] for i in range(len(dataset))])
    # Perfect detections score 1 whatever the route: targets (tv_tensors, extra keys) go in as they come.
    perfect = MeanAveragePrecision(iou_type="bbox")
    perfect.update([{"boxes": t["boxes"], "scores": torch.ones(len(t["boxes"])), "labels": t["labels"]}
                    for t in targets], targets)
    assert perfect.compute()["map"].item() == pytest.approx(1.0)
    # An untrained model's detections: torchmetrics' COCO mAP agrees with ssd_zoo's COCOEvaluator.
    model = tiny_ssd(num_classes=len(VOC_CLASSES) + 1).eval()
    model.score_thresh, model.detections_per_img = 0.0, 25
    with torch.no_grad():
        predictions = model(images)
    assert sum(len(p["boxes"]) for p in predictions) > 0
    metric = MeanAveragePrecision(iou_type="bbox")
    metric.update(predictions, targets)
    ours = COCOEvaluator(len(VOC_CLASSES) + 1)
    ours.update(predictions, targets)
    theirs, mine = metric.compute(), ours.compute()
    for name in ("map", "map_50", "map_75"):
        assert theirs[name].item() == pytest.approx(mine[name], abs=1e-6), name


# --- 6. torchvision's collate and datasets in ssd_zoo's recipes -----------------------------------------------------
@pytest.mark.parametrize("collate_fn", [tuple_collate, collate], ids=["torchvision_collate", "ssd_zoo_collate"])
def test_recipe_evaluation_names_images_by_their_file_ids(collate_fn, voc_root, tmp_path):
    from ssd_zoo.train.evaluation import evaluate, write_voc_results

    dataset = VOCDataset(voc_root / "VOCdevkit", "2007-trainval")
    model = tiny_ssd(num_classes=len(VOC_CLASSES) + 1)
    model.score_thresh = 0.0
    loader = DataLoader(dataset, batch_size=3, collate_fn=collate_fn)
    metrics, detections = evaluate(model, loader, VOC_CLASSES, torch.device("cpu"), progress=False)
    assert [name for name, _ in detections] == dataset.ids == [i for i, _, _ in IMAGES]
    assert metrics["num_images"] == 4 and metrics["map_voc07"] is not None
    lines = [line for f in write_voc_results(detections, VOC_CLASSES, tmp_path).iterdir() for line in
             f.read_text().splitlines()]
    assert lines and {line.split()[0] for line in lines} <= set(dataset.ids)


def test_a_torchvision_dataset_in_the_recipes_loader_and_train_step(voc_root):
    from ssd_zoo.train.config import TrainConfig
    from ssd_zoo.train.data import set_position, train_loader
    from ssd_zoo.train.distributed import Dist
    from ssd_zoo.train.engine import train_step
    from ssd_zoo.train.evaluation import evaluate
    from ssd_zoo.train.state import Run
    from ssd_zoo.data import to_device

    to_float = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])
    dataset = wrap_dataset_for_transforms_v2(VOCDetection(str(voc_root), "2007", "trainval", transforms=to_float))
    dataset.class_names = VOC_CLASSES  # what the recipes read from a dataset
    cfg = TrainConfig(batch_size=2, num_workers=0, augment={"zoom_out": 2.0})
    model = tiny_ssd(num_classes=len(VOC_CLASSES) + 1)
    loader = train_loader(cfg, dataset, model.transform.mean.flatten().tolist(), rank=0, world_size=1)
    set_position(loader, 0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    run = Run(model, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: 1.0),
              torch.amp.GradScaler("cuda", enabled=False))
    ctx = Dist(rank=0, world_size=1, device=torch.device("cpu"))
    for images, targets in loader:
        assert targets[0]["boxes"].dtype == torch.int64
        logged, names = train_step(run, model, images, to_device(targets, ctx.device), cfg, ctx)
        assert torch.isfinite(logged).all() and names == ["bbox_regression", "classification"]
    assert run.iteration == 2
    test = DataLoader(dataset, batch_size=2, collate_fn=tuple_collate)
    metrics, detections = evaluate(model, test, VOC_CLASSES, ctx.device, progress=False)
    assert metrics["num_images"] == 4 and [name for name, _ in detections] == ["0", "1", "2", "3"]
