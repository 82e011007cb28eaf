"""caffe_xent.python_layers against the native layers, and the original loss_layers shim.

Tolerances. In float64 both sides evaluate the same formulas as sums of
non-negative terms: each element (row) is within ~12 roundings of the truth,
so within 32 ulp of each other per element, and the loss (a sum of
non-negative terms) within (32 + K) ulp relative. In float32 nets the native
layer computes each element in float32 (~12 float32 roundings, plus the
float32 x - m inside exp for the softmax), the Python layer in float64 then
rounds once: per element |difference| <= 32 u32 * M, where M bounds the
terms the gradient is a difference of (derived per layer below).
"""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import caffe_xent
from caffe_xent import python_layers
from caffe_xent.python_layers._options import check_options
from caffe_xent.python_layers._sigmoid_cross_entropy_loss import element_losses

caffe = pytest.importorskip("caffe")

U64 = np.finfo(np.float64).eps / 2
U32 = float(np.finfo(np.float32).eps) / 2

SIGMOID_CROSS_ENTROPY_LOSS_CASES = {
    "plain": ({}, ""),
    "pos_weight_per_class": ({"pos_weight": [3.0, 0.5, 1.0]}, "pos_weight: 3 pos_weight: 0.5 pos_weight: 1"),
    "all_options": ({"pos_weight": 2.0, "class_weight": [1.0, 0.3, 2.0], "focal_gamma": 2.0,
                     "focal_alpha": 0.25, "label_smoothing": 0.1},
                    "pos_weight: 2 class_weight: 1 class_weight: 0.3 class_weight: 2 focal_gamma: 2 "
                    "focal_alpha: 0.25 label_smoothing: 0.1"),
    "focal_only": ({"focal_gamma": 1.5}, "focal_gamma: 1.5"),
    "last_axis": ({"axis": -1, "pos_weight": [1.0, 4.0, 1.0, 0.5]},
                  "axis: -1 pos_weight: 1 pos_weight: 4 pos_weight: 1 pos_weight: 0.5"),
}
NORMALIZATIONS = ["BATCH_SIZE", "VALID", "FULL", "NONE"]


def sigmoid_layer(options, proto_fields, normalization, ignore_label=None):
    loss_param = "normalization: %s" % normalization
    if ignore_label is not None:
        loss_param += " ignore_label: %d" % ignore_label
    return ('type: "SigmoidCrossEntropyLoss" loss_param { %s } '
            'sigmoid_cross_entropy_loss_param { %s }' % (loss_param, proto_fields))


def sigmoid_cross_entropy_loss_data(rng, shape=(5, 3, 4), ignore=False):
    x = rng.standard_normal(shape) * 4
    t = rng.random(shape)
    t[..., ::2] = np.round(t[..., ::2])  # hard and soft targets
    if ignore:
        t.reshape(-1)[::7] = -1
    return x, t


@pytest.mark.parametrize("normalization", NORMALIZATIONS)
@pytest.mark.parametrize("case", sorted(SIGMOID_CROSS_ENTROPY_LOSS_CASES))
def test_sigmoid_cross_entropy_loss_numpy_equals_native_float64(case, normalization, rng):
    options, fields = SIGMOID_CROSS_ENTROPY_LOSS_CASES[case]
    x, t = sigmoid_cross_entropy_loss_data(rng, ignore=True)
    loss, grad = python_layers.sigmoid_cross_entropy_loss(
        x, t, normalization=normalization, ignore_label=-1, **options)
    tops, diffs = caffe_xent.run_layer(sigmoid_layer(options, fields, normalization, -1), [x, t])
    assert loss == pytest.approx(float(tops[0]), rel=(32 + x.size) * U64, abs=0)
    magnitude = np.abs(diffs[0]).max() + np.abs(grad).max()
    np.testing.assert_allclose(grad, diffs[0], rtol=0, atol=64 * U64 * magnitude)


