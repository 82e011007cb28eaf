#ifndef CAFFE_LAYERS_MULTI_LABEL_SOFTMAX_LOSS_MATH_HPP_
#define CAFFE_LAYERS_MULTI_LABEL_SOFTMAX_LOSS_MATH_HPP_

// Row math of MultiLabelSoftmaxLoss, written once and called by the CPU loop
// (multi_label_softmax_loss_layer.cpp) and the CUDA kernels (.cu). No Caffe
// types here: plain numbers in, plain numbers out. The formulas this file
// shares with the SIMD path (multi_label_softmax_loss_simd.cpp) are written
// once, over an ops class, in multi_label_softmax_loss_formulas-inl.h:
// RowIsValid, RowLoss (FinishRow) and ScaledGradient (ElementGradient).
//
// A row is one softmax vector x_r (C values), with targets t_r and class
// weights w. Per row the layer makes two passes over memory:
//   pass 1 (forward): m = max_c x_c, then one sweep accumulating RowSums
//                     (MaxOf, AccumulateElement); FinishRow gives the loss
//                     and the O(1) row coefficients kept for backward;
//   pass 2 (backward): ElementGradient from the stored coefficients.
//
// Notation (the layer header's formula): q_c = (1-eps) w_c t_c / norm + eps/C, Q = sum_c q_c,
// p_c = e^(x_c - m) / S with S = sum_c e^(x_c - m).
//   loss = -sum_c q_c log p_c = Q log S + sum_c q_c (m - x_c)
// Both terms are >= 0 (S >= 1 because the max contributes e^0; m - x_c >= 0),
// so the loss is a sum of non-negative terms: no cancellation, for scores of
// any magnitude.

#include <cmath>
#include <cstdint>
#include <cstring>

#include "caffe/layers/xent_common.hpp"
#include "caffe/util/xent_ops.hpp"

