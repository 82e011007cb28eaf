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
// Which formula lives where: bce, the gradient's bracket, the cancellation
// test, the bracket retaken (double blobs) and the focal parts (σ(x), σ(-x),
// α_t, 1 - p_t) are the templates of sigmoid_cross_entropy_loss_formulas-inl.h,
// the same the scalar Element uses, here over VecOps (xent_simd-inl.h, with
// DoubleSum, Padded, the float exp and the dispatch macros the SIMD files share). Written
// only here: the target checks and counts, log1p on [0, 1] (Log1pUnit), the
// whole focal power q^γ and its derivative γ·q^(γ-1)·(1-2τ)·σ(x)σ(-x)
// (Element takes any real γ, by pow), and the retake bookkeeping. Float
// lanes keep the bracket as computed (BackwardWith says why).
//
// Highway re-includes this file once per target (foreach_target.h). The
// include path below is relative to our include/ directory, which is on the
// include path of every caffe source (a path relative to this file would be
// looked up next to hwy/foreach_target.h instead).
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "../src/caffe/layers/sigmoid_cross_entropy_loss_simd.cpp"
#include <hwy/foreach_target.h>  // NOLINT: must come before highway.h

#include <hwy/cache_control.h>
#include <hwy/highway.h>
#include <hwy/contrib/math/math-inl.h>

#include <algorithm>
#include <cstdint>
#include <limits>

#include "sigmoid_cross_entropy_loss_simd.hpp"
#include "xent_simd-inl.h"

#ifndef CAFFE_SIGMOID_CROSS_ENTROPY_LOSS_SIMD_ARGS_
#define CAFFE_SIGMOID_CROSS_ENTROPY_LOSS_SIMD_ARGS_
namespace caffe {
namespace xent {
namespace sigmoid {

/// SimdForward's arguments, in one struct for the per-target code.
template <typename T>
struct ForwardArgs {
  const T* x;
  const T* t;
  const T* w;             ///< may be NULL
  T* element_loss;        ///< may be NULL
  int64_t n, first;
  const Options<T>* options;  ///< NULL: the plain loss
  bool has_ignore_label;
  T ignore_label;
  T* grad;                ///< may be NULL; float only: ∂ℓ/∂x · grad_scale of each element
  T grad_scale;
};

/// SimdBackward's arguments.
template <typename T>
struct BackwardArgs {
  const T* x;
  const T* t;
  const T* w;             ///< may be NULL
  const T* element_diff;  ///< may be NULL
  T scale;
  T* dx;
  int64_t n, first;
  const Options<T>* options;  ///< NULL: the plain loss
  bool has_ignore_label;
  T ignore_label;
};

template <typename T>
bool HasFocal(const Options<T>* o) {
  return o && (o->constants.gamma > T(0) || o->constants.alpha >= T(0));
}

}  // namespace sigmoid
}  // namespace xent
}  // namespace caffe
#endif  // CAFFE_SIGMOID_CROSS_ENTROPY_LOSS_SIMD_ARGS_

