"""Model compression: quantization, pruning and distillation passes, recipes, evaluators,
the accuracy-budgeted search :func:`optimize` and its report.

>>> from sdk.compress import CalibrationData, OptimizeOptions, OutputFidelity, Recipe, optimize  # doctest: +SKIP
>>> opts = OptimizeOptions(budget={"max_drop": "1%"})  # doctest: +SKIP
>>> res = optimize("model.onnx", calib, OutputFidelity("model.onnx", feeds), opts)  # doctest: +SKIP
"""
from sdk.compress.base import (
    PASSES,
    ModelPass,
    Pass,
    PassConfig,
    PassContext,
    PassResult,
    available_passes,
    find_pass,
    register_pass,
)
from sdk.compress.budget import Budget
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
from sdk.compress.fold_affine import FoldAffine
from sdk.compress.graph_passes import FixInputShape, OptimizeGraph, SpecializeInputs
from sdk.compress.graph_prep import prepare_for_quantization, upgrade_opset
from sdk.compress.options import (
    BitAllocationOptions,
    BudgetOptions,
    CandidateOptions,
    DataOptions,
    LatencyOptions,
    OptimizeOptions,
    SensitivityOptions,
)
from sdk.compress.prune_channels import PruneChannels
from sdk.compress.prune_magnitude import PruneMagnitude
from sdk.compress.quantize import QuantizeDynamic, QuantizeInt8, QuantizeStatic, count_ops
from sdk.compress.quantize_lowbit import ConvertFP16, QuantizeInt4
from sdk.compress.quantize_weights import QuantizeWeights, WeightQuantizer
from sdk.compress.recipe import Recipe, RecipeResult
from sdk.compress.relu_distill import ReluDistill
from sdk.compress.report import write_report
from sdk.compress.results import Candidate, OptimizeResult, choose, pareto_front
from sdk.compress.search import optimize
from sdk.compress.sensitivity import SensitivityResult, analyze_sensitivity
from sdk.compress.workspace import Workspace
from sdk.detect import Detections, YoloxDecoder  # re-exported: the detection evaluators speak them

__all__ = [
    # passes
    "Pass", "ModelPass", "PassConfig", "PassContext", "PassResult", "register_pass", "find_pass", "available_passes",
    "PASSES",
    "Recipe", "RecipeResult", "Workspace",
    "QuantizeDynamic", "QuantizeStatic", "QuantizeInt8", "QuantizeInt4", "ConvertFP16", "OptimizeGraph", "ReluDistill",
    "SpecializeInputs", "FixInputShape", "FoldAffine", "QuantizeWeights", "WeightQuantizer",
    "PruneMagnitude", "PruneChannels", "Distill", "DistillConfig", "DistillResult", "distill", "export_onnx",
    # data and evaluation
    "CalibrationData", "Evaluator", "Top1Accuracy", "AUC", "DetectionAgreement", "FrameDetectionAgreement",
    "OutputFidelity",
    "YoloxDecoder", "Detections",
    # search and report
    "optimize", "OptimizeOptions", "BudgetOptions", "LatencyOptions", "SensitivityOptions", "BitAllocationOptions",
    "DataOptions", "CandidateOptions", "OptimizeResult", "Candidate", "Budget", "choose", "pareto_front",
    "write_report",
    "analyze_sensitivity", "SensitivityResult",
    # graph helpers
    "prepare_for_quantization", "upgrade_opset", "count_ops",
]
