#ifndef CAFFE_SIGMOID_CROSS_ENTROPY_LOSS_LAYER_HPP_
#define CAFFE_SIGMOID_CROSS_ENTROPY_LOSS_LAYER_HPP_

// caffe-xent's SigmoidCrossEntropyLoss: replaces upstream's layer of the same
// type (this header shadows upstream's because our include/ comes first).

#include <vector>

#include "caffe/blob.hpp"
#include "caffe/layer.hpp"
#include "caffe/proto/caffe.pb.h"
#include "caffe/syncedmem.hpp"

#include "caffe/layers/xent_loss_layer.hpp"
#include "caffe/util/xent_reduce.hpp"

namespace caffe {
namespace xent {
namespace sigmoid {
template <typename T> struct Options;
template <typename T> struct Constants;
}  // namespace sigmoid
}  // namespace xent

/**
 * @brief Sigmoid cross-entropy (logistic) loss with positive weights, class
 *        weights, focal modulation, label smoothing, per-element weights and
 *        upstream's ignore_label / normalization: @f$
 *          E = \frac{1}{\mathrm{norm}} \sum_i \ell_i, \quad
 *          \ell_i = c_{k(i)}\, w_i\, \alpha_t\, (1 - p_t)^\gamma \left[
 *              (1-\tau_i)\, x_i + l_i\, \mathrm{softplus}(-x_i) \right]
 *        @f$
 *        with @f$ \tau = t(1-\varepsilon) + \varepsilon/2 @f$,
 *        @f$ l = 1 + (\mathrm{pos\_weight}_{k} - 1)\tau @f$,
 *        @f$ p_t = \tau\sigma(x) + (1-\tau)(1-\sigma(x)) @f$,
 *        @f$ \alpha_t = \alpha\tau + (1-\alpha)(1-\tau) @f$ (1 when α is off)
 *        and @f$ k(i) @f$ the index of element i along the class axis.
 *
 * The asymmetric form (ASL: Ben-Baruch et al., "Asymmetric Loss For
 * Multi-Label Classification", ICCV 2021; Alibaba-MIIL/ASL's AsymmetricLoss,
 * timm's AsymmetricLossMultiLabel), selected when focal_gamma_neg is set or
 * focal_margin > 0, replaces the focal factor: @f$
 *   \ell_i = c_{k(i)}\, w_i \left[ \alpha_+ b\, \sigma(-x)^{\gamma_+}
 *       \mathrm{softplus}(-x) + \alpha_- a\, p_m^{\gamma_-}
 *       \left(-\log(1 - p_m)\right) \right]
 * @f$ with @f$ a = 1-\tau @f$, @f$ b = \mathrm{pos\_weight}_k \tau @f$,
 * @f$ p_m = \max(\sigma(x) - m, 0) @f$ (m = focal_margin, ASL's "clip"),
 * @f$ 1 - p_m = \sigma(-x) + m @f$, γ+ = focal_gamma, γ- = focal_gamma_neg
 * (focal_gamma when unset), α+ = α and α- = 1-α (both 1 when α is off).
 * A soft or smoothed target means the expectation over the target (τ of
 * the positive term, 1-τ of the negative); for 0/1 targets with γ- = γ+ and
 * m = 0 it is the focal loss above, for soft targets it is not (the focal
 * form modulates the whole bce by (1-p_t)^γ). The gradient is its exact
 * derivative, the focusing weights included (the reference code's option to
 * detach them is not offered: it is the derivative of no loss); for
 * σ(x) <= m the negative term and its derivative are exactly 0. Error bound
 * (docs/sigmoid_cross_entropy_loss.md, "The asymmetric form"): each term
 * within a few ulp, except the negative term with a margin where p_m <= 1/2,
 * which is the exact term of a σ(x) moved by a few ulp (σ(x) - m cancels).
 *
 * With every option at its default this is upstream's loss,
 * @f$ \ell = \max(x,0) - x t + \log(1 + e^{-|x|}) @f$, with gradient
 * @f$ \sigma(x) - t @f$; the element math (sigmoid_cross_entropy_loss_math.hpp) is written
 * as a sum of non-negative terms, so it is accurate to a few ulp, and sums
 * are taken in double in a fixed order (same bits for any thread count).
 *
 * Normalizer (upstream's rules, max(1, ·)): FULL = K elements, VALID =
 * elements whose target is not ignore_label, BATCH_SIZE = x.shape(0)
 * (the default, as upstream), NONE = 1.
 *
 * Choices where no convention decides:
 *  - a target is ignored when it equals ignore_label exactly (upstream casts
 *    the target to int first, so with ignore_label 0 it ignored every target
 *    in [0,1)); any other target must lie in [0,1] (NaN and ±inf are
 *    refused, as MultiLabelSoftmaxLoss refuses them);
 *  - per-element weights, pos_weight and class_weight must be finite and >= 0;
 *  - an empty blob (a dimension of 0) gives loss 0 and an empty gradient;
 *  - x and t (and w) must have the same count; their shapes may differ, as
 *    upstream allows;
 *  - with the default axis and a 1-axis x, there is one class (C = 1); an
 *    axis set explicitly must be in range;
 *  - with two tops and loss_weight unspecified (or given once), the second
 *    top gets loss weight 0;
 *  - ignored elements contribute 0 to the loss even when x is NaN.
 *
 * @param bottom input Blob vector (length 2 or 3)
 *   -# any shape, K elements: the logits @f$ x \in [-\infty, +\infty] @f$
 *   -# K elements: the targets @f$ t \in [0, 1] @f$ or == ignore_label
 *   -# (optional) K elements: per-element weights @f$ w \ge 0 @f$
 * @param top output Blob vector (length 1 or 2)
 *   -# scalar: the loss @f$ E @f$
 *   -# (optional) shape of x: the element losses @f$ \ell_i @f$ (weighted,
 *      ignored elements 0, not normalized)
 *
 * Bad input (counts, blob numbers, parameters, targets out of range,
 * negative or non-finite weights, a CUDA failure of its own kernels or
 * memory) throws caffe::xent::XentError naming the layer, the bottom and the
 * problem (for data: the first bad value and its index); nothing aborts the
 * process.
 */
template <typename Dtype>
class SigmoidCrossEntropyLossLayer : public XentLossLayer<Dtype> {
 public:
  explicit SigmoidCrossEntropyLossLayer(const LayerParameter& param)
      : XentLossLayer<Dtype>(param) {}
  virtual void LayerSetUp(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Reshape(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);

  virtual inline const char* type() const { return "SigmoidCrossEntropyLoss"; }

 protected:
  /// @copydoc SigmoidCrossEntropyLossLayer
  virtual void Forward_cpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Forward_gpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);

