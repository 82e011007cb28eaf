// The element formulas of SigmoidCrossEntropyLoss, each written once as a
// template over an ops class (caffe/util/xent_ops.hpp says what each
// operation means): ScalarOps<T> for the CPU element loop and the CUDA
// kernel, VecOps<D> over Highway vectors for the SIMD path.
//
// No include guard, on purpose: sigmoid_cross_entropy_loss_math.hpp includes
// this file once, inside namespace caffe::xent::sigmoid, and
// sigmoid_cross_entropy_loss_simd.cpp includes it once per Highway target,
// inside that target's namespace, so that the templates are compiled with
// the target's instruction set (GCC does not inline a function built for
// one instruction set into one built for another). The includer defines
// XENT_FORMULA, the functions' specifiers (XENT_HOST_DEVICE, HWY_INLINE).
//
// Notation (sigmoid_cross_entropy_loss_math.hpp): τ = t(1-ε) + ε/2,
// a = 1 - τ, b = pos_weight·τ, e = e^-|x|, r = 1/(1+e) = σ(|x|).

/// (x >= 0 ? a : b)·|x|, the linear part of bce; 0 where that weight is 0
/// (0·∞ = 0 at x = ±∞).
template <class Ops, class V, class M>
XENT_FORMULA V BceLinear(const Ops& o, M positive, V a, V b, V abs_x) {
  return o.Scale(o.Select(positive, a, b), abs_x);
}

/// bce = (a + b)·log1p(e^-|x|) + (x >= 0 ? a·x : b·|x|): every term >= 0.
template <class Ops, class V, class M>
XENT_FORMULA V Bce(const Ops& o, M positive, V a, V b, V abs_x, V log1p_e) {
  return o.MulAdd(o.Add(a, b), log1p_e, BceLinear(o, positive, a, b, abs_x));
}

/// The bracket of ∂bce/∂x = a·σ(x) - b·σ(-x) = r·bracket:
/// x >= 0 ? a - b·e : a·e - b. Never 1 - σ(x), which would lose σ(-x) for
/// large x.
template <class Ops, class V, class M>
XENT_FORMULA V BceBracket(const Ops& o, M positive, V a, V b, V e) {
  return o.Select(positive, o.NegMulAdd(b, e, a), o.MulSub(a, e, b));
}

/// Whether the bracket's two products cancel too much to be kept (σ(x) near
/// b/(a+b); soft targets or smoothing only: with τ = 0 or 1 one term is 0):
/// |bracket| below half the term without e (a for x >= 0, b for x < 0).
/// When this is false the term with e is at most 3·|bracket|, so the
/// bracket is within a few ulp. False for NaN.
template <class Ops, class V, class M>
XENT_FORMULA M BracketCancels(const Ops& o, M positive, V a, V b, V bracket) {
  return o.Lt(o.Add(o.Abs(bracket), o.Abs(bracket)), o.Select(positive, a, b));
}

/// The bracket retaken where BracketCancels, in double (V of doubles): a
/// and b from the blob's τ and pos_weight (exact in double for float
/// values), e = e^-|x|. With m = e^-|x| - 1 = Expm1Small(-|x|):
///   x >= 0: a - b·e = (a - b) - b·m
///   x <  0: a·e - b = (a - b) + a·m
/// The m form, for |x| < 1/16, keeps the digits of a small |x| (e rounds to
/// 1 - |x| at 2^-53 absolute: all of them are lost at |x| < 2^-53, half at
/// 2^-26); the e form (BceBracket) keeps e's relative precision for large
/// |x|. Either way the bracket is within ~2^-53 of its terms, so a float
/// result is correctly rounded unless σ(x) and τ agree to more than ~29 bits.
template <class Ops, class V>
XENT_FORMULA V RetakeBracket(const Ops& o, V x, V a, V b, V e) {
  const auto positive = o.Ge(x, o.Zero());
  const V z = o.Neg(o.Abs(x));
  const V m = o.Expm1Small(z);  // used only where -1/16 <= z <= 0
  const V small = o.MulAdd(o.Select(positive, o.Neg(b), a), m, o.Sub(a, b));
  return o.Select(o.Lt(z, o.Set(-0.0625)), BceBracket(o, positive, a, b, e), small);
}

/// The focal α_t = α·τ + (1-α)(1-τ) as c_tau·τ + c_a·(1-τ) + c_one, so that
/// α off (α_t = 1) is c_tau = c_a = 0, c_one = 1: no branch per element.
template <class V>
struct FocalAlpha {
  V c_tau, c_a, c_one;
};

