"""INT8 quantization passes on onnxruntime's quantization tools: dynamic and static.

Both passes pre-process the model first (shape inference, ORT graph optimization, node
names), upgrade the opset to 13 when per-channel scales are asked for (older opsets have no
``axis`` on ``DequantizeLinear`` and onnxruntime refuses such a model), and load the result
in onnxruntime before returning it, so a pass never hands on a model that will not run.
"""
from __future__ import annotations

import collections
import contextlib
import hashlib
import io
import logging
import tempfile
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from sdk.compress.base import Pass, PassConfig, PassContext, PassResult, register_pass
from sdk.compress.calibration import CalibrationData, OrtCalibrationReader
from sdk.compress.graph_prep import PER_CHANNEL_MIN_OPSET, load_model, prepare_for_quantization
from sdk.errors import CompressionError, ModelLoadError

logger = logging.getLogger("edgewise")

#: activation / weight integer types
TYPE_PAIRS = {"U8U8": ("QUInt8", "QUInt8"), "U8S8": ("QUInt8", "QInt8"), "S8S8": ("QInt8", "QInt8")}
QUANT_OP_TYPES = ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QLinearConv", "QLinearMatMul",
                  "MatMulInteger", "ConvInteger", "QLinearAdd", "QLinearMul", "QLinearGlobalAveragePool",
                  "QGemm", "QLinearSigmoid", "QLinearConcat", "QLinearLeakyRelu", "DynamicQuantizeMatMul",
                  "MatMulIntegerToFloat", "MatMulNBits")


@contextlib.contextmanager
def _quiet():
    """onnxruntime's calibrators print() progress; send it to the debug log instead of stdout."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        yield
    if buf.getvalue().strip():
        logger.debug("onnxruntime: %s", buf.getvalue().strip())


def count_ops(model_path: str | Path) -> collections.Counter:
    """Op-type histogram of the main graph (tests and reports assert on it)."""
    model = load_model(model_path, check=False, load_external_data=False)
    return collections.Counter(n.op_type for n in model.graph.node)


def verify_loadable(model_path: Path, what: str) -> Path:
    """Load the model in onnxruntime; CompressionError naming ``what`` if it refuses it."""
    import onnxruntime as ort

    try:
        ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise CompressionError(f"{what}: onnxruntime cannot load the result {model_path.name} ({exc})") from exc
    return model_path


def default_op_types(static: bool) -> list[str]:
    """Every op type onnxruntime's quantizer knows (its own default when none is given)."""
    from onnxruntime.quantization.registry import IntegerOpsRegistry, QDQRegistry, QLinearOpsRegistry

    if static:
        return sorted(set(QLinearOpsRegistry) | set(QDQRegistry))
    return sorted(IntegerOpsRegistry)


def _op_types(cfg: Any, static: bool) -> list[str]:
    types = list(cfg.op_types_to_quantize or default_op_types(static))
    return [t for t in types if t not in set(cfg.op_types_to_keep_float)]


class _WorkDir:
    """``ctx.work_dir`` if given, else a temporary folder removed on exit."""

    def __init__(self, ctx: PassContext):
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if ctx.work_dir:
            self.path = Path(ctx.work_dir)
        else:
            self._tmp = tempfile.TemporaryDirectory(prefix="edgewise-q-")
            self.path = Path(self._tmp.name)
        self.path.mkdir(parents=True, exist_ok=True)

    def __enter__(self) -> Path:
        return self.path

    def __exit__(self, *exc: Any) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()


class _CommonConfig(PassConfig):
    per_channel: bool = Field(False, description="one scale per output channel of each weight instead of one per "
                              "tensor (better accuracy; upgrades the opset to 13 first when older)")
    reduce_range: bool | None = Field(None, description="quantize weights to 7 bits, which avoids int16 "
                                      "saturation of the u8*s8 multiply-add on x86 CPUs without VNNI; None: 7 bits "
                                      "exactly when this CPU is one of those (see reduce_range_for)")
    nodes_to_exclude: list[str] = Field(default_factory=list, description="node names kept in float")
    op_types_to_quantize: list[str] | None = Field(None, description="op types to quantize (None: every type "
                                                   "onnxruntime can quantize)")
    op_types_to_keep_float: list[str] = Field(default_factory=list, description="op types never quantized, "
                                              "removed from op_types_to_quantize")
    preprocess: bool = Field(True, description="run onnxruntime's quantization pre-processing (symbolic shape "
                             "inference + graph optimization) first")
    extra_options: dict[str, Any] = Field(default_factory=dict, description="passed as extra_options to "
                                          "onnxruntime.quantization (e.g. ActivationSymmetric, WeightSymmetric)")


