"""The losses the demo compares: one entry each, and the nets made from them.

An entry is a name, the loss layer's prototxt text (its type and parameters;
the layer's name, bottoms and top are the template's) and how test scores
are made from the net's "score" blob:

- "sigmoid": sigma(x), for the sigmoid family (BCE, focal, asymmetric);
- "softmax": softmax over the classes, for the 1/M softmax loss;
- "raw": x itself, for losses whose decision threshold is 0 (ZLPR, Two-way).

The ranking metrics (mAP, P@M, best-threshold F1) need no calibration, so
any monotone map of x gives the same figures; the map is kept per loss so
that the scores are what a user of that loss would threshold.

An entry runs where this build has it: its layer type is registered in
Caffe (caffe.layer_type_list()) and its parameters parse with this build's
caffe.proto. Otherwise unavailable() says why and the demo reports the loss
as not in this build, so a loss added to Caffe later runs with no change here.
"""
import os
from collections import namedtuple

HERE = os.path.dirname(os.path.abspath(__file__))
TEMPLATE = os.path.join(HERE, "net.prototxt")
LOSS_LAYER_HEAD = 'name: "loss" bottom: "score" bottom: "label" top: "loss" '

Loss = namedtuple("Loss", "name label layer scores")

LOSSES = [
    Loss("bce", "BCE (SigmoidCrossEntropyLoss)",
         'type: "SigmoidCrossEntropyLoss"', "sigmoid"),
    Loss("focal", "focal, gamma 2 (SigmoidCrossEntropyLoss)",
         'type: "SigmoidCrossEntropyLoss" sigmoid_cross_entropy_loss_param { focal_gamma: 2 }',
         "sigmoid"),
    # Asymmetric loss (Ben-Baruch et al. 2021) with the paper's settings:
    # gamma+ 0 (focal_gamma unset), gamma- 4, probability margin 0.05: the
    # asymmetric form of SigmoidCrossEntropyLoss (docs/sigmoid_cross_entropy_loss.md).
    Loss("asl", "ASL, gamma- 4, margin 0.05 (SigmoidCrossEntropyLoss)",
         'type: "SigmoidCrossEntropyLoss" '
         'sigmoid_cross_entropy_loss_param { focal_gamma_neg: 4 focal_margin: 0.05 }',
         "sigmoid"),
    Loss("softmax", "1/M softmax (MultiLabelSoftmaxLoss, COUNT)",
         'type: "MultiLabelSoftmaxLoss" multi_label_softmax_loss_param { target_normalization: COUNT }',
         "softmax"),
    Loss("zlpr", "ZLPR (ZLPRLoss)", 'type: "ZLPRLoss"', "raw"),
    # Kobayashi 2023 with the layer's defaults, the paper's Tp 4, Tn 1
    Loss("twoway", "Two-way, Tp 4, Tn 1 (TwoWayLoss)", 'type: "TwoWayLoss"', "raw"),
]
BY_NAME = {loss.name: loss for loss in LOSSES}

# The sigmoid loss as the numpy Python layer, for the native-vs-Python timing only
PYTHON_SIGMOID = Loss(
    "sigmoid_python", "BCE as a Python layer",
    'type: "Python" loss_weight: 1 '  # a Python layer is not known to be a loss: say so
    'python_param { module: "caffe_xent.python_layers" layer: "SigmoidCrossEntropyLoss" param_str: "{}" }',
    "sigmoid")


def loss_layer(caffe_pb2, loss):
    """The entry's loss layer as a LayerParameter (raises text_format.ParseError)."""
    from google.protobuf import text_format
    return text_format.Parse(LOSS_LAYER_HEAD + loss.layer, caffe_pb2.LayerParameter())


def unavailable(caffe, caffe_pb2, loss):
    """Why this build cannot train with `loss`, or None when it can."""
    from google.protobuf import text_format
    try:
        layer = loss_layer(caffe_pb2, loss)
    except text_format.ParseError as error:
        return f"not in this build: its parameters do not parse with this caffe.proto ({error})"
    if layer.type not in caffe.layer_type_list():
        return f"not in this build: Caffe has no layer type {layer.type!r}"
    return None


def template(caffe_pb2):
    from google.protobuf import text_format
    net = caffe_pb2.NetParameter()
    with open(TEMPLATE) as f:
        text_format.Merge(f.read(), net)
    return net


def net_for(caffe_pb2, loss):
    """The template net with its last layer (the loss) replaced by `loss`'s layer."""
    net = template(caffe_pb2)
    if net.layer[-1].name != "loss":
        raise ValueError(f"the last layer of {TEMPLATE} must be the loss layer named 'loss'")
    net.layer[-1].CopyFrom(loss_layer(caffe_pb2, loss))
    return net


def write_net(caffe_pb2, loss, directory):
    """OUT/net_NAME.prototxt for `loss`; returns its path."""
    from google.protobuf import text_format
    path = os.path.join(directory, f"net_{loss.name}.prototxt")
    with open(path, "w") as f:
        f.write(f"# The demo's net (net.prototxt) with the loss layer of entry {loss.name!r}\n")
        f.write(text_format.MessageToString(net_for(caffe_pb2, loss)))
    return path


def class_scores(score, kind):
    """The test scores of `kind` ("sigmoid", "softmax" or "raw") from the score blob, float64."""
    import numpy as np
    score = np.asarray(score, np.float64)
    if kind == "sigmoid":
        return 0.5 * (1.0 + np.tanh(0.5 * score))  # sigma(x) without exp overflow
    if kind == "softmax":
        shifted = np.exp(score - score.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True)
    if kind == "raw":
        return score
    raise ValueError(f"unknown score kind {kind!r}")
