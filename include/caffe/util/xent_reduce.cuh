#ifndef CAFFE_UTIL_XENT_REDUCE_CUH_
#define CAFFE_UTIL_XENT_REDUCE_CUH_

// Deterministic two-stage sums on the GPU for caffe-xent's loss layers: no
// float atomics, fixed grid, scratch O(blocks).
//   stage 1: each block reduces its grid-stride slice to one double per
//            block (warp shuffles, then one warp over the warp sums);
//   stage 2: one block adds the block partials in a fixed tree order.
// The grid size is a fixed constant, not a function of the device, so the
// bits do not depend on the GPU either.

#include "caffe/common.hpp"

namespace caffe {
namespace xent {

const int kReduceThreads = 256;  ///< threads per block (8 warps)
const int kReduceBlocks = 1024;  ///< fixed grid for the first stage

/// Sum of `value` over a block; the result is valid in thread 0.
__device__ __forceinline__ double BlockSum(double value) {
  __shared__ double warp_sums[kReduceThreads / 32];
  for (int offset = 16; offset > 0; offset >>= 1) {
    value += __shfl_down_sync(0xffffffffu, value, offset);
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) warp_sums[warp] = value;
  __syncthreads();
  value = threadIdx.x < kReduceThreads / 32 ? warp_sums[threadIdx.x] : 0.0;
  if (warp == 0) {
    for (int offset = 16; offset > 0; offset >>= 1) {
      value += __shfl_down_sync(0xffffffffu, value, offset);
    }
  }
  __syncthreads();  // warp_sums may be reused by a following BlockSum
  return value;
}

/// Second stage: out[j] = sum over the `blocks` partials of column j, for
/// `columns` interleaved sums stored as partial[block * columns + j].
__global__ void FinishBlockSums(const double* partial, int blocks, int columns, double* out);

/// Adds the per-block partial sums on the device and copies the `columns`
/// totals to the host. `partial` holds blocks * columns doubles.
void FinishSums(const double* partial, int blocks, int columns, double* host_out);

}  // namespace xent
}  // namespace caffe

#endif  // CAFFE_UTIL_XENT_REDUCE_CUH_
