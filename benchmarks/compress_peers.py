"""YOLOX-nano INT8 by the peers and by ``edgewise optimize``, side by side in one process.

Every row runs on the same real frames (driving stills and two dashcam clips) and is timed in
the same interleaved rounds as the FP32 model on onnxruntime's CPU EP:

  fp32                 the input model, onnxruntime CPU EP (the reference of every ratio and F1)
  ort_dynamic          onnxruntime quantize_dynamic, no options
  ort_static           onnxruntime quantize_static, no options (QDQ, S8S8, MinMax, per-tensor)
  ort_static_tuned     quantize_static QDQ U8S8, per-channel, Percentile 99.99 (opset upgraded to 13)
  openvino             OpenVINO reading the ONNX, compiled for CPU with no options (on CPUs with
                       AMX / AVX512-BF16 OpenVINO then computes in bf16)
  openvino_f32         the same with INFERENCE_PRECISION_HINT f32
  nncf_ov[_mixed]      nncf.quantize on the OpenVINO model (default / MIXED preset), run by OpenVINO
  nncf_onnx[_mixed]    nncf.quantize on the ONNX model (default / MIXED preset), run by onnxruntime
  ort_ovep_fp32/_qdq   onnxruntime with the OpenVINO EP (the SDK's ``openvino`` preset) on the FP32
                       model and on ort_static_tuned; ``max_abs_diff`` is against the CPU EP
  edgewise             the choice of ``sdk.compress.optimize`` (detection F1 against FP32, 5% budget)

Data: the quantizers (and the search) calibrate on every other clip frame; F1 (IoU 0.5, score
0.3, against the FP32 model's detections, in frame pixels) is given on those frames ("calib")
and on frames none of them saw ("held-out": the stills, the other clip frames, and both
mirrored). Rows whose package is missing (nncf, openvino: extra ``bench``; the OpenVINO EP:
extra ``openvino``) say so and are skipped.

Run:  nice python benchmarks/compress_peers.py [--quick] [--json] [--out DIR] [--rounds N]
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compress_models import SHARED, driving_frames, ort_default_dynamic, ort_default_static, yolox_input  # noqa: E402

from sdk.bench import model_file_size  # noqa: E402
from sdk.compress import CalibrationData, FrameDetectionAgreement, OptimizeOptions, Recipe, YoloxDecoder, optimize  # noqa: E402
from sdk.compress.evaluators import detection_f1  # noqa: E402
from sdk.preprocess import letterbox  # noqa: E402
from sdk.runtime import Engine, EngineOptions, discover_device  # noqa: E402

MODEL = SHARED / "models" / "yolox_nano_coco_416.onnx"
NOT_INSTALLED = "not installed: pip install 'edgewise[bench]'"


# --- runners: one call on one input tensor, for onnxruntime and OpenVINO alike -------------
class Runner:
    """``run(x) -> list of outputs`` for an NCHW float32 input of the model's own size ``hw``."""

    def __init__(self, run: Callable[[np.ndarray], list[np.ndarray]], hw: tuple[int, int],
                 close: Callable[[], None] = lambda: None, providers: list[str] | None = None):
        self.run, self.hw, self.close, self.providers = run, hw, close, providers


def ort_runner(path: Path, provider: str = "cpu") -> Runner:
    eng = Engine(path, EngineOptions(providers=[provider], warmup=2))
    name = eng.inputs[0].name
    hw = tuple(int(d) for d in eng.inputs[0].shape[2:4])
    return Runner(lambda x: eng.run_list({name: x}), hw, eng.close, eng.providers)


def ov_runner(model: Any, config: dict | None = None) -> Runner:
    import openvino as ov

    compiled = ov.Core().compile_model(model, "CPU", config or {})
    req = compiled.create_infer_request()
    shape = compiled.input(0).get_partial_shape()
    hw = (shape[2].get_length(), shape[3].get_length())
    outs = list(compiled.outputs)

    def run(x: np.ndarray) -> list[np.ndarray]:
        res = req.infer({0: x})
        return [np.asarray(res[o]) for o in outs]
    return Runner(run, hw, lambda: None, ["OpenVINO CPU"])


