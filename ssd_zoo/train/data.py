"""Datasets and loaders for training: VOC-format (or COCO-format) data, seeded augmentation, resumable order.

Exact resume needs the same images in the same order with the same augmentation, whatever the number of
loader workers and wherever the run was cut. So the order is a function of ``(seed, epoch)`` (a
``DistributedSampler``, also with one process) and each sample's augmentation draws from a generator seeded
with ``(seed, epoch, index)``; resuming at iteration ``i`` starts the sampler ``i`` batches into its epoch.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ssd_zoo.data import CocoDataset, PadToSquare, SSDAugmentation, VOCDataset, collate, open_dataset

from ssd_zoo.train.config import TrainConfig
from ssd_zoo.train.model import PAD_FILL


def make_dataset(cfg: TrainConfig, train: bool, transforms: object = None) -> Dataset:
    """The training (``train=True``) or test dataset of ``cfg``; it has ``class_names`` (no background).

    From ``cfg.data`` (any format, :func:`ssd_zoo.data.open_dataset`), else ``coco_train``/``coco_test``, else the
    VOCdevkit ``data_root``; ``train_splits`` / ``test_split`` name the splits.

    With ``cfg.pad_to_square`` every training image is first padded to a square (see :class:`PadToSquare`),
    before augmentation (a flip then moves the padding too, as the demo has always trained); test images are
    not: the model letterboxes them itself, with the same colour (:func:`ssd_zoo.train.model.resize_kwargs`), which
    gives the same pixels as padding here. A square image is left as it is by the model's letterbox.
    """
    if cfg.pad_to_square and train:
        pad = PadToSquare(PAD_FILL)
        transforms = pad if transforms is None else (lambda image, target: transforms(*pad(image, target)))
    splits = cfg.train_splits if train else cfg.test_split
    if cfg.data is not None:  # any format, told apart by what is there; it names its own classes
        if cfg.class_names is not None:
            raise ValueError(f"class_names: expected null with data={cfg.data!r} (the dataset names its classes), "
                             f"found {cfg.class_names}")
        return open_dataset(cfg.data, splits, transforms=transforms, keep_difficult=cfg.keep_difficult or not train)
    coco = cfg.coco_train if train else cfg.coco_test
    if coco is not None:
        if len(coco) != 2:
            raise ValueError(f"coco_{'train' if train else 'test'}: expected [image_dir, ann_file], found {coco!r}")
        return CocoDataset(coco[0], coco[1], transforms=transforms)
    return VOCDataset(cfg.data_root, splits, keep_difficult=cfg.keep_difficult or not train,
                      transforms=transforms, class_names=cfg.class_names)


def training_source(cfg: TrainConfig) -> str:
    """Where the training boxes are, for :func:`ssd_zoo.finetune.load_boxes` (with ``cfg.train_splits``): the
    dataset ``data``, else the COCO JSON of ``coco_train``, else the VOCdevkit folder ``data_root``."""
    return cfg.data or (cfg.coco_train[1] if cfg.coco_train else cfg.data_root)


class SeededAugmentation(Dataset):
    """``dataset`` with ``augment`` applied under a generator seeded by ``(seed, epoch, index)``.

    The augmentation uses torch's global generator; it runs inside ``fork_rng`` so that the caller's
    generator is left untouched (with ``num_workers=0`` the loader runs in the training process).
    """

    def __init__(self, dataset: Dataset, augment: SSDAugmentation, seed: int) -> None:
        self.dataset, self.augment, self.seed, self.epoch = dataset, augment, seed, 0
        self.class_names: Sequence[str] = dataset.class_names

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict]:
        image, target = self.dataset[index]
        with torch.random.fork_rng(devices=[]):
            # The CPU generator alone: torch.manual_seed also seeds every accelerator's generators, which costs
            # ~1 ms an image here (it records a stack trace for each lazily initialised device).
            torch.default_generator.manual_seed((self.seed * 1_000_003 + self.epoch) * 10_000_019 + index)
            return self.augment(image, target)


class ResumableSampler(DistributedSampler):
    """A ``DistributedSampler`` (shuffled by ``(seed, epoch)``) that can start ``start`` samples into an epoch."""

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, seed: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=True)
        self.start = 0

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        return iter(indices[self.start:])

    def __len__(self) -> int:
        return self.num_samples - self.start


def train_loader(cfg: TrainConfig, dataset: Dataset, mean: Sequence[float], rank: int, world_size: int) -> DataLoader:
    """Batches of ``cfg.batch_size`` per process of the training ``dataset`` (:func:`make_dataset`), augmented;
    ``loader.dataset`` is a :class:`SeededAugmentation`.

    ``mean``: the model's normalisation mean (RGB, 0..1), the zoom-out canvas colour.
    """
    augment = SSDAugmentation(fill=tuple(float(m) for m in mean), **cfg.augment)
    dataset = SeededAugmentation(dataset, augment, cfg.seed)
    if len(dataset) < cfg.batch_size * world_size:
        raise ValueError(f"training set: {len(dataset)} images, fewer than one batch of {cfg.batch_size} x {world_size} processes")
    sampler = ResumableSampler(dataset, world_size, rank, cfg.seed)
    return DataLoader(dataset, batch_size=cfg.batch_size, sampler=sampler, collate_fn=collate, drop_last=True,
                      num_workers=cfg.num_workers, persistent_workers=False, pin_memory=torch.cuda.is_available())


def set_position(loader: DataLoader, iteration: int) -> int:
    """Point ``loader`` at global ``iteration``: sets the epoch (order and augmentation) and the start
    within it. Returns the batches per full epoch."""
    sampler: ResumableSampler = loader.sampler
    per_epoch = sampler.num_samples // loader.batch_size
    epoch, offset = divmod(iteration, per_epoch)
    sampler.set_epoch(epoch)
    loader.dataset.epoch = epoch
    sampler.start = offset * loader.batch_size
    return per_epoch


def test_loader(cfg: TrainConfig) -> DataLoader:
    """The test set, unaugmented, in order, ``cfg.eval_batch_size`` images a batch."""
    return DataLoader(make_dataset(cfg, train=False), batch_size=cfg.eval_batch_size, shuffle=False,
                      collate_fn=collate, num_workers=min(cfg.num_workers, 2))
