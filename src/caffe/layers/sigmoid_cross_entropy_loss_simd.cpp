// CPU fast path of SigmoidCrossEntropyLoss (see sigmoid_cross_entropy_loss_simd.hpp).
//
// Why Highway: it ships as a Debian package (libhwy-dev), has vectorized
// Exp and Log1p for float and double, and compiles this file once per x86
// target (SSE4, AVX2, AVX-512...) with run-time dispatch, so one binary uses
// the widest vectors of the machine it runs on. The layer calls these
// functions per fixed chunk of kReduceChunk elements under OpenMP; each
// chunk's loss is summed in double in lane order, so results do not depend
// on the thread count.
//
// Highway re-includes this file once per target (foreach_target.h). The
// include path below is relative to our include/ directory, which is on the
// include path of every caffe source (a path relative to this file would be
// looked up next to hwy/foreach_target.h instead).
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "../src/caffe/layers/sigmoid_cross_entropy_loss_simd.cpp"
#include <hwy/foreach_target.h>  // NOLINT: must come before highway.h

#include <hwy/highway.h>
#include <hwy/contrib/math/math-inl.h>

#include <algorithm>
#include <cstdint>
#include <limits>

#include "sigmoid_cross_entropy_loss_simd.hpp"

HWY_BEFORE_NAMESPACE();
namespace caffe {
namespace xent {
namespace sigmoid {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

/// Double accumulator of a vector of T: float lanes are widened to double
/// (two halves), double lanes are added as they are.
#if HWY_TARGET == HWY_SCALAR
template <class D>
struct DoubleSum {  // one lane: nothing to split
  double total = 0.0;
  explicit DoubleSum(D) {}
  HWY_INLINE void Add(D, hn::Vec<D> v) { total += static_cast<double>(hn::GetLane(v)); }
  HWY_INLINE double Total() const { return total; }
};
#else
template <class D>
struct DoubleSum {
  using T = hn::TFromD<D>;
  using DH = hn::Half<D>;
  using DD = hn::Rebind<double, DH>;
  hn::Vec<DD> low, high;
  explicit DoubleSum(D) : low(hn::Zero(DD())), high(hn::Zero(DD())) {}
  HWY_INLINE void Add(D d, hn::Vec<D> v) {
    if constexpr (sizeof(T) == 4) {
      const DH dh;
      const DD dd;
      low = hn::Add(low, hn::PromoteTo(dd, hn::LowerHalf(dh, v)));
      high = hn::Add(high, hn::PromoteTo(dd, hn::UpperHalf(dh, v)));
    } else {
      // double: D has the lanes of DD twice; add the halves separately so
      // the code is the same for both element types.
      low = hn::Add(low, hn::LowerHalf(DH(), v));
      high = hn::Add(high, hn::UpperHalf(DH(), v));
    }
  }
  HWY_INLINE double Total() const {
    const DD dd;
    HWY_ALIGN double lanes[HWY_MAX_BYTES / sizeof(double)];
    hn::Store(hn::Add(low, high), dd, lanes);
    double total = 0.0;
    for (size_t i = 0; i < hn::Lanes(dd); ++i) total += lanes[i];
    return total;
  }
};
#endif

/// log1p(e) for e in [0, 1] (here e = e^-|x|). float: with s = e/(2+e) in
/// [0, 1/3], log1p(e) = 2·atanh(s) = 2s·(1 + s²/3 + s⁴/5 + ...); the series
/// cut after s¹²/13 is within 1.4e-8 relative (< 1/4 ulp), and it costs one
/// division where hwy::Log1p costs two plus a full Log. double: hwy::Log1p.
template <class D, class V = hn::Vec<D>>
HWY_INLINE V Log1pUnit(D d, V e) {
  if constexpr (sizeof(hn::TFromD<D>) == 4) {
    // 2s = 2e/(2+e) directly: e/(2+e) would halve a subnormal e and lose its
    // last bit, which pos_weight then multiplies. The series runs in
    // (2s)² = 4s², its coefficients divided by powers of 4 (exact).
    const V s2 = hn::Div(hn::Add(e, e), hn::Add(hn::Set(d, 2.0f), e));
    const V z = hn::Mul(s2, s2);                              // 4s²
    V p = hn::Set(d, 1.0f / (13 * 4096));
    p = hn::MulAdd(p, z, hn::Set(d, 1.0f / (11 * 1024)));
    p = hn::MulAdd(p, z, hn::Set(d, 1.0f / (9 * 256)));
    p = hn::MulAdd(p, z, hn::Set(d, 1.0f / (7 * 64)));
    p = hn::MulAdd(p, z, hn::Set(d, 1.0f / (5 * 16)));
    p = hn::MulAdd(p, z, hn::Set(d, 1.0f / (3 * 4)));
    p = hn::MulAdd(p, z, hn::Set(d, 1.0f));
    return hn::Mul(s2, p);                                    // 2s·(1 + z/3 + ...)
  } else {
    return hn::Log1p(d, e);
  }
}

/// Per-lane pos_weight and class_weight of consecutive vectors, element i
/// having class (i / inner) % classes (Options).
template <typename T>
class PerClass {
 public:
  PerClass(const Options<T>& o, int64_t first)
      : o_(&o), offset_(o.period > 0 ? first % o.period : 0),
        c_(o.period > 0 ? 0 : (first / o.inner) % o.classes),
        left_(o.period > 0 ? 0 : o.inner - first % o.inner) {}

