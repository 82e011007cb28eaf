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

#include <cmath>
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
  /// Sweep 1 of a row, in float: the largest score of the negatives and of
  /// the negated positives (times 1 / T they give the row's shifts exactly
  /// as Shift does: rounding keeps order), the counts and the probe.
  HWY_INLINE void ShiftRow(const Kinds& k, VF xv, VF* max_neg, VF* max_pos) {
    const DF d;
    const VF one = hn::Set(d, 1.0f);
    *max_neg = hn::Max(*max_neg, hn::IfThenElse(k.neg, xv, *max_neg));
    *max_pos = hn::Max(*max_pos, hn::IfThenElse(k.pos, hn::Neg(xv), *max_pos));
    negatives = hn::Add(negatives, hn::IfThenElseZero(k.neg, one));
    positives = hn::Add(positives, hn::IfThenElseZero(k.pos, one));
    bad = hn::Add(bad, hn::IfThenElseZero(k.bad, one));
    probe = hn::MulAdd(hn::IfThenElseZero(hn::Or(k.neg, k.pos), xv), hn::Zero(d), probe);
  }
  HWY_INLINE bool Finite() const { return hn::AllTrue(DF(), hn::Eq(probe, probe)); }
  /// Sweep 2 with the shifts (per lane, or a row's broadcast); returns the
  /// exps e^(v - m) (meaningful in the lanes of a side only).
  HWY_INLINE Halves Sum(const Elements& e, VD mn_low, VD mn_high, VD mp_low, VD mp_high) {
    Halves ex;
    ex.low = hs::ShiftedExp(e.v.low, hn::IfThenElse(e.pos.low, mp_low, mn_low));
    ex.high = hs::ShiftedExp(e.v.high, hn::IfThenElse(e.pos.high, mp_high, mn_high));
    neg_low = hn::Add(neg_low, hn::IfThenElseZero(e.neg.low, ex.low));
    neg_high = hn::Add(neg_high, hn::IfThenElseZero(e.neg.high, ex.high));
    pos_low = hn::Add(pos_low, hn::IfThenElseZero(e.pos.low, ex.low));
    pos_high = hn::Add(pos_high, hn::IfThenElseZero(e.pos.high, ex.high));
    return ex;
  }
};

/// Where a row's shift m of a side exceeds the block's (`shift`), the
/// block's sums of that side in sum[0..C) rescaled by e^(shift - m) (none
/// yet where shift is -inf) and m taken as the shift. Returns the row's
/// factor e^(m - shift) of that side (0 for an empty side).
HWY_INLINE double RaiseShift(double m, int C, double* shift, double* sum) {
  if (m > *shift) {
    if (*shift != -std::numeric_limits<double>::infinity()) {
      const DD dd;
      const size_t half = hn::Lanes(dd);
      const double factor = ShiftFactor(*shift, m);
      const VD f = hn::Set(dd, factor);
      size_t c = 0;
      for (; c + half <= static_cast<size_t>(C); c += half) {
        hn::StoreU(hn::Mul(hn::LoadU(dd, sum + c), f), dd, sum + c);
      }
      for (; c < static_cast<size_t>(C); ++c) sum[c] *= factor;
    }
    *shift = m;
  }
  return ShiftFactor(m, *shift);
}

/// One vector of a row's elements into the block's column sums at ns, ps
/// (a double per lane) and counts at nc, pc: each element's exp e (of its
/// row's shift) times its side's factor e^(m_row - shift).
HWY_INLINE void AddToColumns(const Elements& e, const Halves& ex, const Halves& g_neg,
                             const Halves& g_pos, double* ns, double* ps, float* nc, float* pc) {
  const DF d;
  const DD dd;
  const size_t half = hn::Lanes(dd);
  const VD c_low = hn::Mul(ex.low, hn::IfThenElse(e.pos.low, g_pos.low, g_neg.low));
  const VD c_high = hn::Mul(ex.high, hn::IfThenElse(e.pos.high, g_pos.high, g_neg.high));
  hn::StoreU(hn::Add(hn::LoadU(dd, ns), hn::IfThenElseZero(e.neg.low, c_low)), dd, ns);
  hn::StoreU(hn::Add(hn::LoadU(dd, ns + half), hn::IfThenElseZero(e.neg.high, c_high)), dd,
             ns + half);
  hn::StoreU(hn::Add(hn::LoadU(dd, ps), hn::IfThenElseZero(e.pos.low, c_low)), dd, ps);
  hn::StoreU(hn::Add(hn::LoadU(dd, ps + half), hn::IfThenElseZero(e.pos.high, c_high)), dd,
             ps + half);
  const VF one = hn::Set(d, 1.0f);
  hn::StoreU(hn::Add(hn::LoadU(d, nc), hn::IfThenElseZero(e.k.neg, one)), d, nc);
  hn::StoreU(hn::Add(hn::LoadU(d, pc), hn::IfThenElseZero(e.k.pos, one)), d, pc);
}

