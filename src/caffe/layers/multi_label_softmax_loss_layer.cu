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

/// The eight row sums as an array (for the block and warp reductions), in
/// RowSums's order, and back; AddRowSums adds such an array to `sums`.
const int kRowSums = 8;
__device__ __forceinline__ void RowSumsToArray(const RowSums& s, double (&v)[kRowSums]) {
  v[0] = s.sum_exp;
  v[1] = s.positives;
  v[2] = s.target_sum;
  v[3] = s.weighted;
  v[4] = s.weighted_gap;
  v[5] = s.gap_sum;
  v[6] = s.ignored;
  v[7] = s.invalid;
}
__device__ __forceinline__ void AddRowSums(const double* v, RowSums* s) {
  s->sum_exp += v[0];
  s->positives += v[1];
  s->target_sum += v[2];
  s->weighted += v[3];
  s->weighted_gap += v[4];
  s->gap_sum += v[5];
  s->ignored += v[6];
  s->invalid += v[7];
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
    double row[kRowSums];
    RowSumsToArray(sums, row);
#pragma unroll
    for (int k = 0; k < kRowSums; ++k) {
      for (int step = 16; step > 0; step >>= 1) {
        row[k] += __shfl_down_sync(0xffffffffu, row[k], step);
      }
    }
    RowCoefficients coef = {0.0, 0.0, 0.0, 0.0, 0.0};  // computed in lane 0, then broadcast
    if (lane == 0) {
      sums = ZeroSums();
      AddRowSums(row, &sums);
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
    double row[kRowSums];
    RowSumsToArray(sums, row);
    xent::BlockSums(row);
    sums = ZeroSums();
    AddRowSums(row, &sums);
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

/// Long rows, few of them ((64, 17000): 64 blocks would leave half of a
/// 132-SM GPU idle): each row is cut into S slices of at least
/// kSliceClasses classes, rows·S <= kMostSlices, a block per slice, in
/// three launches:
///   SliceMax       block (r, s): the max of slice s of row r;
///   SliceSums      block (r, s): the row max m from the S slice maxes (the
///                  same loop in every block: the same m), then slice s's
///                  eight row sums around m;
///   FinishSlices   thread r: m again, the S slices' sums added in slice
///                  order, then FinishRow as RowPerThreadForward does.
/// The sums around one m add up across slices exactly as across the
/// threads of a block. Scratch: the block-sum buffer's (BlockScratch),
/// kMostSlices maxes then kMostSlices rows of 8 sums.
const int64_t kSliceClasses = 2048;
const int64_t kMostSlices = 2048;
static_assert((1 + kRowSums) * kMostSlices <= xent::kScratchDoubles,
              "the slice maxes and sums fit the scratch");

/// Slices per row for `rows` rows of C classes (1: no slicing).
inline int64_t SlicesPerRow(int64_t rows, int64_t C) {
  return std::max<int64_t>(1, std::min<int64_t>(C / kSliceClasses, kMostSlices / rows));
}

/// Row r's first element, and where slice s of its classes starts: classes
/// [s·L, min((s+1)·L, C)), L = ceil(C / S). Every slice is non-empty:
/// (S-1)·L <= C - C/S + S - 1 < C because S(S-1) < S·C/kSliceClasses <= C.
struct SliceOf {
  int64_t offset;  ///< row r's class 0 in the blob
  int64_t first;   ///< s·L
  int64_t size;    ///< classes in the slice
  __device__ SliceOf(int64_t r, int64_t s, int64_t slices, int64_t C, int64_t inner) {
    const int64_t length = (C + slices - 1) / slices;
    offset = (r / inner) * C * inner + r % inner;
    first = s * length;
    size = (first + length < C ? first + length : C) - first;
  }
};

/// The row max from its slices' maxes (in slice order: every caller gets
/// the same value).
template <typename Dtype>
__device__ __forceinline__ Dtype MaxOfSlices(const double* __restrict__ slice_max, int64_t r,
                                             int64_t slices) {
  Dtype m = static_cast<Dtype>(slice_max[r * slices]);
  for (int64_t s = 1; s < slices; ++s) {
    m = MaxOf(m, static_cast<Dtype>(slice_max[r * slices + s]));
  }
  return m;
}

template <typename Dtype>
__global__ void __launch_bounds__(xent::kReduceThreads)
SliceMax(const Dtype* __restrict__ x, int inner, int C, int64_t slices,
         double* __restrict__ slice_max) {
  const int64_t r = blockIdx.x / slices, s = blockIdx.x % slices;
  const SliceOf slice(r, s, slices, C, inner);
  const Dtype m = BlockMax(PartialRowMax(x + slice.offset + slice.first * inner, inner,
                                         slice.size, threadIdx.x, blockDim.x));
  if (threadIdx.x == 0) slice_max[blockIdx.x] = static_cast<double>(m);  // exact
}

template <typename Dtype>
__global__ void __launch_bounds__(xent::kReduceThreads)
SliceSums(const Dtype* __restrict__ x, const Dtype* __restrict__ t,
          const double* __restrict__ w, int inner, RowOptions opt, int64_t slices,
          const double* __restrict__ slice_max, double* __restrict__ slice_sums) {
  const int64_t r = blockIdx.x / slices, s = blockIdx.x % slices;
  const SliceOf slice(r, s, slices, opt.classes, inner);
  const Dtype m = MaxOfSlices<Dtype>(slice_max, r, slices);
  const int64_t start = slice.offset + slice.first * inner;
  RowSums sums = ZeroSums();
  PartialRowSums(x + start, t + start, w + slice.first, inner, slice.size, threadIdx.x,
                 blockDim.x, m, opt, &sums);
  double row[kRowSums];
  RowSumsToArray(sums, row);
  xent::BlockSums(row);
  if (threadIdx.x == 0) {
    for (int k = 0; k < kRowSums; ++k) slice_sums[blockIdx.x * kRowSums + k] = row[k];
  }
}

template <typename Dtype>
__global__ void __launch_bounds__(xent::kReduceThreads)
FinishSlices(int64_t rows, int64_t slices, RowOptions opt, const double* __restrict__ slice_max,
             const double* __restrict__ slice_sums, double* __restrict__ coefficients,
             double* __restrict__ block_partials) {
  double loss = 0.0, valid = 0.0, invalid = 0.0;
  const int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (r < rows) {
    const Dtype m = MaxOfSlices<Dtype>(slice_max, r, slices);
    RowSums sums = ZeroSums();
    for (int64_t s = 0; s < slices; ++s) {
      AddRowSums(slice_sums + (r * slices + s) * kRowSums, &sums);
    }
    RowCoefficients coef;
    loss = FinishRow(m, sums, opt, &coef);
    valid = RowIsValid(sums) ? 1.0 : 0.0;
    invalid = sums.invalid;
    StoreCoefficients(coef, r, rows, coefficients);
  }
  xent::StoreBlockSums(loss, valid, invalid, 0.0, block_partials);  // every thread takes part
}

/// The gradient of one element as the kernel takes it: float blobs in
/// float arithmetic (ElementGradientFloat, the CPU vector path's math) for
/// rows that allow it (FloatGradientApplies: not ignored, |max| below
/// 32640), else, and for double blobs, the double math (ElementGradient).
/// The float value is computed before the test, for every row: a branch
/// first would let ptxas sink the loads of x and t past it (an ignored
/// row needs neither), one DRAM round trip after the coefficients' instead
/// of both at once (seen in the SASS); the rare other rows discard it.
__device__ __forceinline__ float KernelGradient(const RowCoefficients& coef, float x, float t,
                                                double w, double scale) {
  const float fast = ElementGradientFloat(coef, x, t, w, scale);
  return FloatGradientApplies(coef) ? fast : ElementGradient(coef, x, t, w, scale);
}
__device__ __forceinline__ double KernelGradient(const RowCoefficients& coef, double x, double t,
                                                 double w, double scale) {
  return ElementGradient(coef, x, t, w, scale);
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
  const Dtype xe = x[e], te = t[e];
  const RowCoefficients coef = LoadCoefficients(coefficients, r, rows);
  dx[e] = KernelGradient(coef, xe, te, w[c], scale);
}

}  // namespace
}  // namespace multilabel
}  // namespace xent

