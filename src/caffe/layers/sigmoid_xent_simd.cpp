// CPU fast path of SigmoidCrossEntropyLoss (see sigmoid_xent_simd.hpp).
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
#define HWY_TARGET_INCLUDE "../src/caffe/layers/sigmoid_xent_simd.cpp"
#include <hwy/foreach_target.h>  // NOLINT: must come before highway.h

#include <hwy/highway.h>
#include <hwy/contrib/math/math-inl.h>

#include <algorithm>
#include <cstdint>

#include "sigmoid_xent_simd.hpp"

HWY_BEFORE_NAMESPACE();
namespace caffe {
namespace xent {
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
    const V s = hn::Div(e, hn::Add(hn::Set(d, 2.0f), e));   // s = e/(2+e)
    const V z = hn::Mul(s, s);
    V p = hn::Set(d, 1.0f / 13);
    p = hn::MulAdd(p, z, hn::Set(d, 1.0f / 11));
    p = hn::MulAdd(p, z, hn::Set(d, 1.0f / 9));
    p = hn::MulAdd(p, z, hn::Set(d, 1.0f / 7));
    p = hn::MulAdd(p, z, hn::Set(d, 1.0f / 5));
    p = hn::MulAdd(p, z, hn::Set(d, 1.0f / 3));
    p = hn::MulAdd(p, z, hn::Set(d, 1.0f));
    return hn::Mul(hn::Add(s, s), p);                         // 2s·(1 + z/3 + ...)
  } else {
    return hn::Log1p(d, e);
  }
}

/// One vector of the plain forward. `lanes`: which lanes hold elements.
/// Returns ℓ (0 in ignored lanes); sets the count masks. kIgnore, kWeights:
/// compile-time switches so the plain case carries no unused work.
template <bool kIgnore, bool kWeights, class D, class V = hn::Vec<D>, class M = hn::Mask<D>>
HWY_INLINE V ForwardVector(D d, V x, V t, V w, M lanes, V ignore_label, M* counted,
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
  if (kWeights) *bad_weight = hn::AndNot(hn::Ge(w, zero), lanes);

  const V abs_x = hn::Abs(x);
  const V e = hn::Exp(d, hn::Neg(abs_x));           // e^-|x| in [0,1]
  const V log1p_e = Log1pUnit(d, e);                // log1p(e^-|x|)
  const M positive = hn::Ge(x, zero);
  // bce = log1p(e^-|x|) + (x >= 0 ? (1-t)·x : t·|x|); a zero weight drops
  // the term (0·∞ = 0 at x = ±∞).
  const V coefficient = hn::IfThenElse(positive, hn::Sub(one, t), t);
  const V linear = hn::IfThenZeroElse(hn::Eq(coefficient, zero), hn::Mul(coefficient, abs_x));
  V loss = hn::Add(log1p_e, linear);
  if (kWeights) loss = hn::IfThenZeroElse(hn::Eq(w, zero), hn::Mul(w, loss));
  loss = hn::IfThenElse(hn::IsNaN(x), x, loss);     // NaN in, NaN out
  return kIgnore ? hn::IfThenElseZero(*counted, loss) : loss;
}

template <bool kIgnore, bool kWeights, typename T>
SigmoidXentPlainSums PlainForwardLoop(const T* HWY_RESTRICT x, const T* HWY_RESTRICT t,
                                      const T* HWY_RESTRICT w, T* HWY_RESTRICT element_loss,
                                      int64_t n, T ignore_label_value) {
  const hn::ScalableTag<T> d;
  using V = hn::Vec<decltype(d)>;
  using M = hn::Mask<decltype(d)>;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  const V ignore_label = hn::Set(d, ignore_label_value);
  const M all = hn::FirstN(d, lanes);
  DoubleSum<decltype(d)> sum(d);
  int64_t counted = 0, bad_targets = 0, bad_weights = 0;
  auto accumulate = [&](V loss, M c, M bt, M bw) {
    sum.Add(d, loss);
    if (kIgnore) counted += hn::CountTrue(d, c);
    bad_targets += hn::CountTrue(d, bt);
    if (kWeights) bad_weights += hn::CountTrue(d, bw);
  };
  int64_t i = 0;
  for (; i + lanes <= n; i += lanes) {
    const V wv = kWeights ? hn::LoadU(d, w + i) : hn::Zero(d);
    M c, bt, bw;
    const V loss = ForwardVector<kIgnore, kWeights>(d, hn::LoadU(d, x + i), hn::LoadU(d, t + i),
                                                    wv, all, ignore_label, &c, &bt, &bw);
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
    M c, bt, bw;
    const M valid = hn::FirstN(d, rest);
    V loss = ForwardVector<kIgnore, kWeights>(d, hn::Load(d, xb), hn::Load(d, tb),
                                              hn::Load(d, wb), valid, ignore_label, &c, &bt, &bw);
    loss = hn::IfThenElseZero(valid, loss);
    hn::Store(loss, d, lb);
    if (element_loss) std::copy(lb, lb + rest, element_loss + i);
    accumulate(loss, c, bt, bw);
  }
  SigmoidXentPlainSums sums;
  sums.loss = sum.Total();
  sums.counted = kIgnore ? counted : n;
  sums.bad_targets = bad_targets;
  sums.bad_weights = bad_weights;
  return sums;
}