def test_sigmoid_cross_entropy_loss_numpy_third_bottom_and_element_top(rng):
    x, t = sigmoid_cross_entropy_loss_data(rng)
    w = rng.random(x.shape) * 2
    # The element losses, not normalized: what the native second top holds.
    options = check_options("t", {"pos_weight": 2.0}, python_layers.SIGMOID_CROSS_ENTROPY_LOSS_DEFAULTS)
    elements, _, _ = element_losses("t", options, x, t, w, False)
    tops, diffs = caffe_xent.run_layer(
        'type: "SigmoidCrossEntropyLoss" sigmoid_cross_entropy_loss_param { pos_weight: 2 }',
        [x, t, w], top_diffs=[np.array(1.5), np.zeros_like(x)])
    np.testing.assert_allclose(elements.reshape(x.shape), tops[1], rtol=32 * U64, atol=0)
    loss, grad = python_layers.sigmoid_cross_entropy_loss(x, t, w, pos_weight=2.0)
    assert loss == pytest.approx(float(tops[0]), rel=(32 + x.size) * U64)
    np.testing.assert_allclose(1.5 * grad, diffs[0], rtol=0, atol=64 * U64 * np.abs(diffs[0]).max())


MULTI_LABEL_SOFTMAX_LOSS_CASES = {
    "plain": ({}, ""),
    "sum_smoothing_weights": ({"target_normalization": "SUM", "label_smoothing": 0.1,
                               "class_weight": [1.0, 2.0, 0.5, 1.0]},
                              "target_normalization: SUM label_smoothing: 0.1 class_weight: 1 "
                              "class_weight: 2 class_weight: 0.5 class_weight: 1"),
    "none": ({"target_normalization": "NONE"}, "target_normalization: NONE"),
    "spatial_axis_1": ({"axis": 1}, "axis: 1"),
}


def multi_label_softmax_loss_data(rng, shape=(6, 4, 3)):
    x = rng.standard_normal(shape) * 3
    t = (rng.random(shape) < 0.4) * rng.integers(1, 3, size=shape).astype(float)
    t[0] = 0             # a row set with no positive: ignored
    t[1, 0, 0] = -1      # a row with ignore_label
    return x, t


@pytest.mark.parametrize("normalization", NORMALIZATIONS)
@pytest.mark.parametrize("case", sorted(MULTI_LABEL_SOFTMAX_LOSS_CASES))
def test_multi_label_softmax_loss_numpy_equals_native_float64(case, normalization, rng):
    options, fields = MULTI_LABEL_SOFTMAX_LOSS_CASES[case]
    x, t = multi_label_softmax_loss_data(rng)
    loss, grad = python_layers.multi_label_softmax_loss(
        x, t, normalization=normalization, ignore_label=-1, **options)
    tops, diffs = caffe_xent.run_layer(
        'type: "MultiLabelSoftmaxLoss" loss_param { normalization: %s ignore_label: -1 } '
        'multi_label_softmax_loss_param { %s }' % (normalization, fields), [x, t])
    assert loss == pytest.approx(float(tops[0]), rel=(32 + x.size) * U64, abs=0)
    np.testing.assert_allclose(grad, diffs[0], rtol=0, atol=64 * U64 * np.abs(diffs[0]).max())


# ---- nets: the Python layer and the native layer on the same data -----------------------------

def make_net(tmp_path, name, shape, loss_layer):
    dims = " ".join("dim: %d" % d for d in shape)
    text = textwrap.dedent("""
        layer { name: "x" type: "Input" top: "x" input_param { shape { %s } } }
        layer { name: "t" type: "Input" top: "t" input_param { shape { %s } } }
        layer { name: "score" type: "Scale" bottom: "x" top: "score"
                scale_param { filler { type: "constant" value: 1 } } }
        %s
    """) % (dims, dims, loss_layer)
    path = tmp_path / (name + ".prototxt")
    path.write_text(text)
    return caffe.Net(str(path), caffe.TRAIN)


