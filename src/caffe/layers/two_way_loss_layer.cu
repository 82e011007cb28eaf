// CUDA launchers of TwoWayLoss. The line math is the same header-only code
// as the CPU loops (two_way_loss_math.hpp); this file only decides which
// thread handles what.
//
// Forward is two kernels with a fixed grid (a function of the shape only)
// and no atomics, so the sums are the same bits run after run:
//   RowForward     the sample-wise term: a thread per row (grid-stride);
//                  its C elements are `inner` apart.
//   ColumnForward  the class-wise term: a block per column (block-stride),
//                  its threads stride over the rows; one block reduction of
//                  the two shifts, one of the line sums.
// Each block leaves its LossSums in the layer's block-sum buffer;
// xent::FinishSums adds them in a fixed order (once per kernel). Backward
// is elementwise.
#include <algorithm>
#include <vector>

#include "caffe/layers/two_way_loss_layer.hpp"
#include "caffe/layers/two_way_loss_math.hpp"
#include "caffe/util/xent_block_max.cuh"
#include "caffe/util/xent_reduce.cuh"

namespace caffe {

namespace xent {
namespace twoway {
namespace {

/// Offset of element (row r, class c) of a blob of `classes` classes and
/// `inner` positions after the class axis.
__device__ __forceinline__ int64_t ElementOffset(int64_t r, int64_t c, int classes, int inner) {
  return ((r / inner) * classes + c) * inner + r % inner;
}

template <typename Dtype>
__global__ void RowForward(const Dtype* x, const Dtype* t, int64_t rows, int inner, Options o,
                           double* coefficients, double* block_partials) {
  const int C = o.targets.classes;
  double loss = 0.0, counted = 0.0, invalid = 0.0;
  for (int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; r < rows;
       r += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    Shifts m = EmptyShifts();
    for (int64_t c = 0; c < C; ++c) {
      const int64_t e = ElementOffset(r, c, C, inner);
      AccumulateShift(x[e], t[e], o, &m);
    }
    LineSums sums = ZeroSums();
    for (int64_t c = 0; c < C; ++c) {
      const int64_t e = ElementOffset(r, c, C, inner);
      AccumulateElement(m, x[e], t[e], o, &sums);
    }
    StoreLine(m, sums, o, r, rows, coefficients, &loss, &counted, &invalid);
  }
  xent::StoreBlockSums(loss, counted, invalid, 0.0, block_partials);
}

template <typename Dtype>
__global__ void ColumnForward(const Dtype* x, const Dtype* t, int64_t rows, int inner, Options o,
                              double* coefficients, double* block_partials) {
  const int C = o.targets.classes;
  double loss = 0.0, counted = 0.0, unused_invalid = 0.0;  // meaningful in thread 0
  for (int64_t c = blockIdx.x; c < C; c += gridDim.x) {
    Shifts m = EmptyShifts();
    for (int64_t r = threadIdx.x; r < rows; r += blockDim.x) {
      const int64_t e = ElementOffset(r, c, C, inner);
      AccumulateShift(x[e], t[e], o, &m);
    }
    xent::BlockMaxPair(&m.neg, &m.pos);
    LineSums sums = ZeroSums();
    for (int64_t r = threadIdx.x; r < rows; r += blockDim.x) {
      const int64_t e = ElementOffset(r, c, C, inner);
      AccumulateElement(m, x[e], t[e], o, &sums);
    }
    double line[5] = {sums.neg_sum, sums.pos_sum, sums.negatives, sums.positives, sums.invalid};
    xent::BlockSums(line);  // valid in thread 0
    if (threadIdx.x == 0) {
      sums.neg_sum = line[0];
      sums.pos_sum = line[1];
      sums.negatives = line[2];
      sums.positives = line[3];
      sums.invalid = line[4];
      StoreLine(m, sums, o, c, C, coefficients, &loss, &counted, &unused_invalid);
    }
  }
  xent::StoreBlockSums(loss, counted, 0.0, 0.0, block_partials);
}

/// Backward, elementwise over the K scores: element e is class c of row r.
template <typename Dtype>
__global__ void GradientKernel(int64_t count, const Dtype* x, const Dtype* t, Options o,
                               int inner, int64_t rows, const double* row_coefficients,
                               const double* column_coefficients, double row_scale,
                               double column_scale, Dtype* dx) {
  const int C = o.targets.classes;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < count;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t plane = e / inner;  // (outer, class) plane
    const int64_t c = plane % C;
    const int64_t r = (plane / C) * inner + e % inner;
    dx[e] = ElementGradient(LoadCoefficients(row_coefficients, r, rows),
                            LoadCoefficients(column_coefficients, c, C), x[e], t[e], o,
                            row_scale, column_scale);
  }
}

}  // namespace
}  // namespace twoway
}  // namespace xent

