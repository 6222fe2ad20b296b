"""What a plain ``pip install edgewise`` must carry, checked in this environment.

The runtime layers (runtime, bundle, preprocess, pipeline, the ``edgewise devices`` command)
run in a subprocess where importing a heavy optional package raises ImportError, as on a
device with no extras installed. And one environment holds exactly one OpenCV distribution:
``opencv-python`` and ``opencv-python-headless`` both write the same ``cv2/`` folder.
"""
from __future__ import annotations

import subprocess
import sys
import textwrap
from importlib.metadata import distributions
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

#: packages of the extras (compress, report, train) that the runtime must never import
BLOCKED = ("matplotlib", "sympy", "torch", "PIL", "yaml")

_SCRIPT = textwrap.dedent("""
    import sys, tempfile
    from pathlib import Path

    BLOCKED = {blocked!r}

    class Blocker:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"{{name}} is blocked: not installed on a lean device")
            return None

    sys.meta_path.insert(0, Blocker())

    import numpy as np
    from onnx import TensorProto, helper

    import sdk
    from sdk.bundle import Manifest, ModelEntry, load_bundle, save_bundle
    from sdk.cli.main import main
    from sdk.pipeline import Pipeline, Stage
    from sdk.preprocess import AddBatchDim, CastDtype, PreprocessSpec, Resize, ToLayout
    from sdk.runtime import Engine, EngineOptions, discover_device

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    spec = PreprocessSpec(ops=[Resize(size=(8, 8)), ToLayout(layout="CHW"), CastDtype(dtype="float32"),
                               AddBatchDim()])
    with tempfile.TemporaryDirectory() as tmp:
        b = save_bundle(Path(tmp) / "b", Manifest(name="relu", version="1", task="test",
                                                  models={{"model": ModelEntry(file="model.onnx")}},
                                                  preprocess=spec),
                        files={{"model.onnx": model}})
        b = load_bundle(b.path)
        with b.engine("model", EngineOptions(warmup=0)) as eng:
            p = Pipeline([Stage("pre", b.preprocessor()), Stage("model", lambda x: eng.run(x)["y"])])
            y = p(np.full((16, 16, 3), 200, np.uint8))
    assert y.shape == (1, 3, 8, 8) and float(y.min()) == 200.0, (y.shape, y.min())
    assert discover_device().logical_cores
    assert main(["devices", "--json"]) == 0
    loaded = sorted({{m.split(".")[0] for m in sys.modules}} & BLOCKED)
    assert not loaded, loaded
    print("lean runtime ok")
""")


def test_runtime_layers_import_and_run_without_the_extras():
    proc = subprocess.run([sys.executable, "-c", _SCRIPT.format(blocked=set(BLOCKED))], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "lean runtime ok" in proc.stdout, proc.stderr[-3000:]


def test_blocker_does_block():
    """The subprocess harness itself: a blocked package really fails to import there."""
    code = _SCRIPT.split("import numpy as np")[0] + "import matplotlib\n"
    proc = subprocess.run([sys.executable, "-c", code.format(blocked=set(BLOCKED))], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "matplotlib is blocked" in proc.stderr


def test_exactly_one_opencv_distribution():
    names = sorted({(d.metadata["Name"] or "").lower() for d in distributions()
                    if (d.metadata["Name"] or "").lower().startswith("opencv")})
    assert len(names) == 1, (
        f"expected exactly one OpenCV distribution, found {names}: they overwrite each other's cv2/ "
        "folder. Keep opencv-python-headless (`pip uninstall opencv-python` then "
        "`pip install --force-reinstall --no-deps opencv-python-headless`; `make setup` does this)")