def python_layer(layer, options, loss_weight):
    return ('layer { name: "loss" type: "Python" bottom: "score" bottom: "t" top: "loss" '
            'python_param { module: "caffe_xent.python_layers" layer: "%s" param_str: \'%s\' } '
            'loss_weight: %r }' % (layer, json.dumps(options), loss_weight))


def run_net(net, x, t):
    net.blobs["x"].data[...] = x
    net.blobs["t"].data[...] = t
    loss = float(net.forward()["loss"])
    net.backward()
    return loss, net.blobs["score"].diff.astype(np.float64).copy()


@pytest.mark.parametrize("case", sorted(SIGMOID_CROSS_ENTROPY_LOSS_CASES))
def test_sigmoid_cross_entropy_loss_python_layer_equals_native_in_a_net(case, tmp_path, rng):
    caffe.set_mode_cpu()
    options, fields = SIGMOID_CROSS_ENTROPY_LOSS_CASES[case]
    x, t = sigmoid_cross_entropy_loss_data(rng, ignore=True)
    x, t = x.astype(np.float32), t.astype(np.float32)
    loss_weight = 2.5  # the top diff: the original layers ignored it
    native = make_net(tmp_path, "native", x.shape, 'layer { name: "loss" %s bottom: "score" '
                      'bottom: "t" top: "loss" loss_weight: %r }'
                      % (sigmoid_layer(options, fields, "VALID", -1), loss_weight))
    python = make_net(tmp_path, "python", x.shape, python_layer(
        "SigmoidCrossEntropyLoss", dict(options, normalization="VALID", ignore_label=-1), loss_weight))
    native_loss, native_grad = run_net(native, x, t)
    python_loss, python_grad = run_net(python, x, t)
    # Loss: non-negative terms, each within 32 u32 relative; +1 final rounding.
    assert python_loss == pytest.approx(native_loss, rel=34 * U32, abs=0)
    # Gradient: |d ell/dx| <= weight * max(1, pos_weight) * alpha_t * (1 + gamma (1 + bce)).
    pos_weight = np.resize(np.float32(options.get("pos_weight", 1.0)), x.shape[options.get("axis", 1)])
    class_weight = np.resize(np.float32(options.get("class_weight", 1.0)), pos_weight.size)
    axis = options.get("axis", 1) % x.ndim
    shape = [1] * x.ndim
    shape[axis] = -1
    gamma = options.get("focal_gamma", 0.0)
    bce = np.abs(x.astype(np.float64)) * max(1.0, float(pos_weight.max())) + np.log(2)
    bound = (class_weight.reshape(shape) * np.maximum(1.0, pos_weight).reshape(shape)
             * (1 + gamma * (1 + bce)) * loss_weight / max(1, np.count_nonzero(t != -1)))
    assert np.all(np.abs(python_grad - native_grad) <= 32 * U32 * bound)
    np.testing.assert_array_equal(python_grad[t == -1], 0)


@pytest.mark.parametrize("case", sorted(MULTI_LABEL_SOFTMAX_LOSS_CASES))
def test_multi_label_softmax_loss_python_layer_equals_native_in_a_net(case, tmp_path, rng):
    caffe.set_mode_cpu()
    options, fields = MULTI_LABEL_SOFTMAX_LOSS_CASES[case]
    x, t = multi_label_softmax_loss_data(rng)
    x, t = x.astype(np.float32), t.astype(np.float32)
    loss_weight = 0.5
    native = make_net(tmp_path, "native", x.shape, textwrap.dedent("""
        layer { name: "loss" type: "MultiLabelSoftmaxLoss" bottom: "score" bottom: "t" top: "loss"
                loss_param { ignore_label: -1 } multi_label_softmax_loss_param { %s }
                loss_weight: %r }""") % (fields, loss_weight))
    python = make_net(tmp_path, "python", x.shape, python_layer(
        "MultiLabelSoftmaxLoss", dict(options, ignore_label=-1), loss_weight))
    native_loss, native_grad = run_net(native, x, t)
    python_loss, python_grad = run_net(python, x, t)
    reference_loss, reference_grad = python_layers.multi_label_softmax_loss(
        x.astype(np.float64), t.astype(np.float64), ignore_label=-1, **options)
    # Row loss Q log S + sum q (m - x): terms >= 0; float32 exps add |x - m| u32 relative.
    gap = float(np.ptp(x))
    assert python_loss == pytest.approx(native_loss, rel=(34 + gap) * U32, abs=0)
    assert python_loss == pytest.approx(reference_loss, rel=U32)
    # Gradient Q p - q, each term <= max(Q) + max(q): bounded by the weighted targets.
    weight = max(options.get("class_weight", [1.0]))
    bound = (2 * weight * float(t.max()) + 1) * (4 + gap) * loss_weight
    normalizer = max(1, np.count_nonzero((t > 0).any(axis=1) & ~(t == -1).any(axis=1)))  # VALID rows
    assert np.all(np.abs(python_grad - native_grad) <= 32 * U32 * bound / normalizer)
    np.testing.assert_allclose(python_grad, loss_weight * reference_grad, rtol=0,
                               atol=U32 * np.abs(python_grad).max())


