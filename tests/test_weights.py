"""Weights by name, without network: generated checkpoints served through file:// and a local HTTP server
(hash-prefixed names, torch.hub's convention), the published entries' metadata, local files in every layout,
and the VGG16 backbone initialisation files."""
from __future__ import annotations

import functools
import http.server
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from helpers import save_hashed
from torchvision.models import WeightsEnum

import ssd_zoo
from ssd_zoo.models.record import split_record
from ssd_zoo.weights import convert
from ssd_zoo.models.vgg import VGG16Backbone
from ssd_zoo.ops.default_boxes import preset
from ssd_zoo.finetune.surgery import HeadSurgeryWarning
from ssd_zoo.weights.published import SSD300_VGG16_Weights, VGG16_Backbone_Weights, get_weights, list_weights, ssd_weights
from ssd_zoo.weights.resolve import download_state_dict, fetch_weights, load_vgg16_backbone, load_weights, resolve_weights

META_KEYS = {"model", "input_size", "file_name", "sha256", "layout", "input_order", "num_classes", "categories",
             "anchors", "mean", "std", "dataset", "metrics", "metrics_source", "recipe"}


@pytest.fixture(autouse=True)
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """torch.hub's cache inside the test's folder; the cache is ``<TORCH_HOME>/hub/checkpoints``."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch" / "hub" / "checkpoints"


@pytest.fixture(scope="module")
def model_state(built) -> dict[str, torch.Tensor]:
    """A random ssd300_vgg16 (21 classes) state dict in ssd_zoo's layout."""
    return built("ssd300_vgg16").state_dict()


