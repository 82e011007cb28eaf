"""The native loss layers under test: one entry per loss.

The suites that hold every loss to the same rules read this table: empty
blobs and non-finite data (test_empty_and_non_finite.py) and the rerun of
each loss's test file on every SIMD target (test_simd_targets.py). A new
loss adds its entry here; its own behaviour is tested in its own test file
(tests/test_<stem>.py, named in the entry).
"""
from dataclasses import dataclass
from typing import Callable, Optional

from sigmoid_cross_entropy_loss_reference import layer_text as sigmoid_cross_entropy_loss_text
from test_multi_label_softmax_loss import prototxt as multi_label_softmax_loss_text
from two_way_loss_reference import layer_text as two_way_loss_text
from zlpr_loss_reference import layer_text as zlpr_loss_text


@dataclass(frozen=True)
class Loss:
    type: str  # the Caffe layer type
    test_module: str  # its own test file, in tests/
    # Layer text for a normalization mode, with every top the layer has.
    text: Callable[[str], str]
    # Fewest axes of bottom[0] its default parameters accept.
    min_axes: int
    # The shape of its second top for scores of `shape` (default parameters);
    # None for a layer with one top only.
    second_top_shape: Optional[Callable[[tuple], tuple]] = lambda shape: shape


LOSSES = {loss.type: loss for loss in [
    Loss("SigmoidCrossEntropyLoss", "test_sigmoid_cross_entropy_loss.py",
         lambda normalization: sigmoid_cross_entropy_loss_text(tops=2, normalization=normalization),
         min_axes=1),
    Loss("MultiLabelSoftmaxLoss", "test_multi_label_softmax_loss.py",
         lambda normalization: multi_label_softmax_loss_text(normalization=normalization,
                                                             tops=("loss", "prob")),
         min_axes=2),
    Loss("ZLPRLoss", "test_zlpr_loss.py",
         lambda normalization: zlpr_loss_text(normalization=normalization, tops=("loss", "rows")),
         min_axes=2, second_top_shape=lambda shape: shape[:1] + shape[2:]),  # one loss per row
    Loss("TwoWayLoss", "test_two_way_loss.py",
         lambda normalization: two_way_loss_text(normalization=normalization),
         min_axes=2, second_top_shape=None),
]}
