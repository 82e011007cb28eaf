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
  const DH dh;
  const DD dd;
  VF v = hn::IfThenElse(k.pos, hn::Neg(xv), xv);
  v = hn::IfThenElse(hn::Or(k.neg, k.pos), v, hn::Set(d, -std::numeric_limits<float>::max()));
  const VF m = hn::IfThenElse(k.pos, m_pos, m_neg);
  const VF is_pos = hn::IfThenElseZero(k.pos, hn::Set(d, 1.0f));
  Selected s;
  s.v_low = hn::PromoteTo(dd, hn::LowerHalf(dh, v));
  s.v_high = hn::PromoteTo(dd, hn::UpperHalf(dh, v));
  s.m_low = hn::PromoteTo(dd, hn::LowerHalf(dh, m));
  s.m_high = hn::PromoteTo(dd, hn::UpperHalf(dh, m));
  s.pos_low = hn::Eq(hn::PromoteTo(dd, hn::LowerHalf(dh, is_pos)), hn::Set(dd, 1.0));
  s.pos_high = hn::Eq(hn::PromoteTo(dd, hn::UpperHalf(dh, is_pos)), hn::Set(dd, 1.0));
  return s;
}

bool RowSumsImpl(const float* x, const float* t, const RowOptions& opt, RowShifts<float>* shifts,
                 RowSums* sums) {
  if (!hs::VectorLine(opt.classes)) return false;
  const DF d;
  const DD dd;
  const hs::Layout row(opt.classes, opt);
  const size_t lanes = row.lanes, full = row.full, tail = row.tail;
  const VF zero = hn::Zero(d), one = hn::Set(d, 1.0f);
  const xs::Padded<float> x_pad(x + full, tail), t_pad(t + full, tail);

  // Sweep 1: the shifts max(0, max v), the counts, and a finiteness probe of
  // the kept scores (x * 0 is NaN exactly for +-inf and NaN).
  VF m_neg = zero, m_pos = zero, probe = zero, kept = zero, bad = zero;
  auto sweep1 = [&](const float* xp, const float* tp, MF live) {
    const VF xv = hn::LoadU(d, xp);
    const Kinds k = hs::Classify(hn::LoadU(d, tp), live, row);
    const MF in_set = hn::Or(k.neg, k.pos);
    m_neg = hn::Max(m_neg, hn::IfThenElseZero(k.neg, xv));
    m_pos = hn::Max(m_pos, hn::IfThenElseZero(k.pos, hn::Neg(xv)));
    probe = hn::MulAdd(hn::IfThenElseZero(in_set, xv), zero, probe);
    kept = hn::Add(kept, hn::IfThenElseZero(in_set, one));
    bad = hn::Add(bad, hn::IfThenElseZero(k.bad, one));
  };
  for (size_t c = 0; c < full; c += lanes) sweep1(x + c, t + c, row.all);
  if (tail) sweep1(x_pad.v, t_pad.v, hn::FirstN(d, tail));
  if (!hn::AllTrue(d, hn::Eq(probe, probe))) return false;
  const float neg_shift = hs::LaneMax(m_neg), pos_shift = hs::LaneMax(m_pos);

  // Sweep 2: each side's sum of e^(v - m), in double halves.
  const VF vm_neg = hn::Set(d, neg_shift), vm_pos = hn::Set(d, pos_shift);
  VD neg_low = hn::Zero(dd), neg_high = hn::Zero(dd), pos_low = hn::Zero(dd),
     pos_high = hn::Zero(dd);
  auto sweep2 = [&](const float* xp, const float* tp, MF live) {
    const Kinds k = hs::Classify(hn::LoadU(d, tp), live, row);
    const Selected s = Select(hn::LoadU(d, xp), k, vm_neg, vm_pos);
    const VD e_low = hs::ShiftedExp(s.v_low, s.m_low);
    const VD e_high = hs::ShiftedExp(s.v_high, s.m_high);
    neg_low = hn::Add(neg_low, hn::IfThenZeroElse(s.pos_low, e_low));
    neg_high = hn::Add(neg_high, hn::IfThenZeroElse(s.pos_high, e_high));
    pos_low = hn::Add(pos_low, hn::IfThenElseZero(s.pos_low, e_low));
    pos_high = hn::Add(pos_high, hn::IfThenElseZero(s.pos_high, e_high));
  };
  for (size_t c = 0; c < full; c += lanes) sweep2(x + c, t + c, row.all);
  if (tail) sweep2(x_pad.v, t_pad.v, hn::FirstN(d, tail));

  shifts->neg = neg_shift;
  shifts->pos = pos_shift;
  sums->neg_sum += xs::LaneTotal(hn::Add(neg_low, neg_high));
  sums->pos_sum += xs::LaneTotal(hn::Add(pos_low, pos_high));
  sums->kept += hs::CountTotal(kept);
  sums->invalid += hs::CountTotal(bad);
  return true;
}

bool RowGradientImpl(const float* x, const float* t, const RowOptions& opt,
                     const RowCoefficients& coef, double scale, float* dx) {
  if (!hs::VectorLine(opt.classes)) return false;
  const DF d;
  const DH dh;
  const DD dd;
  const hs::Layout row(opt.classes, opt);
  const size_t lanes = row.lanes, full = row.full, tail = row.tail;
  const VF vm_neg = hn::Set(d, static_cast<float>(coef.neg_shift));
  const VF vm_pos = hn::Set(d, static_cast<float>(coef.pos_shift));
  // SideGradient's scale / S per side; a positive's gradient is negated.
  const VD k_neg = hn::Set(dd, scale * coef.neg_inv_sum);
  const VD k_pos = hn::Set(dd, -(scale * coef.pos_inv_sum));
  auto gradient = [&](const float* xp, const float* tp, MF live) {
    const Kinds k = hs::Classify(hn::LoadU(d, tp), live, row);
    const Selected s = Select(hn::LoadU(d, xp), k, vm_neg, vm_pos);
    const VD g_low = hn::Mul(hn::IfThenElse(s.pos_low, k_pos, k_neg), hs::ShiftedExp(s.v_low, s.m_low));
    const VD g_high =
        hn::Mul(hn::IfThenElse(s.pos_high, k_pos, k_neg), hs::ShiftedExp(s.v_high, s.m_high));
    return hn::Combine(d, hn::DemoteTo(dh, g_high), hn::DemoteTo(dh, g_low));
  };
  for (size_t c = 0; c < full; c += lanes) hn::StoreU(gradient(x + c, t + c, row.all), d, dx + c);
  if (tail) {
    const xs::Padded<float> x_pad(x + full, tail), t_pad(t + full, tail);
    xs::StoreFirst(d, gradient(x_pad.v, t_pad.v, hn::FirstN(d, tail)), tail, dx + full);
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

bool SimdRowSums(const float* x, const float* t, const RowOptions& opt,
                 RowShifts<float>* shifts, RowSums* sums) {
  return HWY_DYNAMIC_DISPATCH(RowSumsImpl)(x, t, opt, shifts, sums);
}

bool SimdRowGradient(const float* x, const float* t, const RowOptions& opt,
                     const RowCoefficients& coef, double scale, float* dx) {
  return HWY_DYNAMIC_DISPATCH(RowGradientImpl)(x, t, opt, coef, scale, dx);
}

}  // namespace zlpr
}  // namespace xent
}  // namespace caffe
#endif  // HWY_ONCE