def reduce_range_for(cfg: "_CommonConfig") -> bool:
    """The config's ``reduce_range``, or, when it is None, whether this CPU needs 7-bit weights
    (:func:`sdk.runtime.isa.needs_reduce_range`: with 8-bit ones onnxruntime's AVX2
    kernel computes something else than the QDQ graph says)."""
    if cfg.reduce_range is not None:
        return cfg.reduce_range
    from sdk.runtime import discover_device
    from sdk.runtime.isa import isa_profile, needs_reduce_range

    return needs_reduce_range(isa_profile(discover_device()))


def _prepared(model_in: Path, work_path: Path, cfg: "_CommonConfig") -> Path:
    """The model onnxruntime's quantizer should read: pre-processed (shape inference, graph
    optimization) when asked, and at opset >= 13 when per-channel scales need it."""
    if not (cfg.preprocess or cfg.per_channel):
        return model_in
    return prepare_for_quantization(model_in, work_path,
                                    min_opset=PER_CHANNEL_MIN_OPSET if cfg.per_channel else None,
                                    optimize=cfg.preprocess)


@register_pass
class QuantizeDynamic(Pass):
    """Dynamic INT8: weights quantized offline, activations quantized at run time per batch.

    No calibration data. On CPUs without VNNI this is often *slower* than FP32 for convnets;
    it shrinks the weights about 4x.
    """

    name = "quantize_dynamic"

    class Config(_CommonConfig):
        weight_type: Literal["int8", "uint8"] = Field("int8", description="integer type of the weights")

    config: Config  # the validated config (narrows Pass.config for the type checker)

    def run(self, model_in: Path, model_out: Path, ctx: PassContext) -> PassResult:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        cfg = self.config
        load_model(model_in)
        with _WorkDir(ctx) as work:
            src = _prepared(Path(model_in), work / "dyn_prep.onnx", cfg)
            try:
                quantize_dynamic(str(src), str(model_out), op_types_to_quantize=_op_types(cfg, static=False),
                                 per_channel=cfg.per_channel, reduce_range=reduce_range_for(cfg),
                                 weight_type=QuantType.QInt8 if cfg.weight_type == "int8" else QuantType.QUInt8,
                                 nodes_to_exclude=list(cfg.nodes_to_exclude), extra_options=dict(cfg.extra_options))
            except (ModelLoadError, CompressionError):
                raise
            except Exception as exc:
                raise CompressionError(f"quantize_dynamic failed on {Path(model_in).name}: {exc}") from exc
        return PassResult(verify_loadable(Path(model_out), "quantize_dynamic"))


