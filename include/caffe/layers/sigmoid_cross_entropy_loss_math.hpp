#ifndef CAFFE_LAYERS_SIGMOID_CROSS_ENTROPY_LOSS_MATH_HPP_
#define CAFFE_LAYERS_SIGMOID_CROSS_ENTROPY_LOSS_MATH_HPP_

// Element math of SigmoidCrossEntropyLoss, written once for the CPU loop and
// the CUDA kernel (XENT_HOST_DEVICE expands to __host__ __device__ under
// nvcc). No Caffe types here: plain scalars in, scalars out. The formulas
// this file shares with the SIMD path (sigmoid_cross_entropy_loss_simd.cpp)
// are written once, over an ops class, in
// sigmoid_cross_entropy_loss_formulas-inl.h: Bce, BceBracket,
// BracketCancels, RetakeBracket, FocalParts.
//
// With τ = t(1-ε) + ε/2, a = 1-τ (weight of the negative term) and
// b = pos_weight·τ (weight of the positive term):
//
//   bce = a·softplus(x) + b·softplus(-x)
//       = l·log1p(e^-|x|) + (x >= 0 ? a·x : b·(-x)),   l = a + b = 1 + (pos_weight-1)·τ
//
// which is the documented (1-τ)x + l·softplus(-x) rearranged so that every term is
// >= 0: a sum of non-negative terms has no cancellation, so the element loss
// is accurate to a few ulp even where the usual form max(x,0) - x·t + ...
// subtracts two large numbers. The derivative
//
//   ∂bce/∂x = a·σ(x) - b·σ(-x) = r·(x >= 0 ? a - b·e : a·e - b),  e = e^-|x|, r = 1/(1+e)
//
// never forms 1 - σ(x) (which loses all digits of σ(-x) for large x). Its two
// products still cancel where σ(x) ≈ b/(a+b) (t ≈ σ(x) without pos_weight):
// there BceGrad recomputes the bracket in double, with
// expm1(-|x|) for small |x| where e^-|x| would round away the digits of x.

#include <math.h>

#include "caffe/layers/xent_common.hpp"
#include "caffe/util/xent_ops.hpp"

