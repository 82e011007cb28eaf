#ifndef CAFFE_TWO_WAY_LOSS_LAYER_HPP_
#define CAFFE_TWO_WAY_LOSS_LAYER_HPP_

#include <vector>

#include "caffe/blob.hpp"
#include "caffe/layer.hpp"
#include "caffe/proto/caffe.pb.h"

#include "caffe/layers/two_way_loss_math.hpp"
#include "caffe/layers/xent_loss_layer.hpp"
#include "caffe/util/xent_reduce.hpp"

namespace caffe {

/**
 * @brief The two-way multi-label loss of Kobayashi (CVPR 2023, "Two-way
 *        Multi-Label Loss"): the hardest negative against the hardest
 *        positive, softly, across the classes of each sample and across the
 *        samples of each class.
 *
 * Rows r are the C scores of one (outer, inner) position along `axis`
 * (samples; spatial positions are separate rows); columns c are one class
 * over all rows of the batch. For a line L (a row or a column) with
 * negatives N_L (target 0) and positives P_L (target 1),
 * @f[
 *   a_L = T_n \log \sum_{j \in N_L} e^{x_j / T_n}
 *       + T_p \log \sum_{i \in P_L} e^{-x_i / T_p},
 *   \qquad
 *   E = \frac{1}{Z_r} \sum_{r: P_r \neq \emptyset} \mathrm{softplus}(a_r)
 *     + \frac{1}{Z_c} \sum_{c: P_c \neq \emptyset} \mathrm{softplus}(a_c),
 * @f]
 * with T_p = positive_temperature (default 4) and T_n =
 * negative_temperature (default 1), the defaults of the paper's code and
 * timm. Each log-sum-exp is evaluated with its max subtracted and the sum in
 * double; a line with positives but no negative has a = -inf: loss 0 and
 * gradient 0 exactly (the reference code's finite masks give ~e^-1e4).
 *
 * Targets are hard: 1, 0 or loss_param.ignore_label (in neither set of its
 * row and its column; 0 and 1 are refused as ignore_label). Any other
 * value, NaN and infinities included, is refused naming the first (timm
 * binarizes at 0.5; the paper's code takes y > 0 as positive and y < 0 as
 * neither). Normalizers (loss_param.normalization, default VALID), each
 * max(1, ·): VALID = Z_r rows with a positive, Z_c columns with a positive
 * (the paper's means); FULL = all rows, all C columns; BATCH_SIZE = N =
 * x.shape(0) for both terms; NONE = 1.
 *
 * Deterministic: rows in parallel over fixed chunks of rows (chunk sums in
 * chunk order), columns in fixed blocks, each column's sums in row order on
 * one thread; on the GPU a fixed grid and block sums in a fixed order. The
 * same bits for any thread count, run after run. Float (N, C) scores take a
 * Highway SIMD path for the exps (two_way_loss_simd.cpp, the same math in
 * double vectors) and one pass for both terms: fixed blocks of rows (at
 * most 16, a function of the shape), each in row order on one thread,
 * giving its rows' lines and its share of every column's sums against the
 * block's running shifts; the blocks' shares then added in block order
 * against the largest. A column whose sums that leaves far below its own
 * scale (its largest value about 500 / T or more below the blob's) is swept
 * again alone with its own shifts.
 *
 * Memory beyond the top: 5 doubles per row and per column, kept from
 * forward for backward; on the CPU's fused pass, 24 bytes per class for
 * each block of rows (17 times that on a spatial map: a lane each), kept
 * between calls.
 *
 * @param bottom input Blob vector (length 2)
 *   -# @f$ (N \times C \times d_1 \dots d_k) @f$ the scores x
 *   -# the same shape: targets t, 0, 1 or ignore_label
 * @param top output Blob vector (length 1)
 *   -# @f$ (1) @f$ the loss E
 *
 * Backward: with λ the top's diff, for an element of row r and column c,
 * @f[
 *   \frac{\partial E}{\partial x} = \frac{λ}{Z_r} σ(a_r) g_r + \frac{λ}{Z_c} σ(a_c) g_c,
 * @f]
 * g_L the softmax weight of x / T_n among the line's negatives, or minus
 * that of -x / T_p among its positives; 0 for ignored elements and lines
 * without a positive or a negative.
 *
 * Bad input (blob counts, shape mismatch, axis out of range, temperatures
 * not finite and > 0, ignore_label 0 or 1, targets other than 0, 1 and
 * ignore_label, too many rows or columns for a blob, a CUDA failure of its
 * own code) throws caffe::xent::XentError; it never aborts the process.
 */
template <typename Dtype>
class TwoWayLossLayer : public XentLossLayer<Dtype> {
 public:
  explicit TwoWayLossLayer(const LayerParameter& param) : XentLossLayer<Dtype>(param) {}
  virtual void LayerSetUp(const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top);
  virtual void Reshape(const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top);

  virtual inline const char* type() const { return "TwoWayLoss"; }

 protected:
  virtual void Forward_cpu(const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top);
  virtual void Forward_gpu(const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top);
  virtual void Backward_cpu(const vector<Blob<Dtype>*>& top, const vector<bool>& propagate_down,
                            const vector<Blob<Dtype>*>& bottom);
  virtual void Backward_gpu(const vector<Blob<Dtype>*>& top, const vector<bool>& propagate_down,
                            const vector<Blob<Dtype>*>& bottom);

  /// Bottoms (scores, targets) and the top (loss).
  virtual typename XentLossLayer<Dtype>::BlobNames Blobs() const;
  /// VALID, loss_param's default (the paper's means).
  virtual LossParameter_NormalizationMode DefaultNormalization() const {
    return LossParameter_NormalizationMode_VALID;
  }
  /// Throws naming the first target that is not 0, 1 or ignore_label.
  void CheckData(const vector<Blob<Dtype>*>& bottom, double bad_targets) const;
  /// The line math's options (two_way_loss_math.hpp).
  xent::twoway::Options Options() const;
  /// The loss from the two passes' sums; sets the two normalizers.
  void FinishForward(const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top,
                     const xent::LossSums& rows, const xent::LossSums& columns);

  /// Class axis, canonical.
  int axis_;
  /// Product of the dimensions before axis_.
  int outer_num_;
  /// C: the dimension of axis_ (the number of columns).
  int classes_;
  /// Product of the dimensions after axis_.
  int inner_num_;
  /// Temperatures Tp and Tn.
  double tp_, tn_;
  /// max(1, Z_r) and max(1, Z_c) of the last Forward.
  double row_normalizer_, column_normalizer_;
  /// Coefficients from forward, (5, rows) and (5, C) doubles.
  Blob<double> row_coefficients_, column_coefficients_;
  /// The CPU's fused pass over float scores: each block of rows' column
  /// sums (2C doubles) and counts (2C floats), and on a spatial map the
  /// same per lane; at most 16 blocks, kept between calls.
  std::vector<double> column_sums_;
  std::vector<float> column_counts_;
};

}  // namespace caffe

#endif  // CAFFE_TWO_WAY_LOSS_LAYER_HPP_
