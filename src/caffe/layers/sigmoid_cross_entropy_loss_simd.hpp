#ifndef CAFFE_LAYERS_SIGMOID_CROSS_ENTROPY_LOSS_SIMD_HPP_
#define CAFFE_LAYERS_SIGMOID_CROSS_ENTROPY_LOSS_SIMD_HPP_

// CPU fast path of SigmoidCrossEntropyLoss: pos_weight, class_weight (per
// class or broadcast), label smoothing, the focal term (any γ for float; a
// whole or half-integer γ up to kMaxFocalPower + 1/2 for double), per-element
// weights, the ignore label and the
// per-element top. One fused
// pass per range of Highway SIMD code, chosen at run time for the CPU it
// runs on (sigmoid_cross_entropy_loss_simd.cpp; e^-|x| by xent_simd-inl.h's
// ExpNonPositive in float, Highway's Exp in double). The math is that of
// sigmoid_cross_entropy_loss_math.hpp's Element, vectorized: the formulas
// both use are written once, in sigmoid_cross_entropy_loss_formulas-inl.h.

#include <cstdint>

#include "caffe/layers/sigmoid_cross_entropy_loss_math.hpp"

namespace caffe {
namespace xent {
namespace sigmoid {

/// What one forward range adds up: the loss in double and three counts.
struct Sums {
  double loss;           ///< Σ ℓ over counted elements
  int64_t counted;       ///< elements whose target is not the ignore label
  int64_t bad_targets;   ///< targets outside [0,1] that are not the ignore label
  int64_t bad_weights;   ///< weights < 0 or NaN
};

/// The options of the weighted path. Element i (counting from the blob's
/// start) has class (i / inner) % classes. When inner is small the caller
/// passes the per-class values repeated element by element over one period
/// (classes·inner elements) plus kPeriodPad more, wrapping round
/// (period > 0); otherwise period = 0 and the per-class arrays are used.
template <typename T>
struct Options {
  const T* pos_weight;           ///< per class (period = 0)
  const T* class_weight;         ///< per class (period = 0)
  int64_t inner, classes;        ///< class layout (period = 0)
  const T* pos_weight_period;    ///< period + pad values (period > 0)
  const T* class_weight_period;  ///< period + pad values (period > 0)
  int64_t period;
  /// τ = t·keep + shift, focal γ (0: no modulation) and α (negative: off).
  Constants<T> constants;
};
/// The largest whole focal γ the SIMD path takes by multiplication (q^γ,
/// and q^γ·√q for γ + 1/2); float blobs take any other γ in double lanes,
/// double blobs in the scalar element loop.
const int kMaxFocalPower = 8;
/// Padding of the period arrays: at least one vector of any target.
const int64_t kPeriodPad = 64;

/// Forward over n elements starting at element `first` of the blob (x, t,
/// w, element_loss, grad point at that element): the sums; when element_loss !=
/// NULL also writes each ℓ (0 for ignored elements). w may be NULL (all
/// weights 1); options NULL means the plain loss (no option set). When
/// grad != NULL and T is float, also writes each ∂ℓ/∂x · grad_scale (0 for
/// ignored elements), the same vector math as SimdBackward with scale =
/// grad_scale and no element_diff, in the same pass (its e^-|x| shared);
/// for double, grad is not written.
template <typename T>
Sums SimdForward(const T* x, const T* t, const T* w, T* element_loss,
                                       int64_t n, int64_t first,
                                       const Options<T>* options,
                                       bool has_ignore_label, T ignore_label, T* grad,
                                       T grad_scale);

/// Backward over n elements: dx = ∂ℓ/∂x · (scale + element_diff[i]), 0 for
/// ignored elements. w and element_diff may be NULL; options as in forward.
template <typename T>
void SimdBackward(const T* x, const T* t, const T* w, const T* element_diff,
                             T scale, T* dx, int64_t n, int64_t first,
                             const Options<T>* options, bool has_ignore_label,
                             T ignore_label);

}  // namespace sigmoid
}  // namespace xent
}  // namespace caffe

#endif  // CAFFE_LAYERS_SIGMOID_CROSS_ENTROPY_LOSS_SIMD_HPP_