def frame_input(frame: np.ndarray, hw: tuple[int, int]) -> tuple[np.ndarray, Any]:
    img, t = letterbox(frame, hw, pad_value=114)
    return np.ascontiguousarray(img.transpose(2, 0, 1)[None], dtype=np.float32), t


def detect(r: Runner, frames: list[np.ndarray]) -> list:
    """Detections in frame pixels, as FrameDetectionAgreement computes them for a model file."""
    decode = YoloxDecoder(r.hw, score_thr=0.3)
    out = []
    for f in frames:
        x, t = frame_input(f, r.hw)
        out.append(decode(r.run(x)).map_xyxy(t.to_original))
    return out


def time_interleaved(runners: dict[str, Runner], frame: np.ndarray, rounds: int, min_round_ms: float = 30.0
                     ) -> dict[str, dict[str, Any]]:
    """Per runner: each round's best wall time and mean CPU time per run; the order of the
    runners is shuffled every round, so a busy neighbour hits all of them alike."""
    xs = {k: frame_input(frame, r.hw)[0] for k, r in runners.items()}
    n_iter = {}
    for k, r in runners.items():
        r.run(xs[k])
        t0 = time.perf_counter()
        r.run(xs[k])
        n_iter[k] = max(5, min(int(min_round_ms / max((time.perf_counter() - t0) * 1e3, 1e-3)) + 1, 500))
    best: dict[str, list[float]] = {k: [] for k in runners}
    cpu: dict[str, list[float]] = {k: [] for k in runners}
    rng = np.random.default_rng(0)
    names = list(runners)
    for _ in range(rounds):
        for k in [names[i] for i in rng.permutation(len(names))]:
            run, x, times = runners[k].run, xs[k], []
            c0 = time.process_time()
            for _ in range(n_iter[k]):
                t0 = time.perf_counter()
                run(x)
                times.append((time.perf_counter() - t0) * 1e3)
            cpu[k].append((time.process_time() - c0) * 1e3 / n_iter[k])
            best[k].append(min(times))
    return {k: {"rounds_ms": best[k], "cpu_ms": statistics.median(cpu[k])} for k in runners}


# --- the quantizers ----------------------------------------------------------------------
def ort_static_tuned(model: Path, out: Path, feeds: list[dict]) -> Path:
    """U8S8 (onnxruntime's default S8S8 QDQ ran 3.4x slower than FP32 on an AMX Xeon; U8S8
    1.1x faster). Per-channel QDQ needs opset >= 13 (YOLOX-nano is opset 11: onnxruntime then
    writes a model it cannot load), so the model is upgraded first."""
    import onnx
    from onnx import version_converter
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from sdk.compress.calibration import OrtCalibrationReader

    m = onnx.load(str(model))
    if max((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), default=13) < 13:
        upgraded = out.with_name(out.stem + "_opset13.onnx")
        onnx.save(version_converter.convert_version(m, 13), str(upgraded))
        model = upgraded
    quantize_static(str(model), str(out), OrtCalibrationReader(feeds), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                    calibrate_method=CalibrationMethod.Percentile,
                    extra_options={"CalibPercentile": 99.99})
    return out


def nncf_dataset(feeds: list[dict], as_dict: bool):
    import nncf

    return nncf.Dataset([f["images"] for f in feeds], (lambda x: {"images": x}) if as_dict else (lambda x: x))


def nncf_openvino(model: Path, feeds: list[dict], preset: Any, out: Path) -> tuple[Any, int]:
    import nncf
    import openvino as ov

    kw = {} if preset is None else {"preset": preset}
    q = nncf.quantize(ov.Core().read_model(str(model)), nncf_dataset(feeds, False), subset_size=len(feeds), **kw)
    ov.save_model(q, str(out), compress_to_fp16=False)
    return q, out.stat().st_size + out.with_suffix(".bin").stat().st_size


