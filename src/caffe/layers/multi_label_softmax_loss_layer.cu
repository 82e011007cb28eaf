// CUDA launchers of MultiLabelSoftmaxLoss. The row math is the same
// header-only code as the CPU loop (multi_label_softmax_loss_math.hpp); this file
// only decides which thread handles what.
//
// Three kernel shapes for the forward pass, each with a grid that is a
// function of the shape only and no atomics, so the sums are the same bits
// run after run and on any GPU:
//   RowPerThread  spatial maps (inner >= 32) and short rows: thread r takes
//                 row r; its C elements are `inner` apart, and neighbouring
//                 threads read neighbouring addresses (coalesced).
//   RowPerWarp    rows of 32 to 1024 classes that are contiguous (inner < 32),
//                 at least 1024 of them (e.g. (4096, 40)): a warp takes a
//                 row, its lanes stride over the classes; warp shuffles only.
//   RowPerBlock   longer rows (e.g. (64, 17000)), or fewer than 1024 rows of
//                 32 classes or more (e.g. (1, 5000, 40)): a block takes a
//                 row, its threads stride over the classes; one block
//                 reduction of the max, one of the eight row sums.
// Every thread loads 8 (max) or 4 (sums) elements of its part of a row
// before it uses them (PartialRowMax, PartialRowSums), in the order one at
// a time would take, so the bits are those of that loop.
// Each block leaves its LossSums (loss, valid rows, invalid targets) in the
// layer's block-sum buffer; xent::FinishSums adds them in a fixed order.
// Backward is elementwise.
#include <algorithm>
#include <vector>

#include "caffe/layers/multi_label_softmax_loss_layer.hpp"
#include "caffe/layers/multi_label_softmax_loss_math.hpp"
#include "caffe/util/xent_device.hpp"
#include "caffe/util/xent_reduce.cuh"

