#include <algorithm>
#include <cmath>
#include <cstdint>
#include <sstream>
#include <vector>

#include "caffe/layers/sigmoid_cross_entropy_loss_layer.hpp"
#include "caffe/layers/sigmoid_cross_entropy_loss_math.hpp"
#include "caffe/layers/xent_common.hpp"
#include "caffe/util/xent_reduce.hpp"

#include "sigmoid_cross_entropy_loss_simd.hpp"

namespace caffe {

template <typename Dtype>
void SigmoidCrossEntropyLossLayer<Dtype>::LayerSetUp(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  XentLossLayer<Dtype>::LayerSetUp(bottom, top);  // blob counts, loss weights, loss_param
  const LayerParameter& lp = this->layer_param_;
  const SigmoidCrossEntropyLossParameter& p = lp.sigmoid_cross_entropy_loss_param();
  focal_gamma_ = p.focal_gamma();
  focal_alpha_ = p.focal_alpha();
  label_smoothing_ = p.label_smoothing();
  XENT_CHECK(lp, xent::XentIsValidWeight(p.focal_gamma()),
             "focal_gamma = " << p.focal_gamma() << " is invalid; it must be finite and >= 0");
  XENT_CHECK(lp, p.focal_alpha() == -1.0f || (p.focal_alpha() >= 0.0f && p.focal_alpha() <= 1.0f),
             "focal_alpha = " << p.focal_alpha()
             << " is invalid; it must be in [0, 1], or -1 (off)");
  XENT_CHECK(lp, p.label_smoothing() >= 0.0f && p.label_smoothing() < 1.0f,
             "label_smoothing = " << p.label_smoothing() << " is invalid; it must be in [0, 1)");
  XENT_CHECK(lp, !p.has_focal_gamma_neg() || xent::XentIsValidWeight(p.focal_gamma_neg()),
             "focal_gamma_neg = " << p.focal_gamma_neg()
             << " is invalid; it must be finite and >= 0, or unset (negatives use focal_gamma)");
  XENT_CHECK(lp, p.focal_margin() >= 0.0f && p.focal_margin() < 1.0f,
             "focal_margin = " << p.focal_margin() << " is invalid; it must be in [0, 1)");
  // The asymmetric form (ASL): a negative-side γ or a probability margin.
  asymmetric_ = p.has_focal_gamma_neg() || p.focal_margin() > 0.0f;
  focal_gamma_neg_ = p.has_focal_gamma_neg() ? p.focal_gamma_neg() : p.focal_gamma();
  focal_margin_ = p.focal_margin();

  classes_ = -1;  // per-class vectors are expanded in Reshape, once C is known
  period_ = -1;
  diff_ready_ = false;
  diff_scale_ = 0;
  // The SIMD path takes every focal γ for float blobs (a whole one up to
  // sigmoid::kMaxFocalPower by multiplication, a whole one and a half by
  // multiplication and a square root, any other as e^(γ ln q) in double
  // lanes), and the first two kinds for double blobs (others: the scalar
  // loop's pow). All as accurate as powf / pow.
  const Dtype whole = std::floor(focal_gamma_);
  simd_ = sizeof(Dtype) == 4 || ((focal_gamma_ == whole || focal_gamma_ - whole == Dtype(0.5)) &&
                                 whole <= Dtype(xent::sigmoid::kMaxFocalPower));
  if (asymmetric_) {
    // The asymmetric form's SIMD path: float blobs with whole γ+ and γ- up
    // to kMaxFocalPower (ASL's are); others take the scalar element loop.
    auto whole_power = [](Dtype g) {
      return g == std::floor(g) && g <= Dtype(xent::sigmoid::kMaxFocalPower);
    };
    simd_ = sizeof(Dtype) == 4 && whole_power(focal_gamma_) && whole_power(focal_gamma_neg_);
  }
}

template <typename Dtype>
void SigmoidCrossEntropyLossLayer<Dtype>::Reshape(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  const LayerParameter& lp = this->layer_param_;
  const int count = bottom[0]->count();
  for (int i = 1; i < static_cast<int>(bottom.size()); ++i) {
    XENT_CHECK(lp, bottom[i]->count() == count,
               this->BottomName(i) << " has " << bottom[i]->count() << " elements (shape "
               << bottom[i]->shape_string() << ") but bottom[0] (logits) has " << count
               << " (shape " << bottom[0]->shape_string() << "); they must have the same count");
  }
  const SigmoidCrossEntropyLossParameter& p = lp.sigmoid_cross_entropy_loss_param();
  const int num_axes = bottom[0]->num_axes();
  int classes = 1;
  inner_num_ = 1;
  axis_ = 0;
  if (p.has_axis() || num_axes >= 2) {
    XENT_CHECK(lp, p.axis() >= -num_axes && p.axis() < num_axes,
               "sigmoid_cross_entropy_loss_param.axis = " << p.axis()
               << " is out of range for bottom[0] (logits) of shape "
               << bottom[0]->shape_string() << " (" << num_axes << " axes)");
    axis_ = p.axis() < 0 ? p.axis() + num_axes : p.axis();
    classes = bottom[0]->shape(axis_);
    inner_num_ = bottom[0]->count(axis_ + 1);
  }
  outer_num_ = num_axes > 0 ? bottom[0]->shape(0) : 1;
  count_ = count;
  diff_ready_ = false;
  if (classes != classes_) {
    classes_ = classes;
    const std::vector<float> pos_weight =
        xent::ExpandPerClass(lp, p.pos_weight(), std::max(classes, 1), "pos_weight");
    const std::vector<float> class_weight =
        xent::ExpandPerClass(lp, p.class_weight(), std::max(classes, 1), "class_weight");
    pos_weight_.Reshape(std::vector<int>(1, static_cast<int>(pos_weight.size())));
    class_weight_.Reshape(std::vector<int>(1, static_cast<int>(class_weight.size())));
    bool uniform = true, ones = true;
    for (size_t c = 0; c < pos_weight.size(); ++c) {
      pos_weight_.mutable_cpu_data()[c] = pos_weight[c];
      class_weight_.mutable_cpu_data()[c] = class_weight[c];
      uniform = uniform && pos_weight[c] == pos_weight[0] && class_weight[c] == class_weight[0];
      ones = ones && pos_weight[c] == 1.0f && class_weight[c] == 1.0f;
    }
    per_class_ = !uniform;
    plain_ = ones && focal_gamma_ == Dtype(0) && focal_alpha_ < Dtype(0) &&
             label_smoothing_ == Dtype(0) && !asymmetric_;
    period_ = -1;
  }
  // The SIMD path reads per-class values a vector at a time: for runs of one
  // class shorter than kPeriodInner it takes them from arrays laid out
  // element by element over one period (O(kPeriodInner·C) values).
  const int64_t kPeriodInner = 64;
  const int64_t period = (plain_ || !simd_) ? 0
                         : !per_class_ ? 1
                         : inner_num_ < kPeriodInner ? int64_t(classes_) * inner_num_ : 0;
  if (period != period_) {
    period_ = period;
    const int64_t size = period > 0 ? period + xent::sigmoid::kPeriodPad : 0;
    pos_weight_period_.resize(size);
    class_weight_period_.resize(size);
    for (int64_t j = 0; j < size; ++j) {
      // inner_num_ = 0 (an empty blob): nothing reads the layout; no division by 0.
      const int64_t c = (j % period) / std::max(inner_num_, 1);
      pos_weight_period_[j] = pos_weight_.cpu_data()[c];
      class_weight_period_[j] = class_weight_.cpu_data()[c];
    }
  }
  top[0]->Reshape(std::vector<int>());  // the loss: a scalar
  if (top.size() == 2) top[1]->ReshapeLike(*bottom[0]);
}

namespace xent {
namespace sigmoid {
namespace {

/// pos_weight and class_weight of consecutive elements of the element loop,
/// from element `begin` on: element i has class (i / inner) % classes.
template <typename Dtype>
class ClassCursor {
 public:
  ClassCursor(const Options<Dtype>& o, bool per_class, int64_t begin)
      : o_(o), per_class_(per_class), inner_index_(begin % o.inner),
        c_(per_class ? (begin / o.inner) % o.classes : 0) {}
  Dtype pos_weight() const { return o_.pos_weight[c_]; }
  Dtype class_weight() const { return o_.class_weight[c_]; }
  void Next() {
    if (per_class_ && ++inner_index_ == o_.inner) {  // next class along the axis
      inner_index_ = 0;
      if (++c_ == o_.classes) c_ = 0;
    }
  }

