// CUDA launchers of ZLPRLoss. The row math is the same header-only code as
// the CPU loop (zlpr_loss_math.hpp); this file only decides which thread
// handles what.
//
// Two kernel shapes for the forward pass, both with a fixed grid (a function
// of the shape only) and no atomics, so the sums are the same bits run after
// run:
//   RowPerThread  spatial maps (inner >= 32) and short rows: thread r takes
//                 row r; its C elements are `inner` apart, and neighbouring
//                 threads read neighbouring addresses (coalesced).
//   RowPerBlock   rows of 32 classes or more that are contiguous (inner < 32)
//                 or fewer than kReduceBlocks: a block takes a row, its
//                 threads stride over the classes; one block reduction of the
//                 two shifts, one of the four row sums.
// Each block leaves its LossSums (loss, counted rows, bad targets) in the
// layer's block-sum buffer; xent::FinishSums adds them in a fixed order.
// Backward is elementwise.
#include <algorithm>
#include <vector>

#include "caffe/layers/zlpr_loss_layer.hpp"
#include "caffe/layers/zlpr_loss_math.hpp"
#include "caffe/util/xent_block_max.cuh"
#include "caffe/util/xent_reduce.cuh"

namespace caffe {

namespace xent {
namespace zlpr {
namespace {

/// Spatial maps and short rows: one thread per row, grid-stride over the rows.
template <typename Dtype>
__global__ void RowPerThreadForward(const Dtype* x, const Dtype* t, int64_t rows, int inner,
                                    RowOptions opt, double* coefficients, Dtype* row_loss,
                                    double* block_partials) {
  const int C = opt.classes;
  double loss = 0.0, counted = 0.0, invalid = 0.0;
  for (int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; r < rows;
       r += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t offset = (r / inner) * C * inner + r % inner;
    const Dtype* xr = x + offset;
    const Dtype* tr = t + offset;
    RowShifts<Dtype> m = ZeroShifts<Dtype>();
    for (int64_t c = 0; c < C; ++c) AccumulateShift(xr[c * inner], tr[c * inner], opt, &m);
    RowSums sums = ZeroSums();
    for (int64_t c = 0; c < C; ++c) {
      AccumulateElement(m, xr[c * inner], tr[c * inner], opt, &sums);
    }
    StoreRow(m, sums, r, rows, coefficients, row_loss, &loss, &counted, &invalid);
  }
  xent::StoreBlockSums(loss, counted, invalid, 0.0, block_partials);
}

template <typename Dtype>
__global__ void RowPerBlockForward(const Dtype* x, const Dtype* t, int64_t rows, int inner,
                                   RowOptions opt, double* coefficients, Dtype* row_loss,
                                   double* block_partials) {
  const int C = opt.classes;
  double loss = 0.0, counted = 0.0, invalid = 0.0;  // meaningful in thread 0
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const int64_t offset = (r / inner) * C * inner + r % inner;
    const Dtype* xr = x + offset;
    const Dtype* tr = t + offset;
    RowShifts<Dtype> m = ZeroShifts<Dtype>();
    // 64-bit class index: c + blockDim.x must not overflow for C near INT_MAX.
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
      AccumulateShift(xr[c * inner], tr[c * inner], opt, &m);
    }
    xent::BlockMaxPair(&m.neg, &m.pos);
    RowSums sums = ZeroSums();
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
      AccumulateElement(m, xr[c * inner], tr[c * inner], opt, &sums);
    }
    double row_sums[4] = {sums.neg_sum, sums.pos_sum, sums.kept, sums.invalid};
    xent::BlockSums(row_sums);  // valid in thread 0
    if (threadIdx.x == 0) {
      sums.neg_sum = row_sums[0];
      sums.pos_sum = row_sums[1];
      sums.kept = row_sums[2];
      sums.invalid = row_sums[3];
      StoreRow(m, sums, r, rows, coefficients, row_loss, &loss, &counted, &invalid);
    }
  }
  xent::StoreBlockSums(loss, counted, invalid, 0.0, block_partials);
}

/// Backward, elementwise over the K scores: element e is class c of row r.
template <typename Dtype>
__global__ void GradientKernel(int64_t count, const Dtype* x, const Dtype* t, RowOptions opt,
                               int inner, int64_t rows, const double* coefficients,
                               const Dtype* row_diff, double scale, Dtype* dx) {
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < count;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t plane = e / inner;  // (outer, class) plane
    const int64_t r = (plane / opt.classes) * inner + e % inner;
    const RowCoefficients coef = LoadCoefficients(coefficients, r, rows);
    const double s = row_diff == NULL ? scale : scale + static_cast<double>(row_diff[r]);
    dx[e] = ElementGradient(coef, x[e], t[e], opt, s);
  }
}

}  // namespace
}  // namespace zlpr
}  // namespace xent