  /**
   * @brief Gradient with respect to the logits, from x and t. On the CPU
   *        a float32 layer in a TRAIN net writes it in Forward's pass, which
   *        shares its e^-|x| and saves a second pass over the blobs, when
   *        everything it depends on is known there (DiffInForward); then
   *        Backward, given the same top diff, has nothing left to do (a
   *        different top diff: it recomputes).
   *
   * @f$ \frac{\partial E}{\partial x_i} = \left(\frac{\lambda}{\mathrm{norm}}
   *     + \lambda'_i\right) \frac{\partial \ell_i}{\partial x_i} @f$, with
   * @f$ \lambda @f$ the diff of top[0] and @f$ \lambda'_i @f$ that of the
   * optional per-element top; the exact derivative of the loss above, 0 for
   * ignored elements. Targets and weights cannot be back-propagated to:
   * propagate_down[1] or [2] throws.
   */
  virtual void Backward_cpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom);
  virtual void Backward_gpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom);

  /// Bottoms (logits, targets, optional weights) and tops (loss,
  /// optional per-element losses).
  virtual typename XentLossLayer<Dtype>::BlobNames Blobs() const;
  /// BATCH_SIZE, as upstream's layer.
  virtual LossParameter_NormalizationMode DefaultNormalization() const {
    return LossParameter_NormalizationMode_BATCH_SIZE;
  }
  /// Throws for bad targets or weights counted by a forward pass, naming
  /// the first (found by a scan on this error path only).
  void CheckData(const vector<Blob<Dtype>*>& bottom, const xent::LossSums& sums) const;
  /// True when no per-element option is on (the fast SIMD path applies).
  bool plain() const { return plain_; }

  /// x.shape(0), the BATCH_SIZE normalizer.
  int outer_num_;
  /// K, the number of elements: the FULL normalizer.
  int count_;
  /// Number of classes C = x.shape(axis) (1 for a 1-axis x with default axis).
  int classes_;
  /// Elements after the class axis: the class of element i is (i / inner_num_) % C.
  int inner_num_;
  /// Class axis, canonical.
  int axis_;
  /// pos_weight per class (C values), also used on the GPU.
  Blob<Dtype> pos_weight_;
  /// class_weight per class (C values), also used on the GPU.
  Blob<Dtype> class_weight_;
  /// Whether pos_weight_ / class_weight_ differ between classes.
  bool per_class_;
  /// Whether pos_weight, class_weight are all 1, focal (and the asymmetric
  /// form) and smoothing off.
  bool plain_;
  /// Whether the CPU SIMD path applies: every option; a focal γ that is
  /// neither whole nor a whole one and a half up to
  /// xent::sigmoid::kMaxFocalPower (+ 1/2) only for float; the asymmetric
  /// form only for float, with whole γ+ and γ- up to kMaxFocalPower.
  bool simd_;
  /// CPU SIMD path when inner_num_ is small (or the weights are uniform):
  /// pos_weight / class_weight element by element over one period of
  /// C·inner_num_ elements (1 when uniform), padded; period_ = 0: not used.
  std::vector<Dtype> pos_weight_period_, class_weight_period_;
  int64_t period_;
  /// The SIMD path's options from the members above (the element loop
  /// reads its per-class arrays and layout too).
  xent::sigmoid::Options<Dtype> Options() const;
  /// The element math's constants (sigmoid_cross_entropy_loss_math.hpp).
  xent::sigmoid::Constants<Dtype> Constants() const;
  /// focal γ, focal α (negative = off), label smoothing ε.
  Dtype focal_gamma_, focal_alpha_, label_smoothing_;
  /// The asymmetric form (focal_gamma_neg set or focal_margin > 0), its γ-
  /// (focal_gamma when unset) and margin m.
  bool asymmetric_;
  Dtype focal_gamma_neg_, focal_margin_;
  /// Whether the last Forward_cpu wrote bottom[0]'s diff, for a top diff
  /// that gave the scale diff_scale_ (Reshape clears it).
  bool diff_ready_;
  Dtype diff_scale_;
  /// Whether Forward_cpu writes bottom[0]'s diff: float on the SIMD path,
  /// TRAIN phase, one top with a nonzero diff (the loss weight), and the
  /// normalizer known before the pass (not VALID with an ignore label).
  bool DiffInForward(const vector<Blob<Dtype>*>& top) const;
};

}  // namespace caffe

#endif  // CAFFE_SIGMOID_CROSS_ENTROPY_LOSS_LAYER_HPP_
