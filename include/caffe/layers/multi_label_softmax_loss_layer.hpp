#ifndef CAFFE_MULTI_LABEL_SOFTMAX_LOSS_LAYER_HPP_
#define CAFFE_MULTI_LABEL_SOFTMAX_LOSS_LAYER_HPP_

#include <vector>

#include "caffe/blob.hpp"
#include "caffe/layer.hpp"
#include "caffe/proto/caffe.pb.h"

#include "caffe/layers/multi_label_softmax_loss_math.hpp"
#include "caffe/layers/xent_loss_layer.hpp"
#include "caffe/util/xent_reduce.hpp"

namespace caffe {

/**
 * @brief Softmax cross-entropy for targets with several positives, counts or
 *        soft values: the multi-label softmax loss of Mahajan et al. 2018
 *        ("Exploring the Limits of Weakly Supervised Pretraining"), with the
 *        softmax over any axis.
 *
 * A *row* r is one softmax vector: a fixed (outer, inner) position, running
 * over the C classes of `axis`. With @f$ M_r @f$ the number of targets > 0,
 * @f[
 *   q_{rc} = (1-\epsilon)\,\frac{w_c\, t_{rc}}{\nu_r} + \frac{\epsilon}{C},
 *   \qquad
 *   \ell_r = -\sum_c q_{rc} \log \frac{e^{x_{rc}}}{\sum_{c'} e^{x_{rc'}}},
 *   \qquad
 *   E = \frac{1}{\max(1, Z)} \sum_r \ell_r
 * @f]
 * where @f$ \nu_r @f$ is @f$ M_r @f$ (COUNT, the paper's 1/M),
 * @f$ \sum_c t_{rc} @f$ (SUM) or 1 (NONE), @f$ w_c @f$ the class weights and
 * @f$ \epsilon @f$ the label smoothing. The log-softmax is evaluated with
 * the row max subtracted and sums in double, as
 * @f$ Q_r \log S_r + \sum_c q_{rc} (m_r - x_{rc}) @f$, a sum of non-negative
 * terms: finite for finite scores of any magnitude.
 *
 * A row is ignored (zero loss, zero gradient, not counted) when
 * @f$ M_r = 0 @f$ (the original Python layer divides by zero there) or, with
 * loss_param.ignore_label set, when any of its targets equals it.
 * Normalizer Z (loss_param.normalization, default VALID): VALID = rows not
 * ignored, BATCH_SIZE = N = x.shape(0), FULL = all rows, NONE = 1.
 *
 * With COUNT and multi-hot targets, loss and gradient equal the original Python
 * layer; with NONE and probability targets, PyTorch's
 * `cross_entropy(x, t, reduction='sum') / Z`.
 *
 * Choices where the specification is silent: the probabilities top gets no
 * gradient (as upstream SoftmaxWithLoss); targets must be finite and >= 0
 * (or ignore_label): NaN and infinite targets are refused like negative ones,
 * the same rule as SigmoidCrossEntropyLoss's; an empty blob (no rows, or
 * C = 0) gives loss 0 and an empty gradient; an ignored row gets
 * a zero gradient even where its scores are NaN; ignore_label = 0 is refused
 * (0 is a negative class's target: nearly every row would be ignored).
 *
 * CPU: rows in parallel (OpenMP) over fixed chunks; float rows and float
 * spatial maps take a Highway SIMD path for the exps
 * (multi_label_softmax_loss_simd.cpp), which evaluates the formulas of the shared
 * row math (multi_label_softmax_loss_math.hpp, also called by the CUDA kernels and
 * the scalar CPU loop) on vectors, term by term (see
 * multi_label_softmax_loss_simd.hpp).
 * Per row: the max, then one sweep for the sums (forward); one sweep for the
 * gradient (backward). Spatial maps go by tiles of neighbouring rows: forward
 * reads each tile from the map once, into L1-sized local copies.
 *
 * Memory beyond the tops: O(rows) doubles (five per row: max, 1/S, Q and the
 * two target coefficients), kept from forward for backward; never the
 * bottom diffs as scratch.
 *
 * @param bottom input Blob vector (length 2)
 *   -# @f$ (N \times C \times d_1 \dots d_k) @f$ the scores x, softmax over
 *      `axis` (default 1, negative counts from the end)
 *   -# @f$ (N \times C \times d_1 \dots d_k) @f$ the targets t, the same
 *      shape: real values >= 0 (multi-hot, counts, probabilities) or
 *      ignore_label
 * @param top output Blob vector (length 1 or 2)
 *   -# @f$ (1) @f$ the loss E
 *   -# optional: @f$ (N \times C \times d_1 \dots d_k) @f$ the softmax
 *      probabilities @f$ p_{rc} @f$
 *
 * Backward:
 * @f[
 *   \frac{\partial E}{\partial x_{rc}} = \frac{\partial E / \partial \mathrm{top}}{\max(1, Z)}
 *       \Big( \big(\textstyle\sum_{c'} q_{rc'}\big)\, p_{rc} - q_{rc} \Big)
 * @f]
 * (0 in ignored rows). The targets cannot be back-propagated to: asking for
 * it is an error.
 *
 * Bad input (wrong number of bottoms or tops, shape mismatch, axis out of
 * range, class_weight of the wrong length, negative or not finite,
 * label_smoothing outside [0, 1), negative or non-finite targets, more than
 * INT_MAX / 5 rows, a CUDA failure of its own kernels or memory) throws
 * caffe::xent::XentError naming the layer, the bottom and the problem; it
 * never aborts the process.
 */
template <typename Dtype>
class MultiLabelSoftmaxLossLayer : public XentLossLayer<Dtype> {
 public:
  explicit MultiLabelSoftmaxLossLayer(const LayerParameter& param)
      : XentLossLayer<Dtype>(param) {}
  virtual void LayerSetUp(const vector<Blob<Dtype>*>& bottom,
                          const vector<Blob<Dtype>*>& top);
  virtual void Reshape(const vector<Blob<Dtype>*>& bottom,
                       const vector<Blob<Dtype>*>& top);

