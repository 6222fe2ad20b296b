"""Model compression: quantization, pruning and distillation passes, recipes, evaluators,
the accuracy-budgeted search :func:`optimize` and its report.

>>> from sdk.compress import Recipe, CalibrationData, OutputFidelity, optimize  # doctest: +SKIP
>>> res = optimize("model.onnx", calib, OutputFidelity("model.onnx", feeds), max_drop="1%")  # doctest: +SKIP
"""
from sdk.compress.base import PASSES, Pass, PassConfig, PassContext, register_pass
from sdk.compress.calibration import CalibrationData
from sdk.compress.distill import Distill, DistillConfig, DistillResult, distill
from sdk.compress.evaluators import (
    AUC,
    DetectionAgreement,
    Evaluator,
    FrameDetectionAgreement,
    OutputFidelity,
    Top1Accuracy,
)
from sdk.compress.export import export_onnx
from sdk.compress.graph_prep import (
    FixInputShape,
    OptimizeGraph,
    SpecializeInputs,
    prepare_for_quantization,
    upgrade_opset,
)
from sdk.compress.prune_channels import PruneChannels
from sdk.compress.prune_magnitude import PruneMagnitude
from sdk.compress.quantize import QuantizeDynamic, QuantizeInt8, QuantizeStatic, count_ops
from sdk.compress.quantize_lowbit import ConvertFP16, QuantizeInt4
from sdk.compress.quantize_weights import QuantizeWeights, WeightQuantizer
from sdk.compress.recipe import Recipe
from sdk.compress.report import write_report
from sdk.compress.search import Budget, Candidate, OptimizeResult, optimize
from sdk.compress.sensitivity import SensitivityResult, analyze_sensitivity
from sdk.detect import Detections, YoloxDecoder  # re-exported: the detection evaluators speak them

__all__ = [
    # passes
    "Pass", "PassConfig", "PassContext", "register_pass", "PASSES", "Recipe",
    "QuantizeDynamic", "QuantizeStatic", "QuantizeInt8", "QuantizeInt4", "ConvertFP16", "OptimizeGraph",
    "SpecializeInputs", "FixInputShape", "QuantizeWeights", "WeightQuantizer",
    "PruneMagnitude", "PruneChannels", "Distill", "DistillConfig", "DistillResult", "distill", "export_onnx",
    # data and evaluation
    "CalibrationData", "Evaluator", "Top1Accuracy", "AUC", "DetectionAgreement", "FrameDetectionAgreement",
    "OutputFidelity",
    "YoloxDecoder", "Detections",
    # search and report
    "optimize", "OptimizeResult", "Candidate", "Budget", "write_report",
    "analyze_sensitivity", "SensitivityResult",
    # graph helpers
    "prepare_for_quantization", "upgrade_opset", "count_ops",
]