@register_pass
class QuantizeStatic(Pass):
    """Static INT8: activation ranges from calibration data, in QDQ or QOperator format."""

    name = "quantize_static"

    class Config(_CommonConfig):
        format: Literal["QDQ", "QOperator"] = Field("QDQ", description="QDQ inserts QuantizeLinear/"
                                                   "DequantizeLinear pairs (portable, EPs fuse them); QOperator "
                                                   "writes QLinearConv/QLinearMatMul... directly")
        calibrate_method: Literal["MinMax", "Entropy", "Percentile"] = Field(
            "MinMax", description="how activation ranges are chosen from the calibration outputs")
        percentile: float = Field(99.999, gt=0, le=100, description="percentile kept by the Percentile method")
        types: Literal["U8U8", "U8S8", "S8S8"] = Field("U8S8", description="activation/weight integer types "
                                                       "(U8S8 is onnxruntime's fast CPU path)")
        calibration_samples: int = Field(64, ge=1, description="at most this many calibration feeds are used")

    config: Config  # the validated config (narrows Pass.config for the type checker)

    def run(self, model_in: Path, model_out: Path, ctx: PassContext) -> PassResult:
        with _WorkDir(ctx) as work:
            self._quantize(Path(model_in), Path(model_out), ctx, work)
        return PassResult(verify_loadable(Path(model_out), self.name))

    def _quantize(self, model_in: Path, model_out: Path, ctx: PassContext, work: Path,
                  rewrite: Any = None) -> tuple[Path, list[dict[str, np.ndarray]]]:
        """onnxruntime's quantize_static; returns the float model it quantized (pre-processed,
        in ``work``) and the calibration feeds it used. ``rewrite(path, feeds) -> path`` may
        change the pre-processed FP32 model before it is quantized."""
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

        cfg = self.config
        if ctx.calib is None:
            raise CompressionError(f"{self.name} needs calibration data (ctx.calib / Recipe.apply(calib=...)), "
                                   "got None")
        load_model(model_in)
        calib = ctx.calib if isinstance(ctx.calib, CalibrationData) else CalibrationData(ctx.calib)
        src = _prepared(model_in, work / "static_prep.onnx", cfg)
        feeds = calib.for_model(src, limit=cfg.calibration_samples)
        if rewrite is not None:
            src = rewrite(src, feeds)
        act, wt = TYPE_PAIRS[cfg.types]
        extra = dict(cfg.extra_options)
        if cfg.calibrate_method == "Percentile":
            extra.setdefault("CalibPercentile", cfg.percentile)
        cache = _calibration_cache(ctx, src, feeds, cfg)
        try:
            with _quiet():
                quantize_static(
                    str(src), str(model_out),
                    calibration_data_reader=OrtCalibrationReader(feeds, ctx.progress,
                                                                 f"calibrating ({cfg.calibrate_method})"),
                    quant_format=QuantFormat.QDQ if cfg.format == "QDQ" else QuantFormat.QOperator,
                    op_types_to_quantize=_op_types(cfg, static=True), per_channel=cfg.per_channel,
                    reduce_range=reduce_range_for(cfg), activation_type=getattr(QuantType, act),
                    weight_type=getattr(QuantType, wt), nodes_to_exclude=list(cfg.nodes_to_exclude),
                    calibrate_method=getattr(CalibrationMethod, cfg.calibrate_method), extra_options=extra,
                    calibration_cache_path=cache)
        except (ModelLoadError, CompressionError):
            raise
        except Exception as exc:
            raise CompressionError(f"{self.name} failed on {Path(model_in).name}: {exc}") from exc
        return src, feeds


