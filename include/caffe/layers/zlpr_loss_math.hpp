#ifndef CAFFE_LAYERS_ZLPR_LOSS_MATH_HPP_
#define CAFFE_LAYERS_ZLPR_LOSS_MATH_HPP_

// Row math of ZLPRLoss, written once and called by the CPU loop
// (zlpr_loss_layer.cpp) and the CUDA kernels (zlpr_loss_layer.cu). No Caffe
// types here: plain numbers in, plain numbers out. The formulas are written
// once, over an ops class, in zlpr_loss_formulas-inl.h: SideLoss, RowLoss
// (FinishRow) and SideGradient (ElementGradient).
//
// A row is the C scores x_c of one (outer, inner) position along the class
// axis, with targets t_c: 1 (positive), 0 (negative) or ignore_label (in
// neither set). Each set is one *side* of the row with its own values v:
//   negatives: v_j = x_j,   positives: v_i = -x_i,
// and each side's loss is a log-sum-exp over its values and one zero:
//   l = log(1 + sum_neg e^(x_j)) + log(1 + sum_pos e^(-x_i))
//     = LSE(0, x_neg) + LSE(0, -x_pos).
// Per row the layer makes two passes over memory:
//   pass 1 (forward): the shifts m = max(0, max_side v) of both sides, then
//                     one sweep accumulating RowSums (AccumulateElement);
//                     FinishRow gives the loss and the four coefficients kept
//                     for backward;
//   pass 2 (backward): ElementGradient from the stored coefficients.
//
// The exps are multi_label_softmax_loss_math.hpp's ShiftedExp (an exact
// argument, a double exp; the shift itself gives exactly 1, also at +-inf)
// and its NaN-propagating MaxOf: the same primitives, not a copy.

#include <cmath>

#include "caffe/layers/multi_label_softmax_loss_math.hpp"
#include "caffe/layers/xent_common.hpp"
#include "caffe/util/xent_ops.hpp"