def nncf_onnx(model: Path, feeds: list[dict], preset: Any, out: Path) -> Path:
    import nncf
    import onnx

    kw = {} if preset is None else {"preset": preset}
    q = nncf.quantize(onnx.load(str(model)), nncf_dataset(feeds, True), subset_size=len(feeds), **kw)
    onnx.save(q, str(out))
    return out


def edgewise_choice(model: Path, calib: CalibrationData, frames: list[np.ndarray], out: Path, quick: bool):
    """``edgewise optimize``'s choice through the public API: detection F1 against FP32 on the
    calibration-side frames, 5% budget, the 16:9 input shape offered (as the CLI does for
    detectors). ``--quick`` tries one INT8 recipe. -> (path, candidate name, note)."""
    evaluator = FrameDetectionAgreement(model, frames, decoder_factory=lambda hw: YoloxDecoder(hw, score_thr=0.3))
    opts = OptimizeOptions(out_dir=out / "edgewise", progress=not quick, budget={"max_drop": "5%"},
                           latency={"rounds": 9}, candidates={"input_shapes": [[1, 3, 256, 416]]})
    if quick:   # the smoke run's few frames cannot resolve a 5% budget
        one = {"static_qdq_pct_pc": Recipe([{"pass": "quantize_static", "format": "QDQ", "per_channel": True,
                                             "calibrate_method": "Percentile", "percentile": 99.99}])}
        opts = opts.model_copy(update={
            "budget": opts.budget.model_copy(update={"check_resolution": False}),
            "latency": opts.latency.model_copy(update={"rounds": 3, "energy": False}),
            "candidates": opts.candidates.model_copy(update={"recipes": one})})
    res = optimize(model, calib, evaluator, opts)
    return Path(res.chosen.path), res.chosen.name, res.note


