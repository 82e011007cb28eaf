#ifndef CAFFE_ZLPR_LOSS_LAYER_HPP_
#define CAFFE_ZLPR_LOSS_LAYER_HPP_

#include <vector>

#include "caffe/blob.hpp"
#include "caffe/layer.hpp"
#include "caffe/proto/caffe.pb.h"

#include "caffe/layers/xent_loss_layer.hpp"
#include "caffe/layers/zlpr_loss_math.hpp"
#include "caffe/util/xent_reduce.hpp"

namespace caffe {

/**
 * @brief The ZLPR loss (zero-bounded log-sum-exp and pairwise rank-based):
 *        Su's "multilabel categorical cross-entropy" (2020), the
 *        multi-label extension of softmax cross-entropy, with 0 as the
 *        decision threshold (Su et al. 2022, "ZLPR: A Novel Loss for
 *        Multi-label Classification", arXiv:2208.02955).
 *
 * A *row* r is the C scores of one (outer, inner) position along `axis`
 * (spatial positions are separate rows, as in MultiLabelSoftmaxLoss). With
 * P_r its positives (target 1) and N_r its negatives (target 0),
 * @f[
 *   \ell_r = \log\Big(1 + \sum_{j \in N_r} e^{x_{rj}}\Big)
 *          + \log\Big(1 + \sum_{i \in P_r} e^{-x_{ri}}\Big),
 *   \qquad
 *   E = \frac{1}{\max(1, Z)} \sum_r \ell_r .
 * @f]
 * No hyper-parameters. Each term is a log-sum-exp over its set and one
 * zero, evaluated with its shift m = max(0, max v) subtracted and the sum
 * in double as m + log S, two non-negative terms: finite for finite scores
 * of any magnitude, +inf only where the limit is (a negative at +inf, a
 * positive at -inf). A row without positives (or without negatives) has
 * that term exactly log 1 = 0: no masking constant such as the reference
 * code's 1e12 enters the arithmetic.
 *
 * Targets are hard: 1 (positive), 0 (negative), or loss_param.ignore_label
 * (the element is in neither set; ignore_label 0 or 1 is refused). Any other
 * value, NaN or infinite targets included, is refused with an error naming
 * the first: the loss is defined on two sets, and silently binarizing soft
 * targets (timm's > 0.5) would train on labels the user did not give.
 * Normalizer Z (loss_param.normalization, default VALID): VALID = rows with
 * at least one element not ignored (a row whose every element is ignored
 * gives 0 and is not counted), BATCH_SIZE = N = x.shape(0), FULL = all
 * rows, NONE = 1. With (N, C) scores and no ignore_label, VALID is N: the
 * mean over samples of timm's ZlprLoss and of Su's Keras function.
 *
 * CPU: rows in parallel (OpenMP) over fixed chunks, sums in double, chunk
 * sums added in chunk order (the same bits for any thread count). Float
 * blobs take Highway SIMD paths for the exps (zlpr_loss_simd.cpp:
 * double-vector exps, the same math to an ulp of double): contiguous rows
 * with a row's classes along the lanes, spatial maps with neighbouring rows
 * along the lanes, by tiles of 64 rows in forward and blocks of 1024 in
 * backward, read class by class (contiguous). Double blobs, and rows with a
 * non-finite kept score or shift, take the scalar math. GPU: a thread
 * per row (spatial maps, short rows) or a block per row (long rows), block
 * sums added in a fixed order (xent_reduce.cuh).
 *
 * Memory beyond the tops: 4 doubles per row (the two shifts and the two
 * inverse sums), kept from forward for backward; never the bottom diffs as
 * scratch.
 *
 * @param bottom input Blob vector (length 2)
 *   -# @f$ (N \times C \times d_1 \dots d_k) @f$ the scores x, classes along
 *      `axis` (default 1, negative counts from the end)
 *   -# @f$ (N \times C \times d_1 \dots d_k) @f$ the targets t, the same
 *      shape: 0, 1 or ignore_label
 * @param top output Blob vector (length 1 or 2)
 *   -# @f$ (1) @f$ the loss E
 *   -# optional: the shape of x without `axis` (one value per row): the row
 *      losses @f$ \ell_r @f$, not normalized (loss weight 0 unless given)
 *
 * Backward, with λ the diff of top[0] and λ'_r that of the optional row top:
 * @f[
 *   \frac{\partial E}{\partial x_{rc}} = \Big(\frac{\lambda}{\max(1, Z)} + \lambda'_r\Big)
 *   \begin{cases}
 *     e^{x_{rc}} / (1 + \sum_{j \in N_r} e^{x_{rj}}) & c \in N_r \\
 *     -e^{-x_{rc}} / (1 + \sum_{i \in P_r} e^{-x_{ri}}) & c \in P_r \\
 *     0 & \text{ignored}
 *   \end{cases}
 * @f]
 * The targets cannot be back-propagated to: asking for it is an error.
 *
 * Bad input (wrong number of bottoms or tops, shape mismatch, axis out of
 * range, ignore_label 0 or 1, targets other than 0, 1 and ignore_label,
 * more than INT_MAX / 4 rows, a CUDA failure of its own kernels or memory)
 * throws caffe::xent::XentError naming the layer, the bottom and the
 * problem; it never aborts the process.
 */
template <typename Dtype>
class ZLPRLossLayer : public XentLossLayer<Dtype> {
 public:
  explicit ZLPRLossLayer(const LayerParameter& param) : XentLossLayer<Dtype>(param) {}
  virtual void LayerSetUp(const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top);
  virtual void Reshape(const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top);

  virtual inline const char* type() const { return "ZLPRLoss"; }

 protected:
  virtual void Forward_cpu(const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top);
  virtual void Forward_gpu(const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top);
  virtual void Backward_cpu(const vector<Blob<Dtype>*>& top, const vector<bool>& propagate_down,
                            const vector<Blob<Dtype>*>& bottom);
  virtual void Backward_gpu(const vector<Blob<Dtype>*>& top, const vector<bool>& propagate_down,
                            const vector<Blob<Dtype>*>& bottom);

  /// Bottoms (scores, targets) and tops (loss, optional row losses).
  virtual typename XentLossLayer<Dtype>::BlobNames Blobs() const;
  /// VALID, loss_param's default.
  virtual LossParameter_NormalizationMode DefaultNormalization() const {
    return LossParameter_NormalizationMode_VALID;
  }
  /// Throws naming the first target that is not 0, 1 or ignore_label
  /// (error path only: the forward pass counted them in sums.bad_targets).
  void CheckData(const vector<Blob<Dtype>*>& bottom, const xent::LossSums& sums) const;
  /// The row math's options (zlpr_loss_math.hpp).
  xent::zlpr::RowOptions Options() const;
  /// Forward of an empty blob (a dimension of 0): loss 0 and row losses 0,
  /// no kernel.
  void ForwardEmpty(const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top);
  /// λ / max(1, Z): the scale of every row's gradient from top[0].
  double LossScale(const vector<Blob<Dtype>*>& top) const;

  /// Class axis, canonical (0 <= axis_ < num_axes).
  int axis_;
  /// Product of the dimensions before axis_.
  int outer_num_;
  /// C: the dimension of axis_.
  int classes_;
  /// Product of the dimensions after axis_ (1 for (N, C) scores).
  int inner_num_;
  /// Per-row coefficients from forward ((4, rows) doubles, see
  /// zlpr_loss_math.hpp): m_neg, 1/S_neg, m_pos, 1/S_pos.
  Blob<double> row_coefficients_;
};

}  // namespace caffe

#endif  // CAFFE_ZLPR_LOSS_LAYER_HPP_