  template <class D, class V = hn::Vec<D>>
  HWY_INLINE void Next(D d, V* pos_weight, V* class_weight) {
    const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
    if (o_->period > 0) {  // small inner: the values element by element, one period, padded
      *pos_weight = hn::LoadU(d, o_->pos_weight_period + offset_);
      *class_weight = hn::LoadU(d, o_->class_weight_period + offset_);
      offset_ += lanes;
      if (offset_ >= o_->period) offset_ %= o_->period;
      return;
    }
    if (left_ >= lanes) {  // within one class's run
      *pos_weight = hn::Set(d, o_->pos_weight[c_]);
      *class_weight = hn::Set(d, o_->class_weight[c_]);
      left_ -= lanes;
      if (left_ == 0) NextClass();
      return;
    }
    HWY_ALIGN T pw[HWY_MAX_BYTES / sizeof(T)], cw[HWY_MAX_BYTES / sizeof(T)];
    for (int64_t j = 0; j < lanes; ++j) {  // a run ends inside this vector
      pw[j] = o_->pos_weight[c_];
      cw[j] = o_->class_weight[c_];
      if (--left_ == 0) NextClass();
    }
    *pos_weight = hn::Load(d, pw);
    *class_weight = hn::Load(d, cw);
  }

 private:
  void NextClass() {
    c_ = c_ + 1 == o_->classes ? 0 : c_ + 1;
    left_ = o_->inner;
  }
  const Options<T>* o_;
  int64_t offset_, c_, left_;
};

/// τ, a = 1 - τ (weight of softplus(x)) and b = pos_weight·τ (of softplus(-x))
/// of one vector; without options (kOptions false) τ = t, b = t.
template <bool kOptions, class D, class V = hn::Vec<D>>
HWY_INLINE void Weights(D d, V t, V pos_weight, V keep, V shift, V* tau, V* a, V* b) {
  *tau = kOptions ? hn::MulAdd(t, keep, shift) : t;
  *a = hn::Sub(hn::Set(d, 1), *tau);
  *b = kOptions ? hn::Mul(pos_weight, *tau) : *tau;
}

/// The focal term's constants: α_t = c_tau·τ + c_a·(1-τ) + c_one (α off:
/// c_one = 1, the others 0) and the whole power γ.
template <class D>
struct FocalVectors {
  hn::Vec<D> c_tau, c_a, c_one;
  int power;
};

template <class D, typename T = hn::TFromD<D>>
FocalVectors<D> MakeFocal(D d, const Options<T>* o) {
  const bool alpha = o && o->focal_alpha >= T(0);
  return {hn::Set(d, alpha ? o->focal_alpha : T(0)),
          hn::Set(d, alpha ? T(1) - o->focal_alpha : T(0)), hn::Set(d, alpha ? T(0) : T(1)),
          o ? o->focal_power : 0};
}

/// q^n for a whole n >= 0, by repeated squaring (q² is one rounding).
template <class D, class V = hn::Vec<D>>
HWY_INLINE V WholePower(D d, V q, int n) {
  V result = hn::Set(d, 1);
  while (n > 0) {
    if (n & 1) result = hn::Mul(result, q);
    n >>= 1;
    if (n > 0) q = hn::Mul(q, q);
  }
  return result;
}

/// The focal pieces of one vector: σ(x), σ(-x), α_t and q = 1 - p_t.
template <class D, class V = hn::Vec<D>, class M = hn::Mask<D>>
HWY_INLINE void FocalParts(D d, const FocalVectors<D>& focal, M positive, V e, V tau, V a,
                           V* sigma_pos, V* sigma_neg, V* alpha_t, V* q) {
  const V r = hn::Div(hn::Set(d, 1), hn::Add(hn::Set(d, 1), e));
  const V er = hn::Mul(e, r);
  *sigma_pos = hn::IfThenElse(positive, r, er);    // σ(x)
  *sigma_neg = hn::IfThenElse(positive, er, r);    // σ(-x), no 1 - σ(x)
  *alpha_t = hn::MulAdd(focal.c_tau, tau, hn::MulAdd(focal.c_a, a, focal.c_one));
  *q = hn::MulAdd(tau, *sigma_neg, hn::Mul(a, *sigma_pos));  // τσ(-x) + (1-τ)σ(x), terms >= 0
}

/// One vector of the forward. `lanes`: which lanes hold elements. Returns ℓ
/// (0 in ignored lanes); sets the count masks. kIgnore, kWeights, kOptions,
/// kFocal (implies kOptions): compile-time switches so the plain case
/// carries no unused work.
template <bool kIgnore, bool kWeights, bool kOptions, bool kFocal, class D, class V = hn::Vec<D>,
          class M = hn::Mask<D>>
HWY_INLINE V ForwardVector(D d, V x, V t, V w, V pos_weight, V class_weight, V keep, V shift,
                           const FocalVectors<D>& focal, M lanes, V ignore_label, M* counted,
                           M* bad_target, M* bad_weight) {
  const V zero = hn::Zero(d);
  const V one = hn::Set(d, 1);
  const M in_range = hn::And(hn::Ge(t, zero), hn::Le(t, one));  // false for NaN
  if (kIgnore) {
    const M ignored = hn::Eq(t, ignore_label);
    *counted = hn::AndNot(ignored, lanes);
    *bad_target = hn::AndNot(hn::Or(ignored, in_range), lanes);
  } else {
    *counted = lanes;
    *bad_target = hn::AndNot(in_range, lanes);
  }
  if (kWeights) {  // a weight is finite and >= 0: false for NaN and +inf
    const V most = hn::Set(d, std::numeric_limits<hn::TFromD<D>>::max());
    *bad_weight = hn::AndNot(hn::And(hn::Ge(w, zero), hn::Le(w, most)), lanes);
  }

  V tau, a, b;
  Weights<kOptions>(d, t, pos_weight, keep, shift, &tau, &a, &b);
  const V abs_x = hn::Abs(x);
  const V e = hn::Exp(d, hn::Neg(abs_x));           // e^-|x| in [0,1]
  const V log1p_e = Log1pUnit(d, e);                // log1p(e^-|x|)
  const M positive = hn::Ge(x, zero);
  // bce = (a + b)·log1p(e^-|x|) + (x >= 0 ? a·x : b·|x|); a zero weight drops
  // the term (0·∞ = 0 at x = ±∞). Without options a + b = 1.
  const V coefficient = hn::IfThenElse(positive, a, b);
  const V linear = hn::IfThenZeroElse(hn::Eq(coefficient, zero), hn::Mul(coefficient, abs_x));
  V loss = kOptions ? hn::MulAdd(hn::Add(a, b), log1p_e, linear) : hn::Add(log1p_e, linear);
  if (kOptions || kWeights) {
    V weight = kOptions && kWeights ? hn::Mul(class_weight, w) : kOptions ? class_weight : w;
    if (kFocal) {  // ℓ = weight·α_t·q^γ·bce
      V sigma_pos, sigma_neg, alpha_t, q;
      FocalParts(d, focal, positive, e, tau, a, &sigma_pos, &sigma_neg, &alpha_t, &q);
      weight = hn::Mul(hn::Mul(weight, alpha_t), WholePower(d, q, focal.power));
    }
    loss = hn::IfThenZeroElse(hn::Eq(weight, zero), hn::Mul(weight, loss));
  }
  loss = hn::IfThenElse(hn::IsNaN(x), x, loss);     // NaN in, NaN out
  return kIgnore ? hn::IfThenElseZero(*counted, loss) : loss;
}

template <bool kIgnore, bool kWeights, bool kOptions, bool kFocal, typename T>
Sums ForwardLoop(const T* HWY_RESTRICT x, const T* HWY_RESTRICT t,
                            const T* HWY_RESTRICT w, T* HWY_RESTRICT element_loss, int64_t n,
                            int64_t first, const Options<T>* options,
                            T ignore_label_value) {
  const hn::ScalableTag<T> d;
  using V = hn::Vec<decltype(d)>;
  using M = hn::Mask<decltype(d)>;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  const V ignore_label = hn::Set(d, ignore_label_value);
  const V keep = hn::Set(d, kOptions ? options->keep : T(1));
  const V shift = hn::Set(d, kOptions ? options->shift : T(0));
  const auto focal = MakeFocal(d, kFocal ? options : nullptr);
  const M all = hn::FirstN(d, lanes);
  DoubleSum<decltype(d)> sum(d);
  int64_t counted = 0, bad_targets = 0, bad_weights = 0;
  auto accumulate = [&](V loss, M c, M bt, M bw) {
    sum.Add(d, loss);
    if (kIgnore) counted += hn::CountTrue(d, c);
    bad_targets += hn::CountTrue(d, bt);
    if (kWeights) bad_weights += hn::CountTrue(d, bw);
  };
  Options<T> none = {};  // not read without options
  none.inner = none.classes = 1;
  PerClass<T> per_class(kOptions ? *options : none, first);
  V pw = hn::Set(d, 1), cw = hn::Set(d, 1);
  int64_t i = 0;
  for (; i + lanes <= n; i += lanes) {
    const V wv = kWeights ? hn::LoadU(d, w + i) : hn::Zero(d);
    if (kOptions) per_class.Next(d, &pw, &cw);
    M c, bt, bw;
    const V loss = ForwardVector<kIgnore, kWeights, kOptions, kFocal>(
        d, hn::LoadU(d, x + i), hn::LoadU(d, t + i), wv, pw, cw, keep, shift, focal, all,
        ignore_label, &c, &bt, &bw);
    if (element_loss) hn::StoreU(loss, d, element_loss + i);
    accumulate(loss, c, bt, bw);
  }
  if (i < n) {
    // Tail: the same vector code on a padded copy, padding lanes masked off.
    const int64_t rest = n - i;
    HWY_ALIGN T xb[HWY_MAX_BYTES / sizeof(T)] = {}, tb[HWY_MAX_BYTES / sizeof(T)] = {},
                wb[HWY_MAX_BYTES / sizeof(T)] = {}, lb[HWY_MAX_BYTES / sizeof(T)];
    std::copy(x + i, x + n, xb);
    std::copy(t + i, t + n, tb);
    if (kWeights) std::copy(w + i, w + n, wb);
    if (kOptions) per_class.Next(d, &pw, &cw);
    M c, bt, bw;
    const M valid = hn::FirstN(d, rest);
    V loss = ForwardVector<kIgnore, kWeights, kOptions, kFocal>(
        d, hn::Load(d, xb), hn::Load(d, tb), hn::Load(d, wb), pw, cw, keep, shift, focal, valid,
        ignore_label, &c, &bt, &bw);
    loss = hn::IfThenElseZero(valid, loss);
    hn::Store(loss, d, lb);
    if (element_loss) std::copy(lb, lb + rest, element_loss + i);
    accumulate(loss, c, bt, bw);
  }
  Sums sums;
  sums.loss = sum.Total();
  sums.counted = kIgnore ? counted : n;
  sums.bad_targets = bad_targets;
  sums.bad_weights = bad_weights;
  return sums;
}

template <bool kOptions, bool kFocal, typename T>
Sums ForwardWith(const T* x, const T* t, const T* w, T* element_loss, int64_t n,
                            int64_t first, const Options<T>* o, bool has_ignore_label,
                            T ignore) {
  if (has_ignore_label) {
    return w ? ForwardLoop<true, true, kOptions, kFocal>(x, t, w, element_loss, n, first, o,
                                                         ignore)
             : ForwardLoop<true, false, kOptions, kFocal>(x, t, w, element_loss, n, first, o,
                                                          ignore);
  }
  return w ? ForwardLoop<false, true, kOptions, kFocal>(x, t, w, element_loss, n, first, o,
                                                        ignore)
           : ForwardLoop<false, false, kOptions, kFocal>(x, t, w, element_loss, n, first, o,
                                                         ignore);
}

template <typename T>
bool HasFocal(const Options<T>* o) {
  return o && (o->focal_power > 0 || o->focal_alpha >= T(0));
}

template <typename T>
Sums Forward(const T* x, const T* t, const T* w, T* element_loss, int64_t n,
                        int64_t first, const Options<T>* options,
                        bool has_ignore_label, T ignore_label) {
  if (HasFocal(options)) {
    return ForwardWith<true, true>(x, t, w, element_loss, n, first, options, has_ignore_label,
                                   ignore_label);
  }
  return options ? ForwardWith<true, false>(x, t, w, element_loss, n, first, options,
                                            has_ignore_label, ignore_label)
                 : ForwardWith<false, false>(x, t, w, element_loss, n, first, options,
                                             has_ignore_label, ignore_label);
}

/// The bracket of ∂bce/∂x = a·σ(x) - b·σ(-x) = bracket/(1+e) in double, for
/// a = 1 - τ and b = pos_weight·τ (exact in double for float τ, pos_weight),
/// lane by lane as BceGradDouble (sigmoid_cross_entropy_loss_math.hpp) takes
/// it; dd: a vector of doubles. For |x| < 1/16, m = e^-|x| - 1 comes from
/// its Taylor series cut after z⁹/9! (z = -|x|; the rest is below 2^-57 of
/// m), cheaper than a second Exp.
template <class DD, class VD = hn::Vec<DD>>
HWY_INLINE VD BracketDouble(DD dd, VD x, VD tau, VD pos_weight) {
  const VD one = hn::Set(dd, 1.0);
  const VD z = hn::Neg(hn::Abs(x));
  const VD e = hn::Exp(dd, z);
  VD p = hn::Set(dd, 1.0 / 362880);                                // 1/9!
  const double inverse_factorials[] = {1.0 / 40320, 1.0 / 5040, 1.0 / 720, 1.0 / 120,
                                       1.0 / 24, 1.0 / 6, 1.0 / 2, 1.0};
  for (double c : inverse_factorials) p = hn::MulAdd(p, z, hn::Set(dd, c));
  const VD m = hn::Mul(p, z);                                      // e^z - 1, |z| < 1/16
  const VD a = hn::Sub(one, tau);
  const VD b = hn::Mul(pos_weight, tau);
  const auto positive = hn::Ge(x, hn::Zero(dd));
  // small |x|: (a - b) + (x >= 0 ? -b : a)·m;  else x >= 0 ? a - b·e : a·e - b
  const VD small = hn::MulAdd(hn::IfThenElse(positive, hn::Neg(b), a), m, hn::Sub(a, b));
  const VD large = hn::IfThenElse(positive, hn::NegMulAdd(b, e, a), hn::MulSub(a, e, b));
  return hn::IfThenElse(hn::Lt(z, hn::Set(dd, -0.0625)), large, small);
}

/// One vector of the backward: ∂ℓ/∂x · factor, 0 in ignored lanes. With
/// kCheck, sets `cancels` to the lanes whose bracket must be retaken in
/// double, and tau and `multiplier` (r·weight·factor) for that; without,
/// ORs a·b into `soft` instead (nonzero bits: some lane has both terms, so
/// might cancel; 0 for targets 0 and 1), two vector ops instead of four.
template <bool kOptions, bool kFocal, bool kCheck, class D, class V = hn::Vec<D>,
          class M = hn::Mask<D>>
HWY_INLINE V BackwardVector(D d, V x, V t, const V* w, V pos_weight, V class_weight, V keep,
                            V shift, const FocalVectors<D>& focal, V factor,
                            bool has_ignore_label, V ignore_label, M* cancels, V* tau,
                            V* multiplier, V* addend, V* soft) {
  const V zero = hn::Zero(d);
  const V one = hn::Set(d, 1);
  V a, b;
  Weights<kOptions>(d, t, pos_weight, keep, shift, tau, &a, &b);
  const V e = hn::Exp(d, hn::Or(x, hn::Set(d, hn::TFromD<D>(-0.0))));  // e^-|x| (sign bit set)
  const M positive = hn::Ge(x, zero);
  // a·σ(x) - b·σ(-x) = r·(x >= 0 ? a - b·e : a·e - b): never 1 - σ, which
  // would lose σ(-x) for large x.
  const V bracket = hn::IfThenElse(positive, hn::NegMulAdd(b, e, a), hn::MulSub(a, e, b));
  V k, grad;
  if (kFocal) {
    // ∂ℓ/∂x = c·(q^γ·∂bce/∂x + bce·γq^(γ-1)·(1-2τ)·σ(x)σ(-x)), c = weight·α_t:
    // here bracket·k + addend, k = r·c·q^γ·factor (sigmoid_cross_entropy_loss_math.hpp).
    V sigma_pos, sigma_neg, alpha_t, q;
    FocalParts(d, focal, positive, e, *tau, a, &sigma_pos, &sigma_neg, &alpha_t, &q);
    V c = hn::Mul(alpha_t, factor);
    c = hn::Mul(class_weight, c);
    if (w) c = hn::Mul(*w, c);
    const V q_lower = WholePower(d, q, focal.power - 1);     // q^(γ-1)
    const V modulator = focal.power > 0 ? hn::Mul(q_lower, q) : one;
    k = hn::Mul(hn::Div(c, hn::Add(one, e)), modulator);
    V dmodulator = zero;
    if (focal.power > 0) {
      dmodulator = hn::Mul(hn::Mul(hn::Set(d, hn::TFromD<D>(focal.power)), q_lower),
                           hn::Mul(hn::NegMulAdd(hn::Set(d, 2), *tau, one),
                                   hn::Mul(sigma_pos, sigma_neg)));
    }
    const V abs_x = hn::Abs(x);
    const V coefficient = hn::IfThenElse(positive, a, b);
    const V linear = hn::IfThenZeroElse(hn::Eq(coefficient, zero), hn::Mul(coefficient, abs_x));
    const V bce = hn::MulAdd(hn::Add(a, b), Log1pUnit(d, e), linear);
    // bce·∂mod is 0 where ∂mod is, even at bce = ∞.
    *addend = hn::Mul(c, hn::IfThenZeroElse(hn::Eq(dmodulator, zero), hn::Mul(dmodulator, bce)));
    grad = hn::MulAdd(bracket, k, *addend);
  } else {
    k = hn::Div(factor, hn::Add(one, e));           // r·factor, r = σ(|x|)
    if (kOptions) k = hn::Mul(class_weight, k);
    if (w) k = hn::Mul(*w, k);
    *addend = zero;
    grad = hn::Mul(bracket, k);
  }
  grad = hn::IfThenElse(hn::IsNaN(x), x, grad);     // NaN in, NaN out
  // Where the two terms cancel (σ(x) ≈ b/(a+b); soft targets or smoothing
  // only: with τ = 0 or 1 one term is 0) the caller retakes the bracket in
  // double. The test: |bracket| below half the term without e (a for x >= 0,
  // b for x < 0). When it fails, the term with e is at most 3·|bracket|, so
  // the float bracket is within a few ulp; four vector ops, as the loop is
  // bound by their count. False for NaN.
  if (kCheck) {
    *cancels = hn::Lt(hn::Add(hn::Abs(bracket), hn::Abs(bracket)),
                      hn::IfThenElse(positive, a, b));
  } else {
    *soft = hn::Or(*soft, hn::Mul(a, b));
  }
  *multiplier = k;
  if (has_ignore_label) {
    const M ignored = hn::Eq(t, ignore_label);
    grad = hn::IfThenZeroElse(ignored, grad);
    if (kCheck) *cancels = hn::AndNot(ignored, *cancels);
  }
  return grad;
}

/// Elements whose bracket cancels, gathered (compressed) while the fast pass
/// runs and retaken in double vectors when the buffer fills and at the end:
/// only those elements pay for double, whatever their neighbours are. Each
/// element's result depends on its own inputs only.
template <typename T>
class CancellingElements {
 public:
  using D = hn::ScalableTag<T>;
  using DI = hn::RebindToSigned<D>;
  using TI = hn::TFromD<DI>;

