// The row formulas of ZLPRLoss, each written once as a template over an ops
// class (caffe/util/xent_ops.hpp says what each operation means):
// ScalarOps<double> for the CPU loop and the CUDA kernels.
//
// No include guard, on purpose (the convention of every *_formulas-inl.h:
// a SIMD path would include it once per Highway target): zlpr_loss_math.hpp
// includes it once, inside namespace caffe::xent::zlpr, and defines
// XENT_FORMULA, the functions' specifiers. Notation: zlpr_loss_math.hpp.

/// One side of a row: log(1 + sum_{j in side} e^(v_j)) from its shift
/// m = max(0, max_j v_j) and log S, where S = e^(-m) + sum_j e^(v_j - m)
/// (the appended zero score is the e^(-m) term):
///   log(1 + sum_j e^(v_j)) = m + log S,
/// both terms >= 0 (m >= 0, S >= 1: the largest of 0 and the v_j
/// contributes e^0), so no cancellation for any magnitude of the scores.
/// (The caller takes log S as log1p of the other terms where m = 0, so
/// that a side loss near 0 keeps its relative accuracy.)
template <class Ops, class V>
XENT_FORMULA V SideLoss(const Ops& o, V shift, V log_sum) {
  return o.Add(shift, log_sum);  // m + log S
}

/// The row loss: the negatives' side (v = x) plus the positives' side
/// (v = -x),
///   l = log(1 + sum_neg e^(x_j)) + log(1 + sum_pos e^(-x_i)).
template <class Ops, class V>
XENT_FORMULA V RowLoss(const Ops& o, V neg_shift, V neg_log_sum, V pos_shift, V pos_log_sum) {
  return o.Add(SideLoss(o, neg_shift, neg_log_sum), SideLoss(o, pos_shift, pos_log_sum));
}

/// d l / d v_j of one element of a side, times `scale`: the softmax weight of
/// v_j among the side's scores and the zero,
///   scale e^(v_j - m) / S,
/// from e = e^(v_j - m) and inv_sum = 1 / S. For a negative v_j = x_j, so
/// this is d l / d x_j; for a positive v_i = -x_i, and d l / d x_i is its
/// negation (the caller's sign).
template <class Ops, class V>
XENT_FORMULA V SideGradient(const Ops& o, V e, V inv_sum, V scale) {
  return o.Mul(o.Mul(scale, inv_sum), e);  // scale e^(v - m) / S
}