/// The focal pieces of an element: σ(x), σ(-x) (never 1 - σ(x)), α_t and
/// q = 1 - p_t = τ·σ(-x) + (1-τ)·σ(x), a sum of terms >= 0.
template <class Ops, class V, class M>
XENT_FORMULA void FocalParts(const Ops& o, M positive, V e, V r, V tau, V a,
                             const FocalAlpha<V>& alpha, V* sigma_pos, V* sigma_neg, V* alpha_t,
                             V* q) {
  const V er = o.Mul(e, r);
  *sigma_pos = o.Select(positive, r, er);
  *sigma_neg = o.Select(positive, er, r);
  *alpha_t = o.MulAdd(alpha.c_tau, tau, o.MulAdd(alpha.c_a, a, alpha.c_one));
  *q = o.MulAdd(tau, *sigma_neg, o.Mul(a, *sigma_pos));
}

// The asymmetric form (ASL; AsymmetricElement in
// sigmoid_cross_entropy_loss_math.hpp): c_pos = weight·α+·b and
// c_neg = weight·α-·a, the positive term c_pos·σ(-x)^γ+·softplus(-x), the
// negative term c_neg·p_m^γ-·(-log(1-p_m)). The powers and logarithms are
// the caller's (pow, log1p, log in the scalar math; whole powers by
// multiplication and Highway's logarithms on vectors).

/// p_m = max(σ(x) - m, 0) and 1 - p_m = σ(-x) + m, from σ(x) and σ(-x):
/// never 1 - σ(x), which would lose σ(-x) for large x. (1 - p_m is used
/// only where p_m > 1/2, where it is σ(-x) + m exactly.)
template <class Ops, class V>
XENT_FORMULA void AsymmetricShift(const Ops& o, V sigma_pos, V sigma_neg, V margin, V* shifted,
                                  V* kept) {
  *shifted = o.IfThenElseZero(o.Gt(sigma_pos, margin), o.Sub(sigma_pos, margin));
  *kept = o.Add(sigma_neg, margin);
}

/// ℓ = c_pos·σ(-x)^γ+·softplus(-x) + c_neg·p_m^γ-·(-log(1-p_m)): two terms
/// >= 0, each 0 where its weight is (also where its logarithm is ∞).
template <class Ops, class V>
XENT_FORMULA V AsymmetricLoss(const Ops& o, V c_pos, V mod_pos, V softplus_neg, V c_neg,
                              V mod_neg, V log_neg) {
  return o.Add(o.Scale(o.Mul(c_pos, mod_pos), softplus_neg),
               o.Scale(o.Mul(c_neg, mod_neg), log_neg));
}

/// |∂/∂x| of c·q^γ·(-log(1-q)), for q = σ(-x) (the positive term: -log σ(x)
/// = softplus(-x)) and q = σ(x) (the negative term without margin:
/// -log σ(-x) = softplus(x)): c·q^γ·(q + γ·(1-q)·(-log(1-q))), with
/// `first` = q, `second` = 1 - q (the other σ, never formed as 1 - q) and
/// `log_term` = -log(1-q). A sum of terms >= 0; the second is 0 where
/// γ·(1-q) is (at x = -∞ resp. +∞, where the logarithm is ∞).
template <class Ops, class V>
XENT_FORMULA V FocusedGrad(const Ops& o, V c, V mod, V first, V second, V gamma, V log_term) {
  return o.Mul(o.Mul(c, mod), o.Add(first, o.Scale(o.Mul(gamma, second), log_term)));
}

/// ∂/∂x of the negative term with a margin m > 0, for p_m > 0:
/// c·σ(x)σ(-x)·(γ·p_m^(γ-1)·(-log(1-p_m)) + p_m^γ/(1-p_m)), `focus` the
/// first addend (the caller's power form); exactly 0 where p_m = 0.
template <class Ops, class V>
XENT_FORMULA V MarginGrad(const Ops& o, V c, V mod, V focus, V sigma_pos, V sigma_neg,
                          V shifted, V kept) {
  const V value = o.Mul(o.Mul(c, o.Mul(sigma_pos, sigma_neg)), o.Add(focus, o.Div(mod, kept)));
  return o.IfThenElseZero(o.Gt(shifted, o.Zero()), value);
}
