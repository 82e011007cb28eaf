// CPU fast path of MultiLabelSoftmaxLoss (see multi_label_softmax_loss_simd.hpp,
// which says which formula lives where). What both SIMD files share (the
// vector ops policy, DoubleSum, LaneTotal, Padded) is in xent_simd-inl.h.
//
// Highway re-includes this file once per x86 target (foreach_target.h) and
// picks the best at run time. The include path below is relative to our
// include/ directory, which is on the include path of every caffe source.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "../src/caffe/layers/multi_label_softmax_loss_simd.cpp"
#include <hwy/foreach_target.h>  // NOLINT: must come before highway.h

#include <hwy/aligned_allocator.h>
#include <hwy/cache_control.h>
#include <hwy/highway.h>
#include <hwy/contrib/math/math-inl.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "multi_label_softmax_loss_simd.hpp"
#include "xent_simd-inl.h"

HWY_BEFORE_NAMESPACE();
namespace caffe {
namespace xent {
namespace multilabel {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

namespace xs = xent::HWY_NAMESPACE;  // xent_simd-inl.h

// RowIsValid, RowLoss, ScaledGradient for this target.
#define XENT_FORMULA HWY_INLINE
#include "caffe/layers/multi_label_softmax_loss_formulas-inl.h"
#undef XENT_FORMULA

/// Largest |row max| of the vector paths (see RowShift); rows beyond it
/// take the scalar math.
const float kMaxRowMax = 32640.0f;  // 2^15 - 128

/// The row max m in the form the shifted exps use (per row, or per lane of
/// rows): m = hi + lo, hi = m rounded to a multiple of 2^-9, lo = m - hi
/// (exact, |lo| <= 2^-10); low = hi - 104, below which e^(x - m) < e^-104
/// rounds to 0 in float; m_log2e = hi / ln 2, rounded (only to pick k).
template <class V>
struct RowShift {
  V hi, lo, low, m_log2e;
};
template <class D, class V = hn::Vec<D>>
HWY_INLINE RowShift<V> MakeRowShift(D d, V m) {
  RowShift<V> shift;
  shift.hi = hn::Mul(hn::Round(hn::Mul(m, hn::Set(d, 512.0f))), hn::Set(d, 1.0f / 512.0f));
  shift.lo = hn::Sub(m, shift.hi);
  shift.low = hn::Sub(shift.hi, hn::Set(d, 104.0f));
  shift.m_log2e = hn::Mul(shift.hi, hn::Set(d, 1.442695040888963407359924681f));
  return shift;
}

/// e^(x - m) for x <= m, |m| < kMaxRowMax, with the argument exact: within
/// ~1.75 ulp for every x - m (the polynomial's 1 ulp, and the reduced
/// argument's roundings below 3 * 2^-26 absolute). Rounding x - m to float
/// first, as a plain float exp would need, is off by up to ulp(x - m) / 2:
/// e^(x - m) off by |x - m| 2^-25 relative, ~30 ulp at x - m = -60.
/// Cody and Waite's reduction taken from x and m, not from x - m:
///   k = round((x - m) / ln 2), from x / ln 2 - hi / ln 2 (k only picks
///       the interval, |r| stays within ln 2 / 2 + 2^-9: its rounding costs
///       nothing);
///   b = hi + k ln2_hi is exact: ln2_hi has 9 significant bits, so b is a
///       multiple of 2^-9 below 2^15 in magnitude (|hi| < 2^15 - 127,
///       |k ln2_hi| <= 104.1): 24 bits;
///   r = (x - b) - (lo + k ln2_lo) = x - m - k ln 2: x - b, lo + k ln2_lo and
///       their difference are all below 0.4 in magnitude, so each rounding
///       is below 2^-26 absolute;
///   e^(x - m) = 2^k e^r, e^r = 1 + Expm1Reduced(r) (within 1 ulp).
/// The max itself gives k = 0, r = 0 and exactly 1. x is first raised to
/// `low`: e^(x - m) rounds to 0 below it, -inf scores give 0, every
/// intermediate stays finite and k >= -151. 2^k in two factors, by public
/// ops only: e^r·2^(k+65) is exact (e^r in [0.7, 1.5), k + 65 >= -86: a
/// normal number), and ·2^-65 is the only rounding, to a subnormal where
/// the result is one: the value AVX-512's vscalefps gives, on every target.
template <class D, class V>
HWY_INLINE V ShiftedExpVec(D d, V x, const RowShift<V>& shift) {
  const hn::RebindToUnsigned<D> du;
  x = hn::Max(x, shift.low);
  const V shifted = hn::Add(hn::MulSub(x, hn::Set(d, 1.442695040888963407359924681f),
                                       shift.m_log2e),
                            hn::Set(d, xs::kShifter));
  const V k = hn::Sub(shifted, hn::Set(d, xs::kShifter));              // round((x - m) / ln 2)
  const V b = hn::MulAdd(k, hn::Set(d, 0.693359375f), shift.hi);  // hi + k ln2_hi, exact
  const V c = hn::MulAdd(k, hn::Set(d, -2.12194440e-4f), shift.lo);  // lo + k ln2_lo
  const V r = hn::Sub(hn::Sub(x, b), c);                          // x - m - k ln 2
  const V pow2 = hn::BitCast(d, hn::ShiftLeft<23>(hn::BitCast(du, shifted)));  // 2^(k + 65)
  // e^r 2^(k + 65) = (1 + q) pow2 in one fused operation: its one rounding
  // is that of 1 + q (pow2 a power of two, the product normal), so the bits
  // of rounding 1 + q and then multiplying, one operation fewer.
  const V scaled = hn::MulAdd(xs::Expm1Reduced(d, r), pow2, pow2);
  return hn::Mul(scaled, hn::Set(d, 0x1p-65f));
}

#if HWY_TARGET != HWY_SCALAR
/// AccumulateTarget's terms on vectors (not its template: the checks and
/// sums run on float lanes with double halves): the target sums of a vector of elements in
/// lanes, double sums as two halves, counts in float (exact below 2^24).
/// Lanes are rows (spatial maps) or classes of one row (contiguous rows,
/// totalled in lane order at the end of the row).
struct TargetSums {
  using DF = hn::ScalableTag<float>;
  using DH = hn::Half<DF>;
  using DD = hn::Rebind<double, DH>;
  using VF = hn::Vec<DF>;
  using VD = hn::Vec<DD>;
  VD target_low, target_high;      // sum t
  VD weighted_low, weighted_high;  // sum w t
  VD gap_low, gap_high;            // sum w t (m - x)
  VF positives, ignored, invalid;
  bool has_ignore;
  VF ignore;

