// What the SIMD files of the two hard-target losses (zlpr_loss_simd.cpp,
// two_way_loss_simd.cpp) share: the float/double vector types of a target,
// how a row of C classes splits into vectors, the targets of a vector as
// zlpr_loss_math.hpp's Kind sees them, widening to double halves, lane
// totals and maxima.
//
// Included once per Highway target by a file that foreach_target.h
// re-includes, after hwy/highway.h and xent_simd-inl.h; it toggles its
// include guard per target as Highway's own -inl.h files do.

#if defined(CAFFE_HARD_TARGET_SIMD_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef CAFFE_HARD_TARGET_SIMD_INL_H_
#undef CAFFE_HARD_TARGET_SIMD_INL_H_
#else
#define CAFFE_HARD_TARGET_SIMD_INL_H_
#endif

#include <hwy/highway.h>

#include <cstddef>

#include "caffe/layers/zlpr_loss_math.hpp"

HWY_BEFORE_NAMESPACE();
namespace caffe {
namespace xent {
namespace hard {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

#if HWY_TARGET != HWY_SCALAR
using DF = hn::ScalableTag<float>;
using DH = hn::Half<DF>;
using DD = hn::Rebind<double, DH>;
using VF = hn::Vec<DF>;
using VD = hn::Vec<DD>;
using MF = hn::Mask<DF>;
using MD = hn::Mask<DD>;

/// Float lanes of the widest vectors (the size of a padded tail).
const size_t kMaxLanes = HWY_MAX_BYTES / sizeof(float);

/// Arguments below it give e^(v - m) = 0 (Highway's double Exp returns 0
/// below -1000; e^-1000 is below the smallest subnormal double): lanes
/// outside a side, and -inf values, are raised to it so that the exp never
/// sees an infinity.
const double kExpFloor = -1001.0;

/// How `count` elements split into vectors, and ignore_label in lanes.
struct Layout {
  size_t lanes, full, tail;
  bool has_ignore;
  VF ignore;
  MF all;
  HWY_INLINE Layout(size_t count, const zlpr::RowOptions& opt)
      : lanes(hn::Lanes(DF())),
        full(count - count % lanes),
        tail(count - full),
        // ignore_label as a float; one that no float equals is never matched
        // (as Kind, which compares in double).
        has_ignore(opt.has_ignore_label &&
                   static_cast<double>(static_cast<float>(opt.ignore_label)) == opt.ignore_label),
        ignore(hn::Set(DF(), static_cast<float>(opt.ignore_label))),
        all(hn::FirstN(DF(), lanes)) {}
};

/// Lines the vector paths take: lane counts stay exact floats.
HWY_INLINE bool VectorLine(int64_t length) { return length < (int64_t(1) << 24); }

/// The targets of one vector as Kind sees them, in lanes: negatives (0),
/// positives (1) and invalid targets (neither, nor ignore_label), among the
/// `live` lanes (all but a padded tail's extra lanes).
struct Kinds {
  MF neg, pos, bad;
};

HWY_INLINE Kinds Classify(VF tv, MF live, const Layout& row) {
  const DF d;
  const MF ignored = row.has_ignore ? hn::And(live, hn::Eq(tv, row.ignore)) : hn::FirstN(d, 0);
  Kinds k;
  k.neg = hn::AndNot(ignored, hn::And(live, hn::Eq(tv, hn::Zero(d))));
  k.pos = hn::AndNot(ignored, hn::And(live, hn::Eq(tv, hn::Set(d, 1.0f))));
  k.bad = hn::AndNot(hn::Or(ignored, hn::Or(k.neg, k.pos)), live);
  return k;
}

/// A float vector widened to two halves of doubles.
struct Halves {
  VD low, high;
};

HWY_INLINE Halves Widen(VF v) {
  const DH dh;
  const DD dd;
  Halves h;
  h.low = hn::PromoteTo(dd, hn::LowerHalf(dh, v));
  h.high = hn::PromoteTo(dd, hn::UpperHalf(dh, v));
  return h;
}

/// A float mask as masks of the two double halves.
struct HalfMasks {
  MD low, high;
};

HWY_INLINE HalfMasks WidenMask(MF m) {
  const DF d;
  const DD dd;
  const Halves h = Widen(hn::IfThenElseZero(m, hn::Set(d, 1.0f)));
  HalfMasks w;
  w.low = hn::Eq(h.low, hn::Set(dd, 1.0));
  w.high = hn::Eq(h.high, hn::Set(dd, 1.0));
  return w;
}

/// The total of float counts (exact integers) in double, in lane order.
HWY_INLINE double CountTotal(VF counts) {
  const Halves h = Widen(counts);
  return xent::HWY_NAMESPACE::LaneTotal(hn::Add(h.low, h.high));
}

/// The largest lane of v (a float or a double vector).
template <class V>
HWY_INLINE hn::TFromV<V> LaneMax(V v) {
  const hn::DFromV<V> d;
  HWY_ALIGN hn::TFromV<V> lanes[HWY_MAX_BYTES / sizeof(hn::TFromV<V>)];
  hn::Store(v, d, lanes);
  hn::TFromV<V> m = lanes[0];
  for (size_t i = 1; i < hn::Lanes(d); ++i) m = m > lanes[i] ? m : lanes[i];
  return m;
}

/// e^(v - m) in double, the argument raised to kExpFloor (v - m is exact
/// for float v and m, or within 2^-53 relative where the exp underflows).
HWY_INLINE VD ShiftedExp(VD v, VD m) {
  const DD dd;
  return hn::Exp(dd, hn::Max(hn::Sub(v, m), hn::Set(dd, kExpFloor)));
}
#endif  // HWY_TARGET != HWY_SCALAR

}  // namespace HWY_NAMESPACE
}  // namespace hard
}  // namespace xent
}  // namespace caffe
HWY_AFTER_NAMESPACE();

#endif  // CAFFE_HARD_TARGET_SIMD_INL_H_ toggle
