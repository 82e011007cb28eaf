#ifndef CAFFE_UTIL_XENT_BLOCK_MAX_CUH_
#define CAFFE_UTIL_XENT_BLOCK_MAX_CUH_

// The maxima of two values over a block of kReduceThreads threads, for the
// kernels that reduce a line with a block and need both sides' shifts
// (ZLPRLoss, TwoWayLoss). NaN-propagating (MultiLabelSoftmaxLoss's MaxOf):
// a NaN in any thread gives NaN. Order-independent, so deterministic.

#include "caffe/layers/multi_label_softmax_loss_math.hpp"
#include "caffe/util/xent_reduce.cuh"

namespace caffe {
namespace xent {

/// *first and *second become their maxima over the block, in every thread.
template <typename T>
__device__ __forceinline__ void BlockMaxPair(T* first, T* second) {
  __shared__ T warp_max[2][kReduceThreads / 32];
  __shared__ T block_max[2];
  T values[2] = {*first, *second};
  for (int offset = 16; offset > 0; offset >>= 1) {
    for (int k = 0; k < 2; ++k) {
      values[k] = multilabel::MaxOf(values[k], __shfl_down_sync(0xffffffffu, values[k], offset));
    }
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) {
    for (int k = 0; k < 2; ++k) warp_max[k][warp] = values[k];
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int k = 0; k < 2; ++k) {
      T v = warp_max[k][0];
      for (int w = 1; w < kReduceThreads / 32; ++w) v = multilabel::MaxOf(v, warp_max[k][w]);
      block_max[k] = v;
    }
  }
  __syncthreads();
  *first = block_max[0];
  *second = block_max[1];
  __syncthreads();  // block_max is rewritten by the next call
}

}  // namespace xent
}  // namespace caffe

#endif  // CAFFE_UTIL_XENT_BLOCK_MAX_CUH_
