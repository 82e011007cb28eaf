// What the two SIMD files of the loss layers (sigmoid_cross_entropy_loss_simd.cpp,
// multi_label_softmax_loss_simd.cpp) share: the vector ops policy the loss
// formulas are written over (VecOps, the vector side of
// caffe/util/xent_ops.hpp's ScalarOps), the sum of vectors in double
// (DoubleSum, LaneTotal), the padded tail of an array (Padded, StoreFirst)
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