  /// ignore_label as a float; one that no float equals is never matched.
  HWY_INLINE explicit TargetSums(const RowOptions& opt)
      : target_low(hn::Zero(DD())), target_high(hn::Zero(DD())),
        weighted_low(hn::Zero(DD())), weighted_high(hn::Zero(DD())),
        gap_low(hn::Zero(DD())), gap_high(hn::Zero(DD())),
        positives(hn::Zero(DF())), ignored(hn::Zero(DF())), invalid(hn::Zero(DF())),
        has_ignore(opt.has_ignore_label &&
                   static_cast<double>(static_cast<float>(opt.ignore_label)) == opt.ignore_label),
        ignore(hn::Set(DF(), static_cast<float>(opt.ignore_label))) {}

  /// Elements x, t (t != 0 in `nonzero` lanes), class weights w (two
  /// halves), row max m (two halves; m - x finite: finite scores). As
  /// AccumulateTarget: ignore_label first, then t > 0, the rest invalid.
  template <class M>
  HWY_INLINE void Add(VF x, VF t, M nonzero, VD w_low, VD w_high, VD m_low, VD m_high) {
    const DF d;
    const DH dh;
    const DD dd;
    const VF zero = hn::Zero(d);
    const VF one = hn::Set(d, 1.0f);
    const auto ignore_lane = has_ignore ? hn::Eq(t, ignore) : hn::Ne(zero, zero);
    const VF most = hn::Set(d, std::numeric_limits<float>::max());
    const auto positive = hn::AndNot(ignore_lane, hn::And(hn::Gt(t, zero), hn::Le(t, most)));
    if (has_ignore) ignored = hn::Add(ignored, hn::IfThenElseZero(ignore_lane, one));
    const auto bad = hn::AndNot(hn::Or(positive, ignore_lane), nonzero);  // < 0, NaN, +inf
    invalid = hn::Add(invalid, hn::IfThenElseZero(bad, one));
    positives = hn::Add(positives, hn::IfThenElseZero(positive, one));
    const VF tp = hn::IfThenElseZero(positive, t);
    const VD t_low = hn::PromoteTo(dd, hn::LowerHalf(dh, tp));
    const VD t_high = hn::PromoteTo(dd, hn::UpperHalf(dh, tp));
    target_low = hn::Add(target_low, t_low);
    target_high = hn::Add(target_high, t_high);
    const VD wt_low = hn::Mul(w_low, t_low);  // exact: float * float fits a double
    const VD wt_high = hn::Mul(w_high, t_high);
    weighted_low = hn::Add(weighted_low, wt_low);
    weighted_high = hn::Add(weighted_high, wt_high);
    gap_low = hn::MulAdd(wt_low, hn::Sub(m_low, hn::PromoteTo(dd, hn::LowerHalf(dh, x))), gap_low);
    gap_high = hn::MulAdd(wt_high, hn::Sub(m_high, hn::PromoteTo(dd, hn::UpperHalf(dh, x))),
                          gap_high);
  }
};

/// The lane totals (LaneTotal) of the two halves of a double sum, added.
HWY_INLINE double HalvesTotal(hn::Vec<TargetSums::DD> low, hn::Vec<TargetSums::DD> high) {
  return xs::LaneTotal(low) + xs::LaneTotal(high);
}
/// The total of float counts (exact integers) in double.
HWY_INLINE double CountTotal(hn::Vec<TargetSums::DF> counts) {
  const TargetSums::DH dh;
  return HalvesTotal(hn::PromoteTo(TargetSums::DD(), hn::LowerHalf(dh, counts)),
                     hn::PromoteTo(TargetSums::DD(), hn::UpperHalf(dh, counts)));
}
#endif

/// Float lanes of the widest vectors.
const size_t kMaxLanes = HWY_MAX_BYTES / sizeof(float);

bool RowSumsImpl(const float* x, const float* t, const double* w, const RowOptions& opt,
                 float* max_out, RowSums* sums, float* exps) {
  const hn::ScalableTag<float> d;
  const size_t lanes = hn::Lanes(d);
  const size_t C = static_cast<size_t>(opt.classes);
  const size_t full = C - C % lanes;
  const auto zero = hn::Zero(d);
  // Max, and a finiteness probe: x * 0 is NaN exactly for +-inf and NaN.
  auto vmax = hn::Set(d, -std::numeric_limits<float>::infinity());
  auto probe = zero;
  for (size_t c = 0; c < full; c += lanes) {
    const auto v = hn::LoadU(d, x + c);
    vmax = hn::Max(vmax, v);
    probe = hn::MulAdd(v, zero, probe);
  }
  HWY_ALIGN float lane_values[HWY_MAX_BYTES / sizeof(float)];
  hn::Store(vmax, d, lane_values);
  float m = lane_values[0];
  for (size_t i = 1; i < lanes; ++i) m = m > lane_values[i] ? m : lane_values[i];
  float scalar_probe = 0.0f;
  for (size_t c = full; c < C; ++c) {
    m = m > x[c] ? m : x[c];
    scalar_probe += x[c] * 0.0f;
  }
  if (!hn::AllTrue(d, hn::Eq(probe, probe)) || scalar_probe != 0.0f) return false;
  if (!(std::fabs(m) < kMaxRowMax)) return false;  // huge scores: the scalar math

  // S = sum e^(x - m) and sum x in double; target terms by the shared math,
  // only where a lane's target is non-zero (also NaN and ignore_label).
  const auto shift = MakeRowShift(d, hn::Set(d, m));
  xs::DoubleSum<decltype(d)> exp_sum, x_sum;
  const bool smoothing = opt.smoothing != 0.0;
#if HWY_TARGET != HWY_SCALAR
  // Target terms on vectors where a lane's target is non-zero (also NaN and
  // ignore_label), totalled in lane order after the row.
  TargetSums targets(opt);
  const TargetSums::DD dd;
  const size_t half = lanes / 2;
  const auto m_double = hn::Set(dd, static_cast<double>(m));
#endif
  // One vector of elements (scores xp, targets tp, class weights wp); its
  // e^(x_c - m) stored at ep unless that is NULL.
  auto add_vector = [&](const float* xp, const float* tp, const double* wp, float* ep,
                        auto smoothing_tag) {
    constexpr bool kSmoothing = decltype(smoothing_tag)::value;
    const auto v = hn::LoadU(d, xp);
    const auto e = ShiftedExpVec(d, v, shift);  // e^(x_c - m)
    if (ep) hn::StoreU(e, d, ep);
    exp_sum.Add(e);
    if (kSmoothing) x_sum.Add(v);
    const auto tv = hn::LoadU(d, tp);
    // Not(t == 0), not t != 0: Highway's != is ordered on AVX2/AVX-512
    // (false for NaN), and a NaN target must reach the check.
    const auto zero_target = hn::Eq(tv, zero);
    if (!hn::AllTrue(d, zero_target)) {
      const auto nonzero = hn::Not(zero_target);  // also NaN and ignore_label
#if HWY_TARGET != HWY_SCALAR
      targets.Add(v, tv, nonzero, hn::LoadU(dd, wp), hn::LoadU(dd, wp + half), m_double,
                  m_double);
#else
      AccumulateTarget(m, *xp, *tp, *wp, opt, sums);
#endif
    }
  };
  // The loop compiled twice, with and without the smoothing sum, to keep the
  // test out of it.
  auto sweep = [&](auto smoothing_tag) {
    for (size_t c = 0; c < full; c += lanes) {
      add_vector(x + c, t + c, w + c, exps ? exps + c : nullptr, smoothing_tag);
    }
  };
  if (smoothing) {
    sweep(std::true_type());
  } else {
    sweep(std::false_type());
  }
#if HWY_TARGET != HWY_SCALAR
  // The last C % lanes elements: one more vector, from copies padded with
  // targets 0 and scores at shift.low, whose e^(x - m) is exactly 0 (below
  // half the smallest subnormal). Cheaper than as many scalar exps.
  if (full < C) {
    const size_t n = C - full;
    const xs::Padded<float> x_pad(x + full, n, hn::GetLane(shift.low)), t_pad(t + full, n);
    const xs::Padded<double, kMaxLanes> w_pad(w + full, n);
    HWY_ALIGN float e_pad[kMaxLanes];
    add_vector(x_pad.v, t_pad.v, w_pad.v, e_pad, std::false_type());
    if (exps) std::copy(e_pad, e_pad + n, exps + full);
    if (smoothing) {
      for (size_t c = full; c < C; ++c) sums->gap_sum += Gap(m, x[c]);
    }
  }
  sums->positives += CountTotal(targets.positives);
  sums->ignored += CountTotal(targets.ignored);
  sums->invalid += CountTotal(targets.invalid);
  sums->target_sum += HalvesTotal(targets.target_low, targets.target_high);
  sums->weighted += HalvesTotal(targets.weighted_low, targets.weighted_high);
  sums->weighted_gap += HalvesTotal(targets.gap_low, targets.gap_high);
#endif
  sums->sum_exp += exp_sum.Total();
  // sum over the vector part of (m - x_c); needed only with label smoothing.
  if (smoothing) sums->gap_sum += static_cast<double>(full) * m - x_sum.Total();
  *max_out = m;
  return true;
}

void RowGradientImpl(const float* x, const float* t, const double* w,
                     const RowCoefficients& coef, double scale, int classes, float* dx,
                     const float* exps) {
  const hn::ScalableTag<float> d;
  const size_t lanes = hn::Lanes(d);
  const size_t C = static_cast<size_t>(classes);
  const size_t full = C - C % lanes;
  const auto zero = hn::Zero(d);
  const float m = static_cast<float>(coef.max);
  if (!(std::fabs(m) < kMaxRowMax)) {  // huge scores: the scalar math
    for (size_t c = 0; c < C; ++c) dx[c] = ElementGradient(coef, x[c], t[c], w[c], scale);
    return;
  }
  const auto shift = MakeRowShift(d, hn::Set(d, m));
  const auto k = hn::Set(d, static_cast<float>(scale * coef.q_total * coef.inv_sum_exp));
  const auto scaled_b = hn::Set(d, static_cast<float>(scale * coef.b));
#if HWY_TARGET != HWY_SCALAR
  const hn::Half<decltype(d)> dh;
  const hn::Rebind<double, decltype(dh)> dd;
  const size_t half = lanes / 2;
  const auto scaled_a = hn::Set(d, static_cast<float>(scale * coef.a));
#endif
  // One vector of elements (scores xp, targets tp, class weights wp; their
  // e^(x_c - m) at ep when the forward stored them there, else taken here).
  auto gradient = [&](const float* xp, const float* tp, const double* wp, const float* ep) {
    const auto e = ep ? hn::LoadU(d, ep)
                      : ShiftedExpVec(d, hn::LoadU(d, xp), shift);  // e^(x_c - m); -inf: 0
    auto g = hn::MulSub(k, e, scaled_b);  // scale (Q p_c - eps/C) for t_c = 0
    const auto tv = hn::LoadU(d, tp);
    const auto nonzero = hn::Ne(tv, zero);
    if (!hn::AllFalse(d, nonzero)) {
#if HWY_TARGET != HWY_SCALAR
      // scale (Q p_c - q_c) = k e - (scale a w_c t_c + scale b), in float as
      // the t_c = 0 lanes (about 2 ulp of Q p + q); the same value there.
      const auto wc = hn::Combine(d, hn::DemoteTo(dh, hn::LoadU(dd, wp + half)),
                                  hn::DemoteTo(dh, hn::LoadU(dd, wp)));  // float weights: exact
      g = hn::MulSub(k, e, hn::MulAdd(hn::Mul(scaled_a, wc), tv, scaled_b));
#else
      g = hn::Set(d, ElementGradient(coef, *xp, *tp, *wp, scale));
#endif
    }
    return g;
  };
  for (size_t c = 0; c < full; c += lanes) {
    hn::StoreU(gradient(x + c, t + c, w + c, exps ? exps + c : nullptr), d, dx + c);
  }
#if HWY_TARGET != HWY_SCALAR
  if (full < C) {  // the last C % lanes elements, as in RowSumsImpl
    const size_t n = C - full;
    const xs::Padded<float> x_pad(x + full, n, hn::GetLane(shift.low)), t_pad(t + full, n);
    const xs::Padded<double, kMaxLanes> w_pad(w + full, n);
    const xs::Padded<float> e_pad(exps ? exps + full : nullptr, n);
    xs::StoreFirst(d, gradient(x_pad.v, t_pad.v, w_pad.v, exps ? e_pad.v : nullptr), n,
                   dx + full);
  }
#endif
}

int SpatialLanesImpl() {
#if HWY_TARGET == HWY_SCALAR
  return 0;  // nothing to gain over the scalar loop
#else
  return static_cast<int>(hn::Lanes(hn::ScalableTag<float>()));
#endif
}

#if HWY_TARGET == HWY_SCALAR
bool SpatialForwardImpl(const float*, const float*, const double*, int64_t, const RowOptions&,
                        int, int64_t, int64_t, double*, double*, double*, double*, double,
                        float*) {
  return false;
}
bool SpatialGradientImpl(const float*, const float*, const double*, int64_t, int,
                         const double*, int64_t, int64_t, int, double, float*) {
  return false;
}
#else
// Forward of a run of neighbouring rows of a spatial map (class c of row j
// at x[c * inner + j]), tile by tile, in two steps per tile:
//  1. a copy of the tile's scores and targets into contiguous local buffers,
//     with the per-row max and the finiteness probe (CopyTile). The planes
//     are 4 * inner bytes apart, for power-of-two maps the same cache sets:
//     read twice from the map, a tile would evict itself between the two
//     steps; read once, the second step runs from L1.
//  2. vector of rows by vector of rows, all classes, from the local copies
//     (Tile): every row sum in registers (double; SumClasses), then the
//     row's loss and coefficients by the formulas FinishRow uses
//     (RowIsValid, RowLoss of multi_label_softmax_loss_formulas-inl.h) on
//     vectors (FinishVector): no per-row scalar work, which at C = 21 cost
//     more than the exps; with the gradient, the rows' dx right after
//     (Gradient), from their exps and targets still in L1.
// Step 1 of the next tile runs before step 2 of this one and prefetches the
// tile after it, and the next tile's dx: the loads from the map and the
// stores' line fills are under way while step 2 computes.

/// Floats of each local copy (scores, targets) of a tile: 2 x 4 KiB, so
/// that both tiles, the prefetched lines and a vector of rows' exps stay
/// in a 32 KiB L1 (tiles of 2 x 16 KiB, two of which no 48 KiB L1 holds
/// with the rest, ran 6 % slower on AVX2, one thread, 8x21x128x128).
const int kLocalFloats = 1024;

int SpatialTileRowsImpl(int classes) {
  const int lanes = static_cast<int>(hn::Lanes(hn::ScalableTag<float>()));
  const int fit = kLocalFloats / classes;  // rows whose copies fit the local buffers
  const int rows = fit < kSpatialTileRows ? fit : kSpatialTileRows;
  return rows < lanes ? lanes : rows - rows % lanes;  // many classes: copies beyond L1
}

/// The sums of half a vector of rows (double lanes): the row max, S,
/// the target sums and sum_c x_c (label smoothing).
template <class VD>
struct RowHalf {
  VD max, sum_exp, positives, ignored, target_sum, weighted, weighted_gap, x_sum;
};

/// The row coefficients and loss of half a vector of rows, as FinishRow:
/// RowIsValid and RowLoss on vectors, with sum_c (m - x_c) = C m - sum_c x_c.
template <class DD, class VD = hn::Vec<DD>>
HWY_INLINE void FinishRows(DD dd, const RowOptions& opt, const RowHalf<VD>& r,
                           double* coefficients, int64_t row, int64_t rows, double* loss,
                           VD* valid_total) {
  const xs::VecOps<DD> o;
  const VD one = hn::Set(dd, 1.0);
  const auto valid = RowIsValid(o, r.positives, r.ignored);
  const VD gap_sum = opt.smoothing != 0.0
      ? hn::MulSub(hn::Set(dd, static_cast<double>(opt.classes)), r.max, r.x_sum)
      : hn::Zero(dd);
  const RowTerms<VD> terms = HWY_NAMESPACE::RowLoss(o, opt, r.positives, r.target_sum, r.weighted,
                                     r.weighted_gap, r.sum_exp, gap_sum);
  const double b = opt.smoothing / opt.classes;
  hn::StoreU(r.max, dd, coefficients + 0 * rows + row);
  hn::StoreU(hn::Div(one, r.sum_exp), dd, coefficients + 1 * rows + row);
  hn::StoreU(hn::IfThenElseZero(valid, terms.q_total), dd, coefficients + 2 * rows + row);
  hn::StoreU(hn::IfThenElseZero(valid, terms.a), dd, coefficients + 3 * rows + row);
  hn::StoreU(hn::IfThenElseZero(valid, hn::Set(dd, b)), dd, coefficients + 4 * rows + row);
  hn::StoreU(hn::IfThenElseZero(valid, terms.loss), dd, loss);
  *valid_total = hn::Add(*valid_total, hn::IfThenElseZero(valid, one));
}

/// float vector from `lanes` doubles (two demoted halves).
template <class D>
HWY_INLINE hn::Vec<D> LoadDoubles(D d, const double* p) {
  const hn::Half<D> dh;
  const hn::Rebind<double, hn::Half<D>> dd;
  const auto low = hn::DemoteTo(dh, hn::LoadU(dd, p));
  const auto high = hn::DemoteTo(dh, hn::LoadU(dd, p + hn::Lanes(dd)));
  return hn::Combine(d, high, low);
}

/// ElementGradient on half a vector (double lanes) of one class of
/// neighbouring rows r..: ScaledGradient with the rows' stored coefficients.
template <class DD, class VD = hn::Vec<DD>>
HWY_INLINE VD TargetGradient(DD dd, const double* coefficients, int64_t r, int64_t rows, VD e,
                             VD t, double w, double scale) {
  return ScaledGradient(xs::VecOps<DD>(), hn::LoadU(dd, coefficients + 2 * rows + r),
                        hn::LoadU(dd, coefficients + 1 * rows + r),
                        hn::LoadU(dd, coefficients + 3 * rows + r),
                        hn::LoadU(dd, coefficients + 4 * rows + r), e, hn::Set(dd, w), t,
                        hn::Set(dd, scale));
}

/// Whether every class weight is 1.
HWY_INLINE bool UnitWeights(const double* w, int classes) {
  return std::all_of(w, w + classes, [](double wc) { return wc == 1.0; });
}

/// The gradient's factors of a vector of rows r.. (lane j: row r + j), in
/// float from their stored coefficients: k = scale Q/S, scale a, scale b
/// (ignored rows have Q = a = b = 0: dx = 0), and whether a row is ignored.
template <class VF, class M>
struct RowFactors {
  VF k, scaled_a, scaled_b;
  M ignored;  // double lanes: a = 0 in either half
};
template <class D, class V = hn::Vec<D>>
HWY_INLINE auto MakeRowFactors(D d, const double* coefficients, int64_t r, int64_t rows,
                               V vscale) {
  const hn::Rebind<double, hn::Half<D>> dd;
  const int64_t half = static_cast<int64_t>(hn::Lanes(dd));
  RowFactors<V, hn::Mask<decltype(dd)>> f;
  f.k = hn::Mul(vscale, hn::Mul(LoadDoubles(d, coefficients + 2 * rows + r),
                                LoadDoubles(d, coefficients + 1 * rows + r)));
  f.scaled_b = hn::Mul(vscale, LoadDoubles(d, coefficients + 4 * rows + r));
  f.scaled_a = hn::Mul(vscale, LoadDoubles(d, coefficients + 3 * rows + r));
  f.ignored = hn::Or(hn::Eq(hn::LoadU(dd, coefficients + 3 * rows + r), hn::Zero(dd)),
                     hn::Eq(hn::LoadU(dd, coefficients + 3 * rows + r + half), hn::Zero(dd)));
  return f;
}

/// dx of class c of a vector of rows r.. from e = e^(x_c - m) and the
/// targets tv, the rows' factors k, sa = scale a, sb = scale b in float.
/// kIgnored false (no row of the vector ignored, a > 0): every lane by one
/// float formula, no branch: scale (Q p_c - q_c) = k e - (sa w_c t_c + sb),
/// which for t_c = 0 is k e - sb. Rounding: k, scale a, scale a w_c and the
/// two fused operations, about 2 ulp of Q p + q: the precision of the t_c = 0
/// lanes. kIgnored true: k e - sb in float, and target lanes by
/// ElementGradient in double (ignored rows: 0). kUnitWeights: every class
/// weight is 1 (sa w_c = sa, one multiplication fewer).
template <bool kIgnored, bool kUnitWeights, class D, class V = hn::Vec<D>>
HWY_INLINE V ClassGradient(D d, V k, V sa, V sb, V e, V tv, const double* coefficients, int64_t r,
                           int64_t rows, double w, double scale) {
  if (!kIgnored) {
    // float class weights: exact
    const V saw = kUnitWeights ? sa : hn::Mul(sa, hn::Set(d, static_cast<float>(w)));
    return hn::MulSub(k, e, hn::MulAdd(saw, tv, sb));
  }
  const hn::Half<D> dh;
  const hn::Rebind<double, decltype(dh)> dd;
  const int64_t half = static_cast<int64_t>(hn::Lanes(dd));
  // scale (Q p_c - eps/C), the value for t_c = 0
  const V g = hn::MulSub(k, e, sb);
  const auto nonzero = hn::Ne(tv, hn::Zero(d));
  if (hn::AllFalse(d, nonzero)) return g;
  // target lanes: ElementGradient in double
  const auto low = TargetGradient(dd, coefficients, r, rows,
                                  hn::PromoteTo(dd, hn::LowerHalf(dh, e)),
                                  hn::PromoteTo(dd, hn::LowerHalf(dh, tv)), w, scale);
  const auto high = TargetGradient(dd, coefficients, r + half, rows,
                                   hn::PromoteTo(dd, hn::UpperHalf(dh, e)),
                                   hn::PromoteTo(dd, hn::UpperHalf(dh, tv)), w, scale);
  return hn::IfThenElse(nonzero, hn::Combine(d, hn::DemoteTo(dh, high), hn::DemoteTo(dh, low)),
                        g);
}

/// A tile's local copies: scores and targets class by class (class c of
/// the tile's row j at [c * rows + j]) and the rows' max.
struct LocalTile {
  float* x;
  float* t;
  float* m;
};

/// This thread's local copies for two tiles of `tile_rows` rows of C
/// classes, and room for the e^(x_c - m) of one vector of rows, C vectors
/// at *exps (O(C * tile_rows) floats, kept between calls).
HWY_INLINE void LocalTiles(int classes, int tile_rows, LocalTile* tiles, float** exps) {
  static thread_local hwy::AlignedFreeUniquePtr<float[]> buffer;
  static thread_local size_t floats = 0;
  const size_t per_tile = (2 * static_cast<size_t>(classes) + 1) * tile_rows;
  const size_t total = 2 * per_tile + static_cast<size_t>(classes) * kMaxLanes;
  if (floats < total) {
    buffer = hwy::AllocateAligned<float>(total);
    floats = total;
  }
  *exps = buffer.get() + 2 * per_tile;
  for (int i = 0; i < 2; ++i) {
    float* base = buffer.get() + i * per_tile;
    tiles[i].x = base;
    tiles[i].t = base + static_cast<size_t>(classes) * tile_rows;
    tiles[i].m = base + 2 * static_cast<size_t>(classes) * tile_rows;
  }
}

/// Step 1 of a tile, plane by plane; false when a score is not finite.
/// ahead > 0: also prefetches the scores and targets `ahead` rows further
/// (the tile after it); dx unless NULL: the tile's gradient lines, which
/// step 2 writes.
template <class D>
HWY_INLINE bool CopyTile(D d, const float* x, const float* t, int64_t inner, int classes,
                         int count, LocalTile* tile, int ahead = 0, const float* dx = nullptr) {
  const int lanes = static_cast<int>(hn::Lanes(d));
  const auto zero = hn::Zero(d);
  auto probe = zero;  // x * 0 is NaN exactly for +-inf and NaN
  for (int c = 0; c < classes; ++c) {
    for (int v = 0; v < count; v += lanes) {
      const auto xv = hn::LoadU(d, x + c * inner + v);
      hn::Store(c == 0 ? xv : hn::Max(hn::Load(d, tile->m + v), xv), d, tile->m + v);
      probe = hn::MulAdd(xv, zero, probe);
      hn::Store(xv, d, tile->x + c * count + v);
      hn::Store(hn::LoadU(d, t + c * inner + v), d, tile->t + c * count + v);
      if (ahead) {
        hwy::Prefetch(x + ahead + c * inner + v);
        hwy::Prefetch(t + ahead + c * inner + v);
      }
      if (dx) hwy::Prefetch(dx + c * inner + v);
    }
  }
  return hn::AllTrue(d, hn::Eq(probe, probe));
}

/// The sums of a vector of rows (lane j: row j) over their classes, in
/// class order: S and sum_c x_c in double, and the target sums.
struct RowVectorSums {
  xs::DoubleSum<hn::ScalableTag<float>> sum_exp, x_sum;
  TargetSums targets;
  /// Targets of 1 with unit class weights (the vector of rows' first try,
  /// UnitTargets): their count per row (exact in float), the sum of their
  /// scores in double, and the lanes whose targets so far were all 0, 1 or
  /// ignore_label (a lane with any other, a soft target or an invalid one:
  /// TargetSums then redoes the targets).
  TargetSums::VF units;
  xs::DoubleSum<hn::ScalableTag<float>> unit_x;
  hn::Mask<TargetSums::DF> regular;
  HWY_INLINE explicit RowVectorSums(const RowOptions& opt)
      : targets(opt), units(hn::Zero(TargetSums::DF())),
        regular(hn::Eq(units, units)) {}
};

/// SpatialForwardImpl's run, step by step (see the comment above
/// kLocalFloats): the arguments, the next tile's place and what the run
/// adds up.
class SpatialForward {
 public:
  using DF = hn::ScalableTag<float>;
  using DH = hn::Half<DF>;
  using DD = hn::Rebind<double, DH>;
  using VF = hn::Vec<DF>;
  using VD = hn::Vec<DD>;