@pytest.fixture
def http_folder(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A folder served over HTTP on 127.0.0.1 from a thread: ``(folder, base URL)``."""
    folder = tmp_path / "served"
    folder.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def make_weights_enum(url: str, sha256: str | None, layout: str = "ssd.pytorch", num_classes: int = 21) -> WeightsEnum:
    """One-member enum ``TestWeights.NET`` for ssd300_vgg16, as a user would write for their own file server."""
    entry = ssd_weights(url, sha256=sha256, model="ssd300_vgg16", input_size=300, layout=layout, num_classes=num_classes,
                        anchors="voc", categories=None, dataset="test", metrics={}, metrics_source="-", recipe="-")
    return WeightsEnum("TestWeights", {"NET": entry}).NET




def assert_same(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    own = model.state_dict()
    tensors, _ = split_record(state)  # the weights; the model record has tests of its own
    assert own.keys() == tensors.keys() | {"_record"} and all(torch.equal(own[k], v) for k, v in tensors.items())


def test_published_entries_carry_their_metadata() -> None:
    for name in list_weights("ssd300_vgg16"):
        meta = get_weights(name).meta
        assert META_KEYS <= set(meta), name
        assert len(meta["categories"]) == meta["num_classes"]
        found = torch.hub.HASH_REGEX.search(meta["file_name"])  # what check_hash reads from the name
        assert (found.group(1) if found else None) == meta["sha256"]
    coco, voc = SSD300_VGG16_Weights.COCO_V1, SSD300_VGG16_Weights.VOC0712
    assert coco.url == "https://download.pytorch.org/models/ssd300_vgg16_coco-b556d3b4.pth"
    assert (coco.meta["num_classes"], coco.meta["anchors"], coco.meta["layout"]) == (91, "coco", "torchvision")
    assert coco.meta["metrics"] == {"COCO-val2017": {"box_map": 25.1}} and coco.meta["categories"][1] == "person"
    assert voc.url == "https://s3.amazonaws.com/amdegroot-models/ssd300_mAP_77.43_v2.pth"
    assert (voc.meta["num_classes"], voc.meta["anchors"], voc.meta["layout"]) == (21, "voc", "ssd.pytorch")
    assert voc.meta["metrics"] == {"VOC2007-test": {"mAP": 77.43}} and voc.meta["sha256"] is None
    assert VGG16_Backbone_Weights.IMAGENET1K_FEATURES.meta["sha256"] == "88682ab5"


def test_names_resolve_and_list() -> None:
    assert ssd_zoo.get_weights is get_weights and ssd_zoo.list_weights is list_weights
    assert "ssd300_vgg16.VOC0712" in list_weights() and "vgg16_backbone.IMAGENET1K_REDUCEDFC" in list_weights()
    assert list_weights("ssd512_vgg16") == []
    assert get_weights("ssd300_vgg16.DEFAULT") is SSD300_VGG16_Weights.VOC0712
    assert get_weights("SSD300_VGG16_Weights.COCO_V1") is SSD300_VGG16_Weights.COCO_V1
    for weights in ("COCO_V1", "SSD300_VGG16_Weights.COCO_V1", "ssd300_vgg16.COCO_V1", SSD300_VGG16_Weights.COCO_V1):
        assert resolve_weights(weights, "ssd300_vgg16") is SSD300_VGG16_Weights.COCO_V1
    with pytest.raises(ValueError, match="unknown weights 'ssd300_vgg16.VOC07'"):
        get_weights("ssd300_vgg16.VOC07")
    with pytest.raises(ValueError, match=r"one of \['COCO_V1', 'VOC0712', 'DEFAULT'\].*no file exists at 'VOC07'"):
        ssd_zoo.build("ssd300_vgg16", weights="VOC07")
    with pytest.raises(ValueError, match="no published weights for ssd512_vgg16"):
        ssd_zoo.build("ssd512_vgg16", weights="DEFAULT")
    with pytest.raises(ValueError, match="TestWeights.NET are for 'ssd300_vgg16', not 'ssd512_vgg16'"):
        resolve_weights(make_weights_enum("file:///x.pth", None), "ssd512_vgg16")


def test_conflicts_raise_before_any_download() -> None:
    # Another num_classes is head surgery (tests/test_surgery.py), planned from the entry's metadata alone.
    planned = fetch_weights("VOC0712", "ssd300_vgg16").retarget(91)
    assert planned.class_map is not None and planned.num_classes == 91 and "state_dict" not in vars(planned)
    with pytest.raises(ValueError, match="anchors='voc' conflicts with weights SSD300_VGG16_Weights.COCO_V1"):
        ssd_zoo.build("ssd300_vgg16", weights="COCO_V1", anchors="voc")
    with pytest.raises(ValueError, match="not both"), pytest.warns(FutureWarning):
        ssd_zoo.build("ssd300_vgg16", weights="COCO_V1", pretrained=True)


@pytest.mark.parametrize("layout", ["ssd.pytorch", "torchvision"])
def test_named_weights_through_a_file_url(layout: str, tmp_path: Path, torch_home: Path, model_state: dict) -> None:
    # the layout's own boxes (torchvision decodes VOC-box models wrongly: refused), tensors as model_state's
    published = convert.from_ssd_zoo(split_record(model_state)[0], layout, anchors=convert.LAYOUT_ANCHORS[layout])
    path, prefix = save_hashed(published, tmp_path / "files", "ssd300-test")
    weights = make_weights_enum(path.as_uri(), prefix, layout=layout)
    model = ssd_zoo.build("ssd300_vgg16", weights=weights)  # converted from the published layout on load
    assert_same(model, model_state)
    assert (torch_home / path.name).is_file()


def test_http_download_checks_the_hash_and_then_uses_the_cache(http_folder: tuple[Path, str], torch_home: Path) -> None:
    folder, base = http_folder
    state = {"backbone.l2norm.weight": torch.arange(4.0)}
    path, prefix = save_hashed(state, folder, "tiny")
    weights = make_weights_enum(f"{base}/{path.name}", prefix)
    assert torch.equal(download_state_dict(weights, progress=False)["backbone.l2norm.weight"], torch.arange(4.0))
    path.unlink()  # the server has nothing now: the second load must come from the cache
    assert torch.equal(download_state_dict(weights, progress=False)["backbone.l2norm.weight"], torch.arange(4.0))


def test_a_tampered_download_is_rejected(http_folder: tuple[Path, str], torch_home: Path) -> None:
    folder, base = http_folder
    path, prefix = save_hashed({"x": torch.zeros(3)}, folder, "tiny")
    torch.save({"x": torch.ones(3)}, path)  # same name, other bytes
    weights = make_weights_enum(f"{base}/{path.name}", prefix)
    with pytest.raises(RuntimeError, match=rf"{base}/{path.name} does not match the sha256 prefix '{prefix}'"):
        download_state_dict(weights, progress=False)
    assert not (torch_home / path.name).exists()


def test_a_tampered_cache_file_is_rejected(tmp_path: Path, torch_home: Path) -> None:
    path, prefix = save_hashed({"x": torch.zeros(3)}, tmp_path, "tiny")
    torch_home.mkdir(parents=True)
    torch.save({"x": torch.ones(3)}, torch_home / path.name)
    with pytest.raises(RuntimeError, match=f"cached file {torch_home / path.name} does not match sha256 prefix {prefix}"):
        download_state_dict(make_weights_enum(path.as_uri(), prefix), progress=False)


def test_offline_error_names_the_url_the_cache_and_the_way_out(torch_home: Path) -> None:
    url = "http://127.0.0.1:9/ssd300-0123abcd.pth"  # the discard port: nothing listens
    with pytest.raises(RuntimeError, match=rf"could not download {url} into {torch_home}/ssd300-0123abcd.pth.*"
                                           r"weights='/path/to/ssd300-0123abcd.pth'"):
        download_state_dict(make_weights_enum(url, "0123abcd"), progress=False)


def test_voc0712_and_pretrained_from_a_seeded_cache(torch_home: Path, model_state: dict) -> None:
    torch_home.mkdir(parents=True)
    torch.save(convert.to_ssd_pytorch(model_state), torch_home / "ssd300_mAP_77.43_v2.pth")  # no hash in that name
    assert_same(ssd_zoo.build("ssd300_vgg16", weights="VOC0712"), model_state)
    with pytest.warns(FutureWarning, match="pretrained"):
        model = ssd_zoo.build("ssd300_vgg16", pretrained=True)
    assert model.default_boxes.spec == preset(300, "voc")
    assert_same(model, model_state)


def test_local_files_in_every_layout(tmp_path: Path, model_state: dict) -> None:
    # torchvision decodes with its own (coco) boxes: its layout holds this model's tensors as a coco-box model's
    as_torchvision = convert.to_torchvision(split_record(model_state)[0], anchors="coco")
    files = {"ssd_zoo": {"model": model_state, "epoch": 3}, "torchvision": as_torchvision,
             "ssd.pytorch": convert.to_ssd_pytorch(model_state)}
    anchors = {"ssd_zoo": "voc", "torchvision": "coco", "ssd.pytorch": "voc"}  # torchvision's SSD300 = coco scales
    for layout, content in files.items():
        torch.save(content, tmp_path / "net.pth")
        model = ssd_zoo.build("ssd300_vgg16", weights=str(tmp_path / "net.pth"))
        assert model.num_classes == 21 and model.default_boxes.spec == preset(300, anchors[layout]), layout
        assert_same(model, model_state)
    with pytest.raises(ValueError, match=f"num_classes=5 conflicts with weights {tmp_path / 'net.pth'}"):
        load_weights(ssd_zoo.build("ssd300_vgg16", num_classes=5), tmp_path / "net.pth", "ssd300_vgg16")
    with pytest.raises(ValueError, match="no file exists at 'missing.pth'"):
        ssd_zoo.build("ssd300_vgg16", weights="missing.pth")


def _backbone_files(backbone: VGG16Backbone) -> dict[str, dict[str, torch.Tensor]]:
    """The backbone's convs under torchvision's vgg16 keys and ssd.pytorch's vgg16_reducedfc keys."""
    names = [f"features.conv{n}" for n in ("1_1", "1_2", "2_1", "2_2", "3_1", "3_2", "3_3", "4_1", "4_2", "4_3")]
    names += ["fc.conv5_1", "fc.conv5_2", "fc.conv5_3"]
    indices = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
    state = backbone.state_dict()
    tv = {f"features.{i}.{p}": state[f"{n}.{p}"] for n, i in zip(names, indices) for p in ("weight", "bias")}
    tv["classifier.0.weight"] = torch.full((2, 2), float("nan"))  # torchvision's file: unusable classifier
    pairs = list(zip(names, indices)) + [("fc.fc6", 31), ("fc.fc7", 33)]
    reduced = {f"{i}.{p}": state[f"{n}.{p}"] for n, i in pairs for p in ("weight", "bias")}
    return {"torchvision": tv, "reducedfc": reduced, "reducedfc_prefixed": {f"vgg.{k}": v for k, v in reduced.items()}}


def test_vgg16_backbone_files(tmp_path: Path, torch_home: Path) -> None:
    torch.manual_seed(1)
    source = VGG16Backbone(300)
    files = _backbone_files(source)
    for kind, content in files.items():
        torch.save(content, tmp_path / f"{kind}.pth")
        target = load_vgg16_backbone(VGG16Backbone(300), tmp_path / f"{kind}.pth")
        assert torch.equal(target.fc.conv5_3.weight, source.fc.conv5_3.weight), kind
        assert torch.equal(target.fc.fc6.weight, source.fc.fc6.weight) == (kind != "torchvision"), kind
    bgr = load_vgg16_backbone(VGG16Backbone(300), tmp_path / "reducedfc.pth", input_order="bgr")
    assert torch.equal(bgr.features.conv1_1.weight, source.features.conv1_1.weight.flip(1))
    torch_home.mkdir(parents=True)
    torch.save(files["reducedfc_prefixed"], torch_home / "vgg16_reducedfc.pth")  # the DEFAULT entry, from the cache
    assert torch.equal(load_vgg16_backbone(VGG16Backbone(512)).fc.fc7.weight, source.fc.fc7.weight)
    del files["reducedfc"]["31.weight"]
    torch.save(files["reducedfc"], tmp_path / "broken.pth")
    with pytest.raises(KeyError, match=r"broken.pth \(ssd.pytorch vgg16_reducedfc layout\).*missing keys \['31.weight'\]"):
        load_vgg16_backbone(VGG16Backbone(300), tmp_path / "broken.pth")


def test_the_suite_cannot_reach_the_network() -> None:
    with pytest.raises(ConnectionRefusedError, match="only connect to 127.0.0.1"):
        socket.create_connection(("203.0.113.1", 80), timeout=1)


def test_a_url_as_weights_is_downloaded_cached_and_converted(http_folder: tuple[Path, str], torch_home: Path,
                                                             model_state: dict) -> None:
    folder, base = http_folder
    tensors = convert.to_torchvision(split_record(model_state)[0], anchors="coco")  # as a coco-box model's
    path, _ = save_hashed(tensors, folder, "net")  # any layout, detected from its keys
    url = f"{base}/{path.name}"
    assert resolve_weights(url, "ssd300_vgg16") == url
    model = ssd_zoo.build("ssd300_vgg16", weights=url)
    assert_same(model, model_state)
    assert model.default_boxes.spec == preset(300, "coco")  # torchvision's layout implies its default boxes
    assert (torch_home / path.name).is_file()
    path.unlink()  # from the cache now
    assert_same(ssd_zoo.build("ssd300_vgg16", weights=url), model_state)


def test_coco_default_boxes_survive_a_plain_state_dict(tmp_path: Path) -> None:
    """The record in every state_dict(): default boxes, input size, normalisation and classes come back."""
    source = ssd_zoo.build("ssd300_vgg16", anchors="coco", num_classes=4)
    source.categories = ["__background__", "a", "b", "c"]
    torch.save(source.state_dict(), tmp_path / "coco.pth")
    loaded = ssd_zoo.build("ssd300_vgg16", weights=tmp_path / "coco.pth")
    assert loaded.default_boxes.spec == preset(300, "coco") and loaded.num_classes == 4
    assert loaded.categories == ["__background__", "a", "b", "c"]
    with pytest.raises(ValueError, match=r"sizes 30/60/111.*conflict with weights .*coco.pth, trained with input 300, sizes 21/45/99"):
        ssd_zoo.build("ssd300_vgg16", weights=tmp_path / "coco.pth", anchors="voc")
    with pytest.warns(HeadSurgeryWarning, match="trained for 4 classes .* the model has 21"):  # head surgery
        other = ssd_zoo.build("ssd300_vgg16", weights=tmp_path / "coco.pth", num_classes=21)
    assert other.num_classes == 21 and other.default_boxes.spec == preset(300, "coco")
    with pytest.raises(ValueError, match="input_size=512 conflicts with weights .*trained at input 300"):
        ssd_zoo.build("ssd512_vgg16", weights=tmp_path / "coco.pth")
    with pytest.raises(ValueError, match="trained with default_boxes input 300, sizes 21/45/99.*this model has input 300, sizes 30/60"):
        ssd_zoo.build("ssd300_vgg16", num_classes=4).load_state_dict(torch.load(tmp_path / "coco.pth", weights_only=True))
    old, _ = split_record(source.state_dict())  # as saved before the record existed
    torch.save(old, tmp_path / "old.pth")
    with pytest.warns(UserWarning, match="carries no ssd_zoo model record"):
        ssd_zoo.build("ssd300_vgg16", weights=tmp_path / "old.pth")
    assert ssd_zoo.build("ssd300_vgg16", weights=tmp_path / "old.pth", anchors="coco").default_boxes.spec == preset(300, "coco")


def test_every_published_detector_names_its_source_commit() -> None:
    """meta["source_commit"]: the publisher's repository and commit whose config and code the entry follows."""
    pattern = re.compile(r"^[\w.-]+/[\w.-]+@[0-9a-f]{7,40} \(.+\)")
    for name in ssd_zoo.list_weights():
        if name.startswith("vgg16_backbone."):
            continue  # ImageNet classifiers an SSD starts from, not detectors
        assert pattern.match(ssd_zoo.get_weights(name).meta["source_commit"] or ""), name
