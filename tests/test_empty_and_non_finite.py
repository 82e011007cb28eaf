"""Empty blobs and non-finite data, the same way in all three entry points.

- An empty blob (a dimension of 0: an empty or filtered batch) gives loss 0
  and an empty gradient, with every normalization: caffe_xent.run_layer,
  a pycaffe Net and the caffe tool.
- A NaN or infinite target (both layers) or per-element weight
  (SigmoidCrossEntropyLoss) is bad data: refused with a message naming the
  layer, the bottom, the first bad value and its flat index.
- A shape too large for a Caffe blob is refused with a message, never a
  CHECK abort (the caffe tool exits 1).
"""
import os
import subprocess
import sys

import numpy as np
import pytest

import caffe_xent
from conftest import DEVICES

sys.path.insert(0, os.path.dirname(__file__))
from sigmoid_cross_entropy_loss_reference import NORMALIZATIONS  # noqa: E402
from sigmoid_cross_entropy_loss_reference import layer_text as sigmoid_cross_entropy_loss_text  # noqa: E402
from test_multi_label_softmax_loss import prototxt as multi_label_softmax_loss_text  # noqa: E402
from losses import LOSSES  # noqa: E402

CAFFE = os.path.join(os.path.dirname(sys.executable), "caffe")
LAYERS = {name: loss.text for name, loss in LOSSES.items()}
EMPTY_SHAPES = [(0, 3), (2, 3, 0), (2, 0), (0,), (0, 5, 4, 3)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("normalization", NORMALIZATIONS)
@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_empty_blobs_give_loss_zero_through_run_layer(layer, normalization, device, dtype):
    for shape in EMPTY_SHAPES:
        x = np.zeros(shape, dtype)
        if len(shape) < LOSSES[layer].min_axes:
            # Its default class axis does not exist: refused, empty or not.
            with pytest.raises(caffe_xent.LayerError, match="is out of range"):
                caffe_xent.run_layer(LAYERS[layer](normalization), [x, x], device=device)
            continue
        tops, diffs = caffe_xent.run_layer(LAYERS[layer](normalization), [x, x], device=device)
        assert float(tops[0]) == 0.0 and tops[0].dtype == dtype, shape
        second_top_shape = LOSSES[layer].second_top_shape
        if second_top_shape is None:
            assert len(tops) == 1
        else:
            assert tops[1].shape == second_top_shape(shape)
        assert diffs[0].shape == shape and diffs[0].dtype == dtype


def test_an_empty_batch_of_shape_0x3_and_the_process_survives():
    empty = [np.zeros((0, 3), np.float32)] * 2
    tops, diffs = caffe_xent.run_layer('type: "SigmoidCrossEntropyLoss"', empty)
    assert float(tops[0]) == 0.0 and diffs[0].shape == (0, 3)
    tops, diffs = caffe_xent.run_layer('type: "MultiLabelSoftmaxLoss"', empty)
    assert float(tops[0]) == 0.0 and diffs[0].shape == (0, 3)


# ---- non-finite data: one rule for both layers ---------------------------------

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("layer", sorted(LAYERS))
@pytest.mark.parametrize("shape", [(4, 19), (2, 5, 16), (3, 4)], ids=str)
def test_non_finite_targets_are_refused_naming_the_first(layer, shape, value, device, dtype):
    rng = np.random.default_rng(5)
    x = rng.standard_normal(shape).astype(dtype)
    t = (rng.random(shape) < 0.5).astype(dtype)
    t.flat[0] = 1
    t.flat[7] = value
    t.flat[9] = value
    with pytest.raises(caffe_xent.LayerError) as info:
        caffe_xent.run_layer(LAYERS[layer]("VALID"), [x, t], device=device)
    message = str(info.value)
    assert message.startswith("%s layer '" % layer), message
    assert "bottom[1] (targets) has 2 " in message, message
    assert "the first is %s at flat index 7" % value in message, message


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("value", [np.nan, np.inf, -1.0], ids=["nan", "inf", "negative"])
def test_bad_per_element_weights_are_refused(value, device, dtype):
    x = np.zeros((3, 20), dtype)
    t = np.ones((3, 20), dtype)
    w = np.ones((3, 20), dtype)
    w[1, 2] = value
    with pytest.raises(caffe_xent.LayerError, match=r"bottom\[2\] \(weights\) has 1 negative or "
                       r"non-finite values; the first is \S+ at flat index 22"):
        caffe_xent.run_layer(sigmoid_cross_entropy_loss_text(), [x, t, w], device=device)


@pytest.mark.parametrize("field", ["pos_weight", "class_weight"])
@pytest.mark.parametrize("value", [np.inf, np.nan])
def test_non_finite_per_class_weights_are_refused(field, value):
    x = np.zeros((2, 3), np.float32)
    text = sigmoid_cross_entropy_loss_text(**{field: [value]})
    with pytest.raises(caffe_xent.LayerError, match=r"%s\[0\] = \S+ is not finite" % field):
        caffe_xent.run_layer(text, [x, x])
    if field == "class_weight":
        with pytest.raises(caffe_xent.LayerError, match=r"class_weight\[0\] = \S+ is not finite"):
            caffe_xent.run_layer(multi_label_softmax_loss_text(class_weight=[value]), [x, x])


# ---- pycaffe --------------------------------------------------------------------

NET = """
force_backward: true
layer { name: "x" type: "Input" top: "x" input_param { shape { %(dims)s } } }
layer { name: "t" type: "Input" top: "t" input_param { shape { %(dims)s } } }
layer { name: "loss" type: "%(layer)s" bottom: "x" bottom: "t" top: "loss" %(params)s }
"""


def net_file(tmp_path, layer, shape, params=""):
    path = tmp_path / "net.prototxt"
    path.write_text(NET % {"layer": layer, "dims": " ".join("dim: %d" % d for d in shape),
                           "params": params})
    return str(path)


def cpu_net(tmp_path, layer, shape):
    caffe = pytest.importorskip("caffe")
    caffe.set_mode_cpu()
    return caffe.Net(net_file(tmp_path, layer, shape), caffe.TRAIN)


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_pycaffe_net_with_an_empty_batch(layer, tmp_path):
    net = cpu_net(tmp_path, layer, (2, 3))
    net.blobs["x"].data[...] = 1
    net.blobs["t"].data[...] = np.eye(2, 3)
    assert net.forward()["loss"] > 0
    for name in ("x", "t"):  # a short last batch: nothing left
        net.blobs[name].reshape(0, 3)
    assert net.blobs["x"].data.shape == (0, 3)
    assert float(net.forward()["loss"]) == 0.0
    net.backward()
    assert net.blobs["x"].diff.shape == (0, 3)


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_pycaffe_net_refuses_a_nan_target(layer, tmp_path):
    net = cpu_net(tmp_path, layer, (2, 12))
    net.blobs["t"].data[...] = 1
    net.blobs["t"].data[1, 4] = np.nan
    with pytest.raises(ValueError, match=r"bottom\[1\] \(targets\) has 1 .* nan at flat index 16"):
        net.forward()


def test_pycaffe_refuses_a_shape_too_large_for_a_blob(tmp_path):
    with pytest.raises(ValueError, match="more than INT_MAX"):
        cpu_net(tmp_path, "SigmoidCrossEntropyLoss", (50000, 50000))


# ---- the caffe tool: a message and exit 1, never a core dump -------------------

def caffe_time(tmp_path, text):
    (tmp_path / "net.prototxt").write_text(text)
    return subprocess.run([CAFFE, "time", "--model=net.prototxt", "--iterations=1"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)


def dummy_net(layer, target_value, shape=(4, 12), weight_value=None):
    dims = " ".join("dim: %d" % d for d in shape)
    fillers = 'data_filler { type: "gaussian" } data_filler { type: "constant" value: %s }' % target_value
    tops = 'top: "x" top: "t"'
    shapes = "shape { %s } shape { %s }" % (dims, dims)
    bottoms = 'bottom: "x" bottom: "t"'
    if weight_value is not None:
        fillers += ' data_filler { type: "constant" value: %s }' % weight_value
        tops += ' top: "w"'
        shapes += " shape { %s }" % dims
        bottoms += ' bottom: "w"'
    return ('layer { name: "data" type: "DummyData" %s dummy_data_param { %s %s } }\n'
            'layer { name: "loss" type: "%s" %s top: "loss" }\n'
            % (tops, shapes, fillers, layer, bottoms))


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_caffe_tool_with_an_empty_batch_runs(layer, tmp_path):
    out = caffe_time(tmp_path, NET % {"layer": layer, "dims": "dim: 0 dim: 3", "params": ""})
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Average Forward pass" in out.stderr


@pytest.mark.parametrize("layer, net, message", [
    ("SigmoidCrossEntropyLoss", dummy_net("SigmoidCrossEntropyLoss", "nan"),
     "bottom[1] (targets) has 48 values outside [0, 1]"),
    ("MultiLabelSoftmaxLoss", dummy_net("MultiLabelSoftmaxLoss", "inf"),
     "bottom[1] (targets) has 48 negative or non-finite values; the first is inf at flat index 0"),
    ("SigmoidCrossEntropyLoss", dummy_net("SigmoidCrossEntropyLoss", "1", weight_value="inf"),
     "bottom[2] (weights) has 48 negative or non-finite values"),
    ("SigmoidCrossEntropyLoss",
     NET % {"layer": "SigmoidCrossEntropyLoss", "dims": "dim: 50000 dim: 50000", "params": ""},
     "blob shape (50000 50000) has more than INT_MAX"),
    ("SigmoidCrossEntropyLoss",
     NET % {"layer": "SigmoidCrossEntropyLoss", "dims": "dim: 4 dim: -3", "params": ""},
     "blob shape (4 -3) has a negative dimension"),
    ("MultiLabelSoftmaxLoss",
     NET % {"layer": "MultiLabelSoftmaxLoss", "dims": "dim: 429496730 dim: 1", "params": ""},
     "so it takes at most 429496729 rows"),
], ids=["nan target", "inf target", "inf weight", "over INT_MAX", "negative dim", "too many rows"])
def test_caffe_tool_refuses_with_a_message(layer, net, message, tmp_path):
    out = caffe_time(tmp_path, net)
    assert out.returncode == 1, (out.returncode, out.stderr[-3000:])  # exit 1, not a signal
    assert "caffe: error: " in out.stderr and message in out.stderr, out.stderr[-3000:]