  virtual inline const char* type() const { return "MultiLabelSoftmaxLoss"; }

 protected:
  virtual void Forward_cpu(const vector<Blob<Dtype>*>& bottom,
                           const vector<Blob<Dtype>*>& top);
  virtual void Forward_gpu(const vector<Blob<Dtype>*>& bottom,
                           const vector<Blob<Dtype>*>& top);
  virtual void Backward_cpu(const vector<Blob<Dtype>*>& top,
                            const vector<bool>& propagate_down,
                            const vector<Blob<Dtype>*>& bottom);
  virtual void Backward_gpu(const vector<Blob<Dtype>*>& top,
                            const vector<bool>& propagate_down,
                            const vector<Blob<Dtype>*>& bottom);

  /// Bottoms (scores, targets) and tops (loss, optional probabilities).
  virtual typename XentLossLayer<Dtype>::BlobNames Blobs() const;
  /// VALID, loss_param's default.
  virtual LossParameter_NormalizationMode DefaultNormalization() const {
    return LossParameter_NormalizationMode_VALID;
  }
  /// Throws naming the first target that is negative, NaN or infinite
  /// (error path only: the forward pass counted them in sums.bad_targets).
  void CheckData(const vector<Blob<Dtype>*>& bottom, const xent::LossSums& sums) const;
  /// The row math's options (multi_label_softmax_loss_math.hpp).
  xent::multilabel::RowOptions Options() const;
  /// Forward of an empty blob (a dimension of 0): loss 0, no kernel.
  void ForwardEmpty(const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top);

  /// Softmax axis, canonical (0 <= axis_ < num_axes).
  int axis_;
  /// Product of the dimensions before axis_.
  int outer_num_;
  /// C: the dimension of axis_.
  int classes_;
  /// Product of the dimensions after axis_ (1 for (N, C) scores).
  int inner_num_;
  /// Label smoothing epsilon in [0, 1).
  double label_smoothing_;
  /// multi_label_softmax_loss_param.target_normalization as an int code.
  int target_normalization_;
  /// Per-class weights w_c (C values, 1 by default) in double, host and device.
  Blob<double> class_weight_;
  /// Per-row coefficients from forward (5 x rows doubles, see
  /// multi_label_softmax_loss_math.hpp): max, 1/S, Q, a, b.
  Blob<double> row_coefficients_;
  /// Whether the last Forward_cpu wrote bottom[0]'s diff (a TRAIN layer
  /// with a nonzero top diff: the gradient right after the rows' sums, from
  /// the exps they kept), for the scale diff_scale_ (the top
  /// diff over the normalizer it assumed: every row valid). Backward,
  /// finding that scale, has nothing left to do; Reshape clears it.
  bool diff_ready_;
  double diff_scale_;
};

}  // namespace caffe

#endif  // CAFFE_MULTI_LABEL_SOFTMAX_LOSS_LAYER_HPP_
