from typing import Literal, Optional, Tuple

import numpy as np
import numpy.typing as npt

RECIPES: Tuple[str, ...]

def class_weights(counts: npt.ArrayLike, *,
                  recipe: Literal["recall", "precision"] = ...) -> np.ndarray: ...
def pos_weight(labels: npt.ArrayLike, *, axis: int = ...,
               ignore_label: Optional[float] = ...) -> np.ndarray: ...
