"""Errors of our native layers reach pycaffe as ValueError; the interpreter and other nets go on.

Both layers throw caffe::xent::XentError (a std::invalid_argument), which
Boost.Python turns into ValueError with the layer's message, from
caffe.Net(...), net.forward() and net.backward().
"""
import textwrap

import numpy as np
import pytest

caffe = pytest.importorskip("caffe")

INPUTS = """
layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 4 dim: 3 } } }
layer { name: "t" type: "Input" top: "t" input_param { shape { dim: 4 dim: 3 } } }
layer { name: "score" type: "Scale" bottom: "x" top: "score"
        scale_param { filler { type: "constant" value: 1 } } }
"""
LOSSES = {
    "SigmoidCrossEntropyLoss": "sigmoid_cross_entropy_loss_param { %s }",
    "MultiLabelSoftmaxLoss": "multi_label_softmax_loss_param { %s }",
}


def net_text(layer, fields="", targets_bottom="t"):
    return INPUTS + ('layer { name: "loss" type: "%s" bottom: "score" bottom: "%s" top: "loss" %s }'
                     % (layer, targets_bottom, LOSSES[layer] % fields))


def make(tmp_path, text, name="net"):
    path = tmp_path / (name + ".prototxt")
    path.write_text(text)
    return caffe.Net(str(path), caffe.TRAIN)


def feed(net, rng, bad=None):
    net.blobs["x"].data[...] = rng.standard_normal((4, 3))
    t = (rng.random((4, 3)) < 0.5).astype(np.float32)
    t[:, 0] = 1
    if bad is not None:
        t[2, 1] = bad
    net.blobs["t"].data[...] = t


@pytest.mark.parametrize("layer, fields, match", [
    ("SigmoidCrossEntropyLoss", "focal_gamma: -1", "focal_gamma = -1 is invalid"),
    ("SigmoidCrossEntropyLoss", "pos_weight: 1 pos_weight: 2", "pos_weight has 2 values"),
    ("SigmoidCrossEntropyLoss", "axis: 5", "axis = 5 is out of range"),
    ("MultiLabelSoftmaxLoss", "label_smoothing: 1", r"label_smoothing = 1 is invalid; it must be in \[0, 1\)"),
    ("MultiLabelSoftmaxLoss", "class_weight: -1", r"class_weight\[0\] = -1 is negative"),
])
def test_bad_parameters_raise_from_net_construction(layer, fields, match, tmp_path, rng):
    caffe.set_mode_cpu()
    with pytest.raises(ValueError, match=match) as info:
        make(tmp_path, net_text(layer, fields))
    assert str(info.value).startswith("%s layer 'loss': " % layer)
    # The interpreter and a fresh net are fine afterwards.
    net = make(tmp_path, net_text(layer), "good")
    feed(net, rng)
    assert np.isfinite(float(net.forward()["loss"]))


@pytest.mark.parametrize("layer, bad, match", [
    ("SigmoidCrossEntropyLoss", 3.0, r"bottom\[1\] \(targets\) has 1 values outside \[0, 1\]"),
    ("MultiLabelSoftmaxLoss", -1.0, r"bottom\[1\] \(targets\) has 1 negative or non-finite values; "
                                    r"the first is -1 at flat index 7"),
])
def test_bad_targets_raise_from_forward_and_both_nets_go_on(layer, bad, match, tmp_path, rng):
    caffe.set_mode_cpu()
    broken = make(tmp_path, net_text(layer), "broken")
    other = make(tmp_path, net_text(layer), "other")
    feed(other, rng)
    before = float(other.forward()["loss"])
    feed(broken, rng, bad=bad)
    with pytest.raises(ValueError, match=match):
        broken.forward()
    assert float(other.forward()["loss"]) == before
    other.backward()
    feed(broken, rng)
    assert np.isfinite(float(broken.forward()["loss"]))


@pytest.mark.parametrize("layer", sorted(LOSSES))
def test_backward_into_targets_raises_from_backward(layer, tmp_path, rng):
    # Targets computed by a learnable layer need a gradient: Caffe asks the
    # loss for one (propagate_down[1]) and our layers refuse.
    caffe.set_mode_cpu()
    text = INPUTS + textwrap.dedent("""
        layer { name: "t_scale" type: "Scale" bottom: "t" top: "t_learned"
                scale_param { filler { type: "constant" value: 1 } } }
        layer { name: "loss" type: "%s" bottom: "score" bottom: "t_learned" top: "loss" }
    """) % layer
    net = make(tmp_path, text)
    feed(net, rng)
    net.forward()
    with pytest.raises(ValueError, match=r"cannot back-propagate to bottom\[1\] \(targets\)"):
        net.backward()
    assert np.isfinite(float(net.forward()["loss"]))


def test_wrong_number_of_bottoms_raises_from_net_construction(tmp_path):
    caffe.set_mode_cpu()
    text = INPUTS + 'layer { name: "loss" type: "MultiLabelSoftmaxLoss" bottom: "score" top: "loss" }'
    with pytest.raises(ValueError, match="needs 2 bottoms"):
        make(tmp_path, text)