namespace caffe {

namespace xent {
namespace multilabel {
namespace {

/// Rows below which long rows take a block each even in a spatial map
/// ((1, 5000, 40): 40 rows): a thread per row would leave the GPU idle.
const int64_t kFewRows = 1024;

/// Elements of a row a thread loads before it uses any: 8 for the max, 4
/// (x, t and w: 12 loads) for the sums, instead of one at a time (a row's
/// pass is bound by round trips, not by bandwidth, when each thread waits
/// for one element at a time). 4, not 8, for the sums: eight elements'
/// double exps at once take about 120 registers (ptxas), a third of the
/// threads per SM.
const int kBatch = 8;
const int kSumBatch = 4;

/// max of the row's classes c = first, first + stride, ... < C, starting
/// from x_0 (an element of the row, so the max is unchanged); MaxOf lets a
/// NaN through. Class c is at xr[c·inner].
template <typename Dtype>
__device__ __forceinline__ Dtype PartialRowMax(const Dtype* __restrict__ xr, int64_t inner,
                                               int64_t C, int64_t first, int64_t stride) {
  Dtype m = xr[0];
  for (int64_t c0 = first; c0 < C; c0 += kBatch * stride) {
    Dtype v[kBatch];
#pragma unroll
    for (int k = 0; k < kBatch; ++k) {
      const int64_t c = c0 + k * stride;
      v[k] = xr[(c < C ? c : 0) * inner];  // past the row: x_0 again
    }
#pragma unroll
    for (int k = 0; k < kBatch; ++k) m = MaxOf(m, v[k]);
  }
  return m;
}

/// The row sums of classes c = first, first + stride, ... < C, added in
/// that order (kSumBatch classes loaded, then accumulated): the same order as
/// one class at a time, so the same bits.
template <typename Dtype>
__device__ __forceinline__ void PartialRowSums(const Dtype* __restrict__ xr,
                                               const Dtype* __restrict__ tr,
                                               const double* __restrict__ w, int64_t inner,
                                               int64_t C, int64_t first, int64_t stride, Dtype m,
                                               const RowOptions& opt, RowSums* sums) {
  for (int64_t c0 = first; c0 < C; c0 += kSumBatch * stride) {
    Dtype xv[kSumBatch], tv[kSumBatch];
    double wv[kSumBatch];
#pragma unroll
    for (int k = 0; k < kSumBatch; ++k) {
      const int64_t c = c0 + k * stride < C ? c0 + k * stride : 0;  // past the row: unused
      xv[k] = xr[c * inner];
      tv[k] = tr[c * inner];
      wv[k] = w[c];
    }
#pragma unroll
    for (int k = 0; k < kSumBatch; ++k) {
      if (c0 + k * stride < C) AccumulateElement(m, xv[k], tv[k], wv[k], opt, sums);
    }
  }
}

/// Spatial maps: one thread per row, grid-stride over the rows.
template <typename Dtype>
__global__ void RowPerThreadForward(const Dtype* x, const Dtype* t, const double* w,
                                    int64_t rows, int inner, RowOptions opt,
                                    double* coefficients, Dtype* prob, double* block_partials) {
  const int C = opt.classes;
  double loss = 0.0, valid = 0.0, invalid = 0.0;
  for (int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; r < rows;
       r += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t offset = (r / inner) * C * inner + r % inner;
    const Dtype* xr = x + offset;
    const Dtype* tr = t + offset;
    const Dtype m = PartialRowMax(xr, inner, C, 0, 1);  // m = max_c x_c
    RowSums sums = ZeroSums();
    PartialRowSums(xr, tr, w, inner, C, 0, 1, m, opt, &sums);
    RowCoefficients coef;
    loss += FinishRow(m, sums, opt, &coef);
    valid += RowIsValid(sums) ? 1.0 : 0.0;
    invalid += sums.invalid;
    StoreCoefficients(coef, r, rows, coefficients);
    if (prob != NULL) {
      for (int c = 0; c < C; ++c) {
        prob[offset + c * inner] = Probability(coef, xr[c * inner]);
      }
    }
  }
  xent::StoreBlockSums(loss, valid, invalid, 0.0, block_partials);
}

/// Max over a block of 256 threads, NaN-propagating; valid in every thread.
template <typename Dtype>
__device__ __forceinline__ Dtype BlockMax(Dtype value) {
  __shared__ Dtype warp_max[xent::kReduceThreads / 32];
  __shared__ Dtype block_max;
  for (int offset = 16; offset > 0; offset >>= 1) {
    value = MaxOf(value, __shfl_down_sync(0xffffffffu, value, offset));
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) warp_max[warp] = value;
  __syncthreads();
  if (threadIdx.x == 0) {
    Dtype m = warp_max[0];
    for (int k = 1; k < xent::kReduceThreads / 32; ++k) m = MaxOf(m, warp_max[k]);
    block_max = m;
  }
  __syncthreads();
  const Dtype result = block_max;
  __syncthreads();  // block_max may be rewritten by the next row
  return result;
}

/// Rows of 32 to kWarpRowClasses classes (not a spatial map), when there
/// are at least kFewRows of them: a warp per row, no block barrier per row.
const int kWarpRowClasses = 1024;

/// Rows of moderate length, many of them: a warp per row (8 rows per block,
/// warp-stride over the rows), lanes over the classes. The max and the
/// eight row sums are reduced by warp shuffles in a fixed tree (the result
/// in lane 0, then broadcast from it), so every lane uses the same max and
/// coefficients.
template <typename Dtype>
__global__ void __launch_bounds__(xent::kReduceThreads)
RowPerWarpForward(const Dtype* __restrict__ x, const Dtype* __restrict__ t,
                  const double* __restrict__ w, int64_t rows, int inner, RowOptions opt,
                  double* __restrict__ coefficients, Dtype* __restrict__ prob,
                  double* __restrict__ block_partials) {
  const int C = opt.classes;
  const int lane = threadIdx.x & 31;
  const int64_t warps_per_block = xent::kReduceThreads / 32;
  double loss = 0.0, valid = 0.0, invalid = 0.0;  // meaningful in lane 0
  // r is the same in every lane of a warp: the shuffles below see all 32.
  for (int64_t r = blockIdx.x * warps_per_block + (threadIdx.x >> 5); r < rows;
       r += gridDim.x * warps_per_block) {
    const int64_t offset = (r / inner) * C * inner + r % inner;
    const Dtype* xr = x + offset;
    const Dtype* tr = t + offset;
    Dtype m = PartialRowMax(xr, inner, C, lane, 32);
    for (int step = 16; step > 0; step >>= 1) {
      m = MaxOf(m, __shfl_down_sync(0xffffffffu, m, step));
    }
    m = __shfl_sync(0xffffffffu, m, 0);  // max_c x_c, in every lane
    RowSums sums = ZeroSums();
    PartialRowSums(xr, tr, w, inner, C, lane, 32, m, opt, &sums);
    double row[8] = {sums.sum_exp, sums.positives, sums.target_sum, sums.weighted,
                     sums.weighted_gap, sums.gap_sum, sums.ignored, sums.invalid};
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      for (int step = 16; step > 0; step >>= 1) {
        row[k] += __shfl_down_sync(0xffffffffu, row[k], step);
      }
    }
    RowCoefficients coef = {0.0, 0.0, 0.0, 0.0, 0.0};  // computed in lane 0, then broadcast
    if (lane == 0) {
      sums.sum_exp = row[0];
      sums.positives = row[1];
      sums.target_sum = row[2];
      sums.weighted = row[3];
      sums.weighted_gap = row[4];
      sums.gap_sum = row[5];
      sums.ignored = row[6];
      sums.invalid = row[7];
      loss += FinishRow(m, sums, opt, &coef);
      valid += RowIsValid(sums) ? 1.0 : 0.0;
      invalid += sums.invalid;
      StoreCoefficients(coef, r, rows, coefficients);
    }
    if (prob != NULL) {
      coef.max = __shfl_sync(0xffffffffu, coef.max, 0);
      coef.inv_sum_exp = __shfl_sync(0xffffffffu, coef.inv_sum_exp, 0);
      for (int64_t c = lane; c < C; c += 32) {
        prob[offset + c * inner] = Probability(coef, xr[c * inner]);
      }
    }
  }
  xent::StoreBlockSums(loss, valid, invalid, 0.0, block_partials);
}

/// Long rows: one block per row (block-stride over the rows), threads over
/// the classes.
template <typename Dtype>
__global__ void RowPerBlockForward(const Dtype* x, const Dtype* t, const double* w,
                                   int64_t rows, int inner, RowOptions opt, double* coefficients,
                                   Dtype* prob, double* block_partials) {
  __shared__ double shared_coefficients[kCoefficients];
  const int C = opt.classes;
  double loss = 0.0, valid = 0.0, invalid = 0.0;  // meaningful in thread 0
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const int64_t offset = (r / inner) * C * inner + r % inner;
    const Dtype* xr = x + offset;
    const Dtype* tr = t + offset;
    // 64-bit class index: c + blockDim.x must not overflow for C near INT_MAX.
    const Dtype m = BlockMax(PartialRowMax(xr, inner, C, threadIdx.x, blockDim.x));  // max_c x_c
    RowSums sums = ZeroSums();
    PartialRowSums(xr, tr, w, inner, C, threadIdx.x, blockDim.x, m, opt, &sums);
    // The eight row sums in one block reduction (valid in thread 0).
    double row[8] = {sums.sum_exp, sums.positives, sums.target_sum, sums.weighted,
                     sums.weighted_gap, sums.gap_sum, sums.ignored, sums.invalid};
    xent::BlockSums(row);
    sums.sum_exp = row[0];
    sums.positives = row[1];
    sums.target_sum = row[2];
    sums.weighted = row[3];
    sums.weighted_gap = row[4];
    sums.gap_sum = row[5];
    sums.ignored = row[6];
    sums.invalid = row[7];
    if (threadIdx.x == 0) {
      RowCoefficients coef;
      loss += FinishRow(m, sums, opt, &coef);
      valid += RowIsValid(sums) ? 1.0 : 0.0;
      invalid += sums.invalid;
      StoreCoefficients(coef, r, rows, coefficients);
      StoreCoefficients(coef, 0, 1, shared_coefficients);
    }
    __syncthreads();
    if (prob != NULL) {
      const RowCoefficients coef = LoadCoefficients(shared_coefficients, 0, 1);
      for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
        prob[offset + c * inner] = Probability(coef, xr[c * inner]);
      }
    }
    __syncthreads();  // shared_coefficients is rewritten by the next row
  }
  xent::StoreBlockSums(loss, valid, invalid, 0.0, block_partials);
}

/// Backward, elementwise over the K scores, one element per thread: element
/// e is class c of row r, from e = (outer·C + c)·inner + i by two
/// FastDivmods (no 64-bit division per element; K < 2^31, a Blob's count).
template <typename Dtype>
__global__ void __launch_bounds__(xent::kReduceThreads)
GradientKernel(uint32_t count, const Dtype* __restrict__ x, const Dtype* __restrict__ t,
               const double* __restrict__ w, FastDivmod classes, FastDivmod inner,
               int64_t rows, const double* __restrict__ coefficients, double scale,
               Dtype* __restrict__ dx) {
  const uint32_t e = blockIdx.x * static_cast<uint32_t>(xent::kReduceThreads) + threadIdx.x;
  if (e >= count) return;
  const uint32_t plane = inner.Div(e);           // outer·C + c
  const uint32_t i = e - plane * inner.divisor();  // e % inner
  const uint32_t outer = classes.Div(plane);
  const uint32_t c = plane - outer * classes.divisor();
  const int64_t r = static_cast<int64_t>(outer) * inner.divisor() + i;
  const Dtype xe = x[e], te = t[e];  // both loads before the row's coefficients
  const RowCoefficients coef = LoadCoefficients(coefficients, r, rows);
  dx[e] = ElementGradient(coef, xe, te, w[c], scale);
}

}  // namespace
}  // namespace multilabel
}  // namespace xent