/// Sweeps 1 and 2 of one row (RowPassImpl), and with `run` its elements
/// added to a block's column sums (SimdRowAndColumns).
bool RowSweeps(const float* x, const float* t, const Options& o, Shifts* m, LineSums* s,
               ColumnRun* run) {
  const int C = o.targets.classes;
  if (!hs::VectorLine(C)) return false;
  const DF d;
  const DD dd;
  const hs::Layout row(C, o.targets);
  const xs::Padded<float> x_pad(x + row.full, row.tail), t_pad(t + row.full, row.tail);
  const MF tail = hn::FirstN(d, row.tail);
  LaneSums lanes;
  VF max_neg = hn::Set(d, -std::numeric_limits<float>::infinity()), max_pos = max_neg;
  for (size_t c = 0; c < row.full; c += row.lanes) {
    lanes.ShiftRow(hs::Classify(hn::LoadU(d, t + c), row.all, row), hn::LoadU(d, x + c),
                   &max_neg, &max_pos);
  }
  if (row.tail) {
    lanes.ShiftRow(hs::Classify(hn::LoadU(d, t_pad.v), tail, row), hn::LoadU(d, x_pad.v),
                   &max_neg, &max_pos);
  }
  if (!lanes.Finite()) return false;
  // As SideValue: x / Tn of the largest negative, -x / Tp of the smallest
  // positive (-inf for an empty side).
  const double m_neg = static_cast<double>(hs::LaneMax(max_neg)) * o.inv_tn;
  const double m_pos = static_cast<double>(hs::LaneMax(max_pos)) * o.inv_tp;
  const VD mn = hn::Set(dd, m_neg), mp = hn::Set(dd, m_pos);
  if (run == nullptr) {
    for (size_t c = 0; c < row.full; c += row.lanes) {
      lanes.Sum(Load(x + c, t + c, row.all, row, o), mn, mn, mp, mp);
    }
    if (row.tail) lanes.Sum(Load(x_pad.v, t_pad.v, tail, row, o), mn, mn, mp, mp);
  } else {
    Halves gn, gp;
    gn.low = gn.high = hn::Set(dd, RaiseShift(m_neg, C, &run->neg_shift, run->neg_sum));
    gp.low = gp.high = hn::Set(dd, RaiseShift(m_pos, C, &run->pos_shift, run->pos_sum));
    for (size_t c = 0; c < row.full; c += row.lanes) {
      const Elements e = Load(x + c, t + c, row.all, row, o);
      AddToColumns(e, lanes.Sum(e, mn, mn, mp, mp), gn, gp, run->neg_sum + c, run->pos_sum + c,
                   run->negatives + c, run->positives + c);
    }
    if (row.tail) {
      // The tail's column sums and counts through padded copies.
      const size_t n = row.tail;
      HWY_ALIGN double sums[2][hs::kMaxLanes];
      HWY_ALIGN float counts[2][hs::kMaxLanes];
      for (size_t i = 0; i < hs::kMaxLanes; ++i) {
        sums[0][i] = i < n ? run->neg_sum[row.full + i] : 0.0;
        sums[1][i] = i < n ? run->pos_sum[row.full + i] : 0.0;
        counts[0][i] = i < n ? run->negatives[row.full + i] : 0.0f;
        counts[1][i] = i < n ? run->positives[row.full + i] : 0.0f;
      }
      const Elements e = Load(x_pad.v, t_pad.v, tail, row, o);
      AddToColumns(e, lanes.Sum(e, mn, mn, mp, mp), gn, gp, sums[0], sums[1], counts[0],
                   counts[1]);
      for (size_t i = 0; i < n; ++i) {
        run->neg_sum[row.full + i] = sums[0][i];
        run->pos_sum[row.full + i] = sums[1][i];
        run->negatives[row.full + i] = counts[0][i];
        run->positives[row.full + i] = counts[1][i];
      }
    }
  }
  m->neg = m_neg;
  m->pos = m_pos;
  s->neg_sum += xs::LaneTotal(hn::Add(lanes.neg_low, lanes.neg_high));
  s->pos_sum += xs::LaneTotal(hn::Add(lanes.pos_low, lanes.pos_high));
  s->negatives += hs::CountTotal(lanes.negatives);
  s->positives += hs::CountTotal(lanes.positives);
  s->invalid += hs::CountTotal(lanes.bad);
  return true;
}

