// What the two SIMD files of the loss layers (sigmoid_cross_entropy_loss_simd.cpp,
// multi_label_softmax_loss_simd.cpp) share: the vector ops policy the loss
// formulas are written over (VecOps, the vector side of
// caffe/util/xent_ops.hpp's ScalarOps), the sum of vectors in double
// (DoubleSum, LaneTotal), a float exp of non-positive arguments
// (ExpNonPositive, Expm1Reduced), the padded tail of an array (Padded, StoreFirst)
// and the float/double dispatch pair (XENT_SIMD_FLOAT_DOUBLE,
// XENT_SIMD_DISPATCH_FLOAT_DOUBLE).
//
// The per-target part is included once per Highway target by a file that
// foreach_target.h re-includes, after hwy/highway.h; it toggles its include
// guard per target as Highway's own -inl.h files do.

#if defined(CAFFE_XENT_SIMD_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef CAFFE_XENT_SIMD_INL_H_
#undef CAFFE_XENT_SIMD_INL_H_
#else
#define CAFFE_XENT_SIMD_INL_H_
#endif

#include <hwy/highway.h>
#include <hwy/contrib/math/math-inl.h>

#include <cstddef>

HWY_BEFORE_NAMESPACE();
namespace caffe {
namespace xent {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

/// The vector ops policy over the vectors of tag D: the operations of
/// ScalarOps (caffe/util/xent_ops.hpp, which says what each one means) on
/// Highway vectors, lane by lane; masks are hn::Mask<D>.
template <class D>
struct VecOps {
  using T = hn::TFromD<D>;
  using V = hn::Vec<D>;
  using M = hn::Mask<D>;
  HWY_INLINE V Set(T c) const { return hn::Set(D(), c); }
  HWY_INLINE V Zero() const { return hn::Zero(D()); }
  HWY_INLINE V Add(V a, V b) const { return hn::Add(a, b); }
  HWY_INLINE V Sub(V a, V b) const { return hn::Sub(a, b); }
  HWY_INLINE V Mul(V a, V b) const { return hn::Mul(a, b); }
  HWY_INLINE V Div(V a, V b) const { return hn::Div(a, b); }
  HWY_INLINE V MulAdd(V a, V b, V c) const { return hn::MulAdd(a, b, c); }
  HWY_INLINE V MulSub(V a, V b, V c) const { return hn::MulSub(a, b, c); }
  HWY_INLINE V NegMulAdd(V a, V b, V c) const { return hn::NegMulAdd(a, b, c); }
  HWY_INLINE V Neg(V a) const { return hn::Neg(a); }
  HWY_INLINE V Abs(V a) const { return hn::Abs(a); }
  HWY_INLINE V Select(M m, V a, V b) const { return hn::IfThenElse(m, a, b); }
  HWY_INLINE V IfThenElseZero(M m, V a) const { return hn::IfThenElseZero(m, a); }
  HWY_INLINE V Scale(V w, V v) const { return hn::IfThenZeroElse(hn::Eq(w, Zero()), hn::Mul(w, v)); }
  HWY_INLINE V Exp(V v) const { return hn::Exp(D(), v); }
  HWY_INLINE V Log(V v) const { return hn::Log(D(), v); }
  /// e^z - 1 for |z| < 1/16 (the contract in xent_ops.hpp): the Taylor
  /// series cut after z⁹/9!, the rest below 2^-57 of the result; cheaper
  /// than a second Exp.
  HWY_INLINE V Expm1Small(V z) const {
    V p = Set(T(1.0 / 362880));  // 1/9!
    const double inverse_factorials[] = {1.0 / 40320, 1.0 / 5040, 1.0 / 720, 1.0 / 120,
                                         1.0 / 24,    1.0 / 6,    1.0 / 2,   1.0};
    for (double c : inverse_factorials) p = hn::MulAdd(p, z, Set(T(c)));
    return hn::Mul(p, z);
  }
  HWY_INLINE M Ge(V a, V b) const { return hn::Ge(a, b); }
  HWY_INLINE M Gt(V a, V b) const { return hn::Gt(a, b); }
  HWY_INLINE M Lt(V a, V b) const { return hn::Lt(a, b); }
  HWY_INLINE M Eq(V a, V b) const { return hn::Eq(a, b); }
  HWY_INLINE M And(M a, M b) const { return hn::And(a, b); }
};

/// e^r - 1 for float |r| <= ln 2 / 2 + 2^-9, within 1 ulp of e^r once 1 is
/// added: r + r²·P(r), P of degree 5 evaluated by Estrin's scheme. The
/// coefficients and the order of evaluation are those of Highway 1.0.3's
/// float Exp (whose polynomial is not public API), so the exps built on it
/// keep the bits they had when they called that polynomial.
template <class D, class V>
HWY_INLINE V Expm1Reduced(D d, V r) {
  const V c0 = hn::Set(d, +0.5f);
  const V c1 = hn::Set(d, +0.166666671633720397949219f);
  const V c2 = hn::Set(d, +0.0416664853692054748535156f);
  const V c3 = hn::Set(d, +0.00833336077630519866943359f);
  const V c4 = hn::Set(d, +0.00139304355252534151077271f);
  const V c5 = hn::Set(d, +0.000198527617612853646278381f);
  const V r2 = hn::Mul(r, r);
  const V r4 = hn::Mul(r2, r2);
  const V p = hn::MulAdd(r4, hn::MulAdd(c5, r, c4),
                         hn::MulAdd(r2, hn::MulAdd(c3, r, c2), hn::MulAdd(c1, r, c0)));
  return hn::MulAdd(p, r2, r);
}

/// 1.5·2^23 + 192: v + kShifter, for |v| < 2^21, is round(v) + 192 in the
/// low bits of the result (rounded to nearest, ties to even as hn::Round:
/// the added 192 is even), so that k = (v + kShifter) - kShifter and the
/// result's low bits shifted into the exponent field give 2^(k + 65)
/// (exponent bits k + 192 = (k + 65) + 127; k + 192 must lie in [1, 254]).
constexpr float kShifter = 12582912.0f + 192.0f;

/// e^z for float z <= 0, within 1 ulp as hn::Exp, in about half its vector
/// ops; NaN for NaN (hn::Exp gives 0), so a NaN logit reaches the loss and
/// the gradient through the arithmetic, with no select of its own.
/// z is raised to -104 first (by a compare and a select, which keep NaN as
/// hn::Max does not on every target): e^z rounds to 0 below it, -inf gives
/// 0, and k >= -151. Cody and Waite's reduction, k = round(z / ln 2),
/// r = z - k·ln2_hi - k·ln2_lo (ln2_hi has 9 significant bits: k·ln2_hi
/// and z - k·ln2_hi are exact, the second FMA rounds once, |r| <= ln 2 / 2
/// + 2^-9), then 2^k in two factors: e^r·2^(k+65) is exact (a normal
/// number) and ·2^-65 the only rounding, to a subnormal where e^z is one.
template <class D, class V = hn::Vec<D>>
HWY_INLINE V ExpNonPositive(D d, V z) {
  static_assert(sizeof(hn::TFromD<D>) == 4, "float lanes");
  const hn::RebindToUnsigned<D> du;
  const V low = hn::Set(d, -104.0f);
  z = hn::IfThenElse(hn::Lt(z, low), low, z);
  const V shifted = hn::MulAdd(z, hn::Set(d, 1.442695040888963407359924681f), hn::Set(d, kShifter));
  const V k = hn::Sub(shifted, hn::Set(d, kShifter));  // round(z / ln 2)
  V r = hn::NegMulAdd(k, hn::Set(d, 0.693359375f), z);
  r = hn::NegMulAdd(k, hn::Set(d, -2.12194440e-4f), r);
  const V pow2 = hn::BitCast(d, hn::ShiftLeft<23>(hn::BitCast(du, shifted)));  // 2^(k + 65)
  // (1 + q)·pow2 in one fused operation: pow2 is a power of two and the
  // product normal, so its one rounding is that of 1 + q.
  return hn::Mul(hn::MulAdd(Expm1Reduced(d, r), pow2, pow2), hn::Set(d, 0x1p-65f));
}

/// The lanes of a double vector added in lane order: the same bits every
/// run, whatever the thread count.
template <class VD>
HWY_INLINE double LaneTotal(VD v) {
  const hn::DFromV<VD> dd;
  HWY_ALIGN double lanes[HWY_MAX_BYTES / sizeof(double)];
  hn::Store(v, dd, lanes);
  double total = 0.0;
  for (size_t i = 0; i < hn::Lanes(dd); ++i) total += lanes[i];
  return total;
}

/// A running sum in double of vectors of tag D (float or double): float
/// lanes are widened into two double halves, double lanes are added as two
/// halves too, so the code is the same for both. Total() adds the halves,
/// then the lanes in lane order (LaneTotal).
#if HWY_TARGET == HWY_SCALAR
template <class D>
struct DoubleSum {  // one lane: nothing to split
  double total = 0.0;
  HWY_INLINE void Add(hn::Vec<D> v) { total += static_cast<double>(hn::GetLane(v)); }
  HWY_INLINE double Total() const { return total; }
};
#else
template <class D>
struct DoubleSum {
  using DH = hn::Half<D>;
  using DD = hn::Rebind<double, DH>;
  hn::Vec<DD> low, high;
  // Written out (not default member initializers): the implicit constructor
  // would be compiled without this target's instruction set.
  HWY_INLINE DoubleSum() : low(hn::Zero(DD())), high(hn::Zero(DD())) {}
  HWY_INLINE void Add(hn::Vec<D> v) {
    if constexpr (sizeof(hn::TFromD<D>) == 4) {
      low = hn::Add(low, hn::PromoteTo(DD(), hn::LowerHalf(DH(), v)));
      high = hn::Add(high, hn::PromoteTo(DD(), hn::UpperHalf(DH(), v)));
    } else {
      low = hn::Add(low, hn::LowerHalf(DH(), v));
      high = hn::Add(high, hn::UpperHalf(DH(), v));
    }
  }
  HWY_INLINE double Total() const { return LaneTotal(hn::Add(low, high)); }
};
#endif

/// One vector's worth (kSize values, aligned) of the last n elements of an
/// array: src[0, n), then `pad` (all `pad` where src is NULL). The tails of
/// both SIMD files run the same vector code on such copies.
template <typename T, size_t kSize = HWY_MAX_BYTES / sizeof(T)>
struct Padded {
  HWY_ALIGN T v[kSize];
  HWY_INLINE Padded(const T* src, size_t n, T pad = T(0)) {
    for (size_t i = 0; i < kSize; ++i) v[i] = src && i < n ? src[i] : pad;
  }
};

/// Stores the first n lanes of v at dst (n <= Lanes(d)).
template <class D>
HWY_INLINE void StoreFirst(D d, hn::Vec<D> v, size_t n, hn::TFromD<D>* dst) {
  HWY_ALIGN hn::TFromD<D> lanes[HWY_MAX_BYTES / sizeof(hn::TFromD<D>)];
  hn::Store(v, d, lanes);
  for (size_t i = 0; i < n; ++i) dst[i] = lanes[i];
}

}  // namespace HWY_NAMESPACE
}  // namespace xent
}  // namespace caffe
HWY_AFTER_NAMESPACE();