def test_python_layer_second_tops(tmp_path, rng):
    caffe.set_mode_cpu()
    x, t = sigmoid_cross_entropy_loss_data(rng, shape=(4, 3))
    for layer, expected_top in (("SigmoidCrossEntropyLoss", "elements"),
                                ("MultiLabelSoftmaxLoss", "probabilities")):
        text = ('layer { name: "loss" type: "Python" bottom: "score" bottom: "t" top: "loss" '
                'top: "extra" python_param { module: "caffe_xent.python_layers" layer: "%s" } '
                'loss_weight: 1 loss_weight: 0 }' % layer)
        net = make_net(tmp_path, layer, x.shape, text)
        tt = (t > 0.5).astype(np.float32) if layer == "MultiLabelSoftmaxLoss" else t
        loss, _ = run_net(net, x.astype(np.float32), tt.astype(np.float32))
        extra = net.blobs["extra"].data
        if expected_top == "elements":
            assert loss == pytest.approx(extra.sum() / x.shape[0], rel=1e-6)
        else:
            np.testing.assert_allclose(extra.sum(axis=1), 1, rtol=1e-6)


def test_force_backward_gives_targets_a_zero_diff(tmp_path, rng):
    caffe.set_mode_cpu()
    x, t = sigmoid_cross_entropy_loss_data(rng, shape=(4, 3))
    path = tmp_path / "net.prototxt"
    path.write_text('force_backward: true\n'
                    'layer { name: "x" type: "Input" top: "score" top: "t" input_param { '
                    'shape { dim: 4 dim: 3 } shape { dim: 4 dim: 3 } } }\n'
                    + python_layer("SigmoidCrossEntropyLoss", {}, 1))
    net = caffe.Net(str(path), caffe.TRAIN)
    net.blobs["t"].diff[...] = 7
    net.blobs["score"].data[...] = x
    net.blobs["t"].data[...] = t
    net.forward()
    net.backward()
    np.testing.assert_array_equal(net.blobs["t"].diff, 0)
    assert np.abs(net.blobs["score"].diff).sum() > 0


def test_nan_logits_give_nan_loss_and_the_process_goes_on(tmp_path, rng):
    caffe.set_mode_cpu()
    x, t = sigmoid_cross_entropy_loss_data(rng, shape=(4, 3))
    x[1, 1] = np.nan
    for layer in ("SigmoidCrossEntropyLoss", "MultiLabelSoftmaxLoss"):
        net = make_net(tmp_path, layer, x.shape, python_layer(layer, {}, 1))
        loss, grad = run_net(net, x.astype(np.float32), (t > 0.5).astype(np.float32))
        assert np.isnan(loss) and np.isnan(grad[1, 1])