  HWY_INLINE SpatialForward(const float* x, const float* t, const double* w, int64_t inner,
                            const RowOptions& opt, int count, int64_t first_row, int64_t rows,
                            double* coefficients, double scale, float* dx)
      : x_(x), t_(t), w_(w), inner_(inner), opt_(opt), count_(count), first_row_(first_row),
        rows_(rows), coefficients_(coefficients), scale_(scale), dx_(dx),
        tile_rows_(SpatialTileRowsImpl(opt.classes)),
        unit_weights_(UnitWeights(w, opt.classes)), unit_(unit_weights_),
        valid_total_(hn::Zero(DD())), invalid_total_(hn::Zero(DD())) {}

  /// The whole run; false when a score is not finite or a row's |max| is
  /// kMaxRowMax or more.
  HWY_INLINE bool Run(double* loss_sum, double* valid, double* invalid) {
    const DF d;
    LocalTile tiles[2];
    LocalTiles(opt_.classes, tile_rows_, tiles, &exps_);
    int now = 0;
    int size = count_ < tile_rows_ ? count_ : tile_rows_;
    if (!CopyTile(d, x_, t_, inner_, opt_.classes, size, &tiles[now])) return false;
    for (int begin = 0; begin < count_; begin += size, now ^= 1) {
      size = count_ - begin < tile_rows_ ? count_ - begin : tile_rows_;
      if (!Tile(begin, size, tiles[now], tiles[now ^ 1])) return false;
    }
    *loss_sum = total_;
    *valid = hn::GetLane(hn::SumOfLanes(DD(), valid_total_));  // integers: exact in any order
    *invalid = hn::GetLane(hn::SumOfLanes(DD(), invalid_total_));
    return true;
  }

