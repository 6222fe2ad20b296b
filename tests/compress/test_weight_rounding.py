"""GPTQ rounding, scale choice and the im2col used for Conv statistics."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from sdk.compress.layer_stats import unfold
from sdk.compress.weight_rounding import choose_scales, gptq, qrange, relative_output_error, round_nearest


def _correlated(n=4000, d=48, seed=0):
    rng = np.random.default_rng(seed)
    mix = rng.standard_normal((d, d)) * 0.6 + np.eye(d)
    return rng.standard_normal((n, d)) @ mix


@pytest.mark.parametrize("bits", [4, 8])
def test_gptq_output_error_below_round_to_nearest(bits):
    x = _correlated()
    h = x.T @ x / len(x)
    w = np.random.default_rng(1).standard_normal((32, x.shape[1]))
    s = choose_scales(w, bits, search=False)
    e_rtn = relative_output_error(w, round_nearest(w, s, bits) * s[:, None], h)
    e_gptq = relative_output_error(w, gptq(w, h, s, bits) * s[:, None], h)
    assert e_gptq < 0.75 * e_rtn, (e_gptq, e_rtn)


def test_codes_stay_in_the_symmetric_range():
    w = np.random.default_rng(2).standard_normal((16, 20)) * 5
    x = _correlated(d=20)
    h = x.T @ x / len(x)
    for bits in (4, 8):
        lo, hi = qrange(bits)
        q = gptq(w, h, choose_scales(w, bits, h), bits)
        assert q.dtype == np.int8 and q.min() >= lo and q.max() <= hi
    with pytest.raises(ValueError, match="bits"):
        qrange(3)
    with pytest.raises(ValueError, match="H must be"):
        gptq(w, np.eye(3), choose_scales(w, 8), 8)


def test_scale_search_never_worse_than_min_max():
    w = np.random.default_rng(3).standard_t(2, size=(8, 64))      # heavy tails: clipping pays
    for bits in (4, 8):
        s0, s1 = choose_scales(w, bits, search=False), choose_scales(w, bits)
        e0 = ((w - round_nearest(w, s0, bits) * s0[:, None]) ** 2).sum(1)
        e1 = ((w - round_nearest(w, s1, bits) * s1[:, None]) ** 2).sum(1)
        assert (e1 <= e0 + 1e-12).all()


def test_dead_inputs_do_not_break_gptq():
    x = _correlated(d=10)
    x[:, 3] = 0
    h = x.T @ x / len(x)
    w = np.random.default_rng(4).standard_normal((4, 10))
    q = gptq(w, h, choose_scales(w, 4), 4)
    assert (q[:, 3] == 0).all()


@pytest.mark.parametrize("k,pads,strides,dil", [(3, (1, 1, 1, 1), (1, 1), (1, 1)), (3, (0, 1, 2, 1), (2, 2), (1, 1)),
                                                 (3, (2, 2, 2, 2), (1, 2), (2, 2)), (1, (0, 0, 0, 0), (2, 2), (1, 1))])
def test_unfold_times_weight_equals_onnxruntime_conv(k, pads, strides, dil):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 9, 11)).astype(np.float32)
    w = rng.standard_normal((4, 3, k, k)).astype(np.float32)
    g = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], pads=list(pads), strides=list(strides),
                                            dilations=list(dil))], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          initializer=[numpy_helper.from_array(w, "w")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    y = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    cols = unfold(x, (k, k), pads, strides, dil)
    got = (cols @ w.reshape(4, -1).T).reshape(2, y.shape[2], y.shape[3], 4).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(got, y, atol=1e-4)
