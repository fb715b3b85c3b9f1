"""What TensorFlow itself computes with a TF Object Detection API frozen graph: the reference that
tests/test_tf_object_detection.py compares ssd_zoo's import of the same graph with.

TensorFlow is needed by this script only (never by ``make test``). Run it in a virtual environment of its own:

    python3 -m venv /tmp/tfenv && /tmp/tfenv/bin/pip install tensorflow-cpu pillow
    /tmp/tfenv/bin/python tools/tf_reference.py tests/data/external/pedestrian_ssdlite/frozen_inference_graph.pb \
        tests/data/tf_pedestrian_ssdlite.npz

For each photo in ``assets/`` (decoded with PIL, as the tests decode them, fed as uint8 ``[1, H, W, 3]`` to the
graph's ``image_tensor``) it writes, under ``<photo stem>/``:
``boxes`` float32 ``[D, 4]`` (ymin, xmin, ymax, xmax, 0..1 of the image), ``scores`` ``[D]``, ``classes`` ``[D]``
(the graph's label ids) for the ``D = num_detections`` detections; ``box_encodings`` float32 ``[A, 4]`` (the box
predictors' raw (ty, tx, th, tw), the graph's ``Squeeze``/``concat`` output); ``class_scores`` float32
``[A, C]`` (after the graph's score converter, background first: ``Postprocessor/convert_scores``); and once,
``anchors`` float32 ``[A, 4]`` (ymin, xmin, ymax, xmax, 0..1: ``Concatenate/concat``) and ``tensorflow``, the
version that computed them.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import tensorflow as tf
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ("voc2007_000004.jpg", "voc2007_000017.jpg", "voc2007_000023.jpg")
# Tensor names every TF1 OD API export has (object_detection/exporter.py and ssd_meta_arch.py).
OUTPUTS = {
    "boxes": "detection_boxes:0", "scores": "detection_scores:0", "classes": "detection_classes:0",
    "num": "num_detections:0", "box_encodings": "concat:0", "class_scores": "Postprocessor/convert_scores:0",
    "anchors": "Concatenate/concat:0",
}


def run(graph_path: Path, out: Path) -> None:
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(graph_path.read_bytes())
    graph = tf.Graph()
    with graph.as_default():
        tf.import_graph_def(graph_def, name="")
    arrays: dict[str, np.ndarray] = {"tensorflow": np.array(tf.__version__)}
    with tf.compat.v1.Session(graph=graph) as session:
        for photo in PHOTOS:
            image = np.asarray(Image.open(ROOT / "assets" / photo).convert("RGB"), dtype=np.uint8)
            values = session.run(OUTPUTS, feed_dict={"image_tensor:0": image[None]})
            count = int(values["num"][0])
            stem = Path(photo).stem
            arrays[f"{stem}/boxes"] = values["boxes"][0, :count].astype(np.float32)
            arrays[f"{stem}/scores"] = values["scores"][0, :count].astype(np.float32)
            arrays[f"{stem}/classes"] = values["classes"][0, :count].astype(np.int64)
            arrays[f"{stem}/box_encodings"] = values["box_encodings"].reshape(-1, 4).astype(np.float32)
            arrays[f"{stem}/class_scores"] = values["class_scores"][0].astype(np.float32)
            arrays["anchors"] = values["anchors"].astype(np.float32)
            print(f"{photo}: {count} detections, best {values['scores'][0, :3]}")
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **arrays)
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KB), TensorFlow {tf.__version__}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("graph", type=Path, help="frozen_inference_graph.pb")
    parser.add_argument("out", type=Path, help="the .npz to write")
    args = parser.parse_args()
    run(args.graph, args.out)


if __name__ == "__main__":
    main()