template <typename Dtype>
void MultiLabelSoftmaxLossLayer<Dtype>::Forward_gpu(const vector<Blob<Dtype>*>& bottom,
                                                    const vector<Blob<Dtype>*>& top) {
  // A CPU Backward after this Forward must not take the diff an earlier
  // Forward_cpu wrote for data it may no longer hold.
  diff_ready_ = false;
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
    const int64_t threads = xent::kReduceThreads;
    const int64_t wanted = warp_per_row ? (rows + 7) / 8  // 8 warps per block
                           : block_per_row ? rows
                                           : (rows + threads - 1) / threads;
    const int blocks = static_cast<int>(std::min<int64_t>(wanted, xent::kReduceBlocks));
    double* partials = xent::BlockSumBuffer(&this->block_sums_, lp);
    // Few long rows and no probabilities top: a block per slice of a row.
    const int64_t slices =
        block_per_row && prob == NULL ? xent::multilabel::SlicesPerRow(rows, classes_) : 1;
    int sum_blocks = blocks;  // rows of `partials` to add up
    if (slices > 1) {
      double* slice_max = xent::BlockScratch(partials);
      double* slice_sums = slice_max + xent::multilabel::kMostSlices;  // kRowSums per slice
      const int slice_blocks = static_cast<int>(rows * slices);  // <= kMostSlices
      // NOLINT_NEXT_LINE(whitespace/operators)
      xent::multilabel::SliceMax<Dtype><<<slice_blocks, xent::kReduceThreads>>>(
          x, inner_num_, classes_, slices, slice_max);
      // NOLINT_NEXT_LINE(whitespace/operators)
      xent::multilabel::SliceSums<Dtype><<<slice_blocks, xent::kReduceThreads>>>(
          x, t, w, inner_num_, opt, slices, slice_max, slice_sums);
      sum_blocks = static_cast<int>((rows + xent::kReduceThreads - 1) / xent::kReduceThreads);
      // NOLINT_NEXT_LINE(whitespace/operators)
      xent::multilabel::FinishSlices<Dtype><<<sum_blocks, xent::kReduceThreads>>>(
          rows, slices, opt, slice_max, slice_sums, coefficients, partials);
    } else if (warp_per_row) {
      xent::multilabel::RowPerWarpForward<Dtype><<<blocks, xent::kReduceThreads>>>(
          x, t, w, rows, inner_num_, opt, coefficients, prob, partials);
    } else if (block_per_row) {
      xent::multilabel::RowPerBlockForward<Dtype><<<blocks, xent::kReduceThreads>>>(
          x, t, w, rows, inner_num_, opt, coefficients, prob, partials);
    } else {
      xent::multilabel::RowPerThreadForward<Dtype><<<blocks, xent::kReduceThreads>>>(
          x, t, w, rows, inner_num_, opt, coefficients, prob, partials);
    }
    XENT_LAUNCH_CHECK(lp, "the forward kernels (RowPerWarpForward / RowPerBlockForward / "
                          "RowPerThreadForward / SliceMax, SliceSums, FinishSlices)");
    sums = xent::FinishSums(partials, sum_blocks, lp);
  }
  CheckData(bottom, sums);
  this->SetLoss(top, sums, static_cast<double>(rows), bottom[0]->shape(0));
}

template <typename Dtype>
void MultiLabelSoftmaxLossLayer<Dtype>::Backward_gpu(const vector<Blob<Dtype>*>& top,
                                                     const vector<bool>& propagate_down,
                                                     const vector<Blob<Dtype>*>& bottom) {
  if (!this->GradientWanted(propagate_down, bottom)) return;
  const int64_t count = bottom[0]->count();
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