template <typename Dtype>
void TwoWayLossLayer<Dtype>::Forward_gpu(const vector<Blob<Dtype>*>& bottom,
                                         const vector<Blob<Dtype>*>& top) {
  xent::LossSums row_sums, column_sums;
  if (bottom[0]->count() > 0) {
    const LayerParameter& lp = this->layer_param_;
    // Out of device memory on first use: XentError, not Caffe's abort.
    xent::ProbeBottomMemory(bottom, lp);
    xent::ProbeDeviceMemory(row_coefficients_.data(), lp, "the row coefficients");
    xent::ProbeDeviceMemory(column_coefficients_.data(), lp, "the column coefficients");
    const xent::twoway::Options opt = Options();
    const int64_t rows = static_cast<int64_t>(outer_num_) * inner_num_;
    const Dtype* x = bottom[0]->gpu_data();
    const Dtype* t = bottom[1]->gpu_data();
    double* partials = xent::BlockSumBuffer(&this->block_sums_, lp);
    // Grids depend on the shape only: the same reduction order every run.
    const int row_blocks = static_cast<int>(std::min<int64_t>(
        (rows + xent::kReduceThreads - 1) / xent::kReduceThreads, xent::kReduceBlocks));
    xent::twoway::RowForward<Dtype><<<row_blocks, xent::kReduceThreads>>>(
        x, t, rows, inner_num_, opt, row_coefficients_.mutable_gpu_data(), partials);
    XENT_LAUNCH_CHECK(lp, "RowForward");
    row_sums = xent::FinishSums(partials, row_blocks, lp);  // copies: the buffer is free again
    const int column_blocks = std::min(classes_, xent::kReduceBlocks);
    xent::twoway::ColumnForward<Dtype><<<column_blocks, xent::kReduceThreads>>>(
        x, t, rows, inner_num_, opt, column_coefficients_.mutable_gpu_data(), partials);
    XENT_LAUNCH_CHECK(lp, "ColumnForward");
    column_sums = xent::FinishSums(partials, column_blocks, lp);
  }
  FinishForward(bottom, top, row_sums, column_sums);
}

template <typename Dtype>
void TwoWayLossLayer<Dtype>::Backward_gpu(const vector<Blob<Dtype>*>& top,
                                          const vector<bool>& propagate_down,
                                          const vector<Blob<Dtype>*>& bottom) {
  if (!this->GradientWanted(propagate_down, bottom)) return;
  const int64_t count = bottom[0]->count();
  const LayerParameter& lp = this->layer_param_;
  xent::ProbeDeviceMemory(bottom[0]->diff(), lp, "bottom[0]'s gradient");
  const double lambda = static_cast<double>(top[0]->cpu_diff()[0]);
  xent::twoway::GradientKernel<Dtype><<<xent::GridBlocks(count), xent::kReduceThreads>>>(
      count, bottom[0]->gpu_data(), bottom[1]->gpu_data(), Options(), inner_num_,
      static_cast<int64_t>(outer_num_) * inner_num_, row_coefficients_.gpu_data(),
      column_coefficients_.gpu_data(), lambda / row_normalizer_, lambda / column_normalizer_,
      bottom[0]->mutable_gpu_diff());
  XENT_LAUNCH_CHECK(lp, "GradientKernel");
}

INSTANTIATE_LAYER_GPU_FUNCS(TwoWayLossLayer);

}  // namespace caffe