 private:
  /// Step 1 of the next tile (into next; the one after it prefetched), then
  /// step 2 of the tile of `size` rows from row `begin` (local copy cur).
  HWY_INLINE bool Tile(int begin, int size, const LocalTile cur, LocalTile next) {
    const DF d;
    const int lanes = static_cast<int>(hn::Lanes(d));
    const int next_begin = begin + size;
    const int next_size = count_ - next_begin < tile_rows_ ? count_ - next_begin : tile_rows_;
    // A non-finite score in the next tile: the caller's scalar loop redoes
    // the whole run.
    if (next_size > 0 &&
        !CopyTile(d, x_ + next_begin, t_ + next_begin, inner_, opt_.classes, next_size, &next,
                  next_begin + tile_rows_ < count_ ? tile_rows_ : 0,
                  dx_ ? dx_ + next_begin : nullptr)) {
      return false;
    }
    auto huge = hn::Ne(hn::Zero(d), hn::Zero(d));  // rows with |max| >= kMaxRowMax
    for (int v = 0; v < size; v += lanes) {
      const VF vm = hn::Load(d, cur.m + v);
      huge = hn::Or(huge, hn::Not(hn::Lt(hn::Abs(vm), hn::Set(d, kMaxRowMax))));
      RowVectorSums sums(opt_);  // lane j: row begin + v + j
      // Dense targets (a positive in most vectors, as a segmentation map's
      // one-hot rows at C = 21): no branch on them, which would mispredict;
      // sparse ones: skip the vectors without. Adding zero lanes changes no
      // sum: the same bits either way.
      int hits = 0;  // classes with a target in some lane
      float* exps = dx_ ? exps_ : nullptr;
      bool unit = unit_;
      if (unit) {
        SumClasses<true, true>(cur, size, v, vm, exps, &sums, &hits);
        if (!hn::AllTrue(d, sums.regular)) {  // other targets: the general sums after all
          unit = unit_ = false;
          RedoTargets(cur, size, v, vm, &sums);
        }
      } else if (dense_) {
        SumClasses<true, false>(cur, size, v, vm, exps, &sums, &hits);
      } else {
        SumClasses<false, false>(cur, size, v, vm, exps, &sums, &hits);
      }
      dense_ = 4 * hits > opt_.classes;  // targets in more than a quarter of these vectors
      FinishVector(vm, sums, first_row_ + begin + v, unit);
      if (dx_) Gradient(cur, size, v, begin);
    }
    return hn::AllFalse(d, huge);  // huge scores: the scalar math
  }

