// CPU fast path of TwoWayLoss (see two_way_loss_simd.hpp, which says what
// it computes). Shared vector helpers: xent_simd-inl.h (LaneTotal, Padded,
// StoreFirst) and hard_target_simd-inl.h (targets, widening, exps).
//
// Highway re-includes this file once per x86 target (foreach_target.h) and
// picks the best at run time. The include path below is relative to our
// include/ directory, which is on the include path of every caffe source.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "../src/caffe/layers/two_way_loss_simd.cpp"
#include <hwy/foreach_target.h>  // NOLINT: must come before highway.h

#include <hwy/highway.h>
#include <hwy/contrib/math/math-inl.h>

#include <cstddef>
#include <limits>

#include "two_way_loss_simd.hpp"
#include "xent_simd-inl.h"
#include "hard_target_simd-inl.h"  // after xent_simd-inl.h

HWY_BEFORE_NAMESPACE();
namespace caffe {
namespace xent {
namespace twoway {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
namespace xs = xent::HWY_NAMESPACE;  // xent_simd-inl.h

#if HWY_TARGET != HWY_SCALAR
namespace hs = hard::HWY_NAMESPACE;  // hard_target_simd-inl.h
using hs::DD;
using hs::DF;
using hs::DH;
using hs::Halves;
using hs::HalfMasks;
using hs::Kinds;
using hs::MF;
using hs::VD;
using hs::VF;

/// One vector of elements as both sweeps see it: the targets, the side
/// values v in double halves (-inf outside both sides), the side masks of
/// each half.
struct Elements {
  Kinds k;
  Halves v;
  HalfMasks neg, pos;
};

HWY_INLINE Elements Load(const float* xp, const float* tp, MF live, const hs::Layout& layout,
                         const Options& o) {
  const DF d;
  const DD dd;
  Elements e;
  const VF xv = hn::LoadU(d, xp);
  e.k = hs::Classify(hn::LoadU(d, tp), live, layout);
  e.neg = hs::WidenMask(e.k.neg);
  e.pos = hs::WidenMask(e.k.pos);
  const Halves x = hs::Widen(hn::IfThenElseZero(hn::Or(e.k.neg, e.k.pos), xv));
  const VD neg_factor = hn::Set(dd, o.inv_tn), pos_factor = hn::Set(dd, -o.inv_tp);
  const VD none = hn::Set(dd, -std::numeric_limits<double>::infinity());
  // v = x / Tn on a negative, -x / Tp on a positive (as SideValue).
  e.v.low = hn::IfThenElse(e.neg.low, hn::Mul(x.low, neg_factor),
                           hn::IfThenElse(e.pos.low, hn::Mul(x.low, pos_factor), none));
  e.v.high = hn::IfThenElse(e.neg.high, hn::Mul(x.high, neg_factor),
                            hn::IfThenElse(e.pos.high, hn::Mul(x.high, pos_factor), none));
  return e;
}

/// Shifts and sums of the lines a vector's lanes belong to: a row's (lanes
/// totalled at the end) or one line per lane (columns).
struct LaneSums {
  VD m_neg_low, m_neg_high, m_pos_low, m_pos_high;
  VD neg_low, neg_high, pos_low, pos_high;
  VF negatives, positives, bad, probe;
  HWY_INLINE LaneSums() {
    const DD dd;
    const DF d;
    const VD none = hn::Set(dd, -std::numeric_limits<double>::infinity());
    m_neg_low = m_neg_high = m_pos_low = m_pos_high = none;
    neg_low = neg_high = pos_low = pos_high = hn::Zero(dd);
    negatives = positives = bad = probe = hn::Zero(d);
  }
  /// Sweep 1: the shifts and counts, and a finiteness probe of the kept
  /// scores (x * 0 is NaN exactly for +-inf and NaN).
  HWY_INLINE void Shift(const Elements& e, VF xv) {
    const DF d;
    const VF one = hn::Set(d, 1.0f);
    m_neg_low = hn::Max(m_neg_low, hn::IfThenElse(e.neg.low, e.v.low, m_neg_low));
    m_neg_high = hn::Max(m_neg_high, hn::IfThenElse(e.neg.high, e.v.high, m_neg_high));
    m_pos_low = hn::Max(m_pos_low, hn::IfThenElse(e.pos.low, e.v.low, m_pos_low));
    m_pos_high = hn::Max(m_pos_high, hn::IfThenElse(e.pos.high, e.v.high, m_pos_high));
    negatives = hn::Add(negatives, hn::IfThenElseZero(e.k.neg, one));
    positives = hn::Add(positives, hn::IfThenElseZero(e.k.pos, one));
    bad = hn::Add(bad, hn::IfThenElseZero(e.k.bad, one));
    probe = hn::MulAdd(hn::IfThenElseZero(hn::Or(e.k.neg, e.k.pos), xv), hn::Zero(d), probe);
  }
  HWY_INLINE bool Finite() const { return hn::AllTrue(DF(), hn::Eq(probe, probe)); }
  /// Sweep 2 with the shifts (per lane, or a row's broadcast).
  HWY_INLINE void Sum(const Elements& e, VD mn_low, VD mn_high, VD mp_low, VD mp_high) {
    const VD e_low = hs::ShiftedExp(e.v.low, hn::IfThenElse(e.pos.low, mp_low, mn_low));
    const VD e_high = hs::ShiftedExp(e.v.high, hn::IfThenElse(e.pos.high, mp_high, mn_high));
    neg_low = hn::Add(neg_low, hn::IfThenElseZero(e.neg.low, e_low));
    neg_high = hn::Add(neg_high, hn::IfThenElseZero(e.neg.high, e_high));
    pos_low = hn::Add(pos_low, hn::IfThenElseZero(e.pos.low, e_low));
    pos_high = hn::Add(pos_high, hn::IfThenElseZero(e.pos.high, e_high));
  }
};

bool RowPassImpl(const float* x, const float* t, const Options& o, Shifts* m, LineSums* s) {
  const int C = o.targets.classes;
  if (!hs::VectorLine(C)) return false;
  const DF d;
  const DD dd;
  const hs::Layout row(C, o.targets);
  const xs::Padded<float> x_pad(x + row.full, row.tail), t_pad(t + row.full, row.tail);
  const MF tail = hn::FirstN(d, row.tail);
  LaneSums lanes;
  for (size_t c = 0; c < row.full; c += row.lanes) {
    lanes.Shift(Load(x + c, t + c, row.all, row, o), hn::LoadU(d, x + c));
  }
  if (row.tail) lanes.Shift(Load(x_pad.v, t_pad.v, tail, row, o), hn::LoadU(d, x_pad.v));
  if (!lanes.Finite()) return false;
  const double m_neg = hs::LaneMax(hn::Max(lanes.m_neg_low, lanes.m_neg_high));
  const double m_pos = hs::LaneMax(hn::Max(lanes.m_pos_low, lanes.m_pos_high));
  const VD mn = hn::Set(dd, m_neg), mp = hn::Set(dd, m_pos);
  for (size_t c = 0; c < row.full; c += row.lanes) {
    lanes.Sum(Load(x + c, t + c, row.all, row, o), mn, mn, mp, mp);
  }
  if (row.tail) lanes.Sum(Load(x_pad.v, t_pad.v, tail, row, o), mn, mn, mp, mp);
  m->neg = m_neg;
  m->pos = m_pos;
  s->neg_sum += xs::LaneTotal(hn::Add(lanes.neg_low, lanes.neg_high));
  s->pos_sum += xs::LaneTotal(hn::Add(lanes.pos_low, lanes.pos_high));
  s->negatives += hs::CountTotal(lanes.negatives);
  s->positives += hs::CountTotal(lanes.positives);
  s->invalid += hs::CountTotal(lanes.bad);
  return true;
}

int ColumnLanesImpl() { return static_cast<int>(hn::Lanes(DF())); }

/// Vectors of columns per ColumnPassImpl call, at most (kColumnBlock
/// columns of the narrowest vectors, 4 floats).
const int kMaxColumnVectors = kColumnBlock / 4;

/// Writes the per-lane shifts and sums of one vector of columns into m[0..L)
/// and s[0..L). Lane j is column j: the low half's lanes first, then the
/// high half's.
HWY_INLINE void StoreColumns(const LaneSums& lanes, Shifts* m, LineSums* s) {
  const DD dd;
  const size_t half = hn::Lanes(dd);
  HWY_ALIGN double values[8][hs::kMaxLanes];
  const VD parts[4][2] = {{lanes.m_neg_low, lanes.m_neg_high}, {lanes.m_pos_low, lanes.m_pos_high},
                          {lanes.neg_low, lanes.neg_high},     {lanes.pos_low, lanes.pos_high}};
  for (int k = 0; k < 4; ++k) {
    hn::Store(parts[k][0], dd, values[k]);
    hn::Store(parts[k][1], dd, values[k] + half);
  }
  const VF counts[3] = {lanes.negatives, lanes.positives, lanes.bad};
  for (int k = 0; k < 3; ++k) {
    const Halves h = hs::Widen(counts[k]);
    hn::Store(h.low, dd, values[4 + k]);
    hn::Store(h.high, dd, values[4 + k] + half);
  }
  for (size_t j = 0; j < 2 * half; ++j) {
    m[j].neg = values[0][j];
    m[j].pos = values[1][j];
    s[j].neg_sum += values[2][j];
    s[j].pos_sum += values[3][j];
    s[j].negatives += values[4][j];
    s[j].positives += values[5][j];
    s[j].invalid += values[6][j];
  }
}

bool ColumnPassImpl(const float* x, const float* t, int64_t rows, const Options& o, int first,
                    int count, Shifts* m, LineSums* s) {
  const DF d;
  const int lanes = static_cast<int>(hn::Lanes(d));
  const int vectors = count / lanes;
  if (!hs::VectorLine(rows) || count % lanes != 0 || vectors > kMaxColumnVectors) return false;
  const int64_t C = o.targets.classes;
  const hs::Layout layout(0, o.targets);  // only ignore_label and `all` are used
  // Every row in order, all the block's vectors of columns per row (one
  // contiguous run of `count` floats): each lane's column sums in row order.
  LaneSums sums[kMaxColumnVectors];
  for (int64_t r = 0; r < rows; ++r) {
    for (int v = 0; v < vectors; ++v) {
      const int64_t offset = r * C + first + v * lanes;
      sums[v].Shift(Load(x + offset, t + offset, layout.all, layout, o), hn::LoadU(d, x + offset));
    }
  }
  for (int v = 0; v < vectors; ++v) {
    if (!sums[v].Finite()) return false;
  }
  for (int64_t r = 0; r < rows; ++r) {
    for (int v = 0; v < vectors; ++v) {
      const int64_t offset = r * C + first + v * lanes;
      LaneSums& l = sums[v];
      l.Sum(Load(x + offset, t + offset, layout.all, layout, o), l.m_neg_low, l.m_neg_high,
            l.m_pos_low, l.m_pos_high);
    }
  }
  for (int v = 0; v < vectors; ++v) StoreColumns(sums[v], m + v * lanes, s + v * lanes);
  return true;
}

/// One line's coefficients in lanes (broadcast for a row, per lane for
/// columns), for one double half of a vector.
struct LineShare {
  VD m_neg, inv_neg, m_pos, inv_pos, weight;
};

HWY_INLINE LineShare Broadcast(const LineCoefficients& c) {
  const DD dd;
  LineShare l;
  l.m_neg = hn::Set(dd, c.neg_shift);
  l.inv_neg = hn::Set(dd, c.neg_inv_sum);
  l.m_pos = hn::Set(dd, c.pos_shift);
  l.inv_pos = hn::Set(dd, c.pos_inv_sum);
  l.weight = hn::Set(dd, c.weight);
  return l;
}

/// Lanes [first, first + lanes of a half) of the structure-of-arrays
/// coefficients of `lines` lines.
HWY_INLINE LineShare LoadShare(const double* coefficients, int64_t lines, int64_t first) {
  const DD dd;
  LineShare l;
  l.m_neg = hn::LoadU(dd, coefficients + 0 * lines + first);
  l.inv_neg = hn::LoadU(dd, coefficients + 1 * lines + first);
  l.m_pos = hn::LoadU(dd, coefficients + 2 * lines + first);
  l.inv_pos = hn::LoadU(dd, coefficients + 3 * lines + first);
  l.weight = hn::LoadU(dd, coefficients + 4 * lines + first);
  return l;
}

/// One line's share of d E / d x (SideGradient's scale sigma(a) e^(v - m) / S,
/// before the positives' sign), 0 where the line's weight is 0 or the
/// element is in no set, whatever the exp gave there.
HWY_INLINE VD Share(VD v, hn::Mask<DD> pos, hn::Mask<DD> in_set, const LineShare& l, VD scale) {
  const DD dd;
  const VD e = hs::ShiftedExp(v, hn::IfThenElse(pos, l.m_pos, l.m_neg));
  const VD g = hn::Mul(hn::Mul(hn::Mul(scale, l.weight), hn::IfThenElse(pos, l.inv_pos, l.inv_neg)), e);
  return hn::IfThenElseZero(hn::AndNot(hn::Eq(l.weight, hn::Zero(dd)), in_set), g);
}

bool RowGradientImpl(const float* x, const float* t, const Options& o,
                     const LineCoefficients& row, const double* column_coefficients,
                     double row_scale, double column_scale, float* dx) {
  const int C = o.targets.classes;
  if (!hs::VectorLine(C)) return false;
  const DF d;
  const DH dh;
  const DD dd;
  const size_t half = hn::Lanes(dd);
  const hs::Layout layout(C, o.targets);
  const LineShare row_share = Broadcast(row);
  const VD rs = hn::Set(dd, row_scale), cs = hn::Set(dd, column_scale);
  // One vector of elements; `columns` holds the columns' coefficients (the
  // structure of arrays of `lines` lines) from lane 0.
  auto gradient = [&](const float* xp, const float* tp, MF live, const double* columns,
                      int64_t lines) {
    const Elements e = Load(xp, tp, live, layout, o);
    const auto set_low = hn::Or(e.neg.low, e.pos.low), set_high = hn::Or(e.neg.high, e.pos.high);
    const VD low = hn::Add(Share(e.v.low, e.pos.low, set_low, row_share, rs),
                           Share(e.v.low, e.pos.low, set_low, LoadShare(columns, lines, 0), cs));
    const VD high = hn::Add(Share(e.v.high, e.pos.high, set_high, row_share, rs),
                            Share(e.v.high, e.pos.high, set_high,
                                  LoadShare(columns, lines, static_cast<int64_t>(half)), cs));
    const VD g_low = hn::IfThenElse(e.pos.low, hn::Neg(low), low);
    const VD g_high = hn::IfThenElse(e.pos.high, hn::Neg(high), high);
    return hn::Combine(d, hn::DemoteTo(dh, g_high), hn::DemoteTo(dh, g_low));
  };
  for (size_t c = 0; c < layout.full; c += layout.lanes) {
    hn::StoreU(gradient(x + c, t + c, layout.all, column_coefficients + c, C), d, dx + c);
  }
  if (layout.tail) {
    const size_t n = layout.tail;
    const xs::Padded<float> x_pad(x + layout.full, n), t_pad(t + layout.full, n);
    // The tail's column coefficients, each row padded with 0 (weight 0: no share).
    HWY_ALIGN double tail_columns[kCoefficients * hs::kMaxLanes];
    for (int j = 0; j < kCoefficients; ++j) {
      for (size_t i = 0; i < hs::kMaxLanes; ++i) {
        tail_columns[j * hs::kMaxLanes + i] =
            i < n ? column_coefficients[j * static_cast<int64_t>(C) + layout.full + i] : 0.0;
      }
    }
    xs::StoreFirst(d, gradient(x_pad.v, t_pad.v, hn::FirstN(d, n), tail_columns, hs::kMaxLanes),
                   n, dx + layout.full);
  }
  return true;
}
#else   // HWY_SCALAR: no vector path
bool RowPassImpl(const float*, const float*, const Options&, Shifts*, LineSums*) { return false; }
int ColumnLanesImpl() { return 0; }
bool ColumnPassImpl(const float*, const float*, int64_t, const Options&, int, int, Shifts*,
                    LineSums*) {
  return false;
}
bool RowGradientImpl(const float*, const float*, const Options&, const LineCoefficients&,
                     const double*, double, double, float*) {
  return false;
}
#endif  // HWY_TARGET != HWY_SCALAR

}  // namespace HWY_NAMESPACE
}  // namespace twoway
}  // namespace xent
}  // namespace caffe
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace caffe {
namespace xent {
namespace twoway {

HWY_EXPORT(RowPassImpl);
HWY_EXPORT(ColumnLanesImpl);
HWY_EXPORT(ColumnPassImpl);
HWY_EXPORT(RowGradientImpl);

bool SimdRowPass(const float* x, const float* t, const Options& o, Shifts* m, LineSums* s) {
  return HWY_DYNAMIC_DISPATCH(RowPassImpl)(x, t, o, m, s);
}

int SimdColumnLanes() {
  static const int lanes = HWY_DYNAMIC_DISPATCH(ColumnLanesImpl)();
  return lanes;
}

bool SimdColumnPass(const float* x, const float* t, int64_t rows, const Options& o, int first,
                    int count, Shifts* m, LineSums* s) {
  return HWY_DYNAMIC_DISPATCH(ColumnPassImpl)(x, t, rows, o, first, count, m, s);
}

bool SimdRowGradient(const float* x, const float* t, const Options& o,
                     const LineCoefficients& row, const double* column_coefficients,
                     double row_scale, double column_scale, float* dx) {
  return HWY_DYNAMIC_DISPATCH(RowGradientImpl)(x, t, o, row, column_coefficients, row_scale,
                                               column_scale, dx);
}

}  // namespace twoway
}  // namespace xent
}  // namespace caffe
#endif  // HWY_ONCE
