#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <sstream>
#include <type_traits>
#include <vector>

#include "caffe/layers/multi_label_softmax_loss_layer.hpp"
#include "caffe/layers/multi_label_softmax_loss_math.hpp"
#include "caffe/layers/xent_common.hpp"
#include "caffe/util/xent_reduce.hpp"

#include "multi_label_softmax_loss_simd.hpp"

namespace caffe {

namespace xent {
namespace multilabel {
namespace {


/// The SIMD pass 1 where it applies (float, contiguous rows, finite
/// scores); false where the caller must take the scalar loop.
/// exps: where to keep the row's e^(x_c - m) (SimdRowSums), or NULL.
inline bool RowSumsSimd(const float* x, const float* t, const double* w, int inner,
                        const RowOptions& opt, float* m, RowSums* sums, float* exps) {
  return inner == 1 && SimdRowSums(x, t, w, opt, m, sums, exps);
}
inline bool RowSumsSimd(const double*, const double*, const double*, int, const RowOptions&,
                        double*, RowSums*, double*) {
  return false;
}

/// Rows of a spatial SIMD run or tile starting at row r, where rows [r, end)
/// are left in the caller's range and `left_in_slice` in this outer slice:
/// a multiple of the vector lanes, at most `most_rows`; 0 where the scalar
/// loop must take row r (double blobs, contiguous rows, no SIMD).
inline int SpatialTileRows(const float*, int inner, int64_t left_in_range,
                           int64_t left_in_slice, int64_t most_rows = INT32_MAX) {
  const int lanes = SimdSpatialLanes();
  if (inner == 1 || lanes == 0) return 0;
  const int64_t most = std::min<int64_t>(most_rows, std::min(left_in_range, left_in_slice));
  return static_cast<int>(most - most % lanes);
}
inline int SpatialTileRows(const double*, int, int64_t, int64_t, int64_t = 0) { return 0; }

inline bool SpatialForwardSimd(const float* x, const float* t, const double* w, int inner,
                               const RowOptions& opt, int count, int64_t first_row, int64_t rows,
                               double* coefficients, double* loss, double* valid,
                               double* invalid, double scale, float* dx) {
  return SimdSpatialForward(x, t, w, inner, opt, count, first_row, rows, coefficients, loss,
                            valid, invalid, scale, dx);
}
inline bool SpatialForwardSimd(const double*, const double*, const double*, int,
                               const RowOptions&, int, int64_t, int64_t, double*, double*,
                               double*, double*, double, double*) {
  return false;
}

inline bool SpatialGradientSimd(const float* x, const float* t, const double* w, int inner,
                                int classes, const double* coefficients, int64_t first_row,
                                int64_t rows, int count, double scale, float* dx) {
  return SimdSpatialGradient(x, t, w, inner, classes, coefficients, first_row, rows, count,
                             scale, dx);
}
inline bool SpatialGradientSimd(const double*, const double*, const double*, int, int,
                                const double*, int64_t, int64_t, int, double, double*) {
  return false;
}

/// The SIMD pass 2 of one contiguous row where it applies (float, finite
/// max, row not ignored); false where the caller must take the scalar loop.
/// exps: the row's e^(x_c - m) kept by RowSumsSimd, or NULL.
inline bool RowGradientSimd(const float* x, const float* t, const double* w,
                            const RowCoefficients& coef, double scale, int classes, float* dx,
                            const float* exps = NULL) {
  if (!std::isfinite(coef.max) || IsIgnored(coef)) return false;
  SimdRowGradient(x, t, w, coef, scale, classes, dx, exps);
  return true;
}
inline bool RowGradientSimd(const double*, const double*, const double*,
                            const RowCoefficients&, double, int, double*,
                            const double* = NULL) {
  return false;
}

/// ElementGradient of `n` neighbouring rows from row r (its first element at
/// offset of x, t, dx; classes `inner` apart), the scalar math.
template <typename Dtype>
void ScalarGradient(const Dtype* x, const Dtype* t, const double* w, const double* coefficients,
                    int64_t r, int64_t n, int64_t rows, int C, int inner, double scale,
                    int64_t offset, Dtype* dx) {
  for (int c = 0; c < C; ++c) {
    for (int64_t j = 0; j < n; ++j) {
      const RowCoefficients coef = LoadCoefficients(coefficients, r + j, rows);
      const int64_t e = offset + c * inner + j;
      dx[e] = ElementGradient(coef, x[e], t[e], w[c], scale);
    }
  }
}

/// The gradient of contiguous row r (its elements at x, t, dx), from the
/// exps RowSumsSimd kept at dx (exps_kept) or taken again.
template <typename Dtype>
void RowGradient(const Dtype* x, const Dtype* t, const double* w, const RowCoefficients& coef,
                 int C, double scale, bool exps_kept, Dtype* dx) {
  if (RowGradientSimd(x, t, w, coef, scale, C, dx, exps_kept ? dx : NULL)) return;
  for (int c = 0; c < C; ++c) dx[c] = ElementGradient(coef, x[c], t[c], w[c], scale);
}

/// Forward of rows [begin, end): pass 1 of the row math (max, then one sweep
/// of sums while the row is in cache), the coefficients stored for backward,
/// and the probabilities when that top is asked for. With dx, also the
/// gradient for `scale` while the rows are in cache: a contiguous row's
/// right after its sums, from the exps they kept in dx (RowGradient); a
/// spatial run's by SimdSpatialForward itself, a vector of rows right after
/// its sums; rows of the scalar math by it. Row r is at
/// (outer o, inner i) = (r / inner, r % inner); its C elements are `inner`
/// apart.
template <typename Dtype>
xent::LossSums ForwardRows(const Dtype* x, const Dtype* t, const double* w, int64_t begin,
                      int64_t end, int64_t rows, int inner, const RowOptions& opt,
                      double* coefficients, Dtype* prob, Dtype* dx, double scale) {
  const int C = opt.classes;
  xent::LossSums range;
  // Finishes row r from its max and sums.
  auto finish = [&](int64_t r, Dtype m, const RowSums& sums) {
    const int64_t offset = (r / inner) * C * inner + r % inner;
    RowCoefficients coef;
    range.loss += FinishRow(m, sums, opt, &coef);
    range.counted += RowIsValid(sums) ? 1.0 : 0.0;
    range.bad_targets += sums.invalid;
    StoreCoefficients(coef, r, rows, coefficients);
    if (prob != NULL) {
      for (int c = 0; c < C; ++c) {
        prob[offset + c * inner] = Probability(coef, x[offset + c * inner]);
      }
    }
  };
  for (int64_t r = begin; r < end;) {
    const int64_t offset = (r / inner) * C * inner + r % inner;
    const Dtype* xr = x + offset;
    const Dtype* tr = t + offset;
    // Spatial maps: the rest of this outer slice in the range at once, by
    // tiles of neighbouring rows, the gradient too.
    const int run = SpatialTileRows(x, inner, end - r, inner - r % inner);
    if (run > 0) {
      double loss, valid, invalid;
      if (SpatialForwardSimd(xr, tr, w, inner, opt, run, r, rows, coefficients, &loss, &valid,
                             &invalid, scale, dx != NULL ? dx + offset : NULL)) {
        range.loss += loss;
        range.counted += valid;
        range.bad_targets += invalid;
        if (prob != NULL) {
          for (int j = 0; j < run; ++j) {
            const RowCoefficients coef = LoadCoefficients(coefficients, r + j, rows);
            for (int c = 0; c < C; ++c) {
              prob[offset + j + c * inner] = Probability(coef, xr[j + c * inner]);
            }
          }
        }
        r += run;
        continue;
      }
      // A non-finite score: the whole run by the scalar loop.
      for (const int64_t run_end = r + run; r < run_end; ++r) {
        const int64_t o = (r / inner) * C * inner + r % inner;
        RowSums sums = ZeroSums();
        Dtype m = x[o];
        for (int c = 1; c < C; ++c) m = MaxOf(m, x[o + c * inner]);
        for (int c = 0; c < C; ++c) {
          AccumulateElement(m, x[o + c * inner], t[o + c * inner], w[c], opt, &sums);
        }
        finish(r, m, sums);
        if (dx != NULL) ScalarGradient(x, t, w, coefficients, r, 1, rows, C, inner, scale, o, dx);
      }
      continue;
    }
    RowSums sums = ZeroSums();
    Dtype m;
    Dtype* exps = dx != NULL && inner == 1 ? dx + offset : NULL;
    const bool exps_kept = RowSumsSimd(xr, tr, w, inner, opt, &m, &sums, exps);
    if (!exps_kept) {
      m = xr[0];
      for (int c = 1; c < C; ++c) m = MaxOf(m, xr[c * inner]);  // m = max_c x_c
      for (int c = 0; c < C; ++c) {
        AccumulateElement(m, xr[c * inner], tr[c * inner], w[c], opt, &sums);
      }
    }
    finish(r, m, sums);
    if (exps != NULL) {
      RowGradient(xr, tr, w, LoadCoefficients(coefficients, r, rows), C, scale, exps_kept, exps);
    } else if (dx != NULL) {
      ScalarGradient(x, t, w, coefficients, r, 1, rows, C, inner, scale, offset, dx);
    }
    ++r;
  }
  return range;
}


/// Backward of (N, C) scores: rows are contiguous.
template <typename Dtype>
void GradientRows(const Dtype* x, const Dtype* t, const double* w, const double* coefficients,
                  int64_t rows, int C, double scale, Dtype* dx) {
  // Small blobs stay serial: a thread team costs more than their work, and
  // its spinning threads slow OpenBLAS's on a busy machine (the demo's 64x10).
#pragma omp parallel for schedule(static) if (rows * C > xent::kReduceChunk)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t offset = r * C;
    RowGradient(x + offset, t + offset, w, LoadCoefficients(coefficients, r, rows), C, scale,
                false, dx + offset);
  }
}

/// Backward of spatial maps: tiles of neighbouring rows (same outer index),
/// each over all its classes plane by plane, so a row's coefficients are
/// loaded once; where no SIMD tile applies, the same walk with the scalar
/// math.
template <typename Dtype>
void GradientSpatial(const Dtype* x, const Dtype* t, const double* w, const double* coefficients,
                     int64_t outer, int C, int inner, double scale, Dtype* dx) {
  const int64_t rows = outer * inner;
  const int kTile = kSpatialTileRows;
  const int64_t tiles_per_outer = (inner + kTile - 1) / kTile;
  const int64_t tiles = outer * tiles_per_outer;
#pragma omp parallel for schedule(static) if (rows * C > xent::kReduceChunk)
  for (int64_t k = 0; k < tiles; ++k) {
    const int64_t o = k / tiles_per_outer;
    const int64_t i_end = std::min<int64_t>(inner, (k % tiles_per_outer + 1) * kTile);
    int64_t i = (k % tiles_per_outer) * kTile;
    const int simd = SpatialTileRows(x, inner, i_end - i, i_end - i, kTile);
    const int64_t offset = o * C * inner + i;
    if (simd > 0 && SpatialGradientSimd(x + offset, t + offset, w, inner, C, coefficients,
                                        o * inner + i, rows, simd, scale, dx + offset)) {
      i += simd;
    }
    for (int c = 0; c < C; ++c) {
      for (int64_t j = i; j < i_end; ++j) {
        const RowCoefficients coef = LoadCoefficients(coefficients, o * inner + j, rows);
        const int64_t e = (o * C + c) * inner + j;
        dx[e] = ElementGradient(coef, x[e], t[e], w[c], scale);
      }
    }
  }
}

}  // namespace
}  // namespace multilabel
}  // namespace xent