HWY_BEFORE_NAMESPACE();
namespace caffe {
namespace xent {
namespace sigmoid {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
namespace xs = xent::HWY_NAMESPACE;  // xent_simd-inl.h

// Bce, BceBracket, BracketCancels, RetakeBracket, FocalParts for this target.
#define XENT_FORMULA HWY_INLINE
#include "caffe/layers/sigmoid_cross_entropy_loss_formulas-inl.h"
#undef XENT_FORMULA

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

/// The options as vectors, set once per call: τ's keep and shift, the
/// ignore label, α_t's coefficients, the focal γ (a whole power up to
/// kMaxFocalPower, a whole one and a half, or fractional), and whether there
/// are per-element weights and an ignore label.
template <class D>
struct Splat {
  using V = hn::Vec<D>;
  V keep, shift, ignore_label;
  FocalAlpha<V> alpha;
  int power;        ///< γ when whole (q^γ by multiplication), its whole part
  bool fractional;  ///< γ not whole, or above kMaxFocalPower (NonWholePower)
  bool half;        ///< γ = power + 1/2, power <= kMaxFocalPower: q^power·√q
  double gamma;
  bool weights, has_ignore_label;
};

template <class D, typename T = hn::TFromD<D>>
HWY_INLINE Splat<D> MakeSplat(D d, const Options<T>* o, const T* w, bool has_ignore_label,
                              T ignore_label) {
  Constants<T> k = {T(1), T(0), T(0), T(-1)};  // no options: τ = t, no focal term
  if (o) k = o->constants;
  const sigmoid::FocalAlpha<T> alpha = MakeFocalAlpha(k);
  Splat<D> s;
  s.keep = hn::Set(d, k.keep);
  s.shift = hn::Set(d, k.shift);
  s.ignore_label = hn::Set(d, ignore_label);
  s.alpha = {hn::Set(d, alpha.c_tau), hn::Set(d, alpha.c_a), hn::Set(d, alpha.c_one)};
  s.power = static_cast<int>(k.gamma);
  s.fractional = k.gamma != T(s.power) || s.power > kMaxFocalPower;
  s.half = k.gamma - T(s.power) == T(0.5) && s.power <= kMaxFocalPower;
  s.gamma = static_cast<double>(k.gamma);
  s.weights = w != nullptr;
  s.has_ignore_label = has_ignore_label;
  return s;
}

/// One vector of elements: logits, targets, weights (zeros when there are
/// none), per-lane pos_weight and class_weight, and (backward) the factor
/// scale + element_diff.
template <class V>
struct ElementVectors {
  V x, t, w, pos_weight, class_weight, factor;
};

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

/// q^γ in double lanes for q in [0, 1] and γ > 0: e^(γ ln q), 0 at q = 0.
template <class DD, class VD = hn::Vec<DD>>
HWY_INLINE VD PowerOfDouble(DD dd, VD q, double gamma) {
  const auto zero_q = hn::Eq(q, hn::Zero(dd));
  const VD safe = hn::IfThenElse(zero_q, hn::Set(dd, 1.0), q);  // no log of 0
  return hn::IfThenZeroElse(zero_q, hn::Exp(dd, hn::Mul(hn::Set(dd, gamma), hn::Log(dd, safe))));
}

/// q^γ for a fractional γ (or one above kMaxFocalPower), q in [0, 1]. Float
/// lanes take it in double: Highway's Log and Exp are within an ulp or two
/// of double, so e^(γ ln q) carries no float error even where |γ ln q| is
/// large (a float log would cost about |γ ln q| float ulps), and the result
/// is rounded to float once, as accurate as powf. Double blobs with such a
/// γ take the scalar element loop (the layer decides), which calls pow.
template <class D, class V = hn::Vec<D>>
HWY_INLINE V FractionalPower(D d, V q, double gamma) {
  if constexpr (sizeof(hn::TFromD<D>) == 4) {
#if HWY_TARGET == HWY_SCALAR
    const hn::Rebind<double, D> dd;
    return hn::DemoteTo(d, PowerOfDouble(dd, hn::PromoteTo(dd, q), gamma));
#else
    const hn::Half<D> dh;
    const hn::Rebind<double, decltype(dh)> dd;
    const auto low = PowerOfDouble(dd, hn::PromoteTo(dd, hn::LowerHalf(dh, q)), gamma);
    const auto high = PowerOfDouble(dd, hn::PromoteTo(dd, hn::UpperHalf(dh, q)), gamma);
    return hn::Combine(d, hn::DemoteTo(dh, high), hn::DemoteTo(dh, low));
#endif
  } else {
    return PowerOfDouble(d, q, gamma);
  }
}

/// q^γ for the γ of s.fractional: q^n·√q for γ = n + 1/2 (the square root
/// correctly rounded: as accurate as WholePower, and as cheap), any other
/// by FractionalPower.
template <class D, class V = hn::Vec<D>>
HWY_INLINE V NonWholePower(D d, V q, const Splat<D>& s) {
  if (s.half) return hn::Mul(WholePower(d, q, s.power), hn::Sqrt(q));
  return FractionalPower(d, q, s.gamma);
}

/// The bracket of ∂bce/∂x = bracket/(1+e) in double (RetakeBracket), for
/// a = 1 - τ and b = pos_weight·τ (exact in double for float τ, pos_weight);
/// dd: a vector of doubles.
template <class DD, class VD = hn::Vec<DD>>
HWY_INLINE VD BracketDouble(DD dd, VD x, VD tau, VD pos_weight) {
  const xs::VecOps<DD> o;
  const VD a = hn::Sub(hn::Set(dd, 1.0), tau);
  const VD b = hn::Mul(pos_weight, tau);
  return RetakeBracket(o, x, a, b, o.Exp(o.Neg(o.Abs(x))));
}

/// What the backward of one vector hands on besides its gradient: with
/// kCheck, the lanes whose bracket must be retaken in double (`cancels`)
/// and what the retake needs (x, τ, pos_weight, the multiplier
/// k = r·weight·factor and the focal addend); without, `soft`, the OR of
/// a·b over the vectors so far (nonzero bits: some lane has both terms, so
/// might cancel; 0 for targets 0 and 1), two vector ops instead of four.
template <class V, class M>
struct BackwardOut {
  M cancels;
  V x, tau, pos_weight, k, addend;
  V soft;
};

/// e^-|x| (x with its sign bit set), in [0, 1]: never exp of a positive
/// number. Float lanes: NaN for NaN x (xs::ExpNonPositive), which the float
/// loops rely on; double lanes: 0 for NaN x (hn::Exp), their callers
/// select NaN themselves.
template <class D, class V = hn::Vec<D>>
HWY_INLINE V ExpNegAbs(D d, V x) {
  const V z = hn::Or(x, hn::Set(d, hn::TFromD<D>(-0.0)));
  if constexpr (sizeof(hn::TFromD<D>) == 4) {
    return xs::ExpNonPositive(d, z);
  } else {
    return hn::Exp(d, z);
  }
}

/// One vector of the backward: ∂ℓ/∂x · factor, 0 in ignored lanes; e = e^-|x|.
template <bool kOptions, bool kFocal, bool kCheck, class D, class V = hn::Vec<D>,
          class M = hn::Mask<D>>
HWY_INLINE V BackwardVector(D d, const Splat<D>& s, const ElementVectors<V>& in, V e,
                            BackwardOut<V, M>* out) {
  const xs::VecOps<D> o;
  const V zero = hn::Zero(d);
  const V one = hn::Set(d, 1);
  V a, b;
  Weights<kOptions>(d, in.t, in.pos_weight, s.keep, s.shift, &out->tau, &a, &b);
  const M positive = hn::Ge(in.x, zero);
  const V bracket = BceBracket(o, positive, a, b, e);  // ∂bce/∂x = r·bracket
  V k, grad;
  if (kFocal) {
    // ∂ℓ/∂x = c·(q^γ·∂bce/∂x + bce·γq^(γ-1)·(1-2τ)·σ(x)σ(-x)), c = weight·α_t:
    // here bracket·k + addend, k = r·c·q^γ·factor (sigmoid_cross_entropy_loss_math.hpp).
    V sigma_pos, sigma_neg, alpha_t, q;
    FocalParts(o, positive, e, hn::Div(one, hn::Add(one, e)), out->tau, a, s.alpha, &sigma_pos,
               &sigma_neg, &alpha_t, &q);
    V c = hn::Mul(alpha_t, in.factor);
    c = hn::Mul(in.class_weight, c);
    if (s.weights) c = hn::Mul(in.w, c);
    V modulator = one, dmodulator = zero;
    if (s.fractional) {
      // ∂q^γ/∂x over (1-2τ)σ(x)σ(-x) is γ·q^γ/q: taken as γ·q^γ·(σ(x)σ(-x)/q),
      // that ratio bounded by 1, and 0 where q = 0 (the scalar math's form).
      modulator = NonWholePower(d, q, s);
      const V ratio = hn::IfThenZeroElse(hn::Eq(q, zero),
                                         hn::Div(hn::Mul(sigma_pos, sigma_neg), q));
      dmodulator = hn::Mul(hn::Mul(hn::Set(d, hn::TFromD<D>(s.gamma)), modulator),
                           hn::Mul(hn::NegMulAdd(hn::Set(d, 2), out->tau, one), ratio));
    } else if (s.power > 0) {
      const V q_lower = WholePower(d, q, s.power - 1);     // q^(γ-1)
      modulator = hn::Mul(q_lower, q);
      dmodulator = hn::Mul(hn::Mul(hn::Set(d, hn::TFromD<D>(s.power)), q_lower),
                           hn::Mul(hn::NegMulAdd(hn::Set(d, 2), out->tau, one),
                                   hn::Mul(sigma_pos, sigma_neg)));
    }
    k = hn::Mul(hn::Div(c, hn::Add(one, e)), modulator);
    const V bce = Bce(o, positive, a, b, hn::Abs(in.x), Log1pUnit(d, e));
    // bce·∂mod is 0 where ∂mod is, even at bce = ∞.
    out->addend = hn::Mul(c, o.Scale(dmodulator, bce));
    grad = hn::MulAdd(bracket, k, out->addend);
  } else {
    k = hn::Div(in.factor, hn::Add(one, e));        // r·factor, r = σ(|x|)
    if (kOptions) k = hn::Mul(in.class_weight, k);
    if (s.weights) k = hn::Mul(in.w, k);
    out->addend = zero;
    grad = hn::Mul(bracket, k);
  }
  // NaN in, NaN out: float lanes get it from e (ExpNegAbs), through k.
  if (sizeof(hn::TFromD<D>) == 8) grad = hn::IfThenElse(hn::IsNaN(in.x), in.x, grad);
  // Where the two terms cancel the caller retakes the bracket in double;
  // the test is four vector ops, and the loop is bound by their count.
  if (kCheck) {
    out->cancels = BracketCancels(o, positive, a, b, bracket);
  } else if (sizeof(hn::TFromD<D>) == 8) {  // float lanes are never retaken (BackwardWith)
    out->soft = hn::Or(out->soft, hn::Mul(a, b));
  }
  out->k = k;
  if (s.has_ignore_label) {
    const M ignored = hn::Eq(in.t, s.ignore_label);
    grad = hn::IfThenZeroElse(ignored, grad);
    if (kCheck) out->cancels = hn::AndNot(ignored, out->cancels);
  }
  return grad;
}

/// The lanes a forward vector counts: counted (not ignored), bad target,
/// bad weight.
template <class M>
struct ForwardCounts {
  M counted, bad_target, bad_weight;
};

/// One vector of the forward. `lanes`: which lanes hold elements. Returns ℓ
/// (0 in ignored lanes); sets the count masks. kIgnore, kWeights, kOptions,
/// kFocal (implies kOptions): compile-time switches so the plain case
/// carries no unused work.
/// The count masks of one forward vector (`lanes`: which lanes hold
/// elements): counted (not ignored), bad target (not in [0, 1] and not the
/// ignore label; NaN is bad), bad weight (negative, +inf or NaN).
template <bool kIgnore, bool kWeights, class D, class V = hn::Vec<D>, class M = hn::Mask<D>>
HWY_INLINE void CountLanes(D d, const Splat<D>& k, const ElementVectors<V>& in, M lanes,
                           ForwardCounts<M>* counts) {
  const V zero = hn::Zero(d);
  const M in_range = hn::And(hn::Ge(in.t, zero), hn::Le(in.t, hn::Set(d, 1)));  // false for NaN
  if (kIgnore) {
    const M ignored = hn::Eq(in.t, k.ignore_label);
    counts->counted = hn::AndNot(ignored, lanes);
    counts->bad_target = hn::AndNot(hn::Or(ignored, in_range), lanes);
  } else {
    counts->counted = lanes;
    counts->bad_target = hn::AndNot(in_range, lanes);
  }
  if (kWeights) {  // a weight is finite and >= 0: false for NaN and +inf
    const V most = hn::Set(d, std::numeric_limits<hn::TFromD<D>>::max());
    counts->bad_weight = hn::AndNot(hn::And(hn::Ge(in.w, zero), hn::Le(in.w, most)), lanes);
  }
}

template <bool kIgnore, bool kWeights, bool kOptions, bool kFocal, class D, class V = hn::Vec<D>,
          class M = hn::Mask<D>>
HWY_INLINE V ForwardVector(D d, const Splat<D>& k, const ElementVectors<V>& in, V e, M lanes,
                           ForwardCounts<M>* counts) {
  const xs::VecOps<D> o;
  const V zero = hn::Zero(d);
  const V one = hn::Set(d, 1);
  CountLanes<kIgnore, kWeights>(d, k, in, lanes, counts);

  V tau, a, b;
  Weights<kOptions>(d, in.t, in.pos_weight, k.keep, k.shift, &tau, &a, &b);
  const V abs_x = hn::Abs(in.x);
  const V log1p_e = Log1pUnit(d, e);                // log1p(e^-|x|)
  const M positive = hn::Ge(in.x, zero);
  // Without options a + b = 1 exactly (as a + b in float may not be): one
  // Add instead of Bce's MulAdd.
  V loss = kOptions ? Bce(o, positive, a, b, abs_x, log1p_e)
                    : hn::Add(log1p_e, BceLinear(o, positive, a, b, abs_x));
  if (kOptions || kWeights) {
    V weight = kOptions && kWeights ? hn::Mul(in.class_weight, in.w)
             : kOptions             ? in.class_weight
                                    : in.w;
    if (kFocal) {  // ℓ = weight·α_t·q^γ·bce
      V sigma_pos, sigma_neg, alpha_t, q;
      FocalParts(o, positive, e, hn::Div(one, hn::Add(one, e)), tau, a, k.alpha, &sigma_pos,
                 &sigma_neg, &alpha_t, &q);
      const V modulator =
          k.fractional ? NonWholePower(d, q, k) : WholePower(d, q, k.power);
      weight = hn::Mul(hn::Mul(weight, alpha_t), modulator);
    }
    loss = o.Scale(weight, loss);
  }
  // NaN in, NaN out: float lanes get it from e (ExpNegAbs) through
  // log1p(e), unless a zero weight scaled it away.
  if (kOptions || kWeights || sizeof(hn::TFromD<D>) == 8) {
    loss = hn::IfThenElse(hn::IsNaN(in.x), in.x, loss);
  }
  return kIgnore ? hn::IfThenElseZero(counts->counted, loss) : loss;
}

// ---- The asymmetric form (ASL): float blobs with whole γ+ and γ- up to
// kMaxFocalPower (the layer sends the others to the scalar element loop).
// The element math is AsymmetricElement's (sigmoid_cross_entropy_loss_math.hpp)
// on vectors: the shared formulas AsymmetricShift, AsymmetricLoss,
// FocusedGrad and MarginGrad, with the powers by WholePower and -log1p(-p_m)
// by Log1pUnit (its series holds for arguments in [-1/2, 1]: |s| <= 1/3).

/// The asymmetric form's options as vectors: α+ and α- (1 and 1 when α is
/// off), γ+ and γ- (whole), the margin m.
template <class D>
struct AsymmetricSplat {
  using V = hn::Vec<D>;
  V alpha_pos, alpha_neg, gamma_pos, gamma_neg, margin;
  int power_pos, power_neg;
  bool has_margin;
};

template <class D, typename T = hn::TFromD<D>>
HWY_INLINE AsymmetricSplat<D> MakeAsymmetricSplat(D d, const Constants<T>& k) {
  const bool alpha_on = k.alpha >= T(0);
  AsymmetricSplat<D> s;
  s.alpha_pos = hn::Set(d, alpha_on ? k.alpha : T(1));
  s.alpha_neg = hn::Set(d, alpha_on ? T(1) - k.alpha : T(1));
  s.gamma_pos = hn::Set(d, k.gamma);
  s.gamma_neg = hn::Set(d, k.gamma_neg);
  s.margin = hn::Set(d, k.margin);
  s.power_pos = static_cast<int>(k.gamma);
  s.power_neg = static_cast<int>(k.gamma_neg);
  s.has_margin = k.margin > T(0);
  return s;
}

/// One vector of the asymmetric form: returns ℓ (ignored lanes not yet
/// masked); with kGrad also *grad = ∂ℓ/∂x · factor, 0 in ignored lanes.
/// NaN x: NaN for both.
template <bool kGrad, class D, class V = hn::Vec<D>>
HWY_INLINE V AsymmetricVector(D d, const Splat<D>& s, const AsymmetricSplat<D>& as,
                              const ElementVectors<V>& in, V e, V* grad) {
  const xs::VecOps<D> o;
  const V one = hn::Set(d, 1);
  V tau, a, b;
  Weights<true>(d, in.t, in.pos_weight, s.keep, s.shift, &tau, &a, &b);
  const V weight = s.weights ? hn::Mul(in.class_weight, in.w) : in.class_weight;
  const V c_pos = hn::Mul(hn::Mul(weight, as.alpha_pos), b);  // weight·α+·b
  const V c_neg = hn::Mul(hn::Mul(weight, as.alpha_neg), a);  // weight·α-·a
  const auto positive = hn::Ge(in.x, hn::Zero(d));
  const V abs_x = hn::Abs(in.x);
  const V log1p_e = Log1pUnit(d, e);
  V sigma_pos, sigma_neg, alpha_t, q;  // σ(x), σ(-x); α_t and q unused
  FocalParts(o, positive, e, hn::Div(one, hn::Add(one, e)), tau, a, s.alpha, &sigma_pos,
             &sigma_neg, &alpha_t, &q);
  const V softplus_neg = hn::Add(log1p_e, hn::IfThenZeroElse(positive, abs_x));  // -log σ(x)
  const V mod_pos = WholePower(d, sigma_neg, as.power_pos);                     // σ(-x)^γ+
  V log_neg, mod_neg, d_neg = hn::Zero(d);  // -log(1-p_m), p_m^γ-, ∂(negative term)/∂x
  if (!as.has_margin) {
    log_neg = hn::Add(log1p_e, hn::IfThenElseZero(positive, abs_x));  // softplus(x)
    mod_neg = WholePower(d, sigma_pos, as.power_neg);
    if (kGrad) d_neg = FocusedGrad(o, c_neg, mod_neg, sigma_pos, sigma_neg, as.gamma_neg, log_neg);
  } else {
    V shifted, kept;  // p_m, 1 - p_m
    AsymmetricShift(o, sigma_pos, sigma_neg, as.margin, &shifted, &kept);
    const auto low = hn::Le(shifted, hn::Set(d, hn::TFromD<D>(0.5)));
    log_neg = hn::Neg(hn::IfThenElse(low, Log1pUnit(d, hn::Neg(shifted)), hn::Log(d, kept)));
    // p_m^(γ-1) once, for the power and γ-·p_m^(γ-1)·(-log(1-p_m)).
    const V lower = as.power_neg > 0 ? WholePower(d, shifted, as.power_neg - 1) : one;
    mod_neg = as.power_neg > 0 ? hn::Mul(lower, shifted) : one;
    if (kGrad) {
      const V focus = as.power_neg > 0 ? hn::Mul(hn::Mul(as.gamma_neg, lower), log_neg)
                                       : hn::Zero(d);
      d_neg = MarginGrad(o, c_neg, mod_neg, focus, sigma_pos, sigma_neg, shifted, kept);
    }
  }
  const auto nan = hn::IsNaN(in.x);
  if (kGrad) {
    const V d_pos = FocusedGrad(o, c_pos, mod_pos, sigma_neg, sigma_pos, as.gamma_pos,
                                softplus_neg);
    V g = hn::Mul(hn::Sub(d_neg, d_pos), in.factor);
    g = hn::IfThenElse(nan, in.x, g);  // NaN in, NaN out
    if (s.has_ignore_label) g = hn::IfThenZeroElse(hn::Eq(in.t, s.ignore_label), g);
    *grad = g;
  }
  const V loss = AsymmetricLoss(o, c_pos, mod_pos, softplus_neg, c_neg, mod_neg, log_neg);
  return hn::IfThenElse(nan, in.x, loss);
}

/// How far ahead ForwardLoop prefetches. The hardware prefetchers alone
/// left the loop waiting on memory: at 2^24 float elements (x, t, dx: 192
/// MiB, beyond this machine's caches) one thread ran 580 M el/s on AVX-512
/// and 1.5x as fast prefetching 4 KiB ahead (x, t and dx's lines; without
/// dx's 1.3x); 1 and 16 KiB ahead did about as well.
const size_t kPrefetchBytes = 4096;

/// Prefetches the line kPrefetchBytes after p. The address is formed as an
/// integer: it may lie past the array (a prefetch never faults; there it
/// fetches a neighbour's line, or nothing).
template <typename T>
HWY_INLINE void Prefetch(const T* p) {
  hwy::Prefetch(reinterpret_cast<const T*>(reinterpret_cast<uintptr_t>(p) + kPrefetchBytes));
}

/// The bad targets and weights of a forward range (CountLanes' rules, the
/// scalar math's TargetKind and XentIsValidWeight), element by element.
template <typename T>
HWY_NOINLINE void CountBad(const ForwardArgs<T>& a, Sums* sums) {
  for (int64_t i = 0; i < a.n; ++i) {
    sums->bad_targets += TargetKind(a.t[i], a.has_ignore_label, a.ignore_label) < 0;
    if (a.w) sums->bad_weights += !XentIsValidWeight(a.w[i]);
  }
}

/// Forward over a range: ℓ summed (and stored per element when asked), the
/// counts, and with kGrad ∂ℓ/∂x in the same pass. kAsymmetric (float, with
/// kOptions, without kFocal): the element is AsymmetricVector's.
template <bool kIgnore, bool kWeights, bool kOptions, bool kFocal, bool kGrad,
          bool kAsymmetric, typename T>
Sums ForwardLoop(const ForwardArgs<T>& args) {
  static_assert(!kAsymmetric || (kOptions && !kFocal), "the asymmetric form is its own option");
  const hn::ScalableTag<T> d;
  using V = hn::Vec<decltype(d)>;
  using M = hn::Mask<decltype(d)>;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  const int64_t n = args.n;
  const auto k = MakeSplat(d, kOptions ? args.options : nullptr, args.w,
                                         args.has_ignore_label, args.ignore_label);
  const auto asymmetric = MakeAsymmetricSplat(
      d, kAsymmetric ? args.options->constants : Constants<T>());  // unused otherwise
  xs::DoubleSum<decltype(d)> sum;
  int64_t counted = 0;
  // Bad targets and weights are ORed into one mask (one op a vector instead
  // of a count's three) and counted only where there is one: then the layer
  // refuses the blob, and CountBad recounts the range element by element.
  M any_bad = hn::FirstN(d, 0);
  auto accumulate = [&](V loss, const ForwardCounts<M>& c) {
    sum.Add(loss);
    if (kIgnore) counted += hn::CountTrue(d, c.counted);
    any_bad = hn::Or(any_bad, c.bad_target);
    if constexpr (kWeights) any_bad = hn::Or(any_bad, c.bad_weight);
  };
  Options<T> none = {};  // not read without options
  none.inner = none.classes = 1;
  PerClass<T> per_class(kOptions ? *args.options : none, args.first);
  ElementVectors<V> in;
  in.pos_weight = in.class_weight = hn::Set(d, 1);
  in.w = hn::Zero(d);
  in.factor = hn::Set(d, args.grad_scale);  // kGrad: what SimdBackward's scale is
  // Vector i of x, t, w (the blob's arrays, or padded copies of the tail):
  // its ℓ, and with kGrad its ∂ℓ/∂x in *grad (BackwardVector, sharing e^-|x|
  // and, inlined together, the rest the two have in common).
  auto vector_at = [&](const T* x, const T* t, const T* w, int64_t i, M valid,
                       ForwardCounts<M>* c, V* grad) {
    in.x = hn::LoadU(d, x + i);
    in.t = hn::LoadU(d, t + i);
    if (kWeights) in.w = hn::LoadU(d, w + i);
    if (kOptions) per_class.Next(d, &in.pos_weight, &in.class_weight);
    const V e = ExpNegAbs(d, in.x);
    if constexpr (kAsymmetric) {
      CountLanes<kIgnore, kWeights>(d, k, in, valid, c);
      const V loss = AsymmetricVector<kGrad>(d, k, asymmetric, in, e, grad);
      return kIgnore ? hn::IfThenElseZero(c->counted, loss) : loss;
    }
    if constexpr (kGrad) {
      BackwardOut<V, M> out;
      out.soft = hn::Zero(d);
      *grad = BackwardVector<kOptions, kFocal, false>(d, k, in, e, &out);
    }
    return ForwardVector<kIgnore, kWeights, kOptions, kFocal>(d, k, in, e, valid, c);
  };
  const M all = hn::FirstN(d, lanes);
  int64_t i = 0;
  V grad;
  for (; i + lanes <= n; i += lanes) {
    // Software prefetch (x, t, w, and the gradient's lines, which the
    // stores would otherwise fetch); past the range's end too, so the next
    // chunk starts warm (stopping at the end: +29 % at 2^24 on one thread
    // instead of +41 %; on two threads, where the next chunk is often the
    // other thread's, the same speed with ChunkedSums' static or dynamic
    // schedule).
    Prefetch(args.x + i);
    Prefetch(args.t + i);
    if (kWeights) Prefetch(args.w + i);
    if (kGrad) Prefetch(args.grad + i);
    ForwardCounts<M> c;
    const V loss = vector_at(args.x, args.t, args.w, i, all, &c, &grad);
    if (args.element_loss) hn::StoreU(loss, d, args.element_loss + i);
    if (kGrad) hn::StoreU(grad, d, args.grad + i);
    accumulate(loss, c);
  }
  if (i < n) {  // tail: the same vector code on a padded copy, padding lanes masked off
    const size_t rest = static_cast<size_t>(n - i);
    const xs::Padded<T> x(args.x + i, rest), t(args.t + i, rest),
        w(kWeights ? args.w + i : nullptr, rest);
    const M valid = hn::FirstN(d, rest);
    ForwardCounts<M> c;
    const V loss = hn::IfThenElseZero(valid, vector_at(x.v, t.v, w.v, 0, valid, &c, &grad));
    if (args.element_loss) xs::StoreFirst(d, loss, rest, args.element_loss + i);
    if (kGrad) xs::StoreFirst(d, grad, rest, args.grad + i);
    accumulate(loss, c);
  }
  Sums sums;
  sums.loss = sum.Total();
  sums.counted = kIgnore ? counted : n;
  sums.bad_targets = sums.bad_weights = 0;
  if (!hn::AllFalse(d, any_bad)) CountBad(args, &sums);
  return sums;
}

template <bool kOptions, bool kFocal, bool kGrad, bool kAsymmetric = false, typename T>
Sums ForwardWith(const ForwardArgs<T>& a) {
  if (a.has_ignore_label) {
    return a.w ? ForwardLoop<true, true, kOptions, kFocal, kGrad, kAsymmetric>(a)
               : ForwardLoop<true, false, kOptions, kFocal, kGrad, kAsymmetric>(a);
  }
  return a.w ? ForwardLoop<false, true, kOptions, kFocal, kGrad, kAsymmetric>(a)
             : ForwardLoop<false, false, kOptions, kFocal, kGrad, kAsymmetric>(a);
}

template <typename T>
bool IsAsymmetric(const Options<T>* o) {
  return o && o->constants.asymmetric;
}

template <bool kGrad, typename T>
Sums ForwardOptions(const ForwardArgs<T>& a) {
  if constexpr (sizeof(T) == 4) {  // float only: the layer's choice
    if (IsAsymmetric(a.options)) return ForwardWith<true, false, kGrad, true>(a);
  }
  if (HasFocal(a.options)) return ForwardWith<true, true, kGrad>(a);
  return a.options ? ForwardWith<true, false, kGrad>(a) : ForwardWith<false, false, kGrad>(a);
}

/// Backward of the asymmetric form over a range (SimdBackward's contract).
template <typename T>
void AsymmetricBackward(const BackwardArgs<T>& a) {
  const hn::ScalableTag<T> d;
  using V = hn::Vec<decltype(d)>;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  const auto s = MakeSplat(d, a.options, a.w, a.has_ignore_label, a.ignore_label);
  const auto as = MakeAsymmetricSplat(d, a.options->constants);
  PerClass<T> per_class(*a.options, a.first);
  const V scale = hn::Set(d, a.scale);
  ElementVectors<V> in;
  in.w = hn::Zero(d);
  auto vector_at = [&](const T* x, const T* t, const T* w, const T* element_diff, int64_t i) {
    in.x = hn::LoadU(d, x + i);
    in.t = hn::LoadU(d, t + i);
    if (w) in.w = hn::LoadU(d, w + i);
    in.factor = element_diff ? hn::Add(scale, hn::LoadU(d, element_diff + i)) : scale;
    per_class.Next(d, &in.pos_weight, &in.class_weight);
    V grad;
    AsymmetricVector<true>(d, s, as, in, ExpNegAbs(d, in.x), &grad);
    return grad;
  };
  int64_t i = 0;
  for (; i + lanes <= a.n; i += lanes) {
    hn::StoreU(vector_at(a.x, a.t, a.w, a.element_diff, i), d, a.dx + i);
  }
  if (i < a.n) {
    const size_t rest = static_cast<size_t>(a.n - i);
    const xs::Padded<T> x(a.x + i, rest), t(a.t + i, rest), w(a.w ? a.w + i : nullptr, rest),
        ed(a.element_diff ? a.element_diff + i : nullptr, rest);
    xs::StoreFirst(d, vector_at(x.v, t.v, a.w ? w.v : nullptr,
                                a.element_diff ? ed.v : nullptr, 0),
                   rest, a.dx + i);
  }
}

/// The gradient in the same pass as the loss: float blobs only (double
/// blobs retake cancelling elements, BackwardWith, and leave it to the
/// backward).
template <typename T>
Sums Forward(const ForwardArgs<T>& a) {
  if constexpr (sizeof(T) == 4) {
    if (a.grad) return ForwardOptions<true>(a);
  }
  return ForwardOptions<false>(a);
}

/// Elements of a double blob whose bracket cancels, gathered (compressed)
/// while the fast pass runs and retaken (RetakeBracket) when the buffer
/// fills and at the end: only those elements pay for the retake, whatever
/// their neighbours are. Each element's result depends on its own inputs
/// only.
template <typename T>
class CancellingElements {
 public:
  using D = hn::ScalableTag<T>;
  using DI = hn::RebindToSigned<D>;
  using TI = hn::TFromD<DI>;

