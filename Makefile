# Two commands on a fresh machine with Python 3.10+:  `make demo`  and  `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip

.PHONY: setup demo lint test bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# PyTorch: pin the CPU build (an unpinned torch pulls a multi-GB CUDA build).
	$(PIP) install -q torch==2.13.0 || $(PIP) install -q torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
	$(PIP) install -q -e '.[dev,compress,report,train,dicom,speech,cluster,signing]'
	# silero-vad depends on torch; only its ONNX files are used, so skip its dependencies.
	$(PIP) install -q --no-deps silero-vad
	# rapidocr-onnxruntime: only its PP-OCRv4 ONNX file is used (demo, tests). Its dependencies would
	# add the GUI opencv-python next to opencv-python-headless, two packages writing one cv2/ folder.
	$(PIP) install -q --no-deps 'rapidocr-onnxruntime>=1.3,<2'
	# a venv built before that rule may still hold the GUI build: remove it, then restore headless cv2/
	if $(PIP) show -q opencv-python >/dev/null 2>&1; then $(PIP) uninstall -q -y opencv-python && \
	  $(PIP) install -q --force-reinstall --no-deps 'opencv-python-headless>=4.8'; fi
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(PY) -m apps.demo

# ruff (pyflakes, bugbear, import order, line length) and mypy on sdk/, configured in pyproject.toml
lint: setup
	$(VENV)/bin/ruff check sdk apps tests benchmarks
	$(VENV)/bin/mypy

test: lint
	$(PY) -m pytest -q

bench: setup
	for f in benchmarks/*.py; do $(PY) $$f || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