template <typename Dtype>
void MultiLabelSoftmaxLossLayer<Dtype>::LayerSetUp(const vector<Blob<Dtype>*>& bottom,
                                                   const vector<Blob<Dtype>*>& top) {
  XentLossLayer<Dtype>::LayerSetUp(bottom, top);  // blob counts, loss weights, loss_param
  const LayerParameter& param = this->layer_param_;
  const MultiLabelSoftmaxLossParameter& ml_param = param.multi_label_softmax_loss_param();
  label_smoothing_ = ml_param.label_smoothing();
  XENT_CHECK(param, label_smoothing_ >= 0.0 && label_smoothing_ < 1.0,
             "label_smoothing = " << label_smoothing_ << " is invalid; it must be in [0, 1)");
  target_normalization_ = static_cast<int>(ml_param.target_normalization());
  // 0 marks a negative class: as ignore_label it would ignore nearly every row.
  XENT_CHECK(param, !this->has_ignore_label_ || this->ignore_label_ != 0,
             "ignore_label = 0 is refused: 0 is the target of a negative class, so every "
             "row with a negative class would be ignored");
  diff_ready_ = false;
  diff_scale_ = 0.0;
}

template <typename Dtype>
void MultiLabelSoftmaxLossLayer<Dtype>::Reshape(const vector<Blob<Dtype>*>& bottom,
                                                const vector<Blob<Dtype>*>& top) {
  const LayerParameter& param = this->layer_param_;
  const Blob<Dtype>& x = *bottom[0];
  const Blob<Dtype>& t = *bottom[1];
  XENT_CHECK(param, x.shape() == t.shape(),
             "bottom[1] (targets) has shape " << t.shape_string() << " but bottom[0] (scores) has "
             << x.shape_string() << "; they must be equal");
  const int num_axes = x.num_axes();
  const int axis = param.multi_label_softmax_loss_param().axis();
  XENT_CHECK(param, axis >= -num_axes && axis < num_axes,
             "axis " << axis << " is out of range for bottom[0] (scores) of shape "
                     << x.shape_string() << " (" << num_axes << " axes)");
  axis_ = axis < 0 ? axis + num_axes : axis;
  outer_num_ = x.count(0, axis_);
  classes_ = x.shape(axis_);
  inner_num_ = x.count(axis_ + 1);
  // Forward keeps xent::multilabel::kCoefficients doubles per row in a Blob, which holds at
  // most INT_MAX values: refuse here rather than let Blob::Reshape fail.
  const int64_t rows = static_cast<int64_t>(outer_num_) * inner_num_;
  XENT_CHECK(param, rows <= INT_MAX / xent::multilabel::kCoefficients,
             "bottom[0] (scores) of shape " << x.shape_string() << " has " << rows
             << " rows (softmax vectors along axis " << axis_ << "); this layer keeps "
             << xent::multilabel::kCoefficients
             << " values per row in a Caffe blob, so it takes at most "
             << INT_MAX / xent::multilabel::kCoefficients << " rows: split the batch");
  // C = 0 (an empty blob) still checks class_weight, as if for one class.
  if (class_weight_.count() != classes_ || classes_ == 0) {
    const std::vector<float> weights =
        xent::ExpandPerClass(param, param.multi_label_softmax_loss_param().class_weight(),
                             std::max(classes_, 1), "class_weight");
    class_weight_.Reshape(std::vector<int>(1, classes_));
    std::copy(weights.begin(), weights.begin() + classes_, class_weight_.mutable_cpu_data());
  }
  diff_ready_ = false;
  top[0]->Reshape(std::vector<int>());  // the loss: a scalar
  if (top.size() >= 2) top[1]->ReshapeLike(x);
  std::vector<int> coefficient_shape(2, static_cast<int>(rows));
  coefficient_shape[0] = xent::multilabel::kCoefficients;  // structure of arrays: (5, rows)
  row_coefficients_.Reshape(coefficient_shape);
}