  explicit CancellingElements(T* dx) : dx_(dx) {}

  template <class M>
  HWY_INLINE void Add(D d, const BackwardOut<hn::Vec<D>, M>& out, int64_t i) {
    const DI di;
    const M m = out.cancels;
    // Compress in registers, then a plain store: the memory form of AVX-512's
    // compress store is microcoded and slow on some CPUs (AMD Zen 4).
    Store(d, out, m, [&](hn::Vec<D> v) { return hn::Compress(v, m); },
          hn::Compress(hn::Iota(di, static_cast<TI>(i)), hn::RebindMask(di, m)));
  }

  void Flush() {
    const D d;
    const size_t lanes = hn::Lanes(d);
    // Whole vectors; the lanes past pending_ get zeros, their results are
    // not written anywhere.
    const size_t end = (pending_ + lanes - 1) / lanes * lanes;
    std::fill(x_ + pending_, x_ + end, T(0));
    std::fill(tau_ + pending_, tau_ + end, T(0));
    std::fill(pos_weight_ + pending_, pos_weight_ + end, T(0));
    std::fill(k_ + pending_, k_ + end, T(0));
    std::fill(addend_ + pending_, addend_ + end, T(0));
    for (size_t j = 0; j < pending_; j += lanes) {
      const hn::Vec<D> bracket = BracketDouble(d, hn::LoadU(d, x_ + j), hn::LoadU(d, tau_ + j),
                                               hn::LoadU(d, pos_weight_ + j));
      hn::StoreU(hn::MulAdd(bracket, hn::LoadU(d, k_ + j), hn::LoadU(d, addend_ + j)), d,
                 result_ + j);
    }
    for (size_t j = 0; j < pending_; ++j) dx_[index_[j]] = result_[j];
    pending_ = 0;
  }

