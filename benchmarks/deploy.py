"""CPU deployment, end to end: ssd_zoo.quantize's choice, int8 PT2E, ONNX Runtime (int8), OpenVINO (fp32 forced, int8)
against torchvision fp32.

    python -m benchmarks.deploy [--repeat 3] [--warmup 1] [--quick] [--json rows.jsonl]

ssd300_vgg16 with torchvision's random weights converted to ssd_zoo (:func:`benchmarks.reference.paired_models`),
the 500x375 sample photos (repeated to fill the batch), ``images -> detections`` for every candidate: the
transform, the network and the post-processing. Side by side in one process, interleaved: torchvision fp32
eager, ssd_zoo fp32 and bf16 autocast (eager), ``ssd_zoo.quantize(model, photos)`` as a user gets it (the backend
it chooses for this CPU, named in the row), ssd_zoo int8 PT2E (``backend="pt2e"``: lowered to oneDNN's int8
kernels), and the files ``ssd_zoo.deploy.export.export`` writes, run by ``ssd_zoo.deploy.runtime.load_runner``: ONNX int8
(QDQ) in onnxruntime, OpenVINO IR with f32 forced (``INFERENCE_PRECISION_HINT``) and int8 (NNCF). The int8
models are calibrated on the sample photos. Rows: latency at batch 1, images/s at batch 8, the precision each
backend ran, the file size, the ratio against torchvision fp32, and the share of torchvision's top 20
detections found (random weights: agreement, not accuracy; the demo model's mAP measures accuracy, see docs/benchmarks.md).
``--quick``: batch 1 only, one round.
"""
from __future__ import annotations

import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch

from benchmarks.harness import emit, interleaved, ms, parse_args, ratio, reproduced, voc_sized_images
from benchmarks.reference import paired_models
from ssd_zoo.deploy.cpu import cpu_kind

TARGETS = {"OpenVINO fp32 (f32 forced)": ">= 1.5x"}  # and ">= 5x" for the fastest int8 path
# ssd_zoo.quantize's own choice, by CPU kind (issue 25's goals); no goal on a CPU without VNNI.
AUTO_TARGETS = {"AMX": ">= 12x (ssd_zoo.quantize's choice, AMX CPU)",
                "VNNI": ">= 6x (ssd_zoo.quantize's choice, VNNI CPU)"}


def _torch_runner(model: Any, images: list[torch.Tensor], bf16: bool = False) -> Callable[[], Any]:
    def run() -> Any:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return model(images)

    return run


def _image_by_image(model: torch.nn.Module, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
    with torch.inference_mode():
        return [model([image])[0] for image in images]


def _size(path: Path) -> str:
    files = [path, path.with_suffix(".bin")] if path.suffix == ".xml" else [path]
    return f"{sum(f.stat().st_size for f in files if f.exists()) / 2**20:.0f} MiB"


def candidates(folder: Path, calibration: list[torch.Tensor]) -> tuple[dict[str, Any], dict[str, str], dict[str, str]]:
    """``(models, precision ran, file size)`` by candidate name; every model takes a list of images."""
    from ssd_zoo.deploy.export import export
    from ssd_zoo.deploy.quantize import quantize
    from ssd_zoo.deploy.runtime import load_runner

    tv, ours = paired_models()
    torch.save(ours.state_dict(), folder / "ssd300.pth")
    auto = quantize(ours, calibration)
    print(f"ssd_zoo.quantize chose {auto.quantized_with['backend']}: {auto.quantized_with['reason']}", flush=True)
    auto_name = f"ssd_zoo.quantize (auto: {auto.quantized_with['backend']})"
    models: dict[str, Any] = {"torchvision fp32": tv, "ssd_zoo fp32": ours, "ssd_zoo bf16": ours, auto_name: auto,
                              "ssd_zoo int8 PT2E": quantize(ours, calibration, backend="pt2e")}
    ran = {"torchvision fp32": "fp32", "ssd_zoo fp32": "fp32", "ssd_zoo bf16": "bf16 autocast",
           auto_name: auto.runner.precision if hasattr(auto, "runner") else "int8 (oneDNN)",
           "ssd_zoo int8 PT2E": "int8 (oneDNN)"}
    # The same PT2E model called image by image: whether one pass of B beats B passes of one on this CPU (a
    # rough check on a busy 2-core EPYC, one thread, found VGG16's int8 backbone ~20% slower per image at batch 2).
    models["ssd_zoo int8 PT2E, image by image"] = partial(_image_by_image, models["ssd_zoo int8 PT2E"])
    ran["ssd_zoo int8 PT2E, image by image"] = "int8 (oneDNN), batch-1 graph"
    sizes = {"ssd_zoo int8 PT2E, image by image": "- (in memory)",
             "torchvision fp32": _size(folder / "ssd300.pth"), "ssd_zoo fp32": _size(folder / "ssd300.pth"),
             "ssd_zoo bf16": _size(folder / "ssd300.pth"), auto_name: "- (in memory)",
             "ssd_zoo int8 PT2E": "- (in memory)"}
    files = {"ONNX Runtime int8": ("ssd300_int8.onnx", "onnx", True, None),
             "OpenVINO fp32 (f32 forced)": ("ssd300.xml", "openvino", False, "f32"),
             "OpenVINO int8": ("ssd300_int8.xml", "openvino", True, None)}
    for name, (file, fmt, int8, precision) in files.items():
        path = export(ours, folder / file, format=fmt, int8=int8, calibration_images=calibration)
        models[name] = load_runner(path, precision=precision)
        ran[name], sizes[name] = models[name].precision, _size(path)
    return models, ran, sizes


def rows_for(args: Any, models: dict[str, Any], ran: dict[str, str], sizes: dict[str, str], batch: int) -> list[dict]:
    images = voc_sized_images(batch)
    runs = {name: _torch_runner(model, images, bf16=name == "ssd_zoo bf16") if isinstance(model, torch.nn.Module)
            else (lambda model=model: model(images)) for name, model in models.items()}
    outputs = {name: run() for name, run in runs.items()}  # also the compile (per batch size), before timing
    times = interleaved(runs, repeat=args.repeat, warmup=args.warmup)
    base = times["torchvision fp32"]
    targets = {**TARGETS, min((n for n in times if "int8" in n), key=times.get): ">= 5x (best int8)"}
    if cpu_kind() in AUTO_TARGETS:
        targets.update({name: AUTO_TARGETS[cpu_kind()] for name in times if name.startswith("ssd_zoo.quantize")})
    rows = []
    for name, seconds in times.items():
        speed = ms(seconds) if batch == 1 else f"{batch / seconds:.1f} images/s"
        rows.append({"benchmark": "CPU deployment, end to end", "case": f"{name}, batch {batch} ({ran[name]}, "
                     f"file {sizes[name]})", "ssd_zoo": speed, "alternative": f"torchvision fp32: "
                     f"{ms(base) if batch == 1 else f'{batch / base:.1f} images/s'}", "speed-up": ratio(base, seconds),
                     "target": targets.get(name, "") if batch == 8 else "",
                     "outputs": reproduced(outputs["torchvision fp32"], outputs[name], "torchvision fp32")})
    return rows


def main() -> None:
    args = parse_args(__doc__.split("\n")[0], repeat=3, warmup=1)
    with tempfile.TemporaryDirectory() as folder:
        models, ran, sizes = candidates(Path(folder), voc_sized_images(8))
        for batch in [1] if args.quick else [1, 8]:
            emit(rows_for(args, models, ran, sizes, batch), args.json)


if __name__ == "__main__":
    main()