template <typename T>
SigmoidXentPlainSums PlainForward(const T* x, const T* t, const T* w, T* element_loss,
                                  int64_t n, bool has_ignore_label, T ignore_label) {
  if (has_ignore_label) {
    return w ? PlainForwardLoop<true, true>(x, t, w, element_loss, n, ignore_label)
             : PlainForwardLoop<true, false>(x, t, w, element_loss, n, ignore_label);
  }
  return w ? PlainForwardLoop<false, true>(x, t, w, element_loss, n, ignore_label)
           : PlainForwardLoop<false, false>(x, t, w, element_loss, n, ignore_label);
}

/// The bracket of ∂ℓ/∂x = (1-t)·σ(x) - t·σ(-x) = bracket/(1+e) in double,
/// lane by lane as SigmoidXentBceGradDouble (sigmoid_xent_math.hpp) takes it;
/// dd: a vector of doubles. For |x| < 1/16, m = e^-|x| - 1 comes from its
/// Taylor series cut after z⁹/9! (z = -|x|; the rest is below 2^-57 of m),
/// cheaper than a second Exp.
template <class DD, class VD = hn::Vec<DD>>
HWY_INLINE VD BracketDouble(DD dd, VD x, VD t) {
  const VD one = hn::Set(dd, 1.0);
  const VD z = hn::Neg(hn::Abs(x));
  const VD e = hn::Exp(dd, z);
  VD p = hn::Set(dd, 1.0 / 362880);                                // 1/9!
  const double inverse_factorials[] = {1.0 / 40320, 1.0 / 5040, 1.0 / 720, 1.0 / 120,
                                       1.0 / 24, 1.0 / 6, 1.0 / 2, 1.0};
  for (double c : inverse_factorials) p = hn::MulAdd(p, z, hn::Set(dd, c));
  const VD m = hn::Mul(p, z);                                      // e^z - 1, |z| < 1/16
  const VD a = hn::Sub(one, t);                                    // exact for a float t
  const auto positive = hn::Ge(x, hn::Zero(dd));
  // small |x|: (a - t) + (x >= 0 ? -t : a)·m;  else x >= 0 ? a - t·e : a·e - t
  const VD small = hn::MulAdd(hn::IfThenElse(positive, hn::Neg(t), a), m, hn::Sub(a, t));
  const VD large = hn::IfThenElse(positive, hn::NegMulAdd(t, e, a), hn::MulSub(a, e, t));
  return hn::IfThenElse(hn::Lt(z, hn::Set(dd, -0.0625)), large, small);
}

/// One vector of the plain backward: ∂ℓ/∂x · factor, 0 in ignored lanes.
/// Sets `cancels` to the lanes whose value must be retaken in double and
/// `multiplier` to what that bracket is multiplied by (r·w·factor).
template <class D, class V = hn::Vec<D>, class M = hn::Mask<D>>
HWY_INLINE V BackwardVector(D d, V x, V t, const V* w, V factor, bool has_ignore_label,
                            V ignore_label, M* cancels, V* multiplier) {
  const V zero = hn::Zero(d);
  const V one = hn::Set(d, 1);
  const V e = hn::Exp(d, hn::Neg(hn::Abs(x)));      // e^-|x|
  V k = hn::Div(one, hn::Add(one, e));              // r = σ(|x|)
  if (w) k = hn::Mul(*w, k);
  k = hn::Mul(k, factor);
  const V a = hn::Sub(one, t);
  const M positive = hn::Ge(x, zero);
  // σ(x) - t = (1-t)·σ(x) - t·σ(-x) = r·(x >= 0 ? (1-t) - t·e : (1-t)·e - t):
  // never 1 - σ, which would lose σ(-x) for large x.
  const V bracket = hn::IfThenElse(positive, hn::NegMulAdd(t, e, a), hn::MulSub(a, e, t));
  V grad = hn::Mul(bracket, k);
  grad = hn::IfThenElse(hn::IsNaN(x), x, grad);     // NaN in, NaN out
  // Where the two terms cancel to less than half their sum (σ(x) ≈ t; soft
  // targets only: with t = 0 or 1 one term is 0) the caller retakes the
  // bracket in double. False for NaN.
  const V terms = hn::IfThenElse(positive, hn::MulAdd(t, e, a), hn::MulAdd(a, e, t));
  *cancels = hn::Lt(hn::Add(hn::Abs(bracket), hn::Abs(bracket)), terms);
  *multiplier = k;
  if (has_ignore_label) {
    const M ignored = hn::Eq(t, ignore_label);
    grad = hn::IfThenZeroElse(ignored, grad);
    *cancels = hn::AndNot(ignored, *cancels);
  }
  return grad;
}