template <typename Dtype>
void ZLPRLossLayer<Dtype>::Forward_gpu(const vector<Blob<Dtype>*>& bottom,
                                       const vector<Blob<Dtype>*>& top) {
  if (bottom[0]->count() == 0) return ForwardEmpty(bottom, top);
  const LayerParameter& lp = this->layer_param_;
  // Out of device memory on first use: XentError, not Caffe's abort.
  xent::ProbeBottomMemory(bottom, lp);
  xent::ProbeDeviceMemory(row_coefficients_.data(), lp, "the row coefficients");
  if (top.size() >= 2) xent::ProbeDeviceMemory(top[1]->data(), lp, "top[1] (row losses)");
  const xent::zlpr::RowOptions opt = Options();
  const int64_t rows = static_cast<int64_t>(outer_num_) * inner_num_;
  const Dtype* x = bottom[0]->gpu_data();
  const Dtype* t = bottom[1]->gpu_data();
  double* coefficients = row_coefficients_.mutable_gpu_data();
  Dtype* row_loss = top.size() >= 2 ? top[1]->mutable_gpu_data() : NULL;
  // The grid depends on the shape only, so the reduction order (and the
  // bits of the loss) is the same run after run.
  const bool block_per_row = classes_ >= 32 && (inner_num_ < 32 || rows < xent::kReduceBlocks);
  const int64_t wanted =
      block_per_row ? rows : (rows + xent::kReduceThreads - 1) / xent::kReduceThreads;
  const int blocks = static_cast<int>(std::min<int64_t>(wanted, xent::kReduceBlocks));
  double* partials = xent::BlockSumBuffer(&this->block_sums_, lp);
  if (block_per_row) {
    xent::zlpr::RowPerBlockForward<Dtype><<<blocks, xent::kReduceThreads>>>(
        x, t, rows, inner_num_, opt, coefficients, row_loss, partials);
  } else {
    xent::zlpr::RowPerThreadForward<Dtype><<<blocks, xent::kReduceThreads>>>(
        x, t, rows, inner_num_, opt, coefficients, row_loss, partials);
  }
  XENT_LAUNCH_CHECK(lp, "the forward kernel (RowPerBlockForward / RowPerThreadForward)");
  const xent::LossSums sums = xent::FinishSums(partials, blocks, lp);
  CheckData(bottom, sums);
  this->SetLoss(top, sums, static_cast<double>(rows), bottom[0]->shape(0));
}

template <typename Dtype>
void ZLPRLossLayer<Dtype>::Backward_gpu(const vector<Blob<Dtype>*>& top,
                                        const vector<bool>& propagate_down,
                                        const vector<Blob<Dtype>*>& bottom) {
  if (!this->GradientWanted(propagate_down, bottom)) return;
  const int64_t count = bottom[0]->count();
  const LayerParameter& lp = this->layer_param_;
  xent::ProbeDeviceMemory(bottom[0]->diff(), lp, "bottom[0]'s gradient");
  if (top.size() >= 2) xent::ProbeDeviceMemory(top[1]->diff(), lp, "top[1]'s gradient");
  const Dtype* row_diff = top.size() >= 2 ? top[1]->gpu_diff() : NULL;
  xent::zlpr::GradientKernel<Dtype><<<xent::GridBlocks(count), xent::kReduceThreads>>>(
      count, bottom[0]->gpu_data(), bottom[1]->gpu_data(), Options(), inner_num_,
      static_cast<int64_t>(outer_num_) * inner_num_, row_coefficients_.gpu_data(), row_diff,
      LossScale(top), bottom[0]->mutable_gpu_diff());
  XENT_LAUNCH_CHECK(lp, "GradientKernel");
}

INSTANTIATE_LAYER_GPU_FUNCS(ZLPRLossLayer);

}  // namespace caffe
