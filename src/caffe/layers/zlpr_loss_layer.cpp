#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <sstream>
#include <vector>

#include "caffe/layers/xent_common.hpp"
#include "caffe/layers/xent_hard_targets.hpp"
#include "caffe/layers/zlpr_loss_layer.hpp"
#include "caffe/layers/zlpr_loss_math.hpp"
#include "caffe/util/math_functions.hpp"
#include "caffe/util/xent_reduce.hpp"

#include "zlpr_loss_simd.hpp"

namespace caffe {

namespace xent {
namespace zlpr {
namespace {

/// The SIMD pass 1 of one contiguous row where it applies (float; see
/// zlpr_loss_simd.hpp); false where the caller must take the scalar loop.
inline bool RowSumsSimd(const float* x, const float* t, const RowOptions& opt,
                        RowShifts<float>* m, RowSums* sums) {
  return SimdRowSums(x, t, opt, m, sums);
}
inline bool RowSumsSimd(const double*, const double*, const RowOptions&, RowShifts<double>*,
                        RowSums*) {
  return false;
}

/// The SIMD pass 2 of one contiguous row where it applies (float, finite
/// shifts); false where the caller must take the scalar loop.
inline bool RowGradientSimd(const float* x, const float* t, const RowOptions& opt,
                            const RowCoefficients& coef, double scale, float* dx) {
  return FiniteShifts(coef) && SimdRowGradient(x, t, opt, coef, scale, dx);
}
inline bool RowGradientSimd(const double*, const double*, const RowOptions&,
                            const RowCoefficients&, double, double*) {
  return false;
}

/// The SIMD pass 1 of a tile of n neighbouring rows of a spatial map where
/// it applies (float; see zlpr_loss_simd.hpp): the rows it handled.
inline TileRows TileSumsSimd(const float* x, const float* t, int64_t inner, int n,
                             const RowOptions& opt, RowShifts<float>* m, RowSums* sums) {
  return SimdTileSums(x, t, inner, n, opt, m, sums);
}
inline TileRows TileSumsSimd(const double*, const double*, int64_t, int, const RowOptions&,
                             RowShifts<double>*, RowSums*) {
  return 0;
}

/// The SIMD pass 2 of a block of n neighbouring rows of a spatial map where
/// it applies (float): whether it wrote the rows with FiniteShifts.
inline bool BlockGradientSimd(const float* x, const float* t, int64_t inner, int n,
                              const RowOptions& opt, const double* coefficients, int64_t first,
                              int64_t rows, double scale, const float* row_diff, float* dx) {
  return SimdBlockGradient(x, t, inner, n, opt, coefficients, first, rows, scale, row_diff, dx);
}
inline bool BlockGradientSimd(const double*, const double*, int64_t, int, const RowOptions&,
                              const double*, int64_t, int64_t, double, const double*, double*) {
  return false;
}

/// Whether row j of a tile is in the set.
inline bool InSet(TileRows set, int j) { return (set >> j & 1) != 0; }

/// Forward of rows [begin, end): for each row (contiguous rows) or tile of
/// up to kTileRows neighbouring rows (spatial maps: same outer index), pass 1
/// of the row math (the shifts, then one sweep of sums while the row or tile
/// is in cache; float rows by the SIMD paths where they apply), the
/// coefficients stored for backward and, when that top is asked for, the row
/// losses. Row r is at (outer o, inner i) = (r / inner, r % inner); its C
/// elements are `inner` apart.
template <typename Dtype>
LossSums ForwardRows(const Dtype* x, const Dtype* t, int64_t begin, int64_t end, int64_t rows,
                     int inner, const RowOptions& opt, double* coefficients, Dtype* row_loss) {
  const int C = opt.classes;
  LossSums range;
  RowShifts<Dtype> shifts[kTileRows];
  RowSums sums[kTileRows];
  auto finish = [&](int64_t r, const RowShifts<Dtype>& m, const RowSums& s) {
    StoreRow(m, s, r, rows, coefficients, row_loss, &range.loss, &range.counted,
             &range.bad_targets);
  };
  if (inner == 1) {  // contiguous rows: the row's shifts and sums in registers
    for (int64_t r = begin; r < end; ++r) {
      const Dtype* xr = x + r * C;
      const Dtype* tr = t + r * C;
      RowShifts<Dtype> m = ZeroShifts<Dtype>();
      RowSums sums = ZeroSums();
      if (!RowSumsSimd(xr, tr, opt, &m, &sums)) {
        for (int c = 0; c < C; ++c) AccumulateShift(xr[c], tr[c], opt, &m);
        for (int c = 0; c < C; ++c) AccumulateElement(m, xr[c], tr[c], opt, &sums);
      }
      finish(r, m, sums);
    }
    return range;
  }
  for (int64_t r = begin; r < end;) {
    const int64_t i = r % inner;
    const int n = static_cast<int>(std::min<int64_t>(kTileRows, std::min(end - r, inner - i)));
    const int64_t offset = (r / inner) * C * inner + i;
    const Dtype* xr = x + offset;
    const Dtype* tr = t + offset;
    // Vectors of rows where they apply, then the scalar loop for the rest,
    // plane by plane (contiguous) over the rows the vectors left.
    const TileRows simd = TileSumsSimd(xr, tr, inner, n, opt, shifts, sums);
    if (simd != AllRows(n)) {
      for (int j = 0; j < n; ++j) {
        if (InSet(simd, j)) continue;
        shifts[j] = ZeroShifts<Dtype>();
        sums[j] = ZeroSums();
      }
      for (int c = 0; c < C; ++c) {  // m = max(0, max_side v)
        for (int j = 0; j < n; ++j) {
          if (!InSet(simd, j)) {
            AccumulateShift(xr[c * inner + j], tr[c * inner + j], opt, &shifts[j]);
          }
        }
      }
      for (int c = 0; c < C; ++c) {  // S = sum_side e^(v - m)
        for (int j = 0; j < n; ++j) {
          if (!InSet(simd, j)) {
            AccumulateElement(shifts[j], xr[c * inner + j], tr[c * inner + j], opt, &sums[j]);
          }
        }
      }
    }
    for (int j = 0; j < n; ++j) finish(r + j, shifts[j], sums[j]);
    r += n;
  }
  return range;
}

/// The gradient scale of row r: λ / max(1, Z), plus the row top's diff.
template <typename Dtype>
inline double RowScale(double scale, const Dtype* row_diff, int64_t r) {
  return row_diff == NULL ? scale : scale + static_cast<double>(row_diff[r]);
}

/// Backward of (N, C) scores: rows are contiguous.
template <typename Dtype>
void GradientRows(const Dtype* x, const Dtype* t, const double* coefficients,
                  const Dtype* row_diff, int64_t rows, const RowOptions& opt, double scale,
                  Dtype* dx) {
  const int C = opt.classes;
  // Small blobs stay serial (a thread team costs more than their work).
#pragma omp parallel for schedule(static) if (rows * C > kReduceChunk)
  for (int64_t r = 0; r < rows; ++r) {
    const RowCoefficients coef = LoadCoefficients(coefficients, r, rows);
    const double s = RowScale(scale, row_diff, r);
    const int64_t offset = r * C;
    if (RowGradientSimd(x + offset, t + offset, opt, coef, s, dx + offset)) continue;
    for (int c = 0; c < C; ++c) {
      dx[offset + c] = ElementGradient(coef, x[offset + c], t[offset + c], opt, s);
    }
  }
}

/// Backward of spatial maps: by blocks of up to kGradientRows neighbouring
/// rows of one outer index (row r = o * inner + i), vectors of rows where they
/// apply, then the scalar loop class by class (contiguous along the inner
/// dimension) over the rows the vectors left.
template <typename Dtype>
void GradientSpatial(const Dtype* x, const Dtype* t, const double* coefficients,
                     const Dtype* row_diff, int64_t outer, int inner, const RowOptions& opt,
                     double scale, Dtype* dx) {
  const int C = opt.classes;
  const int64_t rows = outer * inner;
  const int64_t blocks_per_outer = (inner + kGradientRows - 1) / kGradientRows;
  const int64_t blocks = outer * blocks_per_outer;
#pragma omp parallel for schedule(static) if (rows * C > kReduceChunk)
  for (int64_t k = 0; k < blocks; ++k) {
    const int64_t o = k / blocks_per_outer;
    const int i = static_cast<int>(k % blocks_per_outer) * kGradientRows;
    const int n = std::min(kGradientRows, inner - i);
    const int64_t first = o * inner + i;  // the block's first row
    const int64_t offset = o * C * inner + i;
    const bool simd =
        BlockGradientSimd(x + offset, t + offset, inner, n, opt, coefficients, first, rows, scale,
                          row_diff == NULL ? NULL : row_diff + first, dx + offset);
    auto vector_row = [&](int j) {
      return simd && FiniteShifts(LoadCoefficients(coefficients, first + j, rows));
    };
    int j0 = 0;  // the first row the vectors left
    while (j0 < n && vector_row(j0)) ++j0;
    if (j0 == n) continue;
    for (int c = 0; c < C; ++c) {
      const int64_t plane = offset + c * static_cast<int64_t>(inner);
      for (int j = j0; j < n; ++j) {
        if (vector_row(j)) continue;
        const RowCoefficients coef = LoadCoefficients(coefficients, first + j, rows);
        const double s = RowScale(scale, row_diff, first + j);
        dx[plane + j] = ElementGradient(coef, x[plane + j], t[plane + j], opt, s);
      }
    }
  }
}

}  // namespace
}  // namespace zlpr
}  // namespace xent

template <typename Dtype>
void ZLPRLossLayer<Dtype>::LayerSetUp(const vector<Blob<Dtype>*>& bottom,
                                      const vector<Blob<Dtype>*>& top) {
  XentLossLayer<Dtype>::LayerSetUp(bottom, top);  // blob counts, loss weights, loss_param
  xent::RefuseHardTargetIgnoreLabel(this->layer_param_, this->has_ignore_label_,
                                    this->ignore_label_);
}

template <typename Dtype>
void ZLPRLossLayer<Dtype>::Reshape(const vector<Blob<Dtype>*>& bottom,
                                   const vector<Blob<Dtype>*>& top) {
  const LayerParameter& param = this->layer_param_;
  const Blob<Dtype>& x = *bottom[0];
  const xent::ClassAxis geometry =
      xent::CheckedClassAxis(param, x, *bottom[1], param.zlpr_loss_param().axis());
  axis_ = geometry.axis;
  outer_num_ = geometry.outer;
  classes_ = geometry.classes;
  inner_num_ = geometry.inner;
  // Forward keeps kCoefficients doubles per row in a Blob, which holds at
  // most INT_MAX values: refuse here rather than let Blob::Reshape fail.
  const int64_t rows = static_cast<int64_t>(outer_num_) * inner_num_;
  XENT_CHECK(param, rows <= INT_MAX / xent::zlpr::kCoefficients,
             "bottom[0] (scores) of shape " << x.shape_string() << " has " << rows
             << " rows (positions along axis " << axis_ << "); this layer keeps "
             << xent::zlpr::kCoefficients << " values per row in a Caffe blob, so it takes at most "
             << INT_MAX / xent::zlpr::kCoefficients << " rows: split the batch");
  top[0]->Reshape(std::vector<int>());  // the loss: a scalar
  if (top.size() >= 2) {  // one loss per row: the shape of x without the class axis
    std::vector<int> row_shape = x.shape();
    row_shape.erase(row_shape.begin() + axis_);
    top[1]->Reshape(row_shape);
  }
  std::vector<int> coefficient_shape(2, static_cast<int>(rows));
  coefficient_shape[0] = xent::zlpr::kCoefficients;  // structure of arrays: (4, rows)
  row_coefficients_.Reshape(coefficient_shape);
}

template <typename Dtype>
typename XentLossLayer<Dtype>::BlobNames ZLPRLossLayer<Dtype>::Blobs() const {
  typename XentLossLayer<Dtype>::BlobNames names;
  names.bottoms = {"scores", "targets"};
  names.required_bottoms = 2;
  names.tops = {"loss", "row losses"};
  return names;
}

template <typename Dtype>
void ZLPRLossLayer<Dtype>::CheckData(const vector<Blob<Dtype>*>& bottom,
                                     const xent::LossSums& sums) const {
  const xent::zlpr::RowOptions opt = Options();
  // The rule of xent::zlpr::Kind.
  this->RefuseBadValues(
      bottom, 1, sums.bad_targets, xent::HardTargetWhat(this->has_ignore_label_, this->ignore_label_),
      [&](Dtype t) { return xent::zlpr::Kind(t, opt) == xent::zlpr::kInvalid; },
      xent::HardTargetAdvice("ZLPR"));
}

template <typename Dtype>
xent::zlpr::RowOptions ZLPRLossLayer<Dtype>::Options() const {
  const xent::zlpr::RowOptions opt = {classes_, this->has_ignore_label_,
                                      static_cast<double>(this->ignore_label_)};
  return opt;
}

template <typename Dtype>
void ZLPRLossLayer<Dtype>::ForwardEmpty(const vector<Blob<Dtype>*>& bottom,
                                        const vector<Blob<Dtype>*>& top) {
  // No rows, or rows of no classes: every row has no element (not counted)
  // and loss log 1 + log 1 = 0; no kernel or loop runs.
  const int64_t rows = static_cast<int64_t>(outer_num_) * inner_num_;
  this->normalizer_ = this->Normalizer(0.0, static_cast<double>(rows), bottom[0]->shape(0));
  top[0]->mutable_cpu_data()[0] = Dtype(0);
  if (top.size() >= 2 && top[1]->count() > 0) {
    caffe_set(top[1]->count(), Dtype(0), top[1]->mutable_cpu_data());
  }
}

template <typename Dtype>
double ZLPRLossLayer<Dtype>::LossScale(const vector<Blob<Dtype>*>& top) const {
  return static_cast<double>(top[0]->cpu_diff()[0]) / this->normalizer_;
}

template <typename Dtype>
void ZLPRLossLayer<Dtype>::Forward_cpu(const vector<Blob<Dtype>*>& bottom,
                                       const vector<Blob<Dtype>*>& top) {
  if (bottom[0]->count() == 0) return ForwardEmpty(bottom, top);
  const xent::zlpr::RowOptions opt = Options();
  const Dtype* x = bottom[0]->cpu_data();
  const Dtype* t = bottom[1]->cpu_data();
  double* coefficients = row_coefficients_.mutable_cpu_data();
  Dtype* row_loss = top.size() >= 2 ? top[1]->mutable_cpu_data() : NULL;
  const int64_t rows = static_cast<int64_t>(outer_num_) * inner_num_;
  // Fixed chunks of rows (a function of the shape, never of the thread
  // count); chunk sums are added in chunk order: the same bits for any
  // number of threads.
  const int64_t chunk_rows = std::max<int64_t>(1, xent::kReduceChunk / classes_);
  const int64_t chunks = xent::ChunkCount(rows, chunk_rows);
  const int inner = inner_num_;
  const xent::LossSums sums = xent::ChunkedSums(chunks, [&](int64_t k) {
    return xent::zlpr::ForwardRows(x, t, k * chunk_rows, std::min(rows, (k + 1) * chunk_rows),
                                   rows, inner, opt, coefficients, row_loss);
  });
  CheckData(bottom, sums);
  this->SetLoss(top, sums, static_cast<double>(rows), bottom[0]->shape(0));
}

template <typename Dtype>
void ZLPRLossLayer<Dtype>::Backward_cpu(const vector<Blob<Dtype>*>& top,
                                        const vector<bool>& propagate_down,
                                        const vector<Blob<Dtype>*>& bottom) {
  if (!this->GradientWanted(propagate_down, bottom)) return;
  const xent::zlpr::RowOptions opt = Options();
  const Dtype* x = bottom[0]->cpu_data();
  const Dtype* t = bottom[1]->cpu_data();
  const double* coefficients = row_coefficients_.cpu_data();
  const Dtype* row_diff = top.size() >= 2 ? top[1]->cpu_diff() : NULL;
  Dtype* dx = bottom[0]->mutable_cpu_diff();
  const double scale = LossScale(top);
  if (inner_num_ == 1) {
    xent::zlpr::GradientRows(x, t, coefficients, row_diff, outer_num_, opt, scale, dx);
  } else {
    xent::zlpr::GradientSpatial(x, t, coefficients, row_diff, outer_num_, inner_num_, opt,
                                scale, dx);
  }
}

#ifdef CPU_ONLY
STUB_GPU(ZLPRLossLayer);
#endif

INSTANTIATE_CLASS(ZLPRLossLayer);
REGISTER_LAYER_CLASS(ZLPRLoss);

}  // namespace caffe
