#ifndef CAFFE_LAYERS_XENT_LOSS_LAYER_HPP_
#define CAFFE_LAYERS_XENT_LOSS_LAYER_HPP_

// The glue every caffe-xent loss layer shares, written once: blob-count
// checks that throw, the loss-weight defaults, loss_param's ignore_label and
// normalization, the normalizer, the propagate_down check, naming the first
// bad value of a bottom, and the GPU buffer of per-block partial sums.
// A loss layer derives from XentLossLayer instead of LossLayer and keeps
// only its own parameters, shapes and math.

#include <sstream>
#include <string>
#include <vector>

#include "caffe/blob.hpp"
#include "caffe/layer.hpp"
#include "caffe/proto/caffe.pb.h"
#include "caffe/syncedmem.hpp"

#include "caffe/layers/loss_layer.hpp"
#include "caffe/layers/xent_common.hpp"
#include "caffe/util/xent_reduce.hpp"

namespace caffe {

/**
 * @brief Base of caffe-xent's loss layers (SigmoidCrossEntropyLoss,
 *        MultiLabelSoftmaxLoss): the parts of a loss layer that do not
 *        depend on its formula.
 *
 * A derived layer names its blobs (Blobs()) and its default normalization
 * (DefaultNormalization()), and calls XentLossLayer::LayerSetUp first in its
 * own LayerSetUp. Then:
 *  - blob counts outside Blobs() throw xent::XentError (upstream's
 *    CheckBlobCounts would CHECK-abort the process);
 *  - top[0] (the loss) has loss weight 1 unless given; every further top
 *    (an output such as per-element losses or probabilities) 0 unless
 *    given, so one loss_weight for several tops weights only the loss;
 *  - normalization: loss_param.normalization if set, else the deprecated
 *    loss_param.normalize (true: VALID, false: BATCH_SIZE), else
 *    DefaultNormalization();
 *  - only bottom[0] can receive a gradient.
 */
template <typename Dtype>
class XentLossLayer : public LossLayer<Dtype> {
 public:
  explicit XentLossLayer(const LayerParameter& param) : LossLayer<Dtype>(param) {}
  virtual void LayerSetUp(const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top);

  /// Blob counts are checked in LayerSetUp with a thrown error.
  virtual inline int ExactNumBottomBlobs() const { return -1; }
  virtual inline int MinBottomBlobs() const { return -1; }
  virtual inline int MaxBottomBlobs() const { return -1; }
  virtual inline int ExactNumTopBlobs() const { return -1; }
  /// 1 (not -1) so that a Net still creates the loss top when a prototxt
  /// names none (AutoTopBlobs); zero tops never reach the layer.
  virtual inline int MinTopBlobs() const { return 1; }
  virtual inline int MaxTopBlobs() const { return -1; }
  /// Only the scores (bottom 0) can receive a gradient.
  virtual inline bool AllowForceBackward(const int bottom_index) const {
    return bottom_index == 0;
  }

 protected:
  /// The blobs a layer takes: `bottoms` names (the first `required_bottoms`
  /// must be given, the rest are optional, in order), and likewise the tops.
  struct BlobNames {
    std::vector<std::string> bottoms;
    int required_bottoms;
    std::vector<std::string> tops;
  };
  virtual BlobNames Blobs() const = 0;
  /// Normalization when loss_param sets neither normalization nor normalize.
  virtual LossParameter_NormalizationMode DefaultNormalization() const = 0;

  /// "bottom[i] (name)" for messages.
  std::string BottomName(int index) const;
  /// max(1, Z) for the normalization mode: VALID = `valid`, FULL = `full`,
  /// BATCH_SIZE = `batch`, NONE = 1. max(1, ·): a batch whose every element
  /// is ignored gives loss 0, not a division by zero.
  double Normalizer(double valid, double full, double batch) const;
  /// Throws if propagate_down asks for a gradient into any bottom but 0.
  void CheckPropagateDown(const vector<bool>& propagate_down) const;
  /// Backward's first step on either device: CheckPropagateDown, then
  /// whether bottom[0] wants a gradient and has elements to take one.
  bool GradientWanted(const vector<bool>& propagate_down,
                      const vector<Blob<Dtype>*>& bottom) const;
  /// Forward's last step on either device, after the layer's CheckData:
  /// normalizer_ = Normalizer(sums.counted, full, batch) and the loss
  /// top[0] = sums.loss / normalizer_.
  void SetLoss(const vector<Blob<Dtype>*>& top, const xent::LossSums& sums, double full,
               double batch);
  /// When a forward pass counted `bad` values of bottom[index] breaking its
  /// rule (`is_bad`), throws naming the first of them, its flat index and
  /// the shape; `what` says what was counted, `advice` what to do. Nothing
  /// when bad is 0: the scan runs on the error path only.
  template <typename IsBad>
  void RefuseBadValues(const vector<Blob<Dtype>*>& bottom, int index, double bad,
                       const std::string& what, IsBad is_bad, const std::string& advice) const {
    if (bad <= 0) return;
    const Blob<Dtype>& blob = *bottom[index];
    xent::ThrowFirstBadValue(this->layer_param_, BottomName(index).c_str(), blob.cpu_data(),
                             blob.count(), blob.shape_string(), static_cast<int64_t>(bad),
                             what.c_str(), is_bad, advice);
  }

  /// loss_param.ignore_label: whether set, and its value.
  bool has_ignore_label_;
  int ignore_label_;
  /// The normalization mode in force.
  LossParameter_NormalizationMode normalization_;
  /// Normalizer of the last Forward, used by Backward.
  double normalizer_;
  /// GPU: per-block partial sums and their totals (xent_reduce.cuh), kept
  /// between calls: no allocation after the first Forward.
  shared_ptr<SyncedMemory> block_sums_;
};

}  // namespace caffe

#endif  // CAFFE_LAYERS_XENT_LOSS_LAYER_HPP_