# --- the run -----------------------------------------------------------------------------
def build_rows(out: Path, calib_feeds: list[dict], calib: CalibrationData, calib_frames: list[np.ndarray],
               quick: bool) -> tuple[dict[str, Runner], dict[str, dict]]:
    """Quantize with every peer; a runner and the facts (size, note or error) for each row."""
    runners: dict[str, Runner] = {"fp32": ort_runner(MODEL)}
    rows: dict[str, dict] = {"fp32": {"size": model_file_size(MODEL), "how": "onnxruntime CPU EP"}}

    def attempt(name: str, how: str, make: Callable[[], tuple[Runner, int]]) -> None:
        t0 = time.time()
        try:
            runners[name], size = make()
            rows[name] = {"size": size, "how": how, "build_s": round(time.time() - t0, 1)}
        except ImportError as exc:
            rows[name] = {"how": how, "skipped": f"{NOT_INSTALLED} ({exc.name or exc})"}
        except Exception as exc:  # noqa: BLE001 - a peer failing is a result: the row says why
            rows[name] = {"how": how, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
        logging.getLogger("edgewise").info("%s: %s", name, rows[name])

    def onnx_row(path: Path, provider: str = "cpu") -> tuple[Runner, int]:
        return ort_runner(path, provider), model_file_size(path)

    attempt("ort_dynamic", "quantize_dynamic()", lambda: onnx_row(ort_default_dynamic(MODEL, out / "ort_dynamic.onnx")))
    attempt("ort_static", "quantize_static() defaults",
            lambda: onnx_row(ort_default_static(MODEL, out / "ort_static.onnx", calib_feeds)))
    tuned = out / "ort_static_tuned.onnx"
    attempt("ort_static_tuned", "quantize_static QDQ U8S8 per-channel Percentile 99.99",
            lambda: onnx_row(ort_static_tuned(MODEL, tuned, calib_feeds)))

    def openvino_fp32(config: dict | None) -> tuple[Runner, int]:
        import openvino as ov

        return ov_runner(ov.Core().read_model(str(MODEL)), config), model_file_size(MODEL)
    attempt("openvino", "OpenVINO CPU, no options", lambda: openvino_fp32(None))
    attempt("openvino_f32", "OpenVINO CPU, INFERENCE_PRECISION_HINT f32",
            lambda: openvino_fp32({"INFERENCE_PRECISION_HINT": "f32"}))
    for suffix, preset_name in [("", None), ("_mixed", "MIXED")]:
        def preset(preset_name=preset_name):
            import nncf

            return None if preset_name is None else getattr(nncf.QuantizationPreset, preset_name)

        def nncf_ov_row(suffix=suffix, preset=preset):
            q, size = nncf_openvino(MODEL, calib_feeds, preset(), out / f"nncf_ov{suffix}.xml")
            return ov_runner(q), size
        attempt(f"nncf_ov{suffix}", f"nncf.quantize(openvino model{', ' + preset_name if preset_name else ''})",
                nncf_ov_row)
        attempt(f"nncf_onnx{suffix}",
                f"nncf.quantize(onnx model{', ' + preset_name if preset_name else ''}), onnxruntime",
                lambda suffix=suffix, preset=preset: onnx_row(nncf_onnx(MODEL, calib_feeds, preset(),
                                                                         out / f"nncf_onnx{suffix}.onnx")))
    ovep = _openvino_ep_missing()
    for name, path in [("ort_ovep_fp32", MODEL), ("ort_ovep_qdq", tuned)]:
        if ovep:
            rows[name] = {"how": "onnxruntime + OpenVINO EP", "skipped": ovep}
        elif name == "ort_ovep_qdq" and "ort_static_tuned" not in runners:
            rows[name] = {"how": "onnxruntime + OpenVINO EP", "skipped": "ort_static_tuned failed"}
        else:
            attempt(name, f"onnxruntime + OpenVINO EP on {path.name}", lambda path=path: onnx_row(path, "openvino"))
    t0 = time.time()
    try:
        path, cand, note = edgewise_choice(MODEL, calib, calib_frames, out, quick)
        runners["edgewise"] = ort_runner(path)
        rows["edgewise"] = {"size": model_file_size(path), "how": f"optimize() chose {cand}", "note": note,
                            "build_s": round(time.time() - t0, 1)}
    except Exception as exc:  # noqa: BLE001
        rows["edgewise"] = {"how": "optimize()", "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
    return runners, rows


def _openvino_ep_missing() -> str | None:
    """Why onnxruntime cannot use the OpenVINO EP here (None when it can)."""
    from sdk.runtime.providers import PRESETS, available_providers, plugin_devices, register_plugin

    why = register_plugin("openvino")
    prov = PRESETS["openvino"]
    if why is None and prov in available_providers():
        from sdk.runtime.providers import _plugin_providers

        if prov not in _plugin_providers or plugin_devices(prov, {"device_type": "CPU"}):
            return None
        why = "the OpenVINO plugin lists no CPU device here"
    return f"{why or 'no OpenVINO EP'}: pip install 'edgewise[openvino]'"


def run(args: argparse.Namespace) -> dict:
    per_video = 6 if args.quick else 32
    stills, video = driving_frames(per_video=per_video)
    if args.quick:
        stills = stills[:4]
    calib_frames, rest = video[0::2], video[1::2]
    held = stills + rest
    held = held + [np.ascontiguousarray(f[:, ::-1]) for f in held]
    calib_feeds = [{"images": yolox_input(f)} for f in calib_frames]
    calib = CalibrationData(calib_feeds)
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="compress-peers-"))
    out.mkdir(parents=True, exist_ok=True)
    runners, rows = build_rows(out, calib_feeds, calib, calib_frames, args.quick)
    ref_calib, ref_held = detect(runners["fp32"], calib_frames), detect(runners["fp32"], held)
    ref_out = runners["fp32"].run(frame_input(held[0], runners["fp32"].hw)[0])[0]
    for name, r in runners.items():
        rows[name]["f1_calib"] = detection_f1(ref_calib, detect(r, calib_frames), 0.5)
        rows[name]["f1_heldout"] = detection_f1(ref_held, detect(r, held), 0.5)
        rows[name]["providers"] = r.providers
    for name, cpu_name in [("ort_ovep_fp32", "fp32"), ("ort_ovep_qdq", "ort_static_tuned")]:
        if name in runners and cpu_name in runners:
            x = frame_input(held[0], runners[name].hw)[0]
            diff = runners[name].run(x)[0] - runners[cpu_name].run(x)[0]
            rows[name]["max_abs_diff_vs_cpu_ep"] = float(np.abs(diff).max())
    rows["openvino"]["max_abs_diff_vs_cpu_ep"] = float(np.abs(
        runners["openvino"].run(frame_input(held[0], (416, 416))[0])[0] - ref_out).max()) \
        if "openvino" in runners else None
    timing = time_interleaved(runners, held[0], rounds=args.rounds or (3 if args.quick else 30))
    base = timing["fp32"]["rounds_ms"]
    for name, t in timing.items():
        ratios = [b / m for b, m in zip(base, t["rounds_ms"], strict=True)]
        rows[name].update(latency_ms=statistics.median(t["rounds_ms"]), cpu_ms=t["cpu_ms"],
                          speedup=statistics.median(ratios),
                          speedup_p10_p90=[float(np.percentile(ratios, 10)), float(np.percentile(ratios, 90))],
                          size_ratio=rows["fp32"]["size"] / rows[name]["size"])
    for r in runners.values():
        r.close()
    info = discover_device()
    return {"model": MODEL.name, "device": {"cpu_model": info.cpu_model, "isa": [k for k, v in info.isa.items() if v],
                                            "logical_cores": info.logical_cores},
            "frames": {"calib": len(calib_frames), "heldout": len(held)}, "rounds": len(base), "quick": args.quick,
            "out_dir": str(out), "rows": rows}