 private:
  const Options<Dtype>& o_;
  bool per_class_;
  int64_t inner_index_, c_;
};

}  // namespace
}  // namespace sigmoid
}  // namespace xent

template <typename Dtype>
xent::sigmoid::Constants<Dtype> SigmoidCrossEntropyLossLayer<Dtype>::Constants() const {
  const xent::sigmoid::Constants<Dtype> k = {Dtype(1) - label_smoothing_,
                                               label_smoothing_ / Dtype(2), focal_gamma_,
                                               focal_alpha_, focal_gamma_neg_, focal_margin_,
                                               asymmetric_};
  return k;
}

template <typename Dtype>
xent::sigmoid::Options<Dtype> SigmoidCrossEntropyLossLayer<Dtype>::Options() const {
  xent::sigmoid::Options<Dtype> o;
  o.pos_weight = pos_weight_.cpu_data();
  o.class_weight = class_weight_.cpu_data();
  o.inner = inner_num_;
  o.classes = classes_;
  o.pos_weight_period = period_ > 0 ? pos_weight_period_.data() : NULL;
  o.class_weight_period = period_ > 0 ? class_weight_period_.data() : NULL;
  o.period = std::max<int64_t>(period_, 0);
  o.constants = Constants();
  return o;
}

template <typename Dtype>
typename XentLossLayer<Dtype>::BlobNames SigmoidCrossEntropyLossLayer<Dtype>::Blobs() const {
  typename XentLossLayer<Dtype>::BlobNames names;
  names.bottoms = {"logits", "targets", "weights"};
  names.required_bottoms = 2;
  names.tops = {"loss", "per-element loss"};
  return names;
}

template <typename Dtype>
void SigmoidCrossEntropyLossLayer<Dtype>::CheckData(const vector<Blob<Dtype>*>& bottom,
                                                    const xent::LossSums& sums) const {
  const bool has_ignore = this->has_ignore_label_;
  const Dtype ignore = this->ignore_label_;
  std::ostringstream what;
  what << "values outside [0, 1] (NaN or infinite included)";
  if (has_ignore) what << " that are not ignore_label (" << ignore << ")";
  this->RefuseBadValues(
      bottom, 1, sums.bad_targets, what.str(),
      [&](Dtype t) { return xent::sigmoid::TargetKind(t, has_ignore, ignore) < 0; },
      has_ignore ? "" : "; targets are data in [0, 1]: set loss_param.ignore_label to skip "
                        "elements");
  this->RefuseBadValues(bottom, 2, sums.bad_weights, "negative or non-finite values",
                        [](Dtype w) { return !xent::XentIsValidWeight(w); },
                        "; weights must be finite and >= 0");
}

template <typename Dtype>
bool SigmoidCrossEntropyLossLayer<Dtype>::DiffInForward(const vector<Blob<Dtype>*>& top) const {
  // Float on the SIMD path (double blobs retake cancelling elements in their
  // backward), and only where a backward will follow with what the forward
  // knows: a TRAIN net, the loss weighted (a TEST net, or a loss only
  // watched, would pay for a gradient never read), no per-element top (its
  // diff comes with the backward), and a normalizer that does not wait for
  // the pass's count.
  return sizeof(Dtype) == 4 && simd_ && this->phase_ == TRAIN && top.size() == 1 &&
         top[0]->cpu_diff()[0] != Dtype(0) &&
         !(this->has_ignore_label_ &&
           this->normalization_ == LossParameter_NormalizationMode_VALID);
}

template <typename Dtype>
void SigmoidCrossEntropyLossLayer<Dtype>::Forward_cpu(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  const int64_t count = bottom[0]->count();
  const Dtype* x = bottom[0]->cpu_data();
  const Dtype* t = bottom[1]->cpu_data();
  const Dtype* w = bottom.size() == 3 ? bottom[2]->cpu_data() : NULL;
  Dtype* element_loss = top.size() == 2 ? top[1]->mutable_cpu_data() : NULL;
  const bool has_ignore = this->has_ignore_label_;
  const Dtype ignore = this->ignore_label_;
  const xent::sigmoid::Constants<Dtype> k = Constants();
  const xent::sigmoid::Options<Dtype> options = Options();
  const xent::sigmoid::Options<Dtype>* simd_options = plain_ ? NULL : &options;
  diff_ready_ = false;
  Dtype* dx = NULL;  // bottom[0]'s diff, written in the same pass (DiffInForward)
  Dtype dx_scale = 0;
  if (DiffInForward(top)) {
    // Without an ignore label every element counts; with one the
    // normalization is not VALID: either way the pass's count is count_.
    dx_scale = static_cast<Dtype>(top[0]->cpu_diff()[0] /
        this->Normalizer(static_cast<double>(count_), static_cast<double>(count_), outer_num_));
    dx = bottom[0]->mutable_cpu_diff();
  }

  const xent::LossSums sums = xent::ChunkedSums(xent::ChunkCount(count), [&](int64_t chunk) {
    const int64_t begin = chunk * xent::kReduceChunk;
    const int64_t end = std::min(count, begin + xent::kReduceChunk);
    xent::LossSums range;
    if (simd_) {  // one fused SIMD pass
      const xent::sigmoid::Sums simd = xent::sigmoid::SimdForward<Dtype>(
          x + begin, t + begin, w ? w + begin : NULL, element_loss ? element_loss + begin : NULL,
          end - begin, begin, simd_options, has_ignore, ignore, dx ? dx + begin : NULL,
          dx_scale);
      range.loss = simd.loss;
      range.counted = static_cast<double>(simd.counted);
      range.bad_targets = static_cast<double>(simd.bad_targets);
      range.bad_weights = static_cast<double>(simd.bad_weights);
      return range;
    }
    // A focal γ that is not a whole number up to kMaxFocalPower: the shared
    // element math, also one pass.
    xent::sigmoid::ClassCursor<Dtype> cls(options, per_class_, begin);
    for (int64_t i = begin; i < end; ++i, cls.Next()) {
      const int kind = xent::sigmoid::TargetKind(t[i], has_ignore, ignore);
      const Dtype wi = w ? w[i] : Dtype(1);
      range.bad_weights += !xent::XentIsValidWeight(wi);
      range.bad_targets += kind < 0;
      Dtype li = 0;
      if (kind != 0) {
        li = xent::sigmoid::Element<Dtype>(x[i], t[i], cls.pos_weight(),
                                           cls.class_weight() * wi, k, NULL);
        range.loss += li;
        range.counted += 1.0;
      }
      if (element_loss) element_loss[i] = li;
    }
    return range;
  });
  CheckData(bottom, sums);
  this->SetLoss(top, sums, static_cast<double>(count_), outer_num_);
  if (dx) {
    diff_scale_ = dx_scale;
    diff_ready_ = true;
  }
}

template <typename Dtype>
void SigmoidCrossEntropyLossLayer<Dtype>::Backward_cpu(
    const vector<Blob<Dtype>*>& top, const vector<bool>& propagate_down,
    const vector<Blob<Dtype>*>& bottom) {
  if (!this->GradientWanted(propagate_down, bottom)) return;
  const int64_t count = bottom[0]->count();
  const Dtype* x = bottom[0]->cpu_data();
  const Dtype* t = bottom[1]->cpu_data();
  const Dtype* w = bottom.size() == 3 ? bottom[2]->cpu_data() : NULL;
  const Dtype* element_diff = top.size() == 2 ? top[1]->cpu_diff() : NULL;
  Dtype* dx = bottom[0]->mutable_cpu_diff();
  // dE/dx = ∂ℓ/∂x · (λ / normalizer + λ'_i)
  const Dtype scale = static_cast<Dtype>(top[0]->cpu_diff()[0] / this->normalizer_);
  const bool has_ignore = this->has_ignore_label_;
  const Dtype ignore = this->ignore_label_;
  const xent::sigmoid::Constants<Dtype> k = Constants();
  const xent::sigmoid::Options<Dtype> options = Options();
  const xent::sigmoid::Options<Dtype>* simd_options = plain_ ? NULL : &options;
  const int64_t chunks = xent::ChunkCount(count);
  // Forward_cpu wrote dx for this scale (DiffInForward): nothing left to do.
  if (diff_ready_ && scale == diff_scale_ && !element_diff && count == count_) return;
  // One chunk: no thread team (its start-up, and its threads spinning against
  // OpenBLAS's, cost more than a small blob's work; ChunkedSums does the same).
#pragma omp parallel for schedule(static) if (chunks > 1)
  for (int64_t chunk = 0; chunk < chunks; ++chunk) {
    const int64_t begin = chunk * xent::kReduceChunk;
    const int64_t end = std::min(count, begin + xent::kReduceChunk);
    if (simd_) {
      xent::sigmoid::SimdBackward<Dtype>(x + begin, t + begin, w ? w + begin : NULL,
                                           element_diff ? element_diff + begin : NULL, scale,
                                           dx + begin, end - begin, begin, simd_options,
                                           has_ignore, ignore);
      continue;
    }
    xent::sigmoid::ClassCursor<Dtype> cls(options, per_class_, begin);
    for (int64_t i = begin; i < end; ++i, cls.Next()) {
      Dtype grad = 0;
      if (xent::sigmoid::TargetKind(t[i], has_ignore, ignore) != 0) {
        const Dtype wi = w ? w[i] : Dtype(1);
        xent::sigmoid::Element<Dtype>(x[i], t[i], cls.pos_weight(), cls.class_weight() * wi,
                                        k, &grad);
        grad *= element_diff ? scale + element_diff[i] : scale;
      }
      dx[i] = grad;
    }
  }
}

#ifdef CPU_ONLY
STUB_GPU(SigmoidCrossEntropyLossLayer);
#endif

INSTANTIATE_CLASS(SigmoidCrossEntropyLossLayer);
REGISTER_LAYER_CLASS(SigmoidCrossEntropyLoss);

}  // namespace caffe
