#include <algorithm>
#include <sstream>
#include <string>
#include <vector>

#include "caffe/layers/xent_loss_layer.hpp"

namespace caffe {

namespace {

/// "2 bottoms (logits, targets) or 3 bottoms (logits, targets, weights)" from the
/// names, `required` of them needed.
std::string Expected(const std::vector<std::string>& names, int required, const char* kind) {
  std::ostringstream out;
  for (size_t n = required; n <= names.size(); ++n) {
    if (n > static_cast<size_t>(required)) out << " or ";
    out << n << " " << kind << (n == 1 ? "" : "s") << " (";
    for (size_t i = 0; i < n; ++i) out << (i ? ", " : "") << names[i];
    out << ")";
  }
  return out.str();
}

}  // namespace

template <typename Dtype>
void XentLossLayer<Dtype>::LayerSetUp(const vector<Blob<Dtype>*>& bottom,
                                      const vector<Blob<Dtype>*>& top) {
  // Messages name the layer by type and name; a layer built directly from a
  // LayerParameter without a type still says what it is.
  if (!this->layer_param_.has_type()) this->layer_param_.set_type(this->type());
  const LayerParameter& lp = this->layer_param_;
  const BlobNames blobs = Blobs();
  const int bottoms = static_cast<int>(bottom.size()), tops = static_cast<int>(top.size());
  XENT_CHECK(lp, bottoms >= blobs.required_bottoms &&
                 bottoms <= static_cast<int>(blobs.bottoms.size()),
             "needs " << Expected(blobs.bottoms, blobs.required_bottoms, "bottom") << ", got "
             << bottoms);
  XENT_CHECK(lp, tops >= 1 && tops <= static_cast<int>(blobs.tops.size()),
             "needs " << Expected(blobs.tops, 1, "top") << ", got " << tops);
  LossLayer<Dtype>::LayerSetUp(bottom, top);  // loss_weight 1 on top[0] unless given
  // Further tops are outputs, not more losses: weight 0 unless given
  // (Layer::SetLossWeights would abort on one weight for two tops).
  if (this->layer_param_.loss_weight_size() == 1) {
    for (int i = 1; i < tops; ++i) this->layer_param_.add_loss_weight(Dtype(0));
  }
  XENT_CHECK(lp, this->layer_param_.loss_weight_size() == tops,
             "loss_weight is given " << this->layer_param_.loss_weight_size() << " times for "
             << tops << " tops; give it once per top, once (the loss only) or not at all");

  const LossParameter& loss_param = lp.loss_param();
  has_ignore_label_ = loss_param.has_ignore_label();
  ignore_label_ = has_ignore_label_ ? loss_param.ignore_label() : 0;
  if (loss_param.has_normalization()) {
    normalization_ = loss_param.normalization();
  } else if (loss_param.has_normalize()) {
    normalization_ = loss_param.normalize() ? LossParameter_NormalizationMode_VALID
                                            : LossParameter_NormalizationMode_BATCH_SIZE;
  } else {
    normalization_ = DefaultNormalization();
  }
  normalizer_ = 1.0;
}

template <typename Dtype>
std::string XentLossLayer<Dtype>::BottomName(int index) const {
  const std::vector<std::string> names = Blobs().bottoms;
  std::ostringstream out;
  out << "bottom[" << index << "]";
  if (index >= 0 && index < static_cast<int>(names.size())) out << " (" << names[index] << ")";
  return out.str();
}

template <typename Dtype>
double XentLossLayer<Dtype>::Normalizer(double valid, double full, double batch) const {
  double normalizer = 1.0;
  switch (normalization_) {
    case LossParameter_NormalizationMode_FULL:
      normalizer = full;
      break;
    case LossParameter_NormalizationMode_VALID:
      normalizer = valid;
      break;
    case LossParameter_NormalizationMode_BATCH_SIZE:
      normalizer = batch;
      break;
    case LossParameter_NormalizationMode_NONE:
      normalizer = 1.0;
      break;
    default:
      XENT_CHECK(this->layer_param_, false, "unknown normalization mode "
                 << LossParameter_NormalizationMode_Name(normalization_));
  }
  // Some users give no labels for some examples to turn a loss off in a
  // multi-task setup: max(1, ·) prevents division by zero there.
  return std::max(1.0, normalizer);
}

template <typename Dtype>
void XentLossLayer<Dtype>::CheckPropagateDown(const vector<bool>& propagate_down) const {
  for (size_t i = 1; i < propagate_down.size(); ++i) {
    XENT_CHECK(this->layer_param_, !propagate_down[i],
               "cannot back-propagate to " << BottomName(static_cast<int>(i)) << "; only "
               << BottomName(0) << " gets a gradient");
  }
}

template <typename Dtype>
bool XentLossLayer<Dtype>::GradientWanted(const vector<bool>& propagate_down,
                                          const vector<Blob<Dtype>*>& bottom) const {
  CheckPropagateDown(propagate_down);
  return propagate_down[0] && bottom[0]->count() > 0;
}

template <typename Dtype>
void XentLossLayer<Dtype>::SetLoss(const vector<Blob<Dtype>*>& top, const xent::LossSums& sums,
                                   double full, double batch) {
  normalizer_ = Normalizer(sums.counted, full, batch);
  top[0]->mutable_cpu_data()[0] = static_cast<Dtype>(sums.loss / normalizer_);
}

INSTANTIATE_CLASS(XentLossLayer);

}  // namespace caffe