  explicit CancellingElements(T* dx) : dx_(dx) {}

  HWY_INLINE void Add(D d, hn::Mask<D> m, hn::Vec<D> x, hn::Vec<D> tau, hn::Vec<D> pos_weight,
                      hn::Vec<D> k, hn::Vec<D> addend, int64_t i) {
    // Compress in registers, then a plain store: the memory form of AVX-512's
    // compress store is microcoded and slow on some CPUs (AMD Zen 4).
    const DI di;
    hn::StoreU(hn::Compress(x, m), d, x_ + pending_);
    hn::StoreU(hn::Compress(tau, m), d, tau_ + pending_);
    hn::StoreU(hn::Compress(pos_weight, m), d, pos_weight_ + pending_);
    hn::StoreU(hn::Compress(k, m), d, k_ + pending_);
    hn::StoreU(hn::Compress(addend, m), d, addend_ + pending_);
    hn::StoreU(hn::Compress(hn::Iota(di, static_cast<TI>(i)), hn::RebindMask(di, m)), di,
               index_ + pending_);
    pending_ += hn::CountTrue(d, m);
    if (pending_ > kCapacity) Flush();
  }

  void Flush() {
    const hn::ScalableTag<double> dd;
    const hn::Rebind<T, decltype(dd)> dt;  // T lanes, as many as dd has
    const size_t lanes = hn::Lanes(dd);
    // Whole vectors; the lanes past pending_ get zeros, their results are
    // not written anywhere.
    const size_t end = (pending_ + lanes - 1) / lanes * lanes;
    std::fill(x_ + pending_, x_ + end, T(0));
    std::fill(tau_ + pending_, tau_ + end, T(0));
    std::fill(pos_weight_ + pending_, pos_weight_ + end, T(0));
    std::fill(k_ + pending_, k_ + end, T(0));
    std::fill(addend_ + pending_, addend_ + end, T(0));
    for (size_t j = 0; j < pending_; j += lanes) {
      hn::Vec<decltype(dt)> bracket;
      if constexpr (sizeof(T) == 8) {
        bracket = BracketDouble(dd, hn::LoadU(dd, x_ + j), hn::LoadU(dd, tau_ + j),
                                hn::LoadU(dd, pos_weight_ + j));
      } else {
        bracket = hn::DemoteTo(dt, BracketDouble(dd, hn::PromoteTo(dd, hn::LoadU(dt, x_ + j)),
                                                 hn::PromoteTo(dd, hn::LoadU(dt, tau_ + j)),
                                                 hn::PromoteTo(dd, hn::LoadU(dt, pos_weight_ + j))));
      }
      hn::StoreU(hn::MulAdd(bracket, hn::LoadU(dt, k_ + j), hn::LoadU(dt, addend_ + j)), dt,
                 result_ + j);
    }
    for (size_t j = 0; j < pending_; ++j) dx_[index_[j]] = result_[j];
    pending_ = 0;
  }