namespace caffe {
namespace xent {
namespace zlpr {

/// Row-independent options of the layer, copied into kernels by value.
struct RowOptions {
  int classes;             ///< C, the length of a row
  bool has_ignore_label;   ///< whether ignore_label is set
  double ignore_label;     ///< targets equal to it are in neither set
};

// SideLoss, RowLoss, SideGradient.
#define XENT_FORMULA XENT_HOST_DEVICE
#include "caffe/layers/zlpr_loss_formulas-inl.h"
#undef XENT_FORMULA

/// What a target makes of its element.
enum TargetKind { kNegative = 0, kPositive = 1, kIgnored = 2, kInvalid = 3 };

/// The kind of target t: ignore_label first (the layer refuses 0 and 1 as
/// ignore_label), then 0 and 1; anything else (another number, NaN, +-inf)
/// is refused by the layer after the pass.
template <typename Dtype>
XENT_HOST_DEVICE int Kind(Dtype t, const RowOptions& opt) {
  if (opt.has_ignore_label && static_cast<double>(t) == opt.ignore_label) return kIgnored;
  if (t == Dtype(0)) return kNegative;
  if (t == Dtype(1)) return kPositive;
  return kInvalid;
}

/// The shifts of a row's two sides, m = max(0, max_side v): start at 0 (the
/// appended zero), NaN-propagating.
template <typename Dtype>
struct RowShifts {
  Dtype neg;  ///< max(0, max_neg x_j)
  Dtype pos;  ///< max(0, max_pos -x_i)
};

template <typename Dtype>
XENT_HOST_DEVICE RowShifts<Dtype> ZeroShifts() {
  RowShifts<Dtype> m;
  m.neg = m.pos = Dtype(0);
  return m;
}

/// Pass 1a, one element: its value into its side's shift.
template <typename Dtype>
XENT_HOST_DEVICE void AccumulateShift(Dtype x, Dtype t, const RowOptions& opt,
                                      RowShifts<Dtype>* m) {
  const int kind = Kind(t, opt);
  if (kind == kNegative) m->neg = multilabel::MaxOf(m->neg, x);
  if (kind == kPositive) m->pos = multilabel::MaxOf(m->pos, -x);
}

/// Sums of one row, accumulated over its C elements (pass 1b).
struct RowSums {
  double neg_sum;   ///< sum_neg e^(x_j - m_neg) (the zero's term is added by SideLogSum)
  double pos_sum;   ///< sum_pos e^(-x_i - m_pos)
  double kept;      ///< elements not ignored (0 and 1 targets)
  double invalid;   ///< targets neither 0, 1 nor ignore_label
};

XENT_HOST_DEVICE RowSums ZeroSums() {
  RowSums s;
  s.neg_sum = s.pos_sum = s.kept = s.invalid = 0.0;
  return s;
}

/// Pass 1b, one element: its shifted exp into its side's sum; the target
/// checks ride along.
template <typename Dtype>
XENT_HOST_DEVICE void AccumulateElement(const RowShifts<Dtype>& m, Dtype x, Dtype t,
                                        const RowOptions& opt, RowSums* s) {
  const int kind = Kind(t, opt);
  if (kind == kNegative) {
    s->neg_sum += multilabel::ShiftedExp(m.neg, x);  // e^(x - m_neg)
    s->kept += 1.0;
  } else if (kind == kPositive) {
    s->pos_sum += multilabel::ShiftedExp(m.pos, -x);  // e^(-x - m_pos)
    s->kept += 1.0;
  } else if (kind == kInvalid) {
    s->invalid += 1.0;
  }
}

/// What forward keeps per row for backward (O(rows) memory):
///   negative: dx_j =  scale e^(x_j - m_neg) / S_neg,
///   positive: dx_i = -scale e^(-x_i - m_pos) / S_pos.
struct RowCoefficients {
  double neg_shift;    ///< m_neg
  double neg_inv_sum;  ///< 1 / S_neg
  double pos_shift;    ///< m_pos
  double pos_inv_sum;  ///< 1 / S_pos
};

/// Doubles of RowCoefficients per row, kept in structure-of-arrays order
/// (coefficient j of row r at [j * rows + r]): neighbouring rows (a warp, a
/// spatial map) read neighbouring addresses.
const int kCoefficients = 4;

XENT_HOST_DEVICE void StoreCoefficients(const RowCoefficients& c, int64_t row, int64_t rows,
                                        double* out) {
  out[0 * rows + row] = c.neg_shift;
  out[1 * rows + row] = c.neg_inv_sum;
  out[2 * rows + row] = c.pos_shift;
  out[3 * rows + row] = c.pos_inv_sum;
}

XENT_HOST_DEVICE RowCoefficients LoadCoefficients(const double* in, int64_t row, int64_t rows) {
  RowCoefficients c;
  c.neg_shift = in[0 * rows + row];
  c.neg_inv_sum = in[1 * rows + row];
  c.pos_shift = in[2 * rows + row];
  c.pos_inv_sum = in[3 * rows + row];
  return c;
}

/// End of pass 1 for one side, from its shift m and its sum T of
/// e^(v_j - m) over the side's values (the zero's term not yet in):
/// log S with S = e^(-m) + T, and 1 / S into *inv_sum. Where m = 0 (no
/// value above 0, or an empty side) the zero is the largest term and
/// S = 1 + T: log1p(T), which keeps a loss near 0 (every value far below
/// 0) to full relative accuracy where log(1 + T) would round it to 0.
/// Where m > 0 the side loss is >= log 2 and m + log S is accurate as it is.
template <typename Dtype>
XENT_HOST_DEVICE double SideLogSum(Dtype m, double sum, double* inv_sum) {
  if (m == Dtype(0)) {
    *inv_sum = 1.0 / (1.0 + sum);
    return XentLog1p(sum);  // log(1 + T)
  }
  const double s = sum + multilabel::ShiftedExp(m, Dtype(0));  // S = T + e^(-m) >= 1
  *inv_sum = 1.0 / s;
  return XentLog(s);
}

/// End of pass 1: the row's loss and its coefficients. Each side adds the
/// appended zero (SideLogSum); an empty side, or one whose values are all
/// -inf, has loss log 1 = 0 exactly. A row with every element ignored gives 0.
template <typename Dtype>
XENT_HOST_DEVICE double FinishRow(const RowShifts<Dtype>& m, const RowSums& s,
                                  RowCoefficients* coef) {
  coef->neg_shift = static_cast<double>(m.neg);
  coef->pos_shift = static_cast<double>(m.pos);
  const double neg_log_sum = SideLogSum(m.neg, s.neg_sum, &coef->neg_inv_sum);
  const double pos_log_sum = SideLogSum(m.pos, s.pos_sum, &coef->pos_inv_sum);
  return RowLoss(ScalarOps<double>(), coef->neg_shift, neg_log_sum, coef->pos_shift,
                 pos_log_sum);
}

/// Whether a row takes part in the loss (the VALID normalizer): at least one
/// element that is not ignored.
XENT_HOST_DEVICE bool RowIsCounted(const RowSums& s) { return s.kept > 0.0; }

/// The end of row r's forward pass, the same on CPU and GPU: FinishRow, its
/// coefficients stored (structure of arrays of `rows` rows), its loss into
/// the row top where there is one, and its share of the forward sums added
/// to *loss, *counted and *invalid.
template <typename Dtype>
XENT_HOST_DEVICE void StoreRow(const RowShifts<Dtype>& m, const RowSums& s, int64_t r,
                               int64_t rows, double* coefficients, Dtype* row_loss, double* loss,
                               double* counted, double* invalid) {
  RowCoefficients coef;
  const double row = FinishRow(m, s, &coef);
  StoreCoefficients(coef, r, rows, coefficients);
  if (row_loss != NULL) row_loss[r] = static_cast<Dtype>(row);
  *loss += row;
  *counted += RowIsCounted(s) ? 1.0 : 0.0;
  *invalid += s.invalid;
}

/// Pass 2, one element: d l_r / d x_c times `scale` (top diff / normalizer,
/// plus the per-row top's diff). Ignored elements give exactly 0, even for
/// NaN scores.
template <typename Dtype>
XENT_HOST_DEVICE Dtype ElementGradient(const RowCoefficients& coef, Dtype x, Dtype t,
                                       const RowOptions& opt, double scale) {
  const int kind = Kind(t, opt);
  if (kind == kNegative) {
    const double e = multilabel::ShiftedExp(static_cast<Dtype>(coef.neg_shift), x);
    return static_cast<Dtype>(SideGradient(ScalarOps<double>(), e, coef.neg_inv_sum, scale));
  }
  if (kind == kPositive) {
    const double e = multilabel::ShiftedExp(static_cast<Dtype>(coef.pos_shift), -x);
    return static_cast<Dtype>(-SideGradient(ScalarOps<double>(), e, coef.pos_inv_sum, scale));
  }
  return Dtype(0);
}

}  // namespace zlpr
}  // namespace xent
}  // namespace caffe

#endif  // CAFFE_LAYERS_ZLPR_LOSS_MATH_HPP_
