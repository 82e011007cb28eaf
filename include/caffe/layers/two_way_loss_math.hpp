#ifndef CAFFE_LAYERS_TWO_WAY_LOSS_MATH_HPP_
#define CAFFE_LAYERS_TWO_WAY_LOSS_MATH_HPP_

// Line math of TwoWayLoss, written once and called by the CPU loops
// (two_way_loss_layer.cpp) and the CUDA kernels (two_way_loss_layer.cu).
// The formulas shared with any vector path are in two_way_loss_formulas-inl.h:
// SideLse, HardPair (FinishLine) and SideGradient (LineGradient).
//
// A *line* is either a row (the C scores of one sample along the class
// axis: the sample-wise term) or a column (one class over every row of the
// batch: the class-wise term). Its targets split it into negatives N (0)
// and positives P (1); ignore_label is in neither. Each side has values
//   negatives: v_j = x_j / Tn,   positives: v_i = -x_i / Tp,
// and the line's loss is
//   softplus(a),  a = Tn LSE_N(v) + Tp LSE_P(v),
// for a line with at least one positive (others give 0 and are not
// counted); a line with positives but no negative has LSE_N = -inf, a =
// -inf: loss 0 and gradient 0, exactly (the reference code's finite mask
// gives ~e^-1e4 there).
// Per line the layer makes two sweeps: the shifts m = max v of both sides
// (AccumulateShift), then the shifted sums (AccumulateElement); FinishLine
// gives the loss and the five coefficients kept for backward, where
// LineGradient gives each element's share.

#include <cmath>

#include "caffe/layers/multi_label_softmax_loss_math.hpp"
#include "caffe/layers/xent_common.hpp"
#include "caffe/layers/zlpr_loss_math.hpp"
#include "caffe/util/xent_ops.hpp"

