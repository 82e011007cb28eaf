// CPU fast path of MultiLabelSoftmaxLoss (see multilabel_softmax_simd.hpp).
//
// Highway re-includes this file once per x86 target (foreach_target.h) and
// picks the best at run time. The include path below is relative to our
// include/ directory, which is on the include path of every caffe source.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "../src/caffe/layers/multilabel_softmax_simd.cpp"
#include <hwy/foreach_target.h>  // NOLINT: must come before highway.h

#include <hwy/highway.h>
#include <hwy/contrib/math/math-inl.h>

#include <cfloat>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>

#include "multilabel_softmax_simd.hpp"

HWY_BEFORE_NAMESPACE();
namespace caffe {
namespace xent {
namespace multilabel {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

/// Sum of float vectors in double: each vector is widened to two double
/// halves, so the row sums are in double as the scalar path's.
#if HWY_TARGET == HWY_SCALAR
struct DoubleVectorSum {  // one lane: nothing to split
  double total = 0.0;
  HWY_INLINE void Add(hn::Vec<hn::ScalableTag<float>> v) {
    total += static_cast<double>(hn::GetLane(v));
  }
  HWY_INLINE double Total() const { return total; }
};
#else
struct DoubleVectorSum {
  using DF = hn::ScalableTag<float>;
  using DH = hn::Half<DF>;
  using DD = hn::Rebind<double, DH>;
  hn::Vec<DD> low, high;
  // Written out (not default member initializers): the implicit constructor
  // would be compiled without this target's instruction set.
  HWY_INLINE DoubleVectorSum() : low(hn::Zero(DD())), high(hn::Zero(DD())) {}
  HWY_INLINE void Add(hn::Vec<DF> v) {
    low = hn::Add(low, hn::PromoteTo(DD(), hn::LowerHalf(DH(), v)));
    high = hn::Add(high, hn::PromoteTo(DD(), hn::UpperHalf(DH(), v)));
  }
  /// Lane sums added in lane order: the same bits every run.
  HWY_INLINE double Total() const {
    HWY_ALIGN double lanes[HWY_MAX_BYTES / sizeof(double)];
    hn::Store(hn::Add(low, high), DD(), lanes);
    double total = 0.0;
    for (size_t i = 0; i < hn::Lanes(DD()); ++i) total += lanes[i];
    return total;
  }
  /// The lanes' double sums, lane order.
  HWY_INLINE void StoreLanes(double* out) const {
    hn::StoreU(low, DD(), out);
    hn::StoreU(high, DD(), out + hn::Lanes(DD()));
  }
};
#endif

/// Calls body(j) for each lane j whose mask bit is set (at most 64 lanes of
/// float): the scalar target terms then cost per non-zero target, not per lane.
template <class D, class M, class Body>
HWY_INLINE void ForEachSetLane(D d, M mask, Body body) {
  uint8_t bytes[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  hn::StoreMaskBits(d, mask, bytes);
  uint64_t bits = 0;
  for (int k = 7; k >= 0; --k) bits = (bits << 8) | bytes[k];
  while (bits != 0) {
    body(static_cast<size_t>(__builtin_ctzll(bits)));
    bits &= bits - 1;
  }
}

bool RowSumsImpl(const float* x, const float* t, const double* w, const RowOptions& opt,
                 float* max_out, RowSums* sums) {
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

  // S = sum e^(x - m) and sum x in double; target terms by the shared math,
  // only where a lane's target is non-zero (also NaN and ignore_label).
  const auto vm = hn::Set(d, m);
  DoubleVectorSum exp_sum, x_sum;
  const bool smoothing = opt.smoothing != 0.0;
  for (size_t c = 0; c < full; c += lanes) {
    const auto v = hn::LoadU(d, x + c);
    exp_sum.Add(hn::Exp(d, hn::Sub(v, vm)));  // e^(x_c - m), x_c - m <= 0
    if (smoothing) x_sum.Add(v);
    const auto nonzero = hn::Ne(hn::LoadU(d, t + c), zero);  // also NaN and ignore_label
    if (!hn::AllFalse(d, nonzero)) {
      ForEachSetLane(d, nonzero, [&](size_t j) {
        AccumulateTarget(m, x[c + j], t[c + j], w[c + j], opt, sums);
      });
    }
  }
  for (size_t c = full; c < C; ++c) AccumulateElement(m, x[c], t[c], w[c], opt, sums);
  sums->sum_exp += exp_sum.Total();
  // sum over the vector part of (m - x_c); needed only with label smoothing.
  if (smoothing) sums->gap_sum += static_cast<double>(full) * m - x_sum.Total();
  *max_out = m;
  return true;
}

void RowGradientImpl(const float* x, const float* t, const double* w,
                     const RowCoefficients& coef, double scale, int classes, float* dx) {
  const hn::ScalableTag<float> d;
  const size_t lanes = hn::Lanes(d);
  const size_t C = static_cast<size_t>(classes);
  const size_t full = C - C % lanes;
  const auto zero = hn::Zero(d);
  const auto vm = hn::Set(d, static_cast<float>(coef.max));
  // Exp's valid range starts at -FLT_MAX: a -inf score gives e^-FLT_MAX = 0.
  const auto lowest = hn::Set(d, -FLT_MAX);
  const auto k = hn::Set(d, static_cast<float>(scale * coef.q_total * coef.inv_sum_exp));
  const auto scaled_b = hn::Set(d, static_cast<float>(scale * coef.b));
  for (size_t c = 0; c < full; c += lanes) {
    const auto e = hn::Exp(d, hn::Max(hn::Sub(hn::LoadU(d, x + c), vm), lowest));
    hn::StoreU(hn::MulSub(k, e, scaled_b), d, dx + c);  // scale (Q p_c - eps/C) for t_c = 0
    const auto nonzero = hn::Ne(hn::LoadU(d, t + c), zero);
    if (!hn::AllFalse(d, nonzero)) {
      ForEachSetLane(d, nonzero, [&](size_t j) {
        dx[c + j] = ElementGradient(coef, x[c + j], t[c + j], w[c + j], scale);
      });
    }
  }
  for (size_t c = full; c < C; ++c) dx[c] = ElementGradient(coef, x[c], t[c], w[c], scale);
}

int SpatialLanesImpl() {
#if HWY_TARGET == HWY_SCALAR
  return 0;  // nothing to gain over the scalar loop
#else
  return static_cast<int>(hn::Lanes(hn::ScalableTag<float>()));
#endif
}

#if HWY_TARGET == HWY_SCALAR
bool SpatialRowSumsImpl(const float*, const float*, const double*, int64_t, const RowOptions&,
                        int, float*, RowSums*) {
  return false;
}
bool SpatialGradientImpl(const float*, const float*, const double*, int64_t, int,
                         const double*, int64_t, int64_t, int, double, float*) {
  return false;
}
#else
// A tile of up to kSpatialTileRows neighbouring rows is walked class by class
// (plane by plane): each pass reads contiguous runs of every plane. Walking
// one vector of rows through all classes instead touches C lines 4 * inner
// bytes apart, which for power-of-two maps fall into one cache set and evict
// each other between the two passes.

bool SpatialRowSumsImpl(const float* x, const float* t, const double* w, int64_t inner,
                        const RowOptions& opt, int count, float* max_out, RowSums* sums) {
  const hn::ScalableTag<float> d;
  const int lanes = static_cast<int>(hn::Lanes(d));
  const int C = opt.classes;
  const auto zero = hn::Zero(d);
  HWY_ALIGN float m[kSpatialTileRows];
  // Pass 1: per-row max, and the finiteness probe x * 0.
  auto probe = zero;
  for (int v = 0; v < count; v += lanes) {
    const auto xv = hn::LoadU(d, x + v);
    hn::Store(xv, d, m + v);
    probe = hn::MulAdd(xv, zero, probe);
  }
  for (int c = 1; c < C; ++c) {
    const float* xc = x + c * inner;
    for (int v = 0; v < count; v += lanes) {
      const auto xv = hn::LoadU(d, xc + v);
      hn::Store(hn::Max(hn::Load(d, m + v), xv), d, m + v);
      probe = hn::MulAdd(xv, zero, probe);
    }
  }
  if (!hn::AllTrue(d, hn::Eq(probe, probe))) return false;
  // Pass 2: S and sum x per row in double; target terms by the shared math.
  const hn::Half<decltype(d)> dh;
  const hn::Rebind<double, decltype(dh)> dd;
  const int half = lanes / 2;
  HWY_ALIGN double sum_exp[kSpatialTileRows];
  HWY_ALIGN double x_sum[kSpatialTileRows];
  const bool smoothing = opt.smoothing != 0.0;
  for (int j = 0; j < count; ++j) {
    sums[j] = ZeroSums();
    sum_exp[j] = x_sum[j] = 0.0;
  }
  for (int c = 0; c < C; ++c) {
    const float* xc = x + c * inner;
    const float* tc = t + c * inner;
    for (int v = 0; v < count; v += lanes) {
      const auto xv = hn::LoadU(d, xc + v);
      const auto e = hn::Exp(d, hn::Sub(xv, hn::Load(d, m + v)));  // e^(x_c - m) per row
      hn::Store(hn::Add(hn::Load(dd, sum_exp + v), hn::PromoteTo(dd, hn::LowerHalf(dh, e))), dd,
                sum_exp + v);
      hn::Store(hn::Add(hn::Load(dd, sum_exp + v + half),
                        hn::PromoteTo(dd, hn::UpperHalf(dh, e))), dd, sum_exp + v + half);
      if (smoothing) {
        hn::Store(hn::Add(hn::Load(dd, x_sum + v), hn::PromoteTo(dd, hn::LowerHalf(dh, xv))), dd,
                  x_sum + v);
        hn::Store(hn::Add(hn::Load(dd, x_sum + v + half),
                          hn::PromoteTo(dd, hn::UpperHalf(dh, xv))), dd, x_sum + v + half);
      }
      const auto nonzero = hn::Ne(hn::LoadU(d, tc + v), zero);
      if (!hn::AllFalse(d, nonzero)) {
        ForEachSetLane(d, nonzero, [&](size_t j) {
          AccumulateTarget(m[v + j], xc[v + j], tc[v + j], w[c], opt, &sums[v + j]);
        });
      }
    }
  }
  for (int j = 0; j < count; ++j) {
    sums[j].sum_exp = sum_exp[j];
    if (smoothing) sums[j].gap_sum = static_cast<double>(C) * m[j] - x_sum[j];  // sum (m - x_c)
    max_out[j] = m[j];
  }
  return true;
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

bool SpatialGradientImpl(const float* x, const float* t, const double* w, int64_t inner,
                         int classes, const double* coefficients, int64_t first_row,
                         int64_t rows, int count, double scale, float* dx) {
  const hn::ScalableTag<float> d;
  const int lanes = static_cast<int>(hn::Lanes(d));
  const auto zero = hn::Zero(d);
  const auto vscale = hn::Set(d, static_cast<float>(scale));
  HWY_ALIGN float m[kSpatialTileRows], k[kSpatialTileRows], scaled_b[kSpatialTileRows];
  auto probe = zero;
  for (int v = 0; v < count; v += lanes) {
    const int64_t r = first_row + v;
    const auto vm = LoadDoubles(d, coefficients + 0 * rows + r);
    probe = hn::MulAdd(vm, zero, probe);
    hn::Store(vm, d, m + v);
    // scale Q/S and scale eps/C per row; ignored rows have Q = b = 0: dx = 0.
    hn::Store(hn::Mul(vscale, hn::Mul(LoadDoubles(d, coefficients + 2 * rows + r),
                                      LoadDoubles(d, coefficients + 1 * rows + r))), d, k + v);
    hn::Store(hn::Mul(vscale, LoadDoubles(d, coefficients + 4 * rows + r)), d, scaled_b + v);
  }
  // A row with a non-finite max (+inf or NaN scores): the caller's scalar loop.
  if (!hn::AllTrue(d, hn::Eq(probe, zero))) return false;
  const auto lowest = hn::Set(d, -FLT_MAX);  // Exp's range starts at -FLT_MAX: e^-inf = 0
  for (int c = 0; c < classes; ++c) {
    const float* xc = x + c * inner;
    const float* tc = t + c * inner;
    float* dxc = dx + c * inner;
    for (int v = 0; v < count; v += lanes) {
      const auto e = hn::Exp(d, hn::Max(hn::Sub(hn::LoadU(d, xc + v), hn::Load(d, m + v)), lowest));
      // scale (Q p_c - eps/C), the value for t_c = 0
      hn::StoreU(hn::MulSub(hn::Load(d, k + v), e, hn::Load(d, scaled_b + v)), d, dxc + v);
      const auto nonzero = hn::Ne(hn::LoadU(d, tc + v), zero);
      if (!hn::AllFalse(d, nonzero)) {  // target terms: the shared math
        ForEachSetLane(d, nonzero, [&](size_t j) {
          dxc[v + j] = ElementGradient(LoadCoefficients(coefficients, first_row + v + j, rows),
                                       xc[v + j], tc[v + j], w[c], scale);
        });
      }
    }
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
                 float* max, RowSums* sums) {
  return HWY_DYNAMIC_DISPATCH(RowSumsImpl)(x, t, w, opt, max, sums);
}

void SimdRowGradient(const float* x, const float* t, const double* w,
                     const RowCoefficients& coef, double scale, int classes, float* dx) {
  HWY_DYNAMIC_DISPATCH(RowGradientImpl)(x, t, w, coef, scale, classes, dx);
}

HWY_EXPORT(SpatialRowSumsImpl);
HWY_EXPORT(SpatialGradientImpl);

int SimdSpatialLanes() {
  static const int lanes = HWY_DYNAMIC_DISPATCH(SpatialLanesImpl)();
  return lanes;
}

bool SimdSpatialRowSums(const float* x, const float* t, const double* w, int64_t inner,
                        const RowOptions& opt, int count, float* max, RowSums* sums) {
  return HWY_DYNAMIC_DISPATCH(SpatialRowSumsImpl)(x, t, w, inner, opt, count, max, sums);
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