BAD_OPTIONS = [
    ("SigmoidCrossEntropyLoss", '{"bogus": 1}', "unknown option 'bogus'"),
    ("SigmoidCrossEntropyLoss", "{not json", "param_str is not valid JSON"),
    ("SigmoidCrossEntropyLoss", '{"focal_gamma": -1}', "focal_gamma = -1.0 is invalid"),
    ("SigmoidCrossEntropyLoss", '{"focal_alpha": 2}', "focal_alpha = 2.0 is invalid"),
    ("SigmoidCrossEntropyLoss", '{"label_smoothing": 1}', "label_smoothing = 1.0 is invalid"),
    ("SigmoidCrossEntropyLoss", '{"pos_weight": [1, -2, 1]}', r"pos_weight\[1\] = -2 is negative"),
    ("SigmoidCrossEntropyLoss", '{"pos_weight": [1, 2]}', "pos_weight has 2 values"),
    ("SigmoidCrossEntropyLoss", '{"axis": 2}', "axis = 2 is out of range"),
    ("SigmoidCrossEntropyLoss", '{"normalization": "MEAN"}', "normalization = 'MEAN' is invalid"),
    ("SigmoidCrossEntropyLoss", '{"ignore_label": 0.5}', "ignore_label = 0.5 must be an integer"),
    ("MultiLabelSoftmaxLoss", '{"ignore_label": 0}', "ignore_label = 0 is refused"),
    ("MultiLabelSoftmaxLoss", '{"target_normalization": "MAX"}', "target_normalization = 'MAX'"),
    ("MultiLabelSoftmaxLoss", '{"class_weight": [1, 1]}', "class_weight has 2 values"),
    ("MultiLabelSoftmaxLoss", '{"focal_gamma": 1}', "unknown option 'focal_gamma'"),
]


@pytest.mark.parametrize("layer, param_str, match", BAD_OPTIONS)
def test_bad_options_raise_value_error_naming_the_layer(layer, param_str, match, tmp_path):
    caffe.set_mode_cpu()
    text = ('layer { name: "loss" type: "Python" bottom: "score" bottom: "t" top: "loss" '
            'python_param { module: "caffe_xent.python_layers" layer: "%s" param_str: \'%s\' } '
            'loss_weight: 1 }' % (layer, param_str))
    with pytest.raises(ValueError, match=match) as info:
        make_net(tmp_path, "bad", (4, 3), text)
    assert str(info.value).startswith(layer + " (Python layer): ")


@pytest.mark.parametrize("layer, targets, match", [
    ("SigmoidCrossEntropyLoss", 1.5, r"bottom\[1\] \(targets\) has 1 values outside \[0, 1\]"),
    ("SigmoidCrossEntropyLoss", np.nan, r"outside \[0, 1\] \(or NaN\)"),
    ("MultiLabelSoftmaxLoss", -2.0, r"bottom\[1\] \(targets\) has value -2.0 at flat index 4"),
])
def test_bad_targets_raise_value_error_and_the_net_goes_on(layer, targets, match, tmp_path, rng):
    caffe.set_mode_cpu()
    net = make_net(tmp_path, "net", (4, 3), python_layer(layer, {}, 1))
    x, t = rng.standard_normal((4, 3)), (rng.random((4, 3)) < 0.5).astype(float)
    t[:, 0] = 1
    bad = t.copy()
    bad[1, 1] = targets
    with pytest.raises(ValueError, match=match):
        run_net(net, x, bad)
    assert np.isfinite(run_net(net, x, t)[0])


def test_shape_mismatch_raises_at_net_construction(tmp_path):
    caffe.set_mode_cpu()
    path = tmp_path / "net.prototxt"
    for layer, match in (("SigmoidCrossEntropyLoss", "must have the same count"),
                         ("MultiLabelSoftmaxLoss", "they must be equal")):
        path.write_text('layer { name: "x" type: "Input" top: "score" top: "t" input_param { '
                        'shape { dim: 4 dim: 3 } shape { dim: 4 dim: 2 } } }\n'
                        + python_layer(layer, {}, 1))
        with pytest.raises(ValueError, match=match):
            caffe.Net(str(path), caffe.TRAIN)