 private:
  // Add stores a whole vector past the count; Flush reads whole double
  // vectors (at most as many lanes as a T vector).
  static constexpr size_t kCapacity = 1024;
  static constexpr size_t kSize = kCapacity + 2 * HWY_MAX_BYTES / sizeof(T);
  T* dx_;
  size_t pending_ = 0;
  HWY_ALIGN T x_[kSize], tau_[kSize], pos_weight_[kSize], k_[kSize], addend_[kSize],
      result_[kSize];
  HWY_ALIGN TI index_[kSize];
};

/// The backward's inputs (see SimdBackward).
template <typename T>
struct BackwardArgs {
  const T* x;
  const T* t;
  const T* w;             ///< may be NULL
  const T* element_diff;  ///< may be NULL
  T scale;
  T* dx;
  bool has_ignore_label;
  T ignore_label;
  T keep, shift;          ///< τ = t·keep + shift (options only)
  const Options<T>* options;  ///< NULL: the plain loss
};

/// Vector i of the backward from xs, ts, ws, eds (the blob's arrays, or a
/// padded copy of the tail): its gradient, and what a retake in double needs.
template <bool kOptions, bool kFocal, bool kCheck, class D, typename T = hn::TFromD<D>,
          class V = hn::Vec<D>, class M = hn::Mask<D>>
HWY_INLINE V VectorAt(D d, const BackwardArgs<T>& a, const FocalVectors<D>& focal, int64_t i,
                      const T* xs, const T* ts, const T* ws, const T* eds,
                      PerClass<T>* per_class, M* cancels, V* xv, V* tau, V* pw, V* k,
                      V* addend, V* soft) {
  const V scale = hn::Set(d, a.scale);
  V cw = hn::Set(d, 1), wv;
  *pw = cw;
  if (kOptions) per_class->Next(d, pw, &cw);
  if (a.w) wv = hn::LoadU(d, ws + i);
  const V factor = a.element_diff ? hn::Add(scale, hn::LoadU(d, eds + i)) : scale;
  *xv = hn::LoadU(d, xs + i);
  return BackwardVector<kOptions, kFocal, kCheck>(
      d, *xv, hn::LoadU(d, ts + i), a.w ? &wv : nullptr, *pw, cw, hn::Set(d, a.keep),
      hn::Set(d, a.shift), focal, factor, a.has_ignore_label, hn::Set(d, a.ignore_label),
      cancels, tau, k, addend, soft);
}

/// The hot loop over whole vectors [begin, end): stores the gradients.
/// kCheck: hands the lanes to retake in double to `cancelling`; otherwise
/// returns whether any lane might cancel (a soft target), and the block
/// must be run again with kCheck. Hard targets take the loop without the
/// test: the loop is bound by its count of vector ops, and the four-op test
/// cost ~15 % of the plain backward (one thread, AMD Zen 4).
template <bool kOptions, bool kFocal, bool kCheck, typename T>
HWY_NOINLINE int BackwardBlock(const BackwardArgs<T>& a, int64_t begin, int64_t end,
                               PerClass<T>* per_class, CancellingElements<T>* cancelling) {
  const hn::ScalableTag<T> d;
  using V = hn::Vec<decltype(d)>;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  const auto focal = MakeFocal(d, kFocal ? a.options : nullptr);
  V soft = hn::Zero(d);
  for (int64_t i = begin; i < end; i += lanes) {
    hn::Mask<decltype(d)> cancels;
    V xv, tau, pw, k, addend;
    hn::StoreU(VectorAt<kOptions, kFocal, kCheck>(d, a, focal, i, a.x, a.t, a.w, a.element_diff,
                                                  per_class, &cancels, &xv, &tau, &pw, &k,
                                                  &addend, &soft), d, a.dx + i);
    if (kCheck && !hn::AllFalse(d, cancels)) {
      cancelling->Add(d, cancels, xv, tau, pw, k, addend, i);
    }
  }
  if (kCheck) return 0;
  const hn::RebindToUnsigned<decltype(d)> du;
  return !hn::AllTrue(du, hn::Eq(hn::BitCast(du, soft), hn::Zero(du)));
}

template <bool kOptions, bool kFocal, typename T>
void BackwardWith(const BackwardArgs<T>& a, int64_t n, int64_t first,
                  const Options<T>* options) {
  const hn::ScalableTag<T> d;
  using V = hn::Vec<decltype(d)>;
  using M = hn::Mask<decltype(d)>;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  Options<T> none = {};  // not read without options
  none.inner = none.classes = 1;
  const Options<T>& o = kOptions ? *options : none;
  CancellingElements<T> cancelling(a.dx);
  const int64_t whole = n - n % lanes;
  PerClass<T> per_class(o, first);
  // Hard targets (0 and 1) never cancel: blocks run without the test until
  // one shows a soft target; that block is run again with it, and so is the
  // rest of the range (soft targets seldom come alone).
  const int64_t kBlock = 256 * lanes;
  int64_t block = 0;
  for (; block < whole; block += kBlock) {
    const PerClass<T> block_start = per_class;
    if (BackwardBlock<kOptions, kFocal, false>(a, block, std::min(whole, block + kBlock),
                                               &per_class, &cancelling)) {
      per_class = block_start;
      break;
    }
  }
  if (block < whole) {
    BackwardBlock<kOptions, kFocal, true>(a, block, whole, &per_class, &cancelling);
  }
  if (whole < n) {  // tail: the same vector code on a padded copy
    const int64_t rest = n - whole;
    HWY_ALIGN T xb[HWY_MAX_BYTES / sizeof(T)] = {}, tb[HWY_MAX_BYTES / sizeof(T)] = {},
                wb[HWY_MAX_BYTES / sizeof(T)] = {}, eb[HWY_MAX_BYTES / sizeof(T)] = {},
                gb[HWY_MAX_BYTES / sizeof(T)];
    std::copy(a.x + whole, a.x + n, xb);
    std::copy(a.t + whole, a.t + n, tb);
    if (a.w) std::copy(a.w + whole, a.w + n, wb);
    if (a.element_diff) std::copy(a.element_diff + whole, a.element_diff + n, eb);
    M cancels;
    V xv, tau, pw, k, addend, soft;
    const auto focal = MakeFocal(d, kFocal ? options : nullptr);
    hn::Store(VectorAt<kOptions, kFocal, true>(d, a, focal, 0, xb, tb, wb, eb, &per_class,
                                               &cancels, &xv, &tau, &pw, &k, &addend, &soft),
              d, gb);
    std::copy(gb, gb + rest, a.dx + whole);
    cancels = hn::And(cancels, hn::FirstN(d, static_cast<size_t>(rest)));
    if (!hn::AllFalse(d, cancels)) cancelling.Add(d, cancels, xv, tau, pw, k, addend, whole);
  }
  cancelling.Flush();
}

template <typename T>
void Backward(const T* x, const T* t, const T* w, const T* element_diff, T scale, T* dx,
              int64_t n, int64_t first, const Options<T>* options,
              bool has_ignore_label, T ignore_label) {
  const BackwardArgs<T> a = {x, t, w, element_diff, scale, dx, has_ignore_label, ignore_label,
                             options ? options->keep : T(1), options ? options->shift : T(0),
                             options};
  if (HasFocal(options)) {
    BackwardWith<true, true>(a, n, first, options);
  } else if (options) {
    BackwardWith<true, false>(a, n, first, options);
  } else {
    BackwardWith<false, false>(a, n, first, options);
  }
}

// Non-template entry points, one per target, for HWY_EXPORT.
Sums ForwardFloat(const float* x, const float* t, const float* w, float* element_loss,
                             int64_t n, int64_t first, const Options<float>* options,
                             bool has_ignore_label, float ignore_label) {
  return Forward(x, t, w, element_loss, n, first, options, has_ignore_label, ignore_label);
}
Sums ForwardDouble(const double* x, const double* t, const double* w,
                              double* element_loss, int64_t n, int64_t first,
                              const Options<double>* options, bool has_ignore_label,
                              double ignore_label) {
  return Forward(x, t, w, element_loss, n, first, options, has_ignore_label, ignore_label);
}
void BackwardFloat(const float* x, const float* t, const float* w, const float* element_diff,
                   float scale, float* dx, int64_t n, int64_t first,
                   const Options<float>* options, bool has_ignore_label,
                   float ignore_label) {
  Backward(x, t, w, element_diff, scale, dx, n, first, options, has_ignore_label, ignore_label);
}
void BackwardDouble(const double* x, const double* t, const double* w,
                    const double* element_diff, double scale, double* dx, int64_t n,
                    int64_t first, const Options<double>* options,
                    bool has_ignore_label, double ignore_label) {
  Backward(x, t, w, element_diff, scale, dx, n, first, options, has_ignore_label, ignore_label);
}

}  // namespace HWY_NAMESPACE
}  // namespace sigmoid
}  // namespace xent
}  // namespace caffe
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace caffe {
namespace xent {
namespace sigmoid {

HWY_EXPORT(ForwardFloat);
HWY_EXPORT(ForwardDouble);
HWY_EXPORT(BackwardFloat);
HWY_EXPORT(BackwardDouble);

template <>
Sums SimdForward<float>(const float* x, const float* t, const float* w,
                                              float* element_loss, int64_t n, int64_t first,
                                              const Options<float>* options,
                                              bool has_ignore_label, float ignore_label) {
  return HWY_DYNAMIC_DISPATCH(ForwardFloat)(x, t, w, element_loss, n, first, options,
                                            has_ignore_label, ignore_label);
}
template <>
Sums SimdForward<double>(const double* x, const double* t, const double* w,
                                               double* element_loss, int64_t n, int64_t first,
                                               const Options<double>* options,
                                               bool has_ignore_label, double ignore_label) {
  return HWY_DYNAMIC_DISPATCH(ForwardDouble)(x, t, w, element_loss, n, first, options,
                                             has_ignore_label, ignore_label);
}
template <>
void SimdBackward<float>(const float* x, const float* t, const float* w,
                                    const float* element_diff, float scale, float* dx, int64_t n,
                                    int64_t first, const Options<float>* options,
                                    bool has_ignore_label, float ignore_label) {
  HWY_DYNAMIC_DISPATCH(BackwardFloat)(x, t, w, element_diff, scale, dx, n, first, options,
                                      has_ignore_label, ignore_label);
}
template <>
void SimdBackward<double>(const double* x, const double* t, const double* w,
                                     const double* element_diff, double scale, double* dx,
                                     int64_t n, int64_t first,
                                     const Options<double>* options,
                                     bool has_ignore_label, double ignore_label) {
  HWY_DYNAMIC_DISPATCH(BackwardDouble)(x, t, w, element_diff, scale, dx, n, first, options,
                                       has_ignore_label, ignore_label);
}

}  // namespace sigmoid
}  // namespace xent
}  // namespace caffe
#endif  // HWY_ONCE
