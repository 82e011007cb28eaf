#ifndef CAFFE_LAYERS_SIGMOID_XENT_SIMD_HPP_
#define CAFFE_LAYERS_SIGMOID_XENT_SIMD_HPP_

// CPU fast path of SigmoidCrossEntropyLoss for the plain loss (pos_weight,
// class_weight 1, no focal term, no smoothing; per-element weights, ignore
// label and the per-element top allowed): one fused pass per range with
// Highway's SIMD Exp/Log1p, chosen at run time for the CPU it runs on
// (sigmoid_xent_simd.cpp). The math is that of sigmoid_xent_math.hpp's
// SigmoidXentElement with pos_weight = 1, vectorized.

#include <cstdint>

namespace caffe {
namespace xent {

/// What one forward range adds up: the loss in double and three counts.
struct SigmoidXentPlainSums {
  double loss;           ///< Σ ℓ over counted elements
  int64_t counted;       ///< elements whose target is not the ignore label
  int64_t bad_targets;   ///< targets outside [0,1] that are not the ignore label
  int64_t bad_weights;   ///< weights < 0 or NaN
};

/// Forward over n elements: the sums; when element_loss != NULL also writes
/// each ℓ (0 for ignored elements). w may be NULL (all weights 1).
template <typename T>
SigmoidXentPlainSums SigmoidXentPlainForward(const T* x, const T* t, const T* w,
                                             T* element_loss, int64_t n,
                                             bool has_ignore_label, T ignore_label);

/// Backward over n elements: dx = ∂ℓ/∂x · (scale + element_diff[i]), 0 for
/// ignored elements. w and element_diff may be NULL.
template <typename T>
void SigmoidXentPlainBackward(const T* x, const T* t, const T* w, const T* element_diff,
                              T scale, T* dx, int64_t n, bool has_ignore_label,
                              T ignore_label);

}  // namespace xent
}  // namespace caffe

#endif  // CAFFE_LAYERS_SIGMOID_XENT_SIMD_HPP_
