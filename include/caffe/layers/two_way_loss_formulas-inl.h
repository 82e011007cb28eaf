// The line formulas of TwoWayLoss, each written once as a template over an
// ops class (caffe/util/xent_ops.hpp says what each operation means):
// ScalarOps<double> for the CPU loop and the CUDA kernels.
//
// No include guard, on purpose (the convention of every *_formulas-inl.h):
// two_way_loss_math.hpp includes it once, inside namespace
// caffe::xent::twoway, and defines XENT_FORMULA, the functions' specifiers.
// Notation: two_way_loss_math.hpp.

/// The log-sum-exp of one side of a line from its shift m = max v and its
/// shifted sum S = sum e^(v - m) >= 1: LSE(v) = m + log S.
template <class Ops, class V>
XENT_FORMULA V SideLse(const Ops& o, V shift, V shifted_sum) {
  return o.Add(shift, o.Log(shifted_sum));  // m + log S
}

/// The argument of the line's softplus: the soft-max negative against the
/// soft-min positive,
///   a = Tn LSE_neg(x / Tn) + Tp LSE_pos(-x / Tp).
template <class Ops, class V>
XENT_FORMULA V HardPair(const Ops& o, V tn, V neg_lse, V tp, V pos_lse) {
  return o.MulAdd(tn, neg_lse, o.Mul(tp, pos_lse));
}

/// d softplus(a) / d x_j of one element of a side, times `scale`:
/// scale sigma(a) e^(v_j - m) / S (the temperature of v = x / T cancels
/// against the T in front of the LSE), from weight = sigma(a),
/// e = e^(v_j - m) and inv_sum = 1 / S; a positive's is its negation (the
/// caller's sign).
template <class Ops, class V>
XENT_FORMULA V SideGradient(const Ops& o, V scale, V weight, V e, V inv_sum) {
  return o.Mul(o.Mul(o.Mul(scale, weight), inv_sum), e);
}