template <typename Dtype>
typename XentLossLayer<Dtype>::BlobNames MultiLabelSoftmaxLossLayer<Dtype>::Blobs() const {
  typename XentLossLayer<Dtype>::BlobNames names;
  names.bottoms = {"scores", "targets"};
  names.required_bottoms = 2;
  names.tops = {"loss", "probabilities"};
  return names;
}

template <typename Dtype>
void MultiLabelSoftmaxLossLayer<Dtype>::CheckData(const vector<Blob<Dtype>*>& bottom,
                                                  const xent::LossSums& sums) const {
  const bool has_ignore = this->has_ignore_label_;
  const double ignore = this->ignore_label_;
  std::ostringstream what;
  what << "negative or non-finite values";
  if (has_ignore) what << " that are not ignore_label (" << this->ignore_label_ << ")";
  // The rule of AccumulateTarget: 0, finite > 0, or ignore_label.
  this->RefuseBadValues(
      bottom, 1, sums.bad_targets, what.str(),
      [&](Dtype t) {
        const bool ignored = has_ignore && static_cast<double>(t) == ignore;
        return !ignored && !(t >= Dtype(0) && t <= xent::XentMaxFinite(t));
      },
      "; targets are data: finite and >= 0");
}

template <typename Dtype>
xent::multilabel::RowOptions MultiLabelSoftmaxLossLayer<Dtype>::Options() const {
  const xent::multilabel::RowOptions opt = {classes_, target_normalization_, label_smoothing_,
                                            this->has_ignore_label_,
                                            static_cast<double>(this->ignore_label_)};
  return opt;
}