  /// Step 2 for the vector of rows v of the tile cur (row max vm): every
  /// sum over the classes in class order, in registers, each e^(x_c - m)
  /// also stored at exps + c * lanes unless exps is NULL. Two loops over the
  /// classes, the exps (ExpClasses) and then the rest: one loop holding
  /// both kept more vectors than AVX2 has registers, and its sums went
  /// through memory.
  template <bool kDense, bool kUnit>
  HWY_INLINE void SumClasses(const LocalTile& cur, int size, int v, VF vm, float* exps,
                             RowVectorSums* sums, int* hits) {
    const DF d;
    const DH dh;
    const DD dd;
    const VF zero = hn::Zero(d);
    if (exps) {
      ExpClasses<true>(cur, size, v, vm, exps, sums);
    } else {
      ExpClasses<false>(cur, size, v, vm, exps, sums);
    }
    const VD m_low = hn::PromoteTo(dd, hn::LowerHalf(dh, vm));
    const VD m_high = hn::PromoteTo(dd, hn::UpperHalf(dh, vm));
    const int classes = opt_.classes;
    const bool smoothing = opt_.smoothing != 0.0;
    const double* w = w_;
    for (int c = 0; c < classes; ++c) {
      const VF xv = hn::Load(d, cur.x + c * size + v);
      if (smoothing) sums->x_sum.Add(xv);
      const VF tv = hn::Load(d, cur.t + c * size + v);
      if (kUnit) {
        UnitTargets(xv, tv, sums);
        continue;
      }
      // Not(t == 0): Highway's != is false for NaN on AVX2/AVX-512.
      const auto nonzero = hn::Not(hn::Eq(tv, zero));  // also NaN and ignore_label
      const bool any = !hn::AllFalse(d, nonzero);
      *hits += any;
      if (!kDense && !any) continue;
      const VD wc = hn::Set(dd, w[c]);
      sums->targets.Add(xv, tv, nonzero, wc, wc, m_low, m_high);
    }
  }