@register_pass
class QuantizeInt8(QuantizeStatic):
    """Static INT8 (QDQ) whose numbers are reconstructed against the FP32 model.

    onnxruntime's quantizer lays out the graph; :func:`sdk.compress.qdq_refine.refine_qdq`
    then re-chooses every activation range (least squared error), re-rounds every weight
    (output-error clipping + GPTQ) and corrects every bias for the weight rounding, on the
    same calibration data. The graph stays what onnxruntime's CPU kernels fuse into
    QLinearConv / QLinearMatMul. Its report (per-layer errors before and after) goes to
    the :class:`PassResult`.
    """

    name = "quantize_int8"

    class Config(QuantizeStatic.Config):
        format: Literal["QDQ"] = Field("QDQ", description="QDQ only: the reconstruction rewrites the "
                                       "QuantizeLinear/DequantizeLinear parameters")
        per_channel: bool = Field(True, description="one weight scale per output channel (upgrades the opset to "
                                  "13 first when older)")
        ranges: Literal["mse", "mse_silu", "calibrator"] = Field(
            "mse_silu", description="activation ranges: least squared error over the FP32 values (mse_silu: measured "
            "after the SiLU for tensors only a SiLU reads), or the calibrate_method's own")
        weight_rounding: Literal["gptq", "nearest"] = Field("gptq", description="weights: output-error scale + "
                                                            "GPTQ rounding, or onnxruntime's round-to-nearest")
        bias_correction: bool = Field(True, description="fold the mean output shift of the weight rounding into "
                                      "the bias")
        keep_float_noisy: int = Field(0, ge=0, description="run in float the k weighted layers whose 8-bit input "
                                      "grid adds the most noise relative to their output (float input and weights; "
                                      "see qdq_refine.keep_float)")
        keep_float_nodes: list[str] = Field(default_factory=list, description="nodes run in float for real "
                                            "(float input and weights), unlike nodes_to_exclude, which onnxruntime "
                                            "turns back into integer convs when their neighbours are quantized")
        equalize: bool = Field(False, description="cross-layer equalization of Conv -> activation -> Conv pairs "
                               "before quantizing (sdk.compress.equalize; SiLU pairs within equalize_silu_tol)")
        equalize_silu_tol: float = Field(1e-5, gt=0, description="relative squared change a SiLU channel may take "
                                         "from equalization")
        absorb_affine: bool = Field(True, description="rewrite each scalar Mul(a) [-> Add(b)] between 8-bit grids "
                                    "as one change of grid (sdk.compress.qdq_affine): two roundings and two integer "
                                    "ops fewer; PP-LCNet's affine blocks before padded convolutions")
        reconstruct: Literal["none", "adaround"] = Field("none", description="adaround: learn the weight rounding, "
                                                         "input scales and biases block by block against the FP32 "
                                                         "model (sdk.compress.adaround; extra 'train')")
        reconstruct_iters: int = Field(200, ge=1, description="optimisation steps per block for reconstruct")
        reconstruct_blocks: int | None = Field(None, ge=1, description="reconstruct only the first this many "
                                               "blocks in graph order (None: all); the rest keep their rounding")
        reconstruct_frames: int = Field(32, ge=1, description="calibration frames the reconstruction uses")

    config: Config  # the validated config (narrows Pass.config for the type checker)

    def run(self, model_in: Path, model_out: Path, ctx: PassContext) -> PassResult:
        import onnx

        from sdk.compress.graph_prep import save_model
        from sdk.compress.qdq_refine import refine_qdq

        cfg = self.config
        weight_bits = 7 if reduce_range_for(cfg) else 8
        kw: dict[str, Any] = dict(ranges=cfg.ranges != "calibrator", silu_aware=cfg.ranges == "mse_silu",
                                  weights=cfg.weight_rounding == "gptq", bias_correction=cfg.bias_correction,
                                  weight_bits=weight_bits, progress=ctx.progress)
        kept: list[str] = []
        extra: dict[str, Any] = {}
        self._eq_report: dict[str, Any] = {}
        with _WorkDir(ctx) as work:
            src, feeds = self._quantize(Path(model_in), Path(model_out), ctx, work,
                                        rewrite=self._equalize if cfg.equalize else None)
            qdq = onnx.load(str(model_out))
            float_model = load_model(src, check=False)
            rep = refine_qdq(float_model, qdq, list(feeds), **kw)
            if cfg.absorb_affine:
                from sdk.compress.qdq_affine import absorb_affine

                extra["absorbed_affine"] = len(absorb_affine(qdq))
            if cfg.reconstruct == "adaround":
                from sdk.compress.adaround import reconstruct_qdq

                extra["reconstruct"] = reconstruct_qdq(float_model, qdq, feeds, iters=cfg.reconstruct_iters,
                                                       weight_bits=weight_bits, max_blocks=cfg.reconstruct_blocks,
                                                       max_frames=cfg.reconstruct_frames,
                                                       progress=ctx.progress).summary()
            wanted = list(cfg.keep_float_nodes) + [n for n, _ in rep.noise[:cfg.keep_float_noisy]]
            if wanted:
                from sdk.compress.qdq_keep_float import keep_float

                kept = keep_float(qdq, float_model, list(dict.fromkeys(wanted)))
            save_model(qdq, model_out)
        return PassResult(verify_loadable(Path(model_out), self.name),
                          {**rep.summary(), "kept_float": kept, **extra, **self._eq_report})

    def _equalize(self, src: Path, feeds: list[dict[str, np.ndarray]]) -> Path:
        """Cross-layer equalization of the pre-processed FP32 model (a new file next to it)."""
        from sdk.compress.equalize import equalize
        from sdk.compress.graph_prep import save_model

        model = load_model(src, check=False)
        self._eq_report = {"equalize": equalize(model, feeds, silu_tol=self.config.equalize_silu_tol).summary()}
        return save_model(model, Path(src).with_name(Path(src).stem + ".equalized.onnx"))


def _calibration_cache(ctx: PassContext, model: Path, feeds: list[dict[str, np.ndarray]], cfg: Any) -> str | None:
    """A cache file for activation ranges, keyed by model bytes, data and method, when the
    caller shares a cache folder (``ctx.workspace.cache_dir``): the search quantizes one
    model many ways and calibrates it once per method."""
    folder = ctx.workspace.cache_dir
    if not folder:
        return None
    h = hashlib.sha256(Path(model).read_bytes())
    for f in feeds:
        for k in sorted(f):
            h.update(k.encode())
            h.update(np.ascontiguousarray(f[k]).tobytes())
    h.update(f"{cfg.calibrate_method}:{cfg.percentile}:{sorted(cfg.extra_options.items())}".encode())
    Path(folder).mkdir(parents=True, exist_ok=True)
    return str(Path(folder) / f"calib-{h.hexdigest()[:20]}.json")
