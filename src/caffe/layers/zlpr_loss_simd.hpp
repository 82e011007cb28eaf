#ifndef CAFFE_LAYERS_ZLPR_LOSS_SIMD_HPP_
#define CAFFE_LAYERS_ZLPR_LOSS_SIMD_HPP_

// CPU fast path of ZLPRLoss for contiguous float rows ((N, C) scores,
// inner = 1), dispatched at run time to the widest vectors of the CPU
// (zlpr_loss_simd.cpp).
//
// The scalar math spends its time in one double exp per element and pass.
// Here each vector of float scores is widened to two halves of doubles and
// every e^(v - m) is Highway's double Exp (within 1 ulp of double), with
// the argument v - m exact as in the scalar ShiftedExp: the same double
// values to within an ulp of double, rounded once to float at the end. One
// exp per element: each lane's value (x on a negative, -x on a positive) and
// its side's shift are selected first. Row sums are in double, each side's
// lanes totalled in lane order (a fixed order: the same bits for any thread
// count). The last C % lanes elements are one more vector from padded
// copies, their extra lanes in neither set.
//
// Which formula lives where: the row's loss and coefficients stay
// FinishRow's (zlpr_loss_math.hpp), from the sums this file returns; the
// gradient is SideGradient's scale e / S with scale / S taken once per row
// and side (one rounding more in double than ElementGradient, far below the
// float rounding of the result). The scalar math stays the reference, used
// for double blobs, spatial maps, rows with a non-finite kept score or
// shift, rows of 2^24 classes or more and the HWY_SCALAR target; the tests
// hold both to the same float64 truth.

#include "caffe/layers/zlpr_loss_math.hpp"

namespace caffe {
namespace xent {
namespace zlpr {

/// Pass 1 of one contiguous float row x[0..C), t[0..C): the two shifts and
/// the row sums, as AccumulateShift and AccumulateElement over the row.
/// Returns false, having changed nothing, where the caller must take the
/// scalar path: a score of a kept element that is not finite (the scalar
/// math gives the limits for +-inf and NaN for NaN), C >= 2^24 (lane counts
/// are exact floats), or no vector path on this target.
bool SimdRowSums(const float* x, const float* t, const RowOptions& opt,
                 RowShifts<float>* shifts, RowSums* sums);

/// Pass 2 of one contiguous float row whose two shifts are finite:
/// dx_c = ElementGradient(coef, x_c, t_c, opt, scale). Returns false,
/// having written nothing, where the caller must take the scalar path (the
/// same cases as SimdRowSums).
bool SimdRowGradient(const float* x, const float* t, const RowOptions& opt,
                     const RowCoefficients& coef, double scale, float* dx);

}  // namespace zlpr
}  // namespace xent
}  // namespace caffe

#endif  // CAFFE_LAYERS_ZLPR_LOSS_SIMD_HPP_