  /// S = sum_c e^(x_c - m) of the vector of rows v of the tile cur, in
  /// class order, each e^(x_c - m) also stored at exps + c * lanes (for
  /// Gradient) unless exps is NULL.
  template <bool kStore>
  HWY_INLINE void ExpClasses(const LocalTile& cur, int size, int v, VF vm, float* exps,
                             RowVectorSums* sums) {
    const DF d;
    const auto shift = MakeRowShift(d, vm);
    auto sum_exp = sums->sum_exp;
    for (int c = 0; c < opt_.classes; ++c) {
      const VF e = ShiftedExpVec(d, hn::Load(d, cur.x + c * size + v), shift);  // e^(x_c - m)
      if (kStore) hn::Store(e, d, exps + c * hn::Lanes(d));
      sum_exp.Add(e);
    }
    sums->sum_exp = sum_exp;
  }

  /// The target sums of one class of a vector of rows when every non-zero
  /// target is 1 (or ignore_label) and every class weight 1: a count and a
  /// sum of scores, no branch. Per row, then, sum t = sum w t = M (exact)
  /// and sum w t (m - x_c) = M m - sum x_c (FinishVector). Lanes with any
  /// other target leave sums->regular (and make the rest meaningless: the
  /// caller redoes the vector of rows by TargetSums). In the regular lanes
  /// t (ignore_label lanes: 0) is the 0/1 count of a unit target and t x
  /// its score or 0, exactly.
  HWY_INLINE void UnitTargets(VF xv, VF tv, RowVectorSums* sums) {
    const DF d;
    TargetSums& s = sums->targets;
    const VF one = hn::Set(d, 1.0f);
    auto regular = hn::Or(hn::Eq(tv, hn::Zero(d)), hn::Eq(tv, one));  // NaN: neither
    VF unit = tv;
    if (s.has_ignore) {
      const auto ignore_lane = hn::Eq(tv, s.ignore);
      regular = hn::Or(regular, ignore_lane);
      unit = hn::IfThenZeroElse(ignore_lane, tv);
      s.ignored = hn::Add(s.ignored, hn::IfThenElseZero(ignore_lane, one));
    }
    sums->units = hn::Add(sums->units, unit);
    sums->unit_x.Add(hn::Mul(unit, xv));
    sums->regular = hn::And(sums->regular, regular);
  }

