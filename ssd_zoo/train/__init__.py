"""Training: a config in, a trained and evaluated detector out (what ``recipes/train_voc.py``, ``recipes/eval_voc.py``
and ``ssd-zoo train`` call).

    config.py        TrainConfig (flat, strict keys, commented defaults), load_config, --set overrides, batch scaling
    model.py         the config-to-model rule: build_model (ssd_zoo.build with the config's keywords), model_to_evaluate
    data.py          datasets and loaders from a config: seeded augmentation, an order that resumes exactly
    optim.py         the optimiser's parameter groups and the learning-rate schedule
    state.py         the checkpoint (last.pth / best.pth): what it keeps, Run.save / restore, RNG states
    engine.py        train_step, train_one_epoch, the evaluations, train(cfg)
    evaluation.py    VOC mAP over a loader, the AP table, metrics.json, results files, pictures
    distributed.py   torchrun processes; graceful.py: SIGTERM/SIGINT stop after the step; records.py: log.jsonl
    from_data.py     the config that ``ssd-zoo train DATA`` makes from a dataset, weights and flags

    >>> from ssd_zoo.train import load_config, train
    >>> result = train(load_config("recipes/configs/shapes_quick.yaml", {"device": "cpu", "max_iters": 100}))
"""
from ssd_zoo.train.config import TrainConfig, load_config
from ssd_zoo.train.engine import TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "load_config", "train"]