namespace caffe {
namespace xent {
namespace sigmoid {

// Bce, BceBracket, BracketCancels, RetakeBracket, FocalParts: written once
// for this file and the SIMD path.
#define XENT_FORMULA XENT_HOST_DEVICE
#include "caffe/layers/sigmoid_cross_entropy_loss_formulas-inl.h"
#undef XENT_FORMULA

/// ∂bce/∂x = a·σ(x) - b·σ(-x) in double, for a = 1 - τ and b = pos_weight·τ
/// given as the blob's values (a float τ or pos_weight makes both exact in
/// double): RetakeBracket / (1 + e^-|x|).
XENT_HOST_DEVICE double BceGradDouble(double x, double a, double b) {
  const double e = exp(-fabs(x));
  return RetakeBracket(ScalarOps<double>(), x, a, b, e) / (1.0 + e);
}

/// ∂bce/∂x = a·σ(x) - b·σ(-x) = r·(x >= 0 ? a - b·e : a·e - b) from the
/// element's e = e^-|x| and r = 1/(1+e), with tau and pos_weight for the
/// exact a and b. In T it is within a few ulp of itself while |bracket| is
/// at least half the term without e (a for x >= 0, b for x < 0: then the
/// term with e is at most 3·|bracket|); below that (σ(x) near b/(a+b)) the
/// difference is taken in double instead (BracketCancels, the test the
/// SIMD path uses too).
template <typename T>
XENT_HOST_DEVICE T BceGrad(T x, T tau, T pos_weight, T a, T b, T e, T r) {
  const ScalarOps<T> o;
  const bool positive = x >= T(0);
  const T bracket = BceBracket(o, positive, a, b, e);
  if (BracketCancels(o, positive, a, b, bracket)) {
    const double tau_d = static_cast<double>(tau);
    return static_cast<T>(BceGradDouble(
        static_cast<double>(x), 1.0 - tau_d, static_cast<double>(pos_weight) * tau_d));
  }
  return r * bracket;
}

/// Per-layer constants of the element math (from SigmoidCrossEntropyLossParameter).
template <typename T>
struct Constants {
  T keep;    ///< 1 - ε: τ = t·keep + shift
  T shift;   ///< ε/2
  T gamma;   ///< focal γ >= 0; 0 = no modulation (γ+ in the asymmetric form)
  T alpha;   ///< focal α in [0,1]; negative = off (α_t = 1)
  T gamma_neg;      ///< asymmetric form: γ- >= 0 of the negative term
  T margin;         ///< asymmetric form: probability margin m in [0, 1)
  bool asymmetric;  ///< the asymmetric form (AsymmetricElement); false: the rest unused
};

/// α_t's coefficients (FocalAlpha) from the constants.
template <typename T>
XENT_HOST_DEVICE FocalAlpha<T> MakeFocalAlpha(const Constants<T>& k) {
  const bool on = k.alpha >= T(0);
  const FocalAlpha<T> alpha = {on ? k.alpha : T(0), on ? T(1) - k.alpha : T(0), on ? T(0) : T(1)};
  return alpha;
}

/// Is target t allowed: in [0,1] (NaN is not), or exactly the ignore label?
/// Returns 1 for a counted element, 0 for an ignored one, -1 for a bad target.
template <typename T>
XENT_HOST_DEVICE int TargetKind(T t, bool has_ignore_label, T ignore_label) {
  if (has_ignore_label && t == ignore_label) return 0;
  return (t >= T(0) && t <= T(1)) ? 1 : -1;
}

/// q^γ for q in [0, 1] and γ >= 0 (q^0 = 1, also at q = 0).
template <typename T>
XENT_HOST_DEVICE T FocusPower(T q, T gamma) {
  return gamma == T(0) ? T(1) : XentPow(q, gamma);
}

/// The asymmetric form's element loss ℓ and, when grad != NULL, ∂ℓ/∂x
/// (sigmoid_cross_entropy_loss_layer.hpp states it; the formulas it shares
/// with the SIMD path, AsymmetricShift, AsymmetricLoss, FocusedGrad and
/// MarginGrad, are in sigmoid_cross_entropy_loss_formulas-inl.h):
///
///   ℓ = weight·[α+·b·σ(-x)^γ+·softplus(-x) + α-·a·p_m^γ-·(-log(1-p_m))]
///
/// with p_m = max(σ(x) - m, 0) and 1 - p_m = σ(-x) + m (never 1 - σ(x)).
/// m = 0: -log(1-p_m) = softplus(x). m > 0: -log1p(-p_m) while p_m <= 1/2
/// (1 - p_m would round away p_m's digits), -log(σ(-x) + m) above (p_m
/// would round away σ(-x)'s); for σ(x) <= m the negative term and its
/// derivative are exactly 0. Every term and factor is >= 0 (the gradient's
/// positive term is <= 0): no cancellation within a term.
template <typename T>
XENT_HOST_DEVICE T AsymmetricElement(T x, T t, T pos_weight, T weight, const Constants<T>& k,
                                     T* grad) {
  if (x != x) {  // NaN in, NaN out
    if (grad) *grad = x;
    return x;
  }
  const ScalarOps<T> o;
  const T tau = t * k.keep + k.shift;           // τ = t(1-ε) + ε/2
  const bool alpha_on = k.alpha >= T(0);
  const T c_pos = weight * (alpha_on ? k.alpha : T(1)) * (pos_weight * tau);   // weight·α+·b
  const T c_neg = weight * (alpha_on ? T(1) - k.alpha : T(1)) * (T(1) - tau);  // weight·α-·a
  const bool positive = x >= T(0);
  const T abs_x = positive ? x : -x;
  const T e = XentExp(-abs_x);                  // e^-|x|
  const T log1p_e = XentLog1p(e);
  const T r = T(1) / (T(1) + e);                // σ(|x|)
  const T sigma_pos = positive ? r : e * r;     // σ(x)
  const T sigma_neg = positive ? e * r : r;     // σ(-x)
  const T softplus_neg = positive ? log1p_e : abs_x + log1p_e;  // softplus(-x) = -log σ(x)
  const T mod_pos = FocusPower(sigma_neg, k.gamma);            // σ(-x)^γ+
  T shifted, kept;  // p_m and 1 - p_m
  AsymmetricShift(o, sigma_pos, sigma_neg, k.margin, &shifted, &kept);
  const T mod_neg = FocusPower(shifted, k.gamma_neg);          // p_m^γ-
  T log_neg;        // -log(1 - p_m)
  if (k.margin == T(0)) {
    log_neg = positive ? abs_x + log1p_e : log1p_e;            // softplus(x)
  } else {
    log_neg = shifted <= T(0.5) ? -XentLog1p(-shifted) : -XentLog(kept);
  }
  if (grad) {
    const T d_pos = -FocusedGrad(o, c_pos, mod_pos, sigma_neg, sigma_pos, k.gamma, softplus_neg);
    T d_neg;
    if (k.margin == T(0)) {
      d_neg = FocusedGrad(o, c_neg, mod_neg, sigma_pos, sigma_neg, k.gamma_neg, log_neg);
    } else {
      // γ-·p_m^(γ-1)·(-log(1-p_m)), as γ-·p_m^γ-·(-log(1-p_m))/p_m for a
      // fractional γ- < 1 (the ratio stays near 1 as p_m → 0); 0 for γ- = 0.
      const T focus = (k.gamma_neg == T(0) || shifted == T(0))
          ? T(0) : k.gamma_neg * mod_neg * (log_neg / shifted);
      d_neg = MarginGrad(o, c_neg, mod_neg, focus, sigma_pos, sigma_neg, shifted, kept);
    }
    *grad = d_pos + d_neg;
  }
  return AsymmetricLoss(o, c_pos, mod_pos, softplus_neg, c_neg, mod_neg, log_neg);
}

/// Element loss ℓ and, when grad != NULL, ∂ℓ/∂x, for logit x, target t in
/// [0,1], positive weight pos_weight and weight = class_weight·w (both >= 0).
///
///   ℓ = weight · α_t · (1-p_t)^γ · bce
///
/// or, with k.asymmetric, AsymmetricElement's loss.
/// NaN x gives NaN loss and gradient; finite x gives finite values; x = ±∞
/// gives the limits (the loss may be +∞ there, the gradient stays finite).
template <typename T>
XENT_HOST_DEVICE T Element(T x, T t, T pos_weight, T weight,
                                      const Constants<T>& k, T* grad) {
  if (k.asymmetric) return AsymmetricElement(x, t, pos_weight, weight, k, grad);
  if (x != x) {  // NaN in, NaN out: the selects below would otherwise hide it
    if (grad) *grad = x;
    return x;
  }
  const ScalarOps<T> o;
  const T tau = t * k.keep + k.shift;           // τ = t(1-ε) + ε/2
  const T a = T(1) - tau;                        // weight of softplus(x)  = -log(1-σ(x))
  const T b = pos_weight * tau;                  // weight of softplus(-x) = -log σ(x)
  const bool positive = x >= T(0);
  const T abs_x = positive ? x : -x;
  const T e = XentExp(-abs_x);                   // e^-|x| in [0,1]: never exp of a positive number
  const T bce = Bce(o, positive, a, b, abs_x, XentLog1p(e));
  const T r = T(1) / (T(1) + e);                 // σ(|x|)
  if (k.gamma == T(0) && k.alpha < T(0)) {
    if (grad) {
      // ∂bce/∂x = a·σ(x) - b·σ(-x), with σ(x) = r, σ(-x) = e·r for x >= 0.
      *grad = weight * BceGrad(x, tau, pos_weight, a, b, e, r);
    }
    return XentScale(weight, bce);
  }
  T sigma_pos, sigma_neg, alpha_t, q;            // σ(x), σ(-x), α_t, 1 - p_t
  FocalParts(o, positive, e, r, tau, a, MakeFocalAlpha(k), &sigma_pos, &sigma_neg, &alpha_t, &q);
  const T modulator = k.gamma == T(0) ? T(1) : XentPow(q, k.gamma);  // (1-p_t)^γ
  const T coefficient = weight * alpha_t;
  if (grad) {
    const T dbce = BceGrad(x, tau, pos_weight, a, b, e, r);  // ∂bce/∂x
    // ∂(1-p_t)^γ/∂x = γ·(1-p_t)^γ · (1-2τ)·σ(x)σ(-x) / (1-p_t); 0 where 1-p_t = 0
    // (its limit for γ > 0: σ(x)σ(-x)/(1-p_t) stays bounded by 1). Not shared
    // with the SIMD path: it takes a whole γ only, and forms γ·q^(γ-1)
    // without the division; here γ is any real number, by pow.
    const T dmodulator = (k.gamma == T(0) || q == T(0))
        ? T(0) : k.gamma * modulator * (T(1) - T(2) * tau) * (sigma_pos * sigma_neg / q);
    // bce·∂mod: 0 when ∂mod = 0 even if bce = ∞ (x = -∞ with τ = 1).
    *grad = coefficient * (modulator * dbce + XentScale(dmodulator, bce));
  }
  return XentScale(coefficient * modulator, bce);
}

}  // namespace sigmoid
}  // namespace xent
}  // namespace caffe

#endif  // CAFFE_LAYERS_SIGMOID_CROSS_ENTROPY_LOSS_MATH_HPP_