def print_table(res: dict) -> None:
    d = res["device"]
    print(f"{res['model']} on {d['cpu_model']} ({d['logical_cores']} logical cores), ISA: {', '.join(d['isa'])}")
    print(f"calibration frames {res['frames']['calib']}, held-out frames {res['frames']['heldout']}, "
          f"{res['rounds']} interleaved rounds; speedup and F1 against onnxruntime FP32 (CPU EP)")
    print(f"{'row':18s} {'ms':>7s} {'cpu ms':>7s} {'speedup':>7s} {'p10-p90':>11s} {'size':>5s} "
          f"{'F1 cal':>6s} {'F1 held':>7s}  how")
    for name, r in res["rows"].items():
        if "latency_ms" not in r:
            print(f"{name:18s} {'-':>7s} {'':>7s} {'':>7s} {'':>11s} {'':>5s} {'':>6s} {'':>7s}  {r['how']}: "
                  f"{r.get('skipped') or r.get('error')}")
            continue
        p = r["speedup_p10_p90"]
        extra = f" (max|diff| vs CPU EP {r['max_abs_diff_vs_cpu_ep']:.2g})" if r.get("max_abs_diff_vs_cpu_ep") else ""
        print(f"{name:18s} {r['latency_ms']:7.2f} {r['cpu_ms']:7.2f} {r['speedup']:6.2f}x {p[0]:4.2f}-{p[1]:4.2f}x "
              f"{r['size_ratio']:4.2f}x {r['f1_calib']:6.3f} {r['f1_heldout']:7.3f}  {r['how']}{extra}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="few frames and rounds, one edgewise candidate (smoke run)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    ap.add_argument("--out", help="folder for the quantized models (default: a new temporary folder)")
    ap.add_argument("--rounds", type=int, help="interleaved timing rounds (default 30; --quick 3)")
    args = ap.parse_args(argv)
    if not MODEL.is_file():
        print(f"{MODEL} not found: this benchmark needs ../shared", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.json:  # the quantizers print to stdout (some from C++): keep stdout for the JSON alone
        sys.stdout.flush()
        saved = os.dup(1)
        os.dup2(2, 1)
        try:
            res = run(args)
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)
        print(json.dumps(res, indent=1, default=str))
    else:
        print_table(res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