template <typename Dtype>
void MultiLabelSoftmaxLossLayer<Dtype>::ForwardEmpty(const vector<Blob<Dtype>*>& bottom,
                                                     const vector<Blob<Dtype>*>& top) {
  // No rows, or rows of no classes: every row is ignored (none has a
  // positive target), so the loss is 0 over the normalizer max(1, Z); no
  // kernel or loop runs (a row of C = 0 has no element to take a max of).
  this->normalizer_ = this->Normalizer(0.0, static_cast<double>(outer_num_) * inner_num_,
                                       bottom[0]->shape(0));
  top[0]->mutable_cpu_data()[0] = Dtype(0);
}

template <typename Dtype>
void MultiLabelSoftmaxLossLayer<Dtype>::Forward_cpu(const vector<Blob<Dtype>*>& bottom,
                                                    const vector<Blob<Dtype>*>& top) {
  if (bottom[0]->count() == 0) return ForwardEmpty(bottom, top);
  const xent::multilabel::RowOptions opt = Options();
  const Dtype* x = bottom[0]->cpu_data();
  const Dtype* t = bottom[1]->cpu_data();
  const double* w = class_weight_.cpu_data();
  double* coefficients = row_coefficients_.mutable_cpu_data();
  Dtype* prob = top.size() >= 2 ? top[1]->mutable_cpu_data() : NULL;
  const int64_t rows = static_cast<int64_t>(outer_num_) * inner_num_;
  // Fixed chunks of rows (a function of the shape, never of the thread
  // count); chunk sums are added in chunk order: the same bits for any
  // number of threads.
  // Spatial maps take 2x longer chunks, a multiple of 16 rows: runs of SIMD
  // tiles (multi_label_softmax_loss_simd.cpp) whose vectors of rows never
  // straddle a chunk (no row left to the scalar loop at a chunk's end), and
  // enough chunks (85 at 8x21x128x128) that threads get nearly equal shares
  // (8x chunks made 22, 11 for each of 2 threads but the last one short).
  const int64_t chunk_elements = (inner_num_ > 1 ? 2 : 1) * xent::kReduceChunk;
  int64_t chunk_rows = std::max<int64_t>(1, chunk_elements / classes_);
  if (inner_num_ > 1) chunk_rows = std::max<int64_t>(16, chunk_rows - chunk_rows % 16);
  const int64_t chunks = xent::ChunkCount(rows, chunk_rows);
  const int inner = inner_num_;
  // In a TRAIN net whose loss counts, the gradient follows the rows' sums,
  // from the e^(x_c - m) they kept in dx (one exp per element instead of
  // two, the rows still in cache), for the normalizer of every row valid
  // (the usual case; no other normalization depends on the count); if the
  // pass counts fewer, Backward computes it again.
  diff_ready_ = false;
  Dtype* dx = NULL;
  double scale = 0.0;
  if (this->phase_ == TRAIN && top[0]->cpu_diff()[0] != Dtype(0)) {
    dx = bottom[0]->mutable_cpu_diff();
    scale = static_cast<double>(top[0]->cpu_diff()[0]) /
            this->Normalizer(static_cast<double>(rows), static_cast<double>(rows),
                             bottom[0]->shape(0));
  }
  const xent::LossSums sums = xent::ChunkedSums(chunks, [&](int64_t k) {
    return xent::multilabel::ForwardRows(x, t, w, k * chunk_rows,
                                         std::min(rows, (k + 1) * chunk_rows), rows, inner, opt,
                                         coefficients, prob, dx, scale);
  });
  CheckData(bottom, sums);
  this->SetLoss(top, sums, static_cast<double>(rows), bottom[0]->shape(0));
  if (dx != NULL && static_cast<double>(top[0]->cpu_diff()[0]) / this->normalizer_ == scale) {
    diff_scale_ = scale;
    diff_ready_ = true;
  }
}