#endif  // CAFFE_XENT_SIMD_INL_H_ toggle

#ifndef CAFFE_XENT_SIMD_DISPATCH_
#define CAFFE_XENT_SIMD_DISPATCH_

/// Inside HWY_NAMESPACE: the per-target entry points Name##Float and
/// Name##Double of the template Ret Name(const Args<T>&), which HWY_EXPORT
/// needs (a plain function per target).
#define XENT_SIMD_FLOAT_DOUBLE(Ret, Name, Args)                    \
  Ret Name##Float(const Args<float>& a) { return Name(a); }        \
  Ret Name##Double(const Args<double>& a) { return Name(a); }

/// Under HWY_ONCE, in the namespace that holds the per-target namespaces:
/// the dispatch tables of Name##Float and Name##Double and
/// Dispatch##Name<T>(args), which calls the best target's.
#define XENT_SIMD_DISPATCH_FLOAT_DOUBLE(Ret, Name, Args)                                   \
  HWY_EXPORT(Name##Float);                                                                 \
  HWY_EXPORT(Name##Double);                                                                \
  template <typename T>                                                                    \
  Ret Dispatch##Name(const Args<T>& a);                                                    \
  template <>                                                                              \
  Ret Dispatch##Name<float>(const Args<float>& a) {                                        \
    return HWY_DYNAMIC_DISPATCH(Name##Float)(a);                                           \
  }                                                                                        \
  template <>                                                                              \
  Ret Dispatch##Name<double>(const Args<double>& a) {                                      \
    return HWY_DYNAMIC_DISPATCH(Name##Double)(a);                                          \
  }

#endif  // CAFFE_XENT_SIMD_DISPATCH_