/// Elements whose bracket cancels, gathered (compressed) while the fast pass
/// runs and retaken in double vectors when the buffer fills and at the end:
/// only those elements pay for double, whatever their neighbours are. Each
/// element's result depends on its own x, t and multiplier only.
template <typename T>
class CancellingElements {
 public:
  using D = hn::ScalableTag<T>;
  using DI = hn::RebindToSigned<D>;
  using TI = hn::TFromD<DI>;

  explicit CancellingElements(T* dx) : dx_(dx) {}

  HWY_INLINE void Add(D d, hn::Mask<D> m, hn::Vec<D> x, hn::Vec<D> t, hn::Vec<D> k, int64_t i) {
    // Compress in registers, then a plain store: the memory form of AVX-512's
    // compress store is microcoded and slow on some CPUs (AMD Zen 4).
    const DI di;
    hn::StoreU(hn::Compress(x, m), d, x_ + pending_);
    hn::StoreU(hn::Compress(t, m), d, t_ + pending_);
    hn::StoreU(hn::Compress(k, m), d, k_ + pending_);
    hn::StoreU(hn::Compress(hn::Iota(di, static_cast<TI>(i)), hn::RebindMask(di, m)), di,
               index_ + pending_);
    pending_ += hn::CountTrue(d, m);
    if (pending_ > kCapacity) Flush();
  }

  void Flush() {
    const hn::ScalableTag<double> dd;
    const hn::Rebind<T, decltype(dd)> dt;  // T lanes, as many as dd has
    const size_t lanes = hn::Lanes(dd);
    // Whole vectors: lanes past pending_ hold stale or zero values whose
    // results are not written anywhere.
    for (size_t j = 0; j < pending_; j += lanes) {
      hn::Vec<decltype(dt)> bracket;
      if constexpr (sizeof(T) == 8) {
        bracket = BracketDouble(dd, hn::LoadU(dd, x_ + j), hn::LoadU(dd, t_ + j));
      } else {
        bracket = hn::DemoteTo(dt, BracketDouble(dd, hn::PromoteTo(dd, hn::LoadU(dt, x_ + j)),
                                                 hn::PromoteTo(dd, hn::LoadU(dt, t_ + j))));
      }
      hn::StoreU(hn::Mul(bracket, hn::LoadU(dt, k_ + j)), dt, result_ + j);
    }
    for (size_t j = 0; j < pending_; ++j) dx_[index_[j]] = result_[j];
    pending_ = 0;
  }

 private:
  // Add stores a whole vector past the count; Flush reads
  // whole double vectors (at most as many lanes as a T vector).
  static constexpr size_t kCapacity = 1024;
  static constexpr size_t kSize = kCapacity + 2 * HWY_MAX_BYTES / sizeof(T);
  T* dx_;
  size_t pending_ = 0;
  HWY_ALIGN T x_[kSize] = {}, t_[kSize] = {}, k_[kSize] = {}, result_[kSize];
  HWY_ALIGN TI index_[kSize];
};

