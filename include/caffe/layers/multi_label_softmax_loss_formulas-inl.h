// The row formulas of MultiLabelSoftmaxLoss, each written once as a template
// over an ops class (caffe/util/xent_ops.hpp says what each operation
// means): ScalarOps<double> for the CPU loop and the CUDA kernels,
// VecOps over Highway double vectors (a lane per row) for the SIMD path.
//
// No include guard, on purpose: multi_label_softmax_loss_math.hpp includes
// this file once, inside namespace caffe::xent::multilabel, and
// multi_label_softmax_loss_simd.cpp once per Highway target, inside that
// target's namespace, so that the templates are compiled with the target's
// instruction set. The includer defines XENT_FORMULA, the functions'
// specifiers. RowOptions and the normalization codes come from the math
// header. Notation: multi_label_softmax_loss_math.hpp.

/// Whether a row takes part in the loss: at least one positive target and
/// no target equal to ignore_label (the original Python layer divides by
/// zero at M = 0; we ignore the row instead).
template <class Ops, class V>
XENT_FORMULA typename Ops::M RowIsValid(const Ops& o, V positives, V ignored) {
  return o.And(o.Gt(positives, o.Zero()), o.Eq(ignored, o.Zero()));
}

/// What a row's sums give: a = (1-eps)/norm, Q = sum_c q_c and the loss.
template <class V>
struct RowTerms {
  V a, q_total, loss;
};

/// The end of pass 1 for a valid row, from its sums (gap_sum = sum_c (m - x_c),
/// read only with label smoothing):
///   norm  = M (COUNT), sum_c t_c (SUM) or 1 (NONE)
///   Q     = (1-eps) sum_c w_c t_c / norm + eps
///   loss  = Q log S + (1-eps)/norm sum_c w_c t_c (m - x_c) + eps/C sum_c (m - x_c)
/// The eps term only when smoothing is on, so that eps = 0 with a -inf score
/// stays finite (0 * inf is NaN).
template <class Ops, class V>
XENT_FORMULA RowTerms<V> RowLoss(const Ops& o, const RowOptions& opt, V positives, V target_sum,
                                 V weighted, V weighted_gap, V sum_exp, V gap_sum) {
  const V norm = opt.target_normalization == kCount ? positives
               : opt.target_normalization == kSum   ? target_sum
                                                    : o.Set(1.0);
  RowTerms<V> r;
  r.a = o.Div(o.Set(1.0 - opt.smoothing), norm);                 // (1-eps)/norm
  r.q_total = o.MulAdd(r.a, weighted, o.Set(opt.smoothing));     // Q = sum_c q_c
  r.loss = o.MulAdd(r.q_total, o.Log(sum_exp), o.Mul(r.a, weighted_gap));
  if (opt.smoothing != 0.0) {
    r.loss = o.MulAdd(o.Set(opt.smoothing / opt.classes), gap_sum, r.loss);
  }
  return r;
}

/// Pass 2, one element of a row that is not ignored: d loss_r / d x_c times
/// `scale`, scale (Q p_c - q_c) with p_c = e / S (e = e^(x_c - m)) and
/// q_c = a w_c t_c + b.
template <class Ops, class V>
XENT_FORMULA V ScaledGradient(const Ops& o, V q_total, V inv_sum_exp, V a, V b, V e, V w, V t,
                              V scale) {
  const V p = o.Mul(inv_sum_exp, e);          // p_c
  const V q = o.MulAdd(o.Mul(a, w), t, b);    // q_c
  return o.Mul(scale, o.MulSub(q_total, p, q));
}