  /// The general target sums (TargetSums, every class) of the vector of
  /// rows v of the tile cur, after UnitTargets met another target: from the
  /// tile's local copies, still in L1. The ignored count starts again.
  HWY_INLINE void RedoTargets(const LocalTile& cur, int size, int v, VF vm,
                              RowVectorSums* sums) {
    const DF d;
    const DH dh;
    const DD dd;
    const VD m_low = hn::PromoteTo(dd, hn::LowerHalf(dh, vm));
    const VD m_high = hn::PromoteTo(dd, hn::UpperHalf(dh, vm));
    sums->targets = TargetSums(opt_);
    for (int c = 0; c < opt_.classes; ++c) {
      const VF tv = hn::Load(d, cur.t + c * size + v);
      const auto nonzero = hn::Not(hn::Eq(tv, hn::Zero(d)));
      const VD wc = hn::Set(dd, w_[c]);
      sums->targets.Add(hn::Load(d, cur.x + c * size + v), tv, nonzero, wc, wc, m_low, m_high);
    }
  }

  /// dx of the vector of rows v of the tile cur (rows begin + v..), every
  /// class, from the e^(x_c - m) ExpClasses kept and the coefficients
  /// FinishVector stored: the rows' targets and exps still in L1, nothing
  /// read from the map again (ClassGradient, as SpatialGradientImpl).
  HWY_INLINE void Gradient(const LocalTile& cur, int size, int v, int begin) {
    const DF d;
    const size_t lanes = hn::Lanes(d);
    const int64_t r = first_row_ + begin + v;
    const auto f =
        MakeRowFactors(d, coefficients_, r, rows_, hn::Set(d, static_cast<float>(scale_)));
    float* dx = dx_ + begin + v;
    auto classes = [&](auto ignored_tag, auto unit_tag) {
      constexpr bool kIgnored = decltype(ignored_tag)::value;
      constexpr bool kUnitWeights = decltype(unit_tag)::value;
      for (int c = 0; c < opt_.classes; ++c) {
        const VF e = hn::Load(d, exps_ + c * lanes);
        const VF tv = hn::Load(d, cur.t + c * size + v);
        hn::StoreU(ClassGradient<kIgnored, kUnitWeights>(d, f.k, f.scaled_a, f.scaled_b, e, tv,
                                                         coefficients_, r, rows_, w_[c], scale_),
                   d, dx + c * inner_);
      }
    };
    if (!hn::AllFalse(DD(), f.ignored)) {
      classes(std::true_type(), std::false_type());
    } else if (unit_weights_) {
      classes(std::false_type(), std::true_type());
    } else {
      classes(std::false_type(), std::false_type());
    }
  }

  /// The rows' coefficients and losses (FinishRows on each double half,
  /// rows in order), the loss added in row order.
  HWY_INLINE void FinishVector(VF vm, const RowVectorSums& s, int64_t row, bool unit) {
    const DH dh;
    const DD dd;
    const int half = static_cast<int>(hn::Lanes(dd));
    const TargetSums& t = s.targets;
    HWY_ALIGN double row_loss[HWY_MAX_BYTES / sizeof(double)];
    for (int h = 0; h < 2; ++h) {
      const bool lo = h == 0;
      RowHalf<VD> r;
      r.max = hn::PromoteTo(dd, lo ? hn::LowerHalf(dh, vm) : hn::UpperHalf(dh, vm));
      r.sum_exp = lo ? s.sum_exp.low : s.sum_exp.high;
      r.positives = hn::PromoteTo(dd, lo ? hn::LowerHalf(dh, t.positives)
                                         : hn::UpperHalf(dh, t.positives));
      r.ignored = hn::PromoteTo(dd, lo ? hn::LowerHalf(dh, t.ignored)
                                       : hn::UpperHalf(dh, t.ignored));
      if (unit) {  // UnitTargets' sums
        r.positives = hn::PromoteTo(dd, lo ? hn::LowerHalf(dh, s.units)
                                           : hn::UpperHalf(dh, s.units));
        r.target_sum = r.weighted = r.positives;
        r.weighted_gap = hn::MulSub(r.positives, r.max, lo ? s.unit_x.low : s.unit_x.high);
      } else {
        r.target_sum = lo ? t.target_low : t.target_high;
        r.weighted = lo ? t.weighted_low : t.weighted_high;
        r.weighted_gap = lo ? t.gap_low : t.gap_high;
      }
      r.x_sum = lo ? s.x_sum.low : s.x_sum.high;
      FinishRows(dd, opt_, r, coefficients_, row + h * half, rows_, row_loss, &valid_total_);
      for (int j = 0; j < half; ++j) total_ += row_loss[j];  // row order
    }
    invalid_total_ = hn::Add(invalid_total_,
                             hn::Add(hn::PromoteTo(dd, hn::LowerHalf(dh, t.invalid)),
                                     hn::PromoteTo(dd, hn::UpperHalf(dh, t.invalid))));
  }