namespace caffe {
namespace xent {
namespace multilabel {

/// Target normalization codes (equal to the proto enum values).
enum TargetNormalization { kCount = 0, kSum = 1, kNone = 2 };

/// Row-independent options of the layer, copied into kernels by value.
struct RowOptions {
  int classes;                ///< C, the length of a row
  int target_normalization;   ///< kCount, kSum or kNone
  double smoothing;           ///< label smoothing eps in [0, 1)
  bool has_ignore_label;      ///< whether ignore_label is set
  double ignore_label;        ///< targets equal to it make the row ignored
};

// RowIsValid, RowLoss, ScaledGradient: written once for this file and the
// SIMD path.
#define XENT_FORMULA XENT_HOST_DEVICE
#include "caffe/layers/multi_label_softmax_loss_formulas-inl.h"
#undef XENT_FORMULA

/// Sums of one row, accumulated over its C elements (pass 1).
struct RowSums {
  double sum_exp;          ///< S = sum_c e^(x_c - m)
  double positives;        ///< M = #{c : t_c > 0}
  double target_sum;       ///< sum_c t_c (norm of SUM)
  double weighted;         ///< sum_c w_c t_c
  double weighted_gap;     ///< sum_c w_c t_c (m - x_c), only t_c != 0 terms
  double gap_sum;          ///< sum_c (m - x_c) (label smoothing term)
  double ignored;          ///< #targets equal to ignore_label
  double invalid;          ///< #targets < 0 (not ignore_label), NaN or infinite
};

/// What forward keeps per row for backward and the probabilities top (O(rows)
/// memory): dx_c = scale * (Q inv_S e^(x_c - m) - a w_c t_c - b), p_c = inv_S e^(x_c - m).
struct RowCoefficients {
  double max;          ///< m
  double inv_sum_exp;  ///< 1 / S
  double q_total;      ///< Q = sum_c q_c (0 for an ignored row)
  double a;            ///< (1-eps) / norm (0 for an ignored row)
  double b;            ///< eps / C (0 for an ignored row)
};

/// Number of doubles of RowCoefficients per row. The layer keeps them in
/// structure-of-arrays order, coefficient j of row r at [j * rows + r], so
/// that neighbouring rows (a SIMD vector of a spatial map, a warp) read
/// neighbouring addresses.
const int kCoefficients = 5;

XENT_HOST_DEVICE void StoreCoefficients(const RowCoefficients& c, int64_t row, int64_t rows,
                                        double* out) {
  out[0 * rows + row] = c.max;
  out[1 * rows + row] = c.inv_sum_exp;
  out[2 * rows + row] = c.q_total;
  out[3 * rows + row] = c.a;
  out[4 * rows + row] = c.b;
}

XENT_HOST_DEVICE RowCoefficients LoadCoefficients(const double* in, int64_t row, int64_t rows) {
  RowCoefficients c;
  c.max = in[0 * rows + row];
  c.inv_sum_exp = in[1 * rows + row];
  c.q_total = in[2 * rows + row];
  c.a = in[3 * rows + row];
  c.b = in[4 * rows + row];
  return c;
}

XENT_HOST_DEVICE RowSums ZeroSums() {
  RowSums s;
  s.sum_exp = s.positives = s.target_sum = s.weighted = 0.0;
  s.weighted_gap = s.gap_sum = s.ignored = s.invalid = 0.0;
  return s;
}

/// Running max that lets NaN through: once a NaN is seen the max is NaN, so
/// NaN in gives NaN out (a plain `x > m ? x : m` would drop it).
template <typename Dtype>
XENT_HOST_DEVICE Dtype MaxOf(Dtype m, Dtype x) {
  return (x > m || x != x) ? x : m;
}

/// m - x_c, with inf - inf defined as 0 (x_c is the max): keeps +inf scores
/// at their mathematical limit instead of NaN.
template <typename Dtype>
XENT_HOST_DEVICE double Gap(Dtype m, Dtype x) {
  return x == m ? 0.0 : static_cast<double>(m) - static_cast<double>(x);
}

/// e^(x_c - m) with an exact argument; the max itself contributes exactly
/// 1, also at +-inf.
///   float scores: x - m in double is exact (or within 2^-53 relative where
///   the two are far apart, and then e^(x - m) underflows anyway) and the
///   exp is double: within ~1e-16 relative, so where the scalar math runs
///   (CUDA, the probabilities top, rows the SIMD paths leave to it) the
///   exps carry no float error. Rounding x - m to float first, as a float
///   exp would need, makes e^(x - m) off by up to |x - m| * 2^-25 relative:
///   about 30 float ulps at x - m = -60.
///   double scores: x - m = d + lo exactly (TwoSum), e^(x - m) = e^d (1 + lo)
///   to within lo^2, so the argument adds no error for any |x - m|.
XENT_HOST_DEVICE double ShiftedExp(float m, float x) {
  return x == m ? 1.0 : exp(static_cast<double>(x) - static_cast<double>(m));
}
XENT_HOST_DEVICE double ShiftedExp(double m, double x) {
  if (x == m) return 1.0;
  const double d = x - m;
  const double e = exp(d);
  // TwoSum: lo = (x - m) - d exactly (no ordering of |x|, |m| needed).
  const double xv = d + m;  // the part of d that came from x
  const double mv = xv - d;
  const double lo = (x - xv) + (mv - m);
  // Non-finite d (an infinite score, or x - m beyond the double range): no
  // correction; e is then 0, 1 or NaN as the limit says.
  return lo - lo == 0.0 ? fma(e, lo, e) : e;  // e^d (1 + lo)
}

/// Pass 1, the target part of one element: x_c, t_c (class weight w_c)
/// into the row's target sums. Only elements with t_c != 0 change anything,
/// so vectorized callers may skip the rest. The target checks
/// (ignore_label, negative, NaN, infinite) ride along: no extra pass.
template <typename Dtype>
XENT_HOST_DEVICE void AccumulateTarget(Dtype m, Dtype x, Dtype t, double w,
                                       const RowOptions& opt, RowSums* s) {
  if (t == Dtype(0)) return;  // also keeps 0 * (m - x) from being NaN at x = -inf
  if (opt.has_ignore_label && static_cast<double>(t) == opt.ignore_label) {
    s->ignored += 1.0;
    return;
  }
  if (!(t > Dtype(0) && t <= XentMaxFinite(t))) {  // negative, NaN or +inf: refused by
                                                      // the layer after the pass
    s->invalid += 1.0;
    return;
  }
  const double wt = w * static_cast<double>(t);  // exact: float * float fits a double
  s->positives += 1.0;                           // M
  s->target_sum += static_cast<double>(t);       // sum t
  s->weighted += wt;                             // sum w t
  s->weighted_gap += wt * Gap(m, x);             // sum w t (m - x)
}

/// Pass 1, one element: S, sum (m - x_c) and the target part.
template <typename Dtype>
XENT_HOST_DEVICE void AccumulateElement(Dtype m, Dtype x, Dtype t, double w,
                                        const RowOptions& opt, RowSums* s) {
  s->sum_exp += ShiftedExp(m, x);  // S
  s->gap_sum += Gap(m, x);         // sum (m - x_c)
  AccumulateTarget(m, x, t, w, opt, s);
}

/// Whether a row takes part in the loss (RowIsValid on the row's sums).
XENT_HOST_DEVICE bool RowIsValid(const RowSums& s) {
  return RowIsValid(ScalarOps<double>(), s.positives, s.ignored);
}

/// End of pass 1: the row's loss (0 for an ignored row) and its
/// coefficients (RowLoss: see there for the formulas).
template <typename Dtype>
XENT_HOST_DEVICE double FinishRow(Dtype m, const RowSums& s, const RowOptions& opt,
                                  RowCoefficients* coef) {
  coef->max = static_cast<double>(m);
  coef->inv_sum_exp = 1.0 / s.sum_exp;  // S >= 1: the max contributes e^0 = 1
  if (!RowIsValid(s)) {
    coef->q_total = coef->a = coef->b = 0.0;
    return 0.0;
  }
  const RowTerms<double> r = RowLoss(ScalarOps<double>(), opt, s.positives, s.target_sum,
                                     s.weighted, s.weighted_gap, s.sum_exp, s.gap_sum);
  coef->q_total = r.q_total;
  coef->a = r.a;
  coef->b = opt.smoothing / opt.classes;  // eps/C
  return r.loss;
}

/// Whether stored coefficients belong to an ignored row.
XENT_HOST_DEVICE bool IsIgnored(const RowCoefficients& coef) {
  return coef.q_total == 0.0 && coef.a == 0.0 && coef.b == 0.0;
}

/// Pass 2, one element: d loss_r / d x_c times `scale` (top diff / normalizer),
/// ScaledGradient with e = e^(x_c - m) in double. Ignored rows give exactly
/// 0, even for NaN scores.
template <typename Dtype>
XENT_HOST_DEVICE Dtype ElementGradient(const RowCoefficients& coef, Dtype x, Dtype t,
                                       double w, double scale) {
  if (IsIgnored(coef)) return Dtype(0);
  const double e = ShiftedExp(static_cast<Dtype>(coef.max), x);  // e^(x_c - m)
  return static_cast<Dtype>(ScaledGradient(ScalarOps<double>(), coef.q_total, coef.inv_sum_exp,
                                           coef.a, coef.b, e, w, static_cast<double>(t), scale));
}

/// Softmax probability of one element (the optional second top):
/// p_c = e^(x_c - m) / S.
template <typename Dtype>
XENT_HOST_DEVICE Dtype Probability(const RowCoefficients& coef, Dtype x) {
  return static_cast<Dtype>(coef.inv_sum_exp * ShiftedExp(static_cast<Dtype>(coef.max), x));
}

/// The float gradient's exp, as scalars (the CUDA gradient kernel; the
/// CPU's vector form is ShiftedExpVec in multi_label_softmax_loss_simd.cpp,
/// whose comment gives the error analysis: within ~1.75 ulp of e^(x - m)
/// for every x - m, the argument never rounded). Same operations, same
/// order, same constants, one fused rounding per MulAdd (fmaf), so both
/// give the same bits. For rows with |m| < kFloatGradientMaxRowMax.
const float kFloatGradientMaxRowMax = 32640.0f;  // 2^15 - 128, as the SIMD path

/// m = hi + lo, hi = m rounded to a multiple of 2^-9, lo = m - hi (exact);
/// low = hi - 104 (e^(x - m) rounds to 0 below it); m_log2e = hi / ln 2.
struct FloatRowShift {
  float hi, lo, low, m_log2e;
};

XENT_HOST_DEVICE FloatRowShift MakeFloatRowShift(float m) {
  FloatRowShift shift;
  shift.hi = rintf(m * 512.0f) * (1.0f / 512.0f);
  shift.lo = m - shift.hi;
  shift.low = shift.hi - 104.0f;
  shift.m_log2e = shift.hi * 1.442695040888963407359924681f;
  return shift;
}

/// e^r - 1 for |r| <= ln 2 / 2 + 2^-9: r + r²·P(r), P of degree 5 by
/// Estrin's scheme (Expm1Reduced's coefficients and order).
XENT_HOST_DEVICE float Expm1ReducedFloat(float r) {
  const float r2 = r * r;
  const float r4 = r2 * r2;
  const float p = fmaf(r4, fmaf(0.000198527617612853646278381f, r, 0.00139304355252534151077271f),
                       fmaf(r2, fmaf(0.00833336077630519866943359f, r,
                                     0.0416664853692054748535156f),
                            fmaf(0.166666671633720397949219f, r, 0.5f)));
  return fmaf(p, r2, r);
}

/// e^(x - m) for finite x (or -inf) <= m, |m| < kFloatGradientMaxRowMax:
/// k = round((x - m) / ln 2) by the shifter 1.5·2^23 + 192, r = x - m -
/// k ln 2 from x, hi and lo (b = hi + k ln2_hi exact), 2^k as 2^(k+65) from
/// the shifter's low bits times 2^-65. The max itself gives exactly 1.
XENT_HOST_DEVICE float ShiftedExpFloat(float x, const FloatRowShift& shift) {
  const float kShifterFloat = 12582912.0f + 192.0f;
  x = x > shift.low ? x : shift.low;  // also -inf -> low (x is never NaN here)
  const float shifted = fmaf(x, 1.442695040888963407359924681f, -shift.m_log2e) + kShifterFloat;
  const float k = shifted - kShifterFloat;                      // round((x - m) / ln 2)
  const float b = fmaf(k, 0.693359375f, shift.hi);              // hi + k ln2_hi, exact
  const float c = fmaf(k, -2.12194440e-4f, shift.lo);           // lo + k ln2_lo
  const float r = (x - b) - c;                                  // x - m - k ln 2
  const float p = Expm1ReducedFloat(r) + 1.0f;                  // e^r
  uint32_t bits;
  memcpy(&bits, &shifted, sizeof(bits));
  bits <<= 23;                                                  // 2^(k + 65)
  float pow2;
  memcpy(&pow2, &bits, sizeof(pow2));
  return (p * pow2) * 0x1p-65f;
}

/// Pass 2 of one float element in float arithmetic, as the CPU's vector
/// row gradient: scale (Q p_c - q_c) = k e - (scale·a·w_c·t_c + scale·b)
/// with k = scale·Q/S, e = e^(x_c - m) by ShiftedExpFloat. For rows not
/// ignored whose max is finite and below kFloatGradientMaxRowMax in
/// magnitude (FloatGradientApplies); others take ElementGradient.
XENT_HOST_DEVICE bool FloatGradientApplies(const RowCoefficients& coef) {
  const float m = static_cast<float>(coef.max);
  return !IsIgnored(coef) && fabsf(m) < kFloatGradientMaxRowMax;  // false for NaN and inf
}
XENT_HOST_DEVICE float ElementGradientFloat(const RowCoefficients& coef, float x, float t, double w,
                                            double scale) {
  const FloatRowShift shift = MakeFloatRowShift(static_cast<float>(coef.max));
  const float k = static_cast<float>(scale * coef.q_total * coef.inv_sum_exp);
  const float scaled_b = static_cast<float>(scale * coef.b);
  const float e = ShiftedExpFloat(x, shift);
  if (t == 0.0f) return fmaf(k, e, -scaled_b);  // scale (Q p_c - eps/C)
  const float scaled_a = static_cast<float>(scale * coef.a);
  return fmaf(k, e, -fmaf(scaled_a * static_cast<float>(w), t, scaled_b));
}

}  // namespace multilabel
}  // namespace xent
}  // namespace caffe

#endif  // CAFFE_LAYERS_MULTI_LABEL_SOFTMAX_LOSS_MATH_HPP_