template <typename Dtype>
void MultiLabelSoftmaxLossLayer<Dtype>::Forward_gpu(const vector<Blob<Dtype>*>& bottom,
                                                    const vector<Blob<Dtype>*>& top) {
  if (bottom[0]->count() == 0) return ForwardEmpty(bottom, top);
  const LayerParameter& lp = this->layer_param_;
  // Out of device memory on first use: XentError, not Caffe's abort.
  xent::ProbeBottomMemory(bottom, lp);
  xent::ProbeDeviceMemory(class_weight_.data(), lp, "class_weight");
  xent::ProbeDeviceMemory(row_coefficients_.data(), lp, "the row coefficients");
  if (top.size() >= 2) xent::ProbeDeviceMemory(top[1]->data(), lp, "top[1] (probabilities)");
  const xent::multilabel::RowOptions opt = Options();
  const int64_t rows = static_cast<int64_t>(outer_num_) * inner_num_;
  const Dtype* x = bottom[0]->gpu_data();
  const Dtype* t = bottom[1]->gpu_data();
  const double* w = class_weight_.gpu_data();
  double* coefficients = row_coefficients_.mutable_gpu_data();
  Dtype* prob = top.size() >= 2 ? top[1]->mutable_gpu_data() : NULL;
  xent::LossSums sums;
  if (rows > 0) {
    // The grid depends on the shape only, so the reduction order (and the
    // bits of the loss) is the same run after run.
    // Rows of 32 classes or more that are contiguous (inner < 32), or too
    // few to give a thread each to a full grid ((1, 5000, 40): 40 rows of
    // 5000 classes), take a warp each when there are many of them and they
    // are at most kWarpRowClasses long, else a block each.
    const bool long_rows =
        classes_ >= 32 && (inner_num_ < 32 || rows < xent::multilabel::kFewRows);
    const bool warp_per_row = long_rows && rows >= xent::multilabel::kFewRows &&
                              classes_ <= xent::multilabel::kWarpRowClasses;
    const bool block_per_row = long_rows && !warp_per_row;
    const int64_t wanted = warp_per_row ? (rows + 7) / 8  // 8 warps per block
                           : block_per_row ? rows
                                           : (rows + xent::kReduceThreads - 1) / xent::kReduceThreads;
    const int blocks = static_cast<int>(std::min<int64_t>(wanted, xent::kReduceBlocks));
    double* partials = xent::BlockSumBuffer(&this->block_sums_, lp);
    if (warp_per_row) {
      xent::multilabel::RowPerWarpForward<Dtype><<<blocks, xent::kReduceThreads>>>(
          x, t, w, rows, inner_num_, opt, coefficients, prob, partials);
    } else if (block_per_row) {
      xent::multilabel::RowPerBlockForward<Dtype><<<blocks, xent::kReduceThreads>>>(
          x, t, w, rows, inner_num_, opt, coefficients, prob, partials);
    } else {
      xent::multilabel::RowPerThreadForward<Dtype><<<blocks, xent::kReduceThreads>>>(
          x, t, w, rows, inner_num_, opt, coefficients, prob, partials);
    }
    XENT_LAUNCH_CHECK(lp, "the forward kernel (RowPerWarpForward / RowPerBlockForward / "
                          "RowPerThreadForward)");
    sums = xent::FinishSums(partials, blocks, lp);
  }
  CheckData(bottom, sums);
  this->normalizer_ = this->Normalizer(sums.counted, static_cast<double>(rows),
                                       bottom[0]->shape(0));
  top[0]->mutable_cpu_data()[0] = static_cast<Dtype>(sums.loss / this->normalizer_);
}

