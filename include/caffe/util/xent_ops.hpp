#ifndef CAFFE_UTIL_XENT_OPS_HPP_
#define CAFFE_UTIL_XENT_OPS_HPP_

// The operations the loss formulas are written in, for plain scalars (the
// CPU element loop and the CUDA kernels; XENT_HOST_DEVICE). The formulas
// (sigmoid_cross_entropy_loss_formulas-inl.h, multi_label_softmax_loss_formulas-inl.h)
// are templates over an ops class: ScalarOps<T> here, VecOps<D> over Highway
// vectors in src/caffe/layers/xent_simd-inl.h. Both classes spell an
// operation the same way and mean the same rounding by it:
//
//   Add Sub Mul Div       one rounding each
//   MulAdd(a, b, c)       a·b + c     (ScalarOps: as written, so the compiler
//   MulSub(a, b, c)       a·b - c      contracts to an FMA where it did before,
//   NegMulAdd(a, b, c)    c - a·b      e.g. nvcc; VecOps: one fused rounding)
//   Select(m, a, b)       m ? a : b   (both sides are computed)
//   Scale(w, v)           w == 0 ? 0 : w·v: a zero weight drops the term,
//                         also where v is infinite (0·∞ would be NaN)
//   Exp, Log              e^v, log v (libm; VecOps: Highway's, within 1-2 ulp)
//   Expm1Small(z)         e^z - 1, only needed for -1/16 < z <= 0: ScalarOps
//                         calls expm1 (right for any z); VecOps (double) uses
//                         the Taylor series cut after z⁹/9!, within 2^-57 of
//                         e^z - 1 relative on that range and meaningless
//                         outside it. Callers select its result away there.
//
// Masks are bool here (Ge, Gt, Lt, Eq, And give them).

#include <math.h>

#include "caffe/layers/xent_common.hpp"

namespace caffe {
namespace xent {

/// Overloads so one template body calls expf/exp etc. on both host and device.
XENT_HOST_DEVICE float XentExp(float v) { return expf(v); }
XENT_HOST_DEVICE double XentExp(double v) { return exp(v); }
XENT_HOST_DEVICE float XentExpm1(float v) { return expm1f(v); }
XENT_HOST_DEVICE double XentExpm1(double v) { return expm1(v); }
XENT_HOST_DEVICE float XentLog(float v) { return logf(v); }
XENT_HOST_DEVICE double XentLog(double v) { return log(v); }
XENT_HOST_DEVICE float XentLog1p(float v) { return log1pf(v); }
XENT_HOST_DEVICE double XentLog1p(double v) { return log1p(v); }
XENT_HOST_DEVICE double XentAbs(double v) { return fabs(v); }
XENT_HOST_DEVICE float XentAbs(float v) { return fabsf(v); }
XENT_HOST_DEVICE float XentPow(float base, float power) { return powf(base, power); }
XENT_HOST_DEVICE double XentPow(double base, double power) { return pow(base, power); }

/// weight·value where a zero weight means "this term is absent": 0·∞ gives 0
/// (the limit of the loss as x → ±∞), not NaN.
template <typename T>
XENT_HOST_DEVICE T XentScale(T weight, T value) {
  return weight == T(0) ? T(0) : weight * value;
}

/// The scalar ops policy (see the top of this file).
template <typename T>
struct ScalarOps {
  typedef T V;
  typedef bool M;
  XENT_HOST_DEVICE T Set(T c) const { return c; }
  XENT_HOST_DEVICE T Zero() const { return T(0); }
  XENT_HOST_DEVICE T Add(T a, T b) const { return a + b; }
  XENT_HOST_DEVICE T Sub(T a, T b) const { return a - b; }
  XENT_HOST_DEVICE T Mul(T a, T b) const { return a * b; }
  XENT_HOST_DEVICE T Div(T a, T b) const { return a / b; }
  XENT_HOST_DEVICE T MulAdd(T a, T b, T c) const { return a * b + c; }
  XENT_HOST_DEVICE T MulSub(T a, T b, T c) const { return a * b - c; }
  XENT_HOST_DEVICE T NegMulAdd(T a, T b, T c) const { return c - a * b; }
  XENT_HOST_DEVICE T Neg(T a) const { return -a; }
  XENT_HOST_DEVICE T Abs(T a) const { return XentAbs(a); }
  XENT_HOST_DEVICE T Select(bool m, T a, T b) const { return m ? a : b; }
  XENT_HOST_DEVICE T IfThenElseZero(bool m, T a) const { return m ? a : T(0); }
  XENT_HOST_DEVICE T Scale(T w, T v) const { return XentScale(w, v); }
  XENT_HOST_DEVICE T Exp(T v) const { return XentExp(v); }
  XENT_HOST_DEVICE T Expm1Small(T z) const { return XentExpm1(z); }
  XENT_HOST_DEVICE T Log(T v) const { return XentLog(v); }
  XENT_HOST_DEVICE bool Ge(T a, T b) const { return a >= b; }
  XENT_HOST_DEVICE bool Gt(T a, T b) const { return a > b; }
  XENT_HOST_DEVICE bool Lt(T a, T b) const { return a < b; }
  XENT_HOST_DEVICE bool Eq(T a, T b) const { return a == b; }
  XENT_HOST_DEVICE bool And(bool a, bool b) const { return a && b; }
};

}  // namespace xent
}  // namespace caffe

#endif  // CAFFE_UTIL_XENT_OPS_HPP_
