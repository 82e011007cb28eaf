from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
import numpy.typing as npt

SIGMOID_DEFAULTS: Dict[str, Any]
MULTILABEL_DEFAULTS: Dict[str, Any]

def sigmoid_cross_entropy_loss(x: npt.ArrayLike, t: npt.ArrayLike, w: Optional[npt.ArrayLike] = ...,
                               *, ignore_label: Optional[int] = ..., normalization: str = ...,
                               normalize: Optional[bool] = ..., axis: int = ...,
                               pos_weight: float | Sequence[float] | None = ...,
                               class_weight: float | Sequence[float] | None = ...,
                               focal_gamma: float = ..., focal_alpha: float = ...,
                               label_smoothing: float = ...) -> Tuple[float, np.ndarray]: ...
def multi_label_softmax_loss(x: npt.ArrayLike, t: npt.ArrayLike, *,
                             ignore_label: Optional[int] = ..., normalization: str = ...,
                             normalize: Optional[bool] = ..., axis: int = ...,
                             target_normalization: str = ...,
                             class_weight: float | Sequence[float] | None = ...,
                             label_smoothing: float = ...) -> Tuple[float, np.ndarray]: ...

class _JsonLayer:
    param_str: str
    phase: int
    def setup(self, bottom: Sequence[Any], top: Sequence[Any]) -> None: ...
    def reshape(self, bottom: Sequence[Any], top: Sequence[Any]) -> None: ...
    def forward(self, bottom: Sequence[Any], top: Sequence[Any]) -> None: ...
    def backward(self, top: Sequence[Any], propagate_down: Sequence[bool],
                 bottom: Sequence[Any]) -> None: ...

class SigmoidCrossEntropyLoss(_JsonLayer): ...
class MultiLabelSoftmaxLoss(_JsonLayer): ...