namespace caffe {
namespace xent {
namespace twoway {

/// Options of the layer, copied into kernels by value.
struct Options {
  zlpr::RowOptions targets;  ///< C and ignore_label: the same target rule as ZLPRLoss
  double tp;                 ///< Tp > 0, temperature of the positives' soft-min
  double tn;                 ///< Tn > 0, temperature of the negatives' soft-max
  double inv_tp;             ///< 1 / Tp
  double inv_tn;             ///< 1 / Tn
};

// SideLse, HardPair, SideGradient.
#define XENT_FORMULA XENT_HOST_DEVICE
#include "caffe/layers/two_way_loss_formulas-inl.h"
#undef XENT_FORMULA

/// The value of element x on its side: x / Tn for a negative, -x / Tp for
/// a positive, as a product with the reciprocal (exact for the default
/// temperatures, powers of 2; within an ulp of double otherwise), the same
/// in the SIMD path.
template <typename Dtype>
XENT_HOST_DEVICE double SideValue(Dtype x, int kind, const Options& o) {
  return kind == zlpr::kNegative ? static_cast<double>(x) * o.inv_tn
                                 : -static_cast<double>(x) * o.inv_tp;
}

/// The shifts of a line's two sides, m = max v (-inf for an empty side),
/// NaN-propagating.
struct Shifts {
  double neg, pos;
};

XENT_HOST_DEVICE Shifts EmptyShifts() {
  Shifts m;
  m.neg = m.pos = -INFINITY;
  return m;
}

/// Sweep 1, one element: its value into its side's shift.
template <typename Dtype>
XENT_HOST_DEVICE void AccumulateShift(Dtype x, Dtype t, const Options& o, Shifts* m) {
  const int kind = zlpr::Kind(t, o.targets);
  if (kind == zlpr::kNegative) m->neg = multilabel::MaxOf(m->neg, SideValue(x, kind, o));
  if (kind == zlpr::kPositive) m->pos = multilabel::MaxOf(m->pos, SideValue(x, kind, o));
}

/// Sums of one line (sweep 2).
struct LineSums {
  double neg_sum;    ///< sum_N e^(v - m_neg)
  double pos_sum;    ///< sum_P e^(v - m_pos)
  double negatives;  ///< |N|
  double positives;  ///< |P|
  double invalid;    ///< targets neither 0, 1 nor ignore_label
};

XENT_HOST_DEVICE LineSums ZeroSums() {
  LineSums s;
  s.neg_sum = s.pos_sum = s.negatives = s.positives = s.invalid = 0.0;
  return s;
}

/// Sweep 2, one element: its shifted exp into its side's sum (the shift
/// itself gives exactly 1, also at +-inf); the target checks ride along.
template <typename Dtype>
XENT_HOST_DEVICE void AccumulateElement(const Shifts& m, Dtype x, Dtype t, const Options& o,
                                        LineSums* s) {
  const int kind = zlpr::Kind(t, o.targets);
  if (kind == zlpr::kNegative) {
    s->neg_sum += multilabel::ShiftedExp(m.neg, SideValue(x, kind, o));
    s->negatives += 1.0;
  } else if (kind == zlpr::kPositive) {
    s->pos_sum += multilabel::ShiftedExp(m.pos, SideValue(x, kind, o));
    s->positives += 1.0;
  } else if (kind == zlpr::kInvalid) {
    s->invalid += 1.0;
  }
}

/// What forward keeps per line for backward: the shifts and inverse sums of
/// both sides, and weight = sigma(a) (0 for a line without a positive or
/// without a negative: it has no gradient).
struct LineCoefficients {
  double neg_shift, neg_inv_sum, pos_shift, pos_inv_sum, weight;
};

/// Doubles of LineCoefficients per line, in structure-of-arrays order
/// (coefficient j of line l at [j * lines + l]).
const int kCoefficients = 5;

XENT_HOST_DEVICE void StoreCoefficients(const LineCoefficients& c, int64_t line, int64_t lines,
                                        double* out) {
  const double values[kCoefficients] = {c.neg_shift, c.neg_inv_sum, c.pos_shift, c.pos_inv_sum,
                                        c.weight};
  for (int j = 0; j < kCoefficients; ++j) out[j * lines + line] = values[j];
}

XENT_HOST_DEVICE LineCoefficients LoadCoefficients(const double* in, int64_t line, int64_t lines) {
  LineCoefficients c;
  c.neg_shift = in[0 * lines + line];
  c.neg_inv_sum = in[1 * lines + line];
  c.pos_shift = in[2 * lines + line];
  c.pos_inv_sum = in[3 * lines + line];
  c.weight = in[4 * lines + line];
  return c;
}

/// Whether a line takes part in its term (the VALID normalizer): at least
/// one positive, as the paper's and timm's masks.
XENT_HOST_DEVICE bool LineIsCounted(const LineSums& s) { return s.positives > 0.0; }

/// softplus(a) = log(1 + e^a) without overflow or cancellation.
XENT_HOST_DEVICE double Softplus(double a) {
  return a > 0.0 ? a + XentLog1p(exp(-a)) : XentLog1p(exp(a));
}

/// sigma(a) = 1 / (1 + e^-a), the derivative of softplus.
XENT_HOST_DEVICE double Sigmoid(double a) {
  if (a >= 0.0) return 1.0 / (1.0 + exp(-a));
  const double e = exp(a);
  return e / (1.0 + e);
}

/// End of sweep 2: the line's loss softplus(a) and its coefficients. A line
/// without a positive, or with positives and no negative (a = -inf), gives
/// loss 0 and weight 0.
XENT_HOST_DEVICE double FinishLine(const Shifts& m, const LineSums& s, const Options& o,
                                   LineCoefficients* coef) {
  coef->neg_shift = m.neg;
  coef->pos_shift = m.pos;
  coef->neg_inv_sum = s.neg_sum > 0.0 ? 1.0 / s.neg_sum : 0.0;
  coef->pos_inv_sum = s.pos_sum > 0.0 ? 1.0 / s.pos_sum : 0.0;
  coef->weight = 0.0;
  if (!LineIsCounted(s) || s.negatives == 0.0) return 0.0;
  const ScalarOps<double> ops;
  const double a = HardPair(ops, o.tn, SideLse(ops, m.neg, s.neg_sum), o.tp,
                            SideLse(ops, m.pos, s.pos_sum));
  coef->weight = Sigmoid(a);
  return Softplus(a);
}

/// One element's share of d softplus(a) / d x from one line, times `scale`
/// (0 for an ignored element or a line of weight 0, whatever the score).
template <typename Dtype>
XENT_HOST_DEVICE double LineGradient(const LineCoefficients& coef, Dtype x, int kind,
                                     const Options& o, double scale) {
  if (coef.weight == 0.0 || (kind != zlpr::kNegative && kind != zlpr::kPositive)) return 0.0;
  const ScalarOps<double> ops;
  const double v = SideValue(x, kind, o);
  if (kind == zlpr::kNegative) {
    return SideGradient(ops, scale, coef.weight, multilabel::ShiftedExp(coef.neg_shift, v),
                        coef.neg_inv_sum);
  }
  return -SideGradient(ops, scale, coef.weight, multilabel::ShiftedExp(coef.pos_shift, v),
                       coef.pos_inv_sum);
}

/// d E / d x of one element: its row's share (scaled by lambda / Z_rows)
/// plus its column's (lambda / Z_columns).
template <typename Dtype>
XENT_HOST_DEVICE Dtype ElementGradient(const LineCoefficients& row, const LineCoefficients& column,
                                       Dtype x, Dtype t, const Options& o, double row_scale,
                                       double column_scale) {
  const int kind = zlpr::Kind(t, o.targets);
  return static_cast<Dtype>(LineGradient(row, x, kind, o, row_scale) +
                            LineGradient(column, x, kind, o, column_scale));
}

/// The end of line l's forward pass, the same on CPU and GPU: FinishLine,
/// its coefficients stored, and its share of the forward sums added to
/// *loss, *counted and *invalid.
XENT_HOST_DEVICE void StoreLine(const Shifts& m, const LineSums& s, const Options& o, int64_t l,
                                int64_t lines, double* coefficients, double* loss,
                                double* counted, double* invalid) {
  LineCoefficients coef;
  *loss += FinishLine(m, s, o, &coef);
  StoreCoefficients(coef, l, lines, coefficients);
  *counted += LineIsCounted(s) ? 1.0 : 0.0;
  *invalid += s.invalid;
}

}  // namespace twoway
}  // namespace xent
}  // namespace caffe

#endif  // CAFFE_LAYERS_TWO_WAY_LOSS_MATH_HPP_