# ---- the original loss_layers shim -------------------------------------------------------------



def test_shim_is_installed_as_top_level_loss_layers():
    import loss_layers
    from caffe_xent.compat import loss_layers as compat
    assert loss_layers.CustomSigmoidCrossEntropyLossLayer.__name__ == \
        compat.CustomSigmoidCrossEntropyLossLayer.__name__
    import caffe_xent  # installed side by side: the top of the same package tree
    assert os.path.dirname(loss_layers.__file__) == os.path.dirname(os.path.dirname(caffe_xent.__file__))

# The original layer block, verbatim apart from the blob names of this net.
ORIGINAL_LAYER = """
layer {
  type: 'Python'
  name: 'loss'
  top: 'loss_opt'
  bottom: 'score'
  bottom: 'label'
  python_param {
    # the module name -- usually the filename -- that needs to be in $PYTHONPATH
    module: 'loss_layers'
    # the layer name -- the class name in the module
    layer: 'CustomSigmoidCrossEntropyLossLayer'
  }
  include {
    phase: TRAIN
  }
  # set loss weight so Caffe knows this is a loss layer.
  # since PythonLayer inherits directly from Layer, this isn't automatically
  # known to Caffe
  loss_weight: 1
}
"""


@pytest.mark.parametrize("loss_weight", [1.0, 0.25])
def test_original_prototxt_runs_unchanged_through_the_shim(loss_weight, tmp_path, rng):
    # No PYTHONPATH set-up: the build installs the shim as top-level loss_layers.
    caffe.set_mode_cpu()
    layer = ORIGINAL_LAYER.replace("loss_weight: 1", "loss_weight: %r" % loss_weight)
    path = tmp_path / "original.prototxt"
    path.write_text('force_backward: true\nlayer { name: "data" type: "Input" top: "score" top: "label" '
                    'input_param { shape { dim: 8 dim: 5 } shape { dim: 8 dim: 5 } } }\n' + layer)
    net = caffe.Net(str(path), caffe.TRAIN)
    x = (rng.standard_normal((8, 5)) * 5).astype(np.float32)
    t = (rng.random((8, 5)) < 0.5).astype(np.float32)
    net.blobs["score"].data[...] = x
    net.blobs["label"].data[...] = t
    loss = net.forward()["loss_opt"]
    assert loss.shape == (1,)  # the original shape, so loss[0] keeps working
    x64, t64 = x.astype(np.float64), t.astype(np.float64)
    elements = np.maximum(x64, 0) - x64 * t64 + np.log1p(np.exp(-np.abs(x64)))
    assert loss[0] == pytest.approx(elements.sum(), rel=2 * U32)  # summed, as the original layer
    net.backward()
    np.testing.assert_allclose(net.blobs["score"].diff, loss_weight / (1 + np.exp(-x64)) - loss_weight * t64,
                               rtol=0, atol=2 * U32 * loss_weight)


def test_original_prototxt_in_the_caffe_command(tmp_path):
    tool = os.path.join(os.path.dirname(sys.executable), "caffe")
    (tmp_path / "net.prototxt").write_text(textwrap.dedent("""
        layer { name: "data" type: "DummyData" top: "x" top: "label"
                dummy_data_param { shape { dim: 4 dim: 3 } shape { dim: 4 dim: 2 }
                                   data_filler { type: "gaussian" } data_filler { type: "constant" value: 1 } } }
        layer { name: "fc" type: "InnerProduct" bottom: "x" top: "score"
                inner_product_param { num_output: 2 weight_filler { type: "xavier" } } }
    """) + ORIGINAL_LAYER)
    (tmp_path / "solver.prototxt").write_text(
        'net: "net.prototxt"\nbase_lr: 0.1\nlr_policy: "fixed"\nmax_iter: 3\n'
        'display: 1\nsnapshot_after_train: false\nsolver_mode: CPU\n')
    out = subprocess.run([tool, "train", "--solver=solver.prototxt"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Optimization Done." in out.stderr
