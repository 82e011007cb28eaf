// CPU fast path of ZLPRLoss (see zlpr_loss_simd.hpp, which says what it
// computes and where each formula lives). What the SIMD files share (LaneTotal,
// Padded, StoreFirst) is in xent_simd-inl.h.
//
// Highway re-includes this file once per x86 target (foreach_target.h) and
// picks the best at run time. The include path below is relative to our
// include/ directory, which is on the include path of every caffe source.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "../src/caffe/layers/zlpr_loss_simd.cpp"
#include <hwy/foreach_target.h>  // NOLINT: must come before highway.h

#include <hwy/highway.h>
#include <hwy/contrib/math/math-inl.h>

#include <cstddef>
#include <limits>

#include "xent_simd-inl.h"
#include "hard_target_simd-inl.h"  // after xent_simd-inl.h
#include "zlpr_loss_simd.hpp"

HWY_BEFORE_NAMESPACE();
namespace caffe {
namespace xent {
namespace zlpr {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

namespace xs = xent::HWY_NAMESPACE;  // xent_simd-inl.h

#if HWY_TARGET != HWY_SCALAR
namespace hs = hard::HWY_NAMESPACE;  // hard_target_simd-inl.h
using hs::DD;
using hs::DF;
using hs::DH;
using hs::Kinds;
using hs::MD;
using hs::MF;
using hs::VD;
using hs::VF;

/// The lanes' values v (x on a negative, -x on a positive, -FLT_MAX
/// elsewhere: no term) and shifts (m_neg or m_pos), and the positives as a
/// double mask of each half.
struct Selected {
  VD v_low, v_high, m_low, m_high;
  MD pos_low, pos_high;
};

HWY_INLINE Selected Select(VF xv, const Kinds& k, VF m_neg, VF m_pos) {
  const DF d;
  VF v = hn::IfThenElse(k.pos, hn::Neg(xv), xv);
  v = hn::IfThenElse(hn::Or(k.neg, k.pos), v, hn::Set(d, -std::numeric_limits<float>::max()));
  const hs::Halves vh = hs::Widen(v);
  const hs::Halves mh = hs::Widen(hn::IfThenElse(k.pos, m_pos, m_neg));
  const hs::HalfMasks pos = hs::WidenMask(k.pos);
  Selected s;
  s.v_low = vh.low;
  s.v_high = vh.high;
  s.m_low = mh.low;
  s.m_high = mh.high;
  s.pos_low = pos.low;
  s.pos_high = pos.high;
  return s;
}

/// Pass 1a in lanes (a lane is a slice of a row, or a row): the shifts
/// m = max(0, max_side v) as AccumulateShift takes them (a larger value
/// replaces the shift: never -0 for +0), the counts of kept and invalid
/// elements, and a finiteness probe of the kept scores (x * 0 is NaN exactly
/// for +-inf and NaN).
struct Shifts {
  VF neg, pos, probe, kept, bad;
  HWY_INLINE Shifts()
      : neg(hn::Zero(DF())), pos(neg), probe(neg), kept(neg), bad(neg) {}
  HWY_INLINE void Add(VF xv, const Kinds& k) {
    const DF d;
    const MF in_set = hn::Or(k.neg, k.pos);
    const VF v_neg = hn::IfThenElseZero(k.neg, xv);
    const VF v_pos = hn::IfThenElseZero(k.pos, hn::Neg(xv));
    neg = hn::IfThenElse(hn::Gt(v_neg, neg), v_neg, neg);
    pos = hn::IfThenElse(hn::Gt(v_pos, pos), v_pos, pos);
    probe = hn::MulAdd(hn::IfThenElseZero(in_set, xv), hn::Zero(d), probe);
    kept = hn::Add(kept, hn::IfThenElseZero(in_set, hn::Set(d, 1.0f)));
    bad = hn::Add(bad, hn::IfThenElseZero(k.bad, hn::Set(d, 1.0f)));
  }
  /// The lanes whose kept scores are all finite.
  HWY_INLINE MF Finite() const { return hn::Eq(probe, probe); }
};

/// Pass 1b in lanes: each side's sum of e^(v - m), in double halves, one
/// term per element in the order of the calls (elements outside a side add
/// +0, which changes no sum).
struct SideSums {
  VD neg_low, neg_high, pos_low, pos_high;
  HWY_INLINE SideSums()
      : neg_low(hn::Zero(DD())), neg_high(neg_low), pos_low(neg_low), pos_high(neg_low) {}
  HWY_INLINE void Add(VF xv, const Kinds& k, VF m_neg, VF m_pos) {
    const Selected s = Select(xv, k, m_neg, m_pos);
    const VD e_low = hs::ShiftedExp(s.v_low, s.m_low);
    const VD e_high = hs::ShiftedExp(s.v_high, s.m_high);
    neg_low = hn::Add(neg_low, hn::IfThenZeroElse(s.pos_low, e_low));
    neg_high = hn::Add(neg_high, hn::IfThenZeroElse(s.pos_high, e_high));
    pos_low = hn::Add(pos_low, hn::IfThenElseZero(s.pos_low, e_low));
    pos_high = hn::Add(pos_high, hn::IfThenElseZero(s.pos_high, e_high));
  }
};

/// Pass 2 in lanes: ElementGradient's value, SideGradient's (scale / S) e,
/// from each lane's shifts (floats) and factors scale / S of each side
/// (k_pos negated: a positive's gradient is the negation), in double
/// halves, rounded once to float; exactly 0 outside both sets.
HWY_INLINE VF Gradient(VF xv, const Kinds& k, VF m_neg, VF m_pos, const hs::Halves& k_neg,
                       const hs::Halves& k_pos) {
  const DF d;
  const DH dh;
  const Selected s = Select(xv, k, m_neg, m_pos);
  const VD g_low = hn::Mul(hn::IfThenElse(s.pos_low, k_pos.low, k_neg.low),
                           hs::ShiftedExp(s.v_low, s.m_low));
  const VD g_high = hn::Mul(hn::IfThenElse(s.pos_high, k_pos.high, k_neg.high),
                            hs::ShiftedExp(s.v_high, s.m_high));
  return hn::IfThenElseZero(hn::Or(k.neg, k.pos),
                            hn::Combine(d, hn::DemoteTo(dh, g_high), hn::DemoteTo(dh, g_low)));
}

HWY_INLINE hs::Halves Broadcast(double value) {
  const hs::Halves h = {hn::Set(DD(), value), hn::Set(DD(), value)};
  return h;
}

bool RowSumsImpl(const float* x, const float* t, const RowOptions& opt, RowShifts<float>* shifts,
                 RowSums* sums) {
  if (!hs::VectorLine(opt.classes)) return false;
  const DF d;
  const hs::Layout row(opt.classes, opt);
  const size_t lanes = row.lanes, full = row.full, tail = row.tail;
  const xs::Padded<float> x_pad(x + full, tail), t_pad(t + full, tail);

  // Sweep 1: the shifts, the counts and the finiteness probe.
  Shifts m;
  auto sweep1 = [&](const float* xp, const float* tp, MF live) {
    m.Add(hn::LoadU(d, xp), hs::Classify(hn::LoadU(d, tp), live, row));
  };
  for (size_t c = 0; c < full; c += lanes) sweep1(x + c, t + c, row.all);
  if (tail) sweep1(x_pad.v, t_pad.v, hn::FirstN(d, tail));
  if (!hn::AllTrue(d, m.Finite())) return false;
  const float neg_shift = hs::LaneMax(m.neg), pos_shift = hs::LaneMax(m.pos);

  // Sweep 2: each side's sum of e^(v - m).
  const VF vm_neg = hn::Set(d, neg_shift), vm_pos = hn::Set(d, pos_shift);
  SideSums e;
  auto sweep2 = [&](const float* xp, const float* tp, MF live) {
    e.Add(hn::LoadU(d, xp), hs::Classify(hn::LoadU(d, tp), live, row), vm_neg, vm_pos);
  };
  for (size_t c = 0; c < full; c += lanes) sweep2(x + c, t + c, row.all);
  if (tail) sweep2(x_pad.v, t_pad.v, hn::FirstN(d, tail));

  shifts->neg = neg_shift;
  shifts->pos = pos_shift;
  sums->neg_sum += xs::LaneTotal(hn::Add(e.neg_low, e.neg_high));
  sums->pos_sum += xs::LaneTotal(hn::Add(e.pos_low, e.pos_high));
  sums->kept += hs::CountTotal(m.kept);
  sums->invalid += hs::CountTotal(m.bad);
  return true;
}

bool RowGradientImpl(const float* x, const float* t, const RowOptions& opt,
                     const RowCoefficients& coef, double scale, float* dx) {
  if (!hs::VectorLine(opt.classes)) return false;
  const DF d;
  const hs::Layout row(opt.classes, opt);
  const size_t lanes = row.lanes, full = row.full, tail = row.tail;
  const VF vm_neg = hn::Set(d, static_cast<float>(coef.neg_shift));
  const VF vm_pos = hn::Set(d, static_cast<float>(coef.pos_shift));
  // SideGradient's scale / S per side.
  const hs::Halves k_neg = Broadcast(scale * coef.neg_inv_sum);
  const hs::Halves k_pos = Broadcast(-(scale * coef.pos_inv_sum));
  auto gradient = [&](const float* xp, const float* tp, MF live) {
    const Kinds k = hs::Classify(hn::LoadU(d, tp), live, row);
    return Gradient(hn::LoadU(d, xp), k, vm_neg, vm_pos, k_neg, k_pos);
  };
  for (size_t c = 0; c < full; c += lanes) hn::StoreU(gradient(x + c, t + c, row.all), d, dx + c);
  if (tail) {
    const xs::Padded<float> x_pad(x + full, tail), t_pad(t + full, tail);
    xs::StoreFirst(d, gradient(x_pad.v, t_pad.v, hn::FirstN(d, tail)), tail, dx + full);
  }
  return true;
}

// ---- spatial maps: a lane is a row ------------------------------------------

/// Where one vector of neighbouring rows (rows j0 .. j0 + count of a tile or
/// block) reads class c: straight from the map when the vector is full, from
/// padded copies (extra lanes in neither set) for the last rows.
struct RowVector {
  const float* x;
  const float* t;
  int64_t inner;
  size_t count;
  MF live;
  HWY_INLINE void Load(int c, VF* xv, VF* tv) const {
    const DF d;
    const float* xc = x + c * inner;
    const float* tc = t + c * inner;
    if (count == hn::Lanes(d)) {
      *xv = hn::LoadU(d, xc);
      *tv = hn::LoadU(d, tc);
    } else {
      const xs::Padded<float> x_pad(xc, count), t_pad(tc, count);
      *xv = hn::Load(d, x_pad.v);
      *tv = hn::Load(d, t_pad.v);
    }
  }
};

/// `count` lanes of a double vector's two halves, from `src` (padded copies
/// where count is short of a vector).
HWY_INLINE hs::Halves LoadHalves(const double* src, size_t count) {
  const DD dd;
  const size_t half = hn::Lanes(dd);
  if (count == 2 * half) {
    const hs::Halves h = {hn::LoadU(dd, src), hn::LoadU(dd, src + half)};
    return h;
  }
  const xs::Padded<double, hs::kMaxLanes> pad(src, count);
  const hs::Halves h = {hn::LoadU(dd, pad.v), hn::LoadU(dd, pad.v + half)};
  return h;
}

/// The rows of one vector among `count` lanes where `ok` holds, as a set.
HWY_INLINE TileRows LaneSet(MF ok, size_t count) {
  const DF d;
  HWY_ALIGN float lanes[hs::kMaxLanes];
  hn::Store(hn::IfThenElseZero(ok, hn::Set(d, 1.0f)), d, lanes);
  TileRows set = 0;
  for (size_t i = 0; i < count; ++i) set |= static_cast<TileRows>(lanes[i] != 0.0f) << i;
  return set;
}

/// Pass 1 of one vector of rows: both sweeps over the classes, then each
/// row with finite kept scores stored.
TileRows VectorSums(const RowVector& rv, const hs::Layout& layout, int classes,
                    RowShifts<float>* shifts, RowSums* sums) {
  const DF d;
  const DD dd;
  Shifts m;
  VF xv, tv;
  for (int c = 0; c < classes; ++c) {
    rv.Load(c, &xv, &tv);
    m.Add(xv, hs::Classify(tv, rv.live, layout));
  }
  const TileRows finite = LaneSet(m.Finite(), rv.count);
  if (finite == 0) return 0;
  SideSums e;
  for (int c = 0; c < classes; ++c) {
    rv.Load(c, &xv, &tv);
    e.Add(xv, hs::Classify(tv, rv.live, layout), m.neg, m.pos);
  }
  const size_t half = hn::Lanes(dd);
  HWY_ALIGN float m_neg[hs::kMaxLanes], m_pos[hs::kMaxLanes], kept[hs::kMaxLanes],
      bad[hs::kMaxLanes];
  HWY_ALIGN double neg_sum[hs::kMaxLanes], pos_sum[hs::kMaxLanes];
  hn::Store(m.neg, d, m_neg);
  hn::Store(m.pos, d, m_pos);
  hn::Store(m.kept, d, kept);
  hn::Store(m.bad, d, bad);
  hn::Store(e.neg_low, dd, neg_sum);
  hn::Store(e.neg_high, dd, neg_sum + half);
  hn::Store(e.pos_low, dd, pos_sum);
  hn::Store(e.pos_high, dd, pos_sum + half);
  for (size_t i = 0; i < rv.count; ++i) {
    if (!(finite >> i & 1)) continue;
    shifts[i].neg = m_neg[i];
    shifts[i].pos = m_pos[i];
    sums[i].neg_sum = neg_sum[i];
    sums[i].pos_sum = pos_sum[i];
    sums[i].kept = kept[i];
    sums[i].invalid = bad[i];
  }
  return finite;
}

TileRows TileSumsImpl(const float* x, const float* t, int64_t inner, int n,
                      const RowOptions& opt, RowShifts<float>* shifts, RowSums* sums) {
  if (!hs::VectorLine(opt.classes)) return 0;
  const DF d;
  const hs::Layout layout(n, opt);
  TileRows done = 0;
  for (size_t j = 0; j < static_cast<size_t>(n); j += layout.lanes) {
    const size_t count = j < layout.full ? layout.lanes : layout.tail;
    const RowVector rv = {x + j, t + j, inner, count, hn::FirstN(d, count)};
    done |= VectorSums(rv, layout, opt.classes, shifts + j, sums + j) << j;
  }
  return done;
}

/// What pass 2 needs of each row of a block, in the block's row order: the
/// shifts as floats, SideGradient's factors scale / S of each side (the
/// positives' negated: their gradient is the negation), and per vector of
/// rows the rows whose shifts are finite.
struct BlockFactors {
  HWY_ALIGN float m_neg[kGradientRows];
  HWY_ALIGN float m_pos[kGradientRows];
  HWY_ALIGN double k_neg[kGradientRows];
  HWY_ALIGN double k_pos[kGradientRows];
  TileRows finite[kGradientRows / 4];  // per vector of rows: 4 lanes or more
};
static_assert(hn::MaxLanes(DF()) >= 4, "BlockFactors::finite has a set per 4 rows");

/// The factors of one vector of `count` rows, rows first .. of `rows`,
/// stored at f's rows j ..; returns the rows with finite shifts (the others
/// are left to the scalar loop).
TileRows VectorFactors(size_t count, const double* coefficients, int64_t first, int64_t rows,
                       double scale, const float* row_diff, size_t j, BlockFactors* f) {
  const DF d;
  const DH dh;
  const DD dd;
  const size_t half = hn::Lanes(dd);
  const hs::Halves m_neg = LoadHalves(coefficients + 0 * rows + first, count);
  const hs::Halves inv_neg = LoadHalves(coefficients + 1 * rows + first, count);
  const hs::Halves m_pos = LoadHalves(coefficients + 2 * rows + first, count);
  const hs::Halves inv_pos = LoadHalves(coefficients + 3 * rows + first, count);
  // Shifts are floats kept in double: back to float exactly.
  const VF vm_neg = hn::Combine(d, hn::DemoteTo(dh, m_neg.high), hn::DemoteTo(dh, m_neg.low));
  const VF vm_pos = hn::Combine(d, hn::DemoteTo(dh, m_pos.high), hn::DemoteTo(dh, m_pos.low));
  const VF zero = hn::Zero(d);
  const MF finite =
      hn::And(hn::Eq(hn::Mul(vm_neg, zero), zero), hn::Eq(hn::Mul(vm_pos, zero), zero));
  // The row scale RowScale: scale, plus the row top's diff.
  hs::Halves s = Broadcast(scale);
  if (row_diff != NULL) {
    const xs::Padded<float> diff_pad(row_diff, count);
    const hs::Halves diff =
        hs::Widen(count == hn::Lanes(d) ? hn::LoadU(d, row_diff) : hn::Load(d, diff_pad.v));
    s.low = hn::Add(s.low, diff.low);
    s.high = hn::Add(s.high, diff.high);
  }
  hn::Store(vm_neg, d, f->m_neg + j);
  hn::Store(vm_pos, d, f->m_pos + j);
  hn::Store(hn::Mul(s.low, inv_neg.low), dd, f->k_neg + j);
  hn::Store(hn::Mul(s.high, inv_neg.high), dd, f->k_neg + j + half);
  hn::Store(hn::Neg(hn::Mul(s.low, inv_pos.low)), dd, f->k_pos + j);
  hn::Store(hn::Neg(hn::Mul(s.high, inv_pos.high)), dd, f->k_pos + j + half);
  return LaneSet(finite, count);
}

bool BlockGradientImpl(const float* x, const float* t, int64_t inner, int n,
                       const RowOptions& opt, const double* coefficients, int64_t first,
                       int64_t rows, double scale, const float* row_diff, float* dx) {
  if (!hs::VectorLine(opt.classes)) return false;
  const DF d;
  const DD dd;
  const size_t half = hn::Lanes(dd);
  const hs::Layout layout(n, opt);
  const size_t lanes = layout.lanes;
  const TileRows whole = AllRows(static_cast<int>(lanes));
  BlockFactors f;
  for (size_t j = 0; j < static_cast<size_t>(n); j += lanes) {
    const size_t count = j < layout.full ? lanes : layout.tail;
    f.finite[j / lanes] = VectorFactors(count, coefficients, first + j, rows, scale,
                                        row_diff == NULL ? NULL : row_diff + j, j, &f);
  }
  // Class by class, the block's rows in order: the map read as it lies.
  VF xv, tv;
  for (int c = 0; c < opt.classes; ++c) {
    for (size_t j = 0; j < static_cast<size_t>(n); j += lanes) {
      const TileRows done = f.finite[j / lanes];
      if (done == 0) continue;
      const size_t count = j < layout.full ? lanes : layout.tail;
      const RowVector rv = {x + j, t + j, inner, count, hn::FirstN(d, count)};
      rv.Load(c, &xv, &tv);
      const hs::Halves k_neg = {hn::Load(dd, f.k_neg + j), hn::Load(dd, f.k_neg + j + half)};
      const hs::Halves k_pos = {hn::Load(dd, f.k_pos + j), hn::Load(dd, f.k_pos + j + half)};
      const VF g = Gradient(xv, hs::Classify(tv, rv.live, layout), hn::Load(d, f.m_neg + j),
                            hn::Load(d, f.m_pos + j), k_neg, k_pos);
      float* out = dx + c * inner + j;
      if (done == whole) {
        hn::StoreU(g, d, out);
      } else {  // the block's last rows, or rows left to the scalar loop
        HWY_ALIGN float g_lanes[hs::kMaxLanes];
        hn::Store(g, d, g_lanes);
        for (size_t i = 0; i < count; ++i) {
          if (done >> i & 1) out[i] = g_lanes[i];
        }
      }
    }
  }
  return true;
}
#else   // HWY_SCALAR: no vector path
bool RowSumsImpl(const float*, const float*, const RowOptions&, RowShifts<float>*, RowSums*) {
  return false;
}
bool RowGradientImpl(const float*, const float*, const RowOptions&, const RowCoefficients&,
                     double, float*) {
  return false;
}
TileRows TileSumsImpl(const float*, const float*, int64_t, int, const RowOptions&,
                      RowShifts<float>*, RowSums*) {
  return 0;
}
bool BlockGradientImpl(const float*, const float*, int64_t, int, const RowOptions&,
                       const double*, int64_t, int64_t, double, const float*, float*) {
  return false;
}
#endif

}  // namespace HWY_NAMESPACE
}  // namespace zlpr
}  // namespace xent
}  // namespace caffe
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace caffe {
namespace xent {
namespace zlpr {

HWY_EXPORT(RowSumsImpl);
HWY_EXPORT(RowGradientImpl);
HWY_EXPORT(TileSumsImpl);
HWY_EXPORT(BlockGradientImpl);

bool SimdRowSums(const float* x, const float* t, const RowOptions& opt,
                 RowShifts<float>* shifts, RowSums* sums) {
  return HWY_DYNAMIC_DISPATCH(RowSumsImpl)(x, t, opt, shifts, sums);
}

bool SimdRowGradient(const float* x, const float* t, const RowOptions& opt,
                     const RowCoefficients& coef, double scale, float* dx) {
  return HWY_DYNAMIC_DISPATCH(RowGradientImpl)(x, t, opt, coef, scale, dx);
}

TileRows SimdTileSums(const float* x, const float* t, int64_t inner, int n,
                      const RowOptions& opt, RowShifts<float>* shifts, RowSums* sums) {
  return HWY_DYNAMIC_DISPATCH(TileSumsImpl)(x, t, inner, n, opt, shifts, sums);
}

bool SimdBlockGradient(const float* x, const float* t, int64_t inner, int n,
                       const RowOptions& opt, const double* coefficients, int64_t first,
                       int64_t rows, double scale, const float* row_diff, float* dx) {
  return HWY_DYNAMIC_DISPATCH(BlockGradientImpl)(x, t, inner, n, opt, coefficients, first, rows,
                                                  scale, row_diff, dx);
}

}  // namespace zlpr
}  // namespace xent
}  // namespace caffe
#endif  // HWY_ONCE