template <typename Dtype>
void MultiLabelSoftmaxLossLayer<Dtype>::Backward_gpu(const vector<Blob<Dtype>*>& top,
                                                     const vector<bool>& propagate_down,
                                                     const vector<Blob<Dtype>*>& bottom) {
  this->CheckPropagateDown(propagate_down);
  if (!propagate_down[0]) return;
  const int64_t count = bottom[0]->count();
  if (count == 0) return;
  const LayerParameter& lp = this->layer_param_;
  xent::ProbeDeviceMemory(bottom[0]->diff(), lp, "bottom[0]'s gradient");
  const double scale = static_cast<double>(top[0]->cpu_diff()[0]) / this->normalizer_;
  // One element per thread: count / 256 blocks (below 2^23, in gridDim.x's range).
  const int blocks = static_cast<int>((count + xent::kReduceThreads - 1) / xent::kReduceThreads);
  // NOLINT_NEXT_LINE(whitespace/operators)
  xent::multilabel::GradientKernel<Dtype><<<blocks, xent::kReduceThreads>>>(
      static_cast<uint32_t>(count), bottom[0]->gpu_data(), bottom[1]->gpu_data(),
      class_weight_.gpu_data(), xent::FastDivmod(static_cast<uint32_t>(classes_)),
      xent::FastDivmod(static_cast<uint32_t>(inner_num_)),
      static_cast<int64_t>(outer_num_) * inner_num_, row_coefficients_.gpu_data(), scale,
      bottom[0]->mutable_gpu_diff());
  XENT_LAUNCH_CHECK(lp, "GradientKernel");
}

INSTANTIATE_LAYER_GPU_FUNCS(MultiLabelSoftmaxLossLayer);

}  // namespace caffe