template <typename Dtype>
void MultiLabelSoftmaxLossLayer<Dtype>::Backward_cpu(const vector<Blob<Dtype>*>& top,
                                                     const vector<bool>& propagate_down,
                                                     const vector<Blob<Dtype>*>& bottom) {
  if (!this->GradientWanted(propagate_down, bottom)) return;
  const Dtype* x = bottom[0]->cpu_data();
  const Dtype* t = bottom[1]->cpu_data();
  const double* w = class_weight_.cpu_data();
  const double* coefficients = row_coefficients_.cpu_data();
  Dtype* dx = bottom[0]->mutable_cpu_diff();
  const double scale = static_cast<double>(top[0]->cpu_diff()[0]) / this->normalizer_;
  if (diff_ready_ && scale == diff_scale_) return;  // Forward_cpu wrote dx for this scale
  if (inner_num_ == 1) {
    xent::multilabel::GradientRows(x, t, w, coefficients, outer_num_, classes_, scale, dx);
  } else {
    xent::multilabel::GradientSpatial(x, t, w, coefficients, outer_num_, classes_, inner_num_,
                                      scale, dx);
  }
}

#ifdef CPU_ONLY
STUB_GPU(MultiLabelSoftmaxLossLayer);
#endif

INSTANTIATE_CLASS(MultiLabelSoftmaxLossLayer);
REGISTER_LAYER_CLASS(MultiLabelSoftmaxLoss);

}  // namespace caffe