bool RowPassImpl(const float* x, const float* t, const Options& o, Shifts* m, LineSums* s) {
  return RowSweeps(x, t, o, m, s, nullptr);
}

bool RowAndColumnsImpl(const float* x, const float* t, const Options& o, Shifts* m, LineSums* s,
                       ColumnRun* run) {
  return RowSweeps(x, t, o, m, s, run);
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

/// A row's terms of one side in lanes, where the columns share their
/// shifts: its shift m, its own share a (row_scale sigma(a_r) / S_r, minus
/// for the positives) and its factor f = e^(m - shift).
struct SideTerms {
  VD m, a, f;
};

/// One double half of d E / d x where the columns share their shifts:
/// e^(v - m) (a + f b) with the element's side's terms and its column's
/// share b; 0 outside both sides, whatever the exp gave there.
HWY_INLINE VD SharedGradient(VD v, hn::Mask<DD> is_neg, hn::Mask<DD> is_pos, const SideTerms& neg,
                             const SideTerms& pos, VD b_neg, VD b_pos) {
  const VD ex = hs::ShiftedExp(v, hn::IfThenElse(is_pos, pos.m, neg.m));
  const VD share = hn::IfThenElse(is_pos, hn::MulAdd(pos.f, b_pos, pos.a),
                                  hn::MulAdd(neg.f, b_neg, neg.a));
  return hn::IfThenElseZero(hn::Or(is_neg, is_pos), hn::Mul(ex, share));
}

bool RowGradientSharedImpl(const float* x, const float* t, const Options& o,
                           const LineCoefficients& row, const Shifts& column_shift,
                           const double* column_shares, double row_scale, float* dx) {
  const int C = o.targets.classes;
  if (!hs::VectorLine(C)) return false;
  const DF d;
  const DH dh;
  const DD dd;
  const size_t half = hn::Lanes(dd);
  const hs::Layout layout(C, o.targets);
  // The row's own share of each side (0 where its weight is 0) and its
  // factors e^(m_row - shift) (0 for an empty side).
  const double rw = row_scale * row.weight;
  SideTerms neg_terms, pos_terms;
  neg_terms.m = hn::Set(dd, row.neg_shift);
  pos_terms.m = hn::Set(dd, row.pos_shift);
  neg_terms.a = hn::Set(dd, row.weight == 0.0 ? 0.0 : rw * row.neg_inv_sum);
  pos_terms.a = hn::Set(dd, row.weight == 0.0 ? 0.0 : -(rw * row.pos_inv_sum));
  neg_terms.f = hn::Set(dd, ShiftFactor(row.neg_shift, column_shift.neg));
  pos_terms.f = hn::Set(dd, ShiftFactor(row.pos_shift, column_shift.pos));
  // One vector of elements; the columns' shares from `neg` and `pos`.
  auto gradient = [&](const float* xp, const float* tp, MF live, const double* neg,
                      const double* pos) {
    const Elements e = Load(xp, tp, live, layout, o);
    const VD low = SharedGradient(e.v.low, e.neg.low, e.pos.low, neg_terms, pos_terms,
                                  hn::LoadU(dd, neg), hn::LoadU(dd, pos));
    const VD high = SharedGradient(e.v.high, e.neg.high, e.pos.high, neg_terms, pos_terms,
                                   hn::LoadU(dd, neg + half), hn::LoadU(dd, pos + half));
    return hn::Combine(d, hn::DemoteTo(dh, high), hn::DemoteTo(dh, low));
  };
  for (size_t c = 0; c < layout.full; c += layout.lanes) {
    hn::StoreU(gradient(x + c, t + c, layout.all, column_shares + c, column_shares + C + c), d,
               dx + c);
  }
  if (layout.tail) {
    const size_t n = layout.tail;
    const xs::Padded<float> x_pad(x + layout.full, n), t_pad(t + layout.full, n);
    HWY_ALIGN double shares[2][hs::kMaxLanes];
    for (size_t i = 0; i < hs::kMaxLanes; ++i) {
      shares[0][i] = i < n ? column_shares[layout.full + i] : 0.0;
      shares[1][i] = i < n ? column_shares[C + layout.full + i] : 0.0;
    }
    xs::StoreFirst(d, gradient(x_pad.v, t_pad.v, hn::FirstN(d, n), shares[0], shares[1]), n,
                   dx + layout.full);
  }
  return true;
}
/// Whether a tile of n rows fits this target's vectors and a TileRun's
/// kTileLanes lanes (wider vectors than that take the scalar path).
HWY_INLINE bool TileFits(int n) {
  const size_t lanes = hn::Lanes(DF());
  return n > 0 && static_cast<size_t>(n) <= lanes && lanes <= static_cast<size_t>(kTileLanes);
}

HWY_INLINE Halves LoadHalves(const double* p) {
  const DD dd;
  Halves h;
  h.low = hn::LoadU(dd, p);
  h.high = hn::LoadU(dd, p + hn::Lanes(dd));
  return h;
}

HWY_INLINE void StoreHalves(const Halves& h, double* p) {
  const DD dd;
  hn::StoreU(h.low, dd, p);
  hn::StoreU(h.high, dd, p + hn::Lanes(dd));
}

/// The shifts m (per lane) of one side taken into a tile's running shifts
/// `shift` (kTileLanes doubles): lanes whose shift rises have their sums
/// of that side (C classes of kTileLanes lanes) rescaled by e^(old - new)
/// first. Returns e^(m - shift) per lane (0 for an empty side).
HWY_INLINE Halves RaiseTileShift(const Halves& m, int C, double* shift, double* sums) {
  const DD dd;
  const VD none = hn::Set(dd, -std::numeric_limits<double>::infinity());
  const Halves old = LoadHalves(shift);
  Halves raised;
  raised.low = hn::Max(old.low, m.low);
  raised.high = hn::Max(old.high, m.high);
  const auto up_low = hn::AndNot(hn::Eq(old.low, none), hn::Gt(m.low, old.low));
  const auto up_high = hn::AndNot(hn::Eq(old.high, none), hn::Gt(m.high, old.high));
  if (!hn::AllFalse(dd, hn::Or(up_low, up_high))) {
    const VD one = hn::Set(dd, 1.0);
    Halves f;
    f.low = hn::IfThenElse(up_low, hs::ShiftedExp(old.low, raised.low), one);
    f.high = hn::IfThenElse(up_high, hs::ShiftedExp(old.high, raised.high), one);
    for (int c = 0; c < C; ++c) {
      Halves v = LoadHalves(sums + c * kTileLanes);
      v.low = hn::Mul(v.low, f.low);
      v.high = hn::Mul(v.high, f.high);
      StoreHalves(v, sums + c * kTileLanes);
    }
  }
  StoreHalves(raised, shift);
  Halves g;
  g.low = hn::IfThenElseZero(hn::Gt(m.low, none), hs::ShiftedExp(m.low, raised.low));
  g.high = hn::IfThenElseZero(hn::Gt(m.high, none), hs::ShiftedExp(m.high, raised.high));
  return g;
}

/// A tile's n floats of class c (row l at base[c * inner + l]), through a
/// padded copy where n is short of a vector.
HWY_INLINE const float* TileClass(const float* base, int64_t c, int64_t inner, int n,
                                  float* pad) {
  const float* p = base + c * inner;
  if (static_cast<size_t>(n) == hn::Lanes(DF())) return p;
  for (size_t l = 0; l < hs::kMaxLanes; ++l) pad[l] = l < static_cast<size_t>(n) ? p[l] : 0.0f;
  return pad;
}

bool TileAndColumnsImpl(const float* x, const float* t, int64_t inner, int n, const Options& o,
                        Shifts* m, LineSums* s, TileRun* run) {
  const int C = o.targets.classes;
  const DF d;
  const DD dd;
  if (!TileFits(n) || !hs::VectorLine(C)) return false;
  const hs::Layout layout(0, o.targets);  // only ignore_label is used
  const MF live = hn::FirstN(d, n);
  HWY_ALIGN float x_pad[hs::kMaxLanes], t_pad[hs::kMaxLanes];
  // Sweep 1, in float (as RowSweeps).
  LaneSums lanes;
  VF max_neg = hn::Set(d, -std::numeric_limits<float>::infinity()), max_pos = max_neg;
  for (int c = 0; c < C; ++c) {
    const VF xv = hn::LoadU(d, TileClass(x, c, inner, n, x_pad));
    lanes.ShiftRow(hs::Classify(hn::LoadU(d, TileClass(t, c, inner, n, t_pad)), live, layout), xv,
                   &max_neg, &max_pos);
  }
  if (!lanes.Finite()) return false;
  Halves mn = hs::Widen(max_neg), mp = hs::Widen(max_pos);
  mn.low = hn::Mul(mn.low, hn::Set(dd, o.inv_tn));
  mn.high = hn::Mul(mn.high, hn::Set(dd, o.inv_tn));
  mp.low = hn::Mul(mp.low, hn::Set(dd, o.inv_tp));
  mp.high = hn::Mul(mp.high, hn::Set(dd, o.inv_tp));
  double* neg_sums = run->sums;
  double* pos_sums = run->sums + static_cast<int64_t>(C) * kTileLanes;
  const Halves gn = RaiseTileShift(mn, C, run->shifts, neg_sums);
  const Halves gp = RaiseTileShift(mp, C, run->shifts + kTileLanes, pos_sums);
  // Sweep 2: each row's sums per lane, each class's sums per lane.
  for (int c = 0; c < C; ++c) {
    const Elements e = Load(TileClass(x, c, inner, n, x_pad), TileClass(t, c, inner, n, t_pad),
                            live, layout, o);
    const int64_t at = static_cast<int64_t>(c) * kTileLanes;
    AddToColumns(e, lanes.Sum(e, mn.low, mn.high, mp.low, mp.high), gn, gp, neg_sums + at,
                 pos_sums + at, run->counts + at, run->counts + C * kTileLanes + at);
  }
  lanes.m_neg_low = mn.low;
  lanes.m_neg_high = mn.high;
  lanes.m_pos_low = mp.low;
  lanes.m_pos_high = mp.high;
  Shifts shifts[hs::kMaxLanes];
  LineSums sums[hs::kMaxLanes];
  for (size_t l = 0; l < hs::kMaxLanes; ++l) sums[l] = ZeroSums();
  StoreColumns(lanes, shifts, sums);
  for (int l = 0; l < n; ++l) {
    m[l] = shifts[l];
    s[l].neg_sum += sums[l].neg_sum;
    s[l].pos_sum += sums[l].pos_sum;
    s[l].negatives += sums[l].negatives;
    s[l].positives += sums[l].positives;
    s[l].invalid += sums[l].invalid;
  }
  return true;
}

bool TileGradientSharedImpl(const float* x, const float* t, int64_t inner, int n,
                            const Options& o, const double* row_coefficients, int64_t rows,
                            const Shifts& column_shift, const double* column_shares,
                            double row_scale, float* dx) {
  const int C = o.targets.classes;
  const DF d;
  const DH dh;
  const DD dd;
  if (!TileFits(n) || !hs::VectorLine(C)) return false;
  const hs::Layout layout(0, o.targets);
  const MF live = hn::FirstN(d, n);
  // The rows' coefficients in lanes (lanes past n: weight 0, shifts 0).
  HWY_ALIGN double coef[kCoefficients][hs::kMaxLanes];
  for (int j = 0; j < kCoefficients; ++j) {
    for (size_t l = 0; l < hs::kMaxLanes; ++l) {
      coef[j][l] = l < static_cast<size_t>(n) ? row_coefficients[j * rows + l] : 0.0;
    }
  }
  const VD none = hn::Set(dd, -std::numeric_limits<double>::infinity());
  const VD zero = hn::Zero(dd);
  SideTerms neg_terms[2], pos_terms[2];  // of the low and the high half
  for (int h = 0; h < 2; ++h) {
    const size_t at = h * hn::Lanes(dd);
    SideTerms& neg = neg_terms[h];
    SideTerms& pos = pos_terms[h];
    neg.m = hn::LoadU(dd, coef[0] + at);
    pos.m = hn::LoadU(dd, coef[2] + at);
    const VD w = hn::Mul(hn::Set(dd, row_scale), hn::LoadU(dd, coef[4] + at));
    const auto weightless = hn::Eq(hn::LoadU(dd, coef[4] + at), zero);
    neg.a = hn::IfThenZeroElse(weightless, hn::Mul(w, hn::LoadU(dd, coef[1] + at)));
    pos.a = hn::IfThenZeroElse(weightless, hn::Neg(hn::Mul(w, hn::LoadU(dd, coef[3] + at))));
    neg.f = hn::IfThenZeroElse(hn::Eq(neg.m, none),
                               hs::ShiftedExp(neg.m, hn::Set(dd, column_shift.neg)));
    pos.f = hn::IfThenZeroElse(hn::Eq(pos.m, none),
                               hs::ShiftedExp(pos.m, hn::Set(dd, column_shift.pos)));
  }
  HWY_ALIGN float x_pad[hs::kMaxLanes], t_pad[hs::kMaxLanes];
  for (int c = 0; c < C; ++c) {
    const Elements e = Load(TileClass(x, c, inner, n, x_pad), TileClass(t, c, inner, n, t_pad),
                            live, layout, o);
    const VD b_neg = hn::Set(dd, column_shares[c]), b_pos = hn::Set(dd, column_shares[C + c]);
    const VD low = SharedGradient(e.v.low, e.neg.low, e.pos.low, neg_terms[0], pos_terms[0],
                                  b_neg, b_pos);
    const VD high = SharedGradient(e.v.high, e.neg.high, e.pos.high, neg_terms[1],
                                   pos_terms[1], b_neg, b_pos);
    const VF g = hn::Combine(d, hn::DemoteTo(dh, high), hn::DemoteTo(dh, low));
    if (static_cast<size_t>(n) == hn::Lanes(d)) {
      hn::StoreU(g, d, dx + c * inner);
    } else {
      xs::StoreFirst(d, g, n, dx + c * inner);
    }
  }
  return true;
}
#else   // HWY_SCALAR: no vector path
bool RowPassImpl(const float*, const float*, const Options&, Shifts*, LineSums*) { return false; }
bool RowAndColumnsImpl(const float*, const float*, const Options&, Shifts*, LineSums*,
                       ColumnRun*) {
  return false;
}
bool RowGradientSharedImpl(const float*, const float*, const Options&, const LineCoefficients&,
                           const Shifts&, const double*, double, float*) {
  return false;
}
bool TileAndColumnsImpl(const float*, const float*, int64_t, int, const Options&, Shifts*,
                        LineSums*, TileRun*) {
  return false;
}
bool TileGradientSharedImpl(const float*, const float*, int64_t, int, const Options&,
                            const double*, int64_t, const Shifts&, const double*, double, float*) {
  return false;
}
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
HWY_EXPORT(RowAndColumnsImpl);
HWY_EXPORT(RowGradientSharedImpl);
HWY_EXPORT(TileAndColumnsImpl);
HWY_EXPORT(TileGradientSharedImpl);

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

bool SimdRowAndColumns(const float* x, const float* t, const Options& o, Shifts* m, LineSums* s,
                       ColumnRun* run) {
  return HWY_DYNAMIC_DISPATCH(RowAndColumnsImpl)(x, t, o, m, s, run);
}

bool SimdRowGradientShared(const float* x, const float* t, const Options& o,
                           const LineCoefficients& row, const Shifts& column_shift,
                           const double* column_shares, double row_scale, float* dx) {
  return HWY_DYNAMIC_DISPATCH(RowGradientSharedImpl)(x, t, o, row, column_shift, column_shares,
                                                     row_scale, dx);
}

bool SimdTileAndColumns(const float* x, const float* t, int64_t inner, int n, const Options& o,
                        Shifts* m, LineSums* s, TileRun* run) {
  return HWY_DYNAMIC_DISPATCH(TileAndColumnsImpl)(x, t, inner, n, o, m, s, run);
}

bool SimdTileGradientShared(const float* x, const float* t, int64_t inner, int n,
                            const Options& o, const double* row_coefficients, int64_t rows,
                            const Shifts& column_shift, const double* column_shares,
                            double row_scale, float* dx) {
  return HWY_DYNAMIC_DISPATCH(TileGradientSharedImpl)(x, t, inner, n, o, row_coefficients, rows,
                                                      column_shift, column_shares, row_scale, dx);
}

}  // namespace twoway
}  // namespace xent
}  // namespace caffe
#endif  // HWY_ONCE