  const float* x_;
  const float* t_;
  const double* w_;
  int64_t inner_;
  const RowOptions& opt_;
  int count_;
  int64_t first_row_, rows_;
  double* coefficients_;
  double scale_;
  float* dx_;            // NULL, or where the run's gradient for scale_ goes (laid out as x)
  float* exps_ = NULL;   // this thread's room for the e^(x_c - m) of a vector of rows
  int tile_rows_;
  bool unit_weights_;        // every class weight 1
  bool unit_;                // unit class weights, and every target so far 0, 1 or ignored
  bool dense_ = false;       // whether the last vector of rows had targets in most classes
  double total_ = 0.0;       // the loss, rows in order
  VD valid_total_, invalid_total_;
};

bool SpatialForwardImpl(const float* x, const float* t, const double* w, int64_t inner,
                        const RowOptions& opt, int count, int64_t first_row, int64_t rows,
                        double* coefficients, double* loss_sum, double* valid, double* invalid,
                        double scale, float* dx) {
  SpatialForward run(x, t, w, inner, opt, count, first_row, rows, coefficients, scale, dx);
  return run.Run(loss_sum, valid, invalid);
}

bool SpatialGradientImpl(const float* x, const float* t, const double* w, int64_t inner,
                         int classes, const double* coefficients, int64_t first_row,
                         int64_t rows, int count, double scale, float* dx) {
  const hn::ScalableTag<float> d;
  const hn::Rebind<double, hn::Half<decltype(d)>> dd;
  const int lanes = static_cast<int>(hn::Lanes(d));
  const auto zero = hn::Zero(d);
  const auto vscale = hn::Set(d, static_cast<float>(scale));
  HWY_ALIGN float k[kSpatialTileRows], scaled_b[kSpatialTileRows], scaled_a[kSpatialTileRows];
  // Each row's max as hi + lo (RowShift; the rest of it is recomputed from
  // hi, cheaper than two more loads per element).
  HWY_ALIGN float hi[kSpatialTileRows], lo[kSpatialTileRows];
  auto probe = zero;
  auto huge = hn::Ne(zero, zero);  // rows with |max| >= kMaxRowMax
  auto ignored = hn::Ne(hn::Zero(dd), hn::Zero(dd));  // none yet
  for (int v = 0; v < count; v += lanes) {
    const int64_t r = first_row + v;
    const auto vm = LoadDoubles(d, coefficients + 0 * rows + r);
    probe = hn::MulAdd(vm, zero, probe);
    huge = hn::Or(huge, hn::Not(hn::Lt(hn::Abs(vm), hn::Set(d, kMaxRowMax))));
    const auto shift = MakeRowShift(d, vm);
    hn::Store(shift.hi, d, hi + v);
    hn::Store(shift.lo, d, lo + v);
    const auto f = MakeRowFactors(d, coefficients, r, rows, vscale);
    hn::Store(f.k, d, k + v);
    hn::Store(f.scaled_b, d, scaled_b + v);
    hn::Store(f.scaled_a, d, scaled_a + v);
    ignored = hn::Or(ignored, f.ignored);
  }
  // A row with a non-finite max (+inf or NaN scores) or a huge one: the
  // caller's scalar loop.
  if (!hn::AllTrue(d, hn::Eq(probe, zero)) || !hn::AllFalse(d, huge)) return false;
  // RowShift of the rows v.. (lanes), from the tile's arrays.
  auto shift_at = [&](int v) {
    RowShift<hn::Vec<decltype(d)>> shift;
    shift.hi = hn::Load(d, hi + v);
    shift.lo = hn::Load(d, lo + v);
    shift.low = hn::Sub(shift.hi, hn::Set(d, 104.0f));  // as MakeRowShift
    shift.m_log2e = hn::Mul(shift.hi, hn::Set(d, 1.442695040888963407359924681f));
    return shift;
  };
  // Plane by plane; ClassGradient without the ignored rows' branch where
  // there is none (the usual case).
  auto planes = [&](auto ignored_tag, auto unit_tag) {
    constexpr bool kIgnored = decltype(ignored_tag)::value;
    constexpr bool kUnitWeights = decltype(unit_tag)::value;
    for (int c = 0; c < classes; ++c) {
      const float* xc = x + c * inner;
      const float* tc = t + c * inner;
      float* dxc = dx + c * inner;
      for (int v = 0; v < count; v += lanes) {
        // The same place of the next tile (the caller's next call), which comes
        // back to this plane only after all the others: in cache by then.
        hwy::Prefetch(xc + count + v);
        hwy::Prefetch(tc + count + v);
        const auto e = ShiftedExpVec(d, hn::LoadU(d, xc + v), shift_at(v));  // e^(x_c - m)
        hn::StoreU(ClassGradient<kIgnored, kUnitWeights>(
                       d, hn::Load(d, k + v), hn::Load(d, scaled_a + v), hn::Load(d, scaled_b + v),
                       e, hn::LoadU(d, tc + v), coefficients, first_row + v, rows, w[c], scale),
                   d, dxc + v);
      }
    }
  };
  if (!hn::AllFalse(dd, ignored)) {
    planes(std::true_type(), std::false_type());
  } else if (UnitWeights(w, classes)) {
    planes(std::false_type(), std::true_type());
  } else {
    planes(std::false_type(), std::false_type());
  }
  return true;
}
#endif  // HWY_TARGET == HWY_SCALAR

}  // namespace HWY_NAMESPACE
}  // namespace multilabel
}  // namespace xent
}  // namespace caffe
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace caffe {
namespace xent {
namespace multilabel {

HWY_EXPORT(RowSumsImpl);
HWY_EXPORT(RowGradientImpl);
HWY_EXPORT(SpatialLanesImpl);

bool SimdRowSums(const float* x, const float* t, const double* w, const RowOptions& opt,
                 float* max, RowSums* sums, float* exps) {
  return HWY_DYNAMIC_DISPATCH(RowSumsImpl)(x, t, w, opt, max, sums, exps);
}

void SimdRowGradient(const float* x, const float* t, const double* w,
                     const RowCoefficients& coef, double scale, int classes, float* dx,
                     const float* exps) {
  HWY_DYNAMIC_DISPATCH(RowGradientImpl)(x, t, w, coef, scale, classes, dx, exps);
}

HWY_EXPORT(SpatialForwardImpl);
HWY_EXPORT(SpatialGradientImpl);

int SimdSpatialLanes() {
  static const int lanes = HWY_DYNAMIC_DISPATCH(SpatialLanesImpl)();
  return lanes;
}

bool SimdSpatialForward(const float* x, const float* t, const double* w, int64_t inner,
                        const RowOptions& opt, int count, int64_t first_row, int64_t rows,
                        double* coefficients, double* loss, double* valid, double* invalid,
                        double scale, float* dx) {
  return HWY_DYNAMIC_DISPATCH(SpatialForwardImpl)(x, t, w, inner, opt, count, first_row, rows,
                                                  coefficients, loss, valid, invalid, scale, dx);
}

bool SimdSpatialGradient(const float* x, const float* t, const double* w, int64_t inner,
                         int classes, const double* coefficients, int64_t first_row,
                         int64_t rows, int count, double scale, float* dx) {
  return HWY_DYNAMIC_DISPATCH(SpatialGradientImpl)(x, t, w, inner, classes, coefficients,
                                                   first_row, rows, count, scale, dx);
}

}  // namespace multilabel
}  // namespace xent
}  // namespace caffe
#endif  // HWY_ONCE