 private:
  /// Appends the lanes of `m` of the retake's inputs, `compress` putting
  /// them first; `index` holds their element indices, compressed alike.
  template <class M, class Compress>
  HWY_INLINE void Store(D d, const BackwardOut<hn::Vec<D>, M>& out, M m, Compress compress,
                        hn::Vec<DI> index) {
    hn::StoreU(compress(out.x), d, x_ + pending_);
    hn::StoreU(compress(out.tau), d, tau_ + pending_);
    hn::StoreU(compress(out.pos_weight), d, pos_weight_ + pending_);
    hn::StoreU(compress(out.k), d, k_ + pending_);
    hn::StoreU(compress(out.addend), d, addend_ + pending_);
    hn::StoreU(index, DI(), index_ + pending_);
    pending_ += hn::CountTrue(d, m);
    if (pending_ > kCapacity) Flush();
  }

  // Add stores a whole vector past the count; Flush reads whole vectors.
  static constexpr size_t kCapacity = 1024;
  static constexpr size_t kSize = kCapacity + 2 * HWY_MAX_BYTES / sizeof(T);
  T* dx_;
  size_t pending_ = 0;
  HWY_ALIGN T x_[kSize], tau_[kSize], pos_weight_[kSize], k_[kSize], addend_[kSize],
      result_[kSize];
  HWY_ALIGN TI index_[kSize];
};

/// Vector i of the backward from a's arrays (the blob's, or padded copies
/// of the tail): its gradient; `out` as BackwardVector's.
template <bool kOptions, bool kFocal, bool kCheck, class D, typename T = hn::TFromD<D>,
          class V = hn::Vec<D>, class M = hn::Mask<D>>
HWY_INLINE V VectorAt(D d, const BackwardArgs<T>& a, const Splat<D>& s, int64_t i,
                      PerClass<T>* per_class, BackwardOut<V, M>* out) {
  const V scale = hn::Set(d, a.scale);
  ElementVectors<V> in;
  in.pos_weight = in.class_weight = hn::Set(d, 1);
  if (kOptions) per_class->Next(d, &in.pos_weight, &in.class_weight);
  if (a.w) in.w = hn::LoadU(d, a.w + i);
  in.factor = a.element_diff ? hn::Add(scale, hn::LoadU(d, a.element_diff + i)) : scale;
  in.x = hn::LoadU(d, a.x + i);
  in.t = hn::LoadU(d, a.t + i);
  out->x = in.x;
  out->pos_weight = in.pos_weight;
  return BackwardVector<kOptions, kFocal, kCheck>(d, s, in, ExpNegAbs(d, in.x), out);
}

/// The hot loop over whole vectors [begin, end): stores the gradients.
/// kCheck (double blobs): hands the lanes to retake to `cancelling`;
/// otherwise, for double, returns whether any lane might cancel (a soft
/// target), and the block must be run again with kCheck. Hard targets take
/// the loop without the test: the loop is bound by its count of vector ops,
/// and the four-op test cost ~15 % of the plain backward (one thread, AMD
/// Zen 4).
template <bool kOptions, bool kFocal, bool kCheck, typename T>
HWY_NOINLINE int BackwardBlock(const BackwardArgs<T>& a, int64_t begin, int64_t end,
                               PerClass<T>* per_class, CancellingElements<T>* cancelling) {
  const hn::ScalableTag<T> d;
  using V = hn::Vec<decltype(d)>;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  const auto s = MakeSplat(d, a.options, a.w, a.has_ignore_label, a.ignore_label);
  BackwardOut<V, hn::Mask<decltype(d)>> out;
  out.soft = hn::Zero(d);
  for (int64_t i = begin; i < end; i += lanes) {
    hn::StoreU(VectorAt<kOptions, kFocal, kCheck>(d, a, s, i, per_class, &out), d, a.dx + i);
    if constexpr (kCheck) {
      if (!hn::AllFalse(d, out.cancels)) cancelling->Add(d, out, i);
    }
  }
  if (kCheck) return 0;
  const hn::RebindToUnsigned<decltype(d)> du;
  return !hn::AllTrue(du, hn::Eq(hn::BitCast(du, out.soft), hn::Zero(du)));
}

/// The last n % lanes elements: the same vector code on padded copies.
/// kCheck: their cancelling lanes go to `cancelling` too.
template <bool kOptions, bool kFocal, bool kCheck, typename T>
void BackwardTail(const BackwardArgs<T>& a, int64_t whole, PerClass<T>* per_class,
                  CancellingElements<T>* cancelling) {
  const hn::ScalableTag<T> d;
  using V = hn::Vec<decltype(d)>;
  const size_t rest = static_cast<size_t>(a.n - whole);
  const xs::Padded<T> x(a.x + whole, rest), t(a.t + whole, rest),
      w(a.w ? a.w + whole : nullptr, rest),
      ed(a.element_diff ? a.element_diff + whole : nullptr, rest);
  BackwardArgs<T> tail = a;
  tail.x = x.v;
  tail.t = t.v;
  if (a.w) tail.w = w.v;
  if (a.element_diff) tail.element_diff = ed.v;
  const auto s = MakeSplat(d, a.options, a.w, a.has_ignore_label, a.ignore_label);
  BackwardOut<V, hn::Mask<decltype(d)>> out;
  out.soft = hn::Zero(d);
  xs::StoreFirst(d, VectorAt<kOptions, kFocal, kCheck>(d, tail, s, 0, per_class, &out), rest,
                 a.dx + whole);
  if constexpr (kCheck) {
    out.cancels = hn::And(out.cancels, hn::FirstN(d, rest));
    if (!hn::AllFalse(d, out.cancels)) cancelling->Add(d, out, whole);
  }
}

/// float: the bracket as computed, within a few ulp of the larger of the
/// gradient's two terms wherever they cancel (docs/sigmoid_cross_entropy_loss.md,
/// "Accuracy of the gradient": retaking the cancelling elements in double
/// halved the soft-target backward on AVX2 and AVX-512 alike). double: the
/// cancelling elements are retaken (RetakeBracket), so soft targets keep a
/// few ulp of the value away from the root.
template <bool kOptions, bool kFocal, typename T>
void BackwardWith(const BackwardArgs<T>& a) {
  const hn::ScalableTag<T> d;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  const int64_t n = a.n;
  Options<T> none = {};  // not read without options
  none.inner = none.classes = 1;
  const int64_t whole = n - n % lanes;
  PerClass<T> per_class(kOptions ? *a.options : none, a.first);
  if constexpr (sizeof(T) == 4) {
    CancellingElements<T>* const none_cancel = nullptr;  // float lanes keep their bracket
    BackwardBlock<kOptions, kFocal, false>(a, 0, whole, &per_class, none_cancel);
    if (whole < n) BackwardTail<kOptions, kFocal, false>(a, whole, &per_class, none_cancel);
  } else {
    CancellingElements<T> cancelling(a.dx);
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
    if (whole < n) BackwardTail<kOptions, kFocal, true>(a, whole, &per_class, &cancelling);
    cancelling.Flush();
  }
}

template <typename T>
void Backward(const BackwardArgs<T>& a) {
  if constexpr (sizeof(T) == 4) {
    if (IsAsymmetric(a.options)) return AsymmetricBackward(a);  // float only: the layer's choice
  }
  if (HasFocal(a.options)) {
    BackwardWith<true, true>(a);
  } else if (a.options) {
    BackwardWith<true, false>(a);
  } else {
    BackwardWith<false, false>(a);
  }
}

// Non-template entry points, one per target, for HWY_EXPORT.
XENT_SIMD_FLOAT_DOUBLE(Sums, Forward, ForwardArgs)
XENT_SIMD_FLOAT_DOUBLE(void, Backward, BackwardArgs)

}  // namespace HWY_NAMESPACE
}  // namespace sigmoid
}  // namespace xent
}  // namespace caffe
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace caffe {
namespace xent {
namespace sigmoid {

XENT_SIMD_DISPATCH_FLOAT_DOUBLE(Sums, Forward, ForwardArgs)
XENT_SIMD_DISPATCH_FLOAT_DOUBLE(void, Backward, BackwardArgs)

template <typename T>
Sums SimdForward(const T* x, const T* t, const T* w, T* element_loss, int64_t n, int64_t first,
                 const Options<T>* options, bool has_ignore_label, T ignore_label, T* grad,
                 T grad_scale) {
  const ForwardArgs<T> a = {x, t, w, element_loss, n, first, options, has_ignore_label,
                            ignore_label, sizeof(T) == 4 ? grad : nullptr, grad_scale};
  return DispatchForward(a);
}

template <typename T>
void SimdBackward(const T* x, const T* t, const T* w, const T* element_diff, T scale, T* dx,
                  int64_t n, int64_t first, const Options<T>* options, bool has_ignore_label,
                  T ignore_label) {
  const BackwardArgs<T> a = {x, t, w, element_diff, scale, dx, n, first, options,
                             has_ignore_label, ignore_label};
  DispatchBackward(a);
}

template Sums SimdForward<float>(const float*, const float*, const float*, float*, int64_t,
                                 int64_t, const Options<float>*, bool, float, float*, float);
template Sums SimdForward<double>(const double*, const double*, const double*, double*, int64_t,
                                  int64_t, const Options<double>*, bool, double, double*,
                                  double);
template void SimdBackward<float>(const float*, const float*, const float*, const float*, float,
                                  float*, int64_t, int64_t, const Options<float>*, bool, float);
template void SimdBackward<double>(const double*, const double*, const double*, const double*,
                                   double, double*, int64_t, int64_t, const Options<double>*,
                                   bool, double);

}  // namespace sigmoid
}  // namespace xent
}  // namespace caffe
#endif  // HWY_ONCE
