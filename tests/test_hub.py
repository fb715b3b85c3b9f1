"""hubconf.py: one torch.hub entry point per registered model, loaded from this checkout (source="local")."""
from __future__ import annotations

import importlib.util
import inspect
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import ssd_zoo
from ssd_zoo.models.record import split_record
from ssd_zoo.weights import convert
from ssd_zoo.registry import get_builder

REPO = Path(__file__).resolve().parents[1]


def _hubconf():
    spec = importlib.util.spec_from_file_location("hubconf_under_test", REPO / "hubconf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_registered_model_is_an_entry_point_with_its_weights_documented() -> None:
    hubconf = _hubconf()
    entries = sorted(n for n in dir(hubconf) if callable(getattr(hubconf, n)) and not n.startswith("_"))
    assert entries == ssd_zoo.list_models()  # torch.hub.list's rule: public callables are entry points
    assert all(importlib.util.find_spec(name) for name in hubconf.dependencies)
    assert "'VOC0712'" in hubconf.ssd300_vgg16.__doc__ and "'COCO_V1'" in hubconf.ssd300_vgg16.__doc__
    assert "none published" in hubconf.ssd512_vgg16.__doc__


@pytest.mark.parametrize("name", ssd_zoo.list_models())
def test_torch_hub_load_local_builds_every_entry_point(name: str) -> None:
    # Generic builders (e.g. ssd300(backbone=...)) need their required keywords; the named ones need none.
    required = [p.name for p in inspect.signature(get_builder(name)).parameters.values()
                if p.kind is p.KEYWORD_ONLY and p.default is p.empty]
    kwargs = {"backbone": "resnet18"} if required == ["backbone"] else {}
    assert set(required) <= set(kwargs), f"{name}: required keywords {required}"
    model = torch.hub.load(str(REPO), name, source="local", weights=None, **kwargs)
    assert isinstance(model, torch.nn.Module) and model.num_classes > 1


def test_torch_hub_load_with_named_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, built) -> None:
    # weights="VOC0712" reaches the builder; the file comes from a seeded torch.hub cache, not the network.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    state, _ = split_record(built("ssd300_vgg16").state_dict())
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(convert.to_ssd_pytorch(state), tmp_path / "hub" / "checkpoints" / "ssd300_mAP_77.43_v2.pth")
    model = torch.hub.load(str(REPO), "ssd300_vgg16", source="local", weights="VOC0712", score_thresh=0.3)
    assert model.score_thresh == 0.3
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())


def test_hubconf_imports_stay_light() -> None:
    code = f"import sys; sys.path.insert(0, {str(REPO)!r}); import hubconf; print('timm' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False", "importing hubconf imported timm; import it inside the timm builders"