template <typename T>
void PlainBackward(const T* HWY_RESTRICT x, const T* HWY_RESTRICT t, const T* HWY_RESTRICT w,
                   const T* HWY_RESTRICT element_diff, T scale, T* HWY_RESTRICT dx, int64_t n,
                   bool has_ignore_label, T ignore_label_value) {
  const hn::ScalableTag<T> d;
  using V = hn::Vec<decltype(d)>;
  using M = hn::Mask<decltype(d)>;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  const V ignore_label = hn::Set(d, ignore_label_value);
  const V scale_v = hn::Set(d, scale);
  CancellingElements<T> cancelling(dx);
  int64_t i = 0;
  for (; i + lanes <= n; i += lanes) {
    V wv;
    if (w) wv = hn::LoadU(d, w + i);
    const V factor = element_diff ? hn::Add(scale_v, hn::LoadU(d, element_diff + i)) : scale_v;
    const V xv = hn::LoadU(d, x + i), tv = hn::LoadU(d, t + i);
    M cancels;
    V k;
    hn::StoreU(BackwardVector(d, xv, tv, w ? &wv : nullptr, factor, has_ignore_label,
                              ignore_label, &cancels, &k), d, dx + i);
    if (HWY_UNLIKELY(!hn::AllFalse(d, cancels))) cancelling.Add(d, cancels, xv, tv, k, i);
  }
  if (i < n) {
    const int64_t rest = n - i;
    HWY_ALIGN T xb[HWY_MAX_BYTES / sizeof(T)] = {}, tb[HWY_MAX_BYTES / sizeof(T)] = {},
                wb[HWY_MAX_BYTES / sizeof(T)] = {}, eb[HWY_MAX_BYTES / sizeof(T)] = {},
                gb[HWY_MAX_BYTES / sizeof(T)];
    std::copy(x + i, x + n, xb);
    std::copy(t + i, t + n, tb);
    if (w) std::copy(w + i, w + n, wb);
    if (element_diff) std::copy(element_diff + i, element_diff + n, eb);
    const V wv = hn::Load(d, wb), xv = hn::Load(d, xb), tv = hn::Load(d, tb);
    M cancels;
    V k;
    hn::Store(BackwardVector(d, xv, tv, w ? &wv : nullptr, hn::Add(scale_v, hn::Load(d, eb)),
                             has_ignore_label, ignore_label, &cancels, &k), d, gb);
    std::copy(gb, gb + rest, dx + i);
    cancels = hn::And(cancels, hn::FirstN(d, static_cast<size_t>(rest)));
    if (!hn::AllFalse(d, cancels)) cancelling.Add(d, cancels, xv, tv, k, i);
  }
  cancelling.Flush();
}

// Non-template entry points, one per target, for HWY_EXPORT.
SigmoidXentPlainSums PlainForwardFloat(const float* x, const float* t, const float* w,
                                       float* element_loss, int64_t n, bool has_ignore_label,
                                       float ignore_label) {
  return PlainForward(x, t, w, element_loss, n, has_ignore_label, ignore_label);
}
SigmoidXentPlainSums PlainForwardDouble(const double* x, const double* t, const double* w,
                                        double* element_loss, int64_t n, bool has_ignore_label,
                                        double ignore_label) {
  return PlainForward(x, t, w, element_loss, n, has_ignore_label, ignore_label);
}
void PlainBackwardFloat(const float* x, const float* t, const float* w, const float* element_diff,
                        float scale, float* dx, int64_t n, bool has_ignore_label,
                        float ignore_label) {
  PlainBackward(x, t, w, element_diff, scale, dx, n, has_ignore_label, ignore_label);
}
void PlainBackwardDouble(const double* x, const double* t, const double* w,
                         const double* element_diff, double scale, double* dx, int64_t n,
                         bool has_ignore_label, double ignore_label) {
  PlainBackward(x, t, w, element_diff, scale, dx, n, has_ignore_label, ignore_label);
}

}  // namespace HWY_NAMESPACE
}  // namespace xent
}  // namespace caffe
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace caffe {
namespace xent {

HWY_EXPORT(PlainForwardFloat);
HWY_EXPORT(PlainForwardDouble);
HWY_EXPORT(PlainBackwardFloat);
HWY_EXPORT(PlainBackwardDouble);

template <>
SigmoidXentPlainSums SigmoidXentPlainForward<float>(const float* x, const float* t,
                                                    const float* w, float* element_loss,
                                                    int64_t n, bool has_ignore_label,
                                                    float ignore_label) {
  return HWY_DYNAMIC_DISPATCH(PlainForwardFloat)(x, t, w, element_loss, n, has_ignore_label,
                                                 ignore_label);
}
template <>
SigmoidXentPlainSums SigmoidXentPlainForward<double>(const double* x, const double* t,
                                                     const double* w, double* element_loss,
                                                     int64_t n, bool has_ignore_label,
                                                     double ignore_label) {
  return HWY_DYNAMIC_DISPATCH(PlainForwardDouble)(x, t, w, element_loss, n, has_ignore_label,
                                                  ignore_label);
}
template <>
void SigmoidXentPlainBackward<float>(const float* x, const float* t, const float* w,
                                     const float* element_diff, float scale, float* dx,
                                     int64_t n, bool has_ignore_label, float ignore_label) {
  HWY_DYNAMIC_DISPATCH(PlainBackwardFloat)(x, t, w, element_diff, scale, dx, n,
                                           has_ignore_label, ignore_label);
}
template <>
void SigmoidXentPlainBackward<double>(const double* x, const double* t, const double* w,
                                      const double* element_diff, double scale, double* dx,
                                      int64_t n, bool has_ignore_label, double ignore_label) {
  HWY_DYNAMIC_DISPATCH(PlainBackwardDouble)(x, t, w, element_diff, scale, dx, n,
                                            has_ignore_label, ignore_label);
}

}  // namespace xent
}  // namespace caffe
#endif  // HWY_ONCE
