#ifndef CAFFE_UTIL_XENT_REDUCE_CUH_
#define CAFFE_UTIL_XENT_REDUCE_CUH_

// Deterministic two-stage sums on the GPU for caffe-xent's loss layers: no
// float atomics, scratch O(blocks), at most kReduceBlocks blocks.
//   stage 1: each block reduces its part of the data (a partition that is a
//            function of the shape alone, chosen by the layer) to one row
//            of doubles (warp shuffles, then one warp over the warp sums);
//   stage 2: one block adds the block rows in a fixed order (FinishSums).
// Neither the grid nor the partition depends on the device (its SM count,
// its model) or on the run, so the bits of a sum depend on the shape and
// the data only.

#include <string>
#include <vector>

#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/layers/xent_common.hpp"
#include "caffe/proto/caffe.pb.h"
#include "caffe/syncedmem.hpp"
#include "caffe/util/xent_reduce.hpp"

namespace caffe {
namespace xent {

/// A failed CUDA call of a layer's own code (a launch, an allocation, a
/// copy) as XentError naming the layer, what failed and CUDA's message,
/// where Caffe's CUDA_CHECK would abort the process. The error state is
/// cleared first, so a non-sticky error (out of memory, a bad launch
/// configuration) leaves the device usable.
inline void ThrowIfCudaError(cudaError_t error, const LayerParameter& layer_param,
                             const std::string& what) {
  if (error == cudaSuccess) return;
  cudaGetLastError();
  XENT_CHECK(layer_param, false, "CUDA error " << what << ": " << cudaGetErrorName(error)
             << " (" << cudaGetErrorString(error) << ")");
}

/// After a kernel launch (replaces CUDA_POST_KERNEL_CHECK in our layers).
#define XENT_LAUNCH_CHECK(layer_param, kernel_name)                        \
  ::caffe::xent::ThrowIfCudaError(cudaGetLastError(), (layer_param),      \
                                  "launching " kernel_name)

/// Device memory that Caffe is about to allocate for `memory` on first use
/// (SyncedMemory's cudaMalloc is CUDA_CHECKed: out of memory would abort).
/// Where `memory` has never been used (head UNINITIALIZED) this allocates
/// the same size with a checked cudaMalloc and frees it, so that a
/// shortage throws XentError here; Caffe's allocation then follows. Memory
/// already in use, on either side, is not probed (no cost per iteration).
inline void ProbeDeviceMemory(const shared_ptr<SyncedMemory>& memory,
                              const LayerParameter& layer_param, const char* what) {
  if (!memory || memory->head() != SyncedMemory::UNINITIALIZED || memory->size() == 0) return;
  void* probe = NULL;
  ThrowIfCudaError(cudaMalloc(&probe, memory->size()), layer_param,
                   "allocating " + std::to_string(memory->size()) + " bytes of device memory for " +
                   what);
  ThrowIfCudaError(cudaFree(probe), layer_param, std::string("freeing a probe for ") + what);
}

const int kReduceThreads = 256;  ///< threads per block (8 warps)
/// The most blocks of a first stage: the rows of a layer's block-sum
/// buffer (4096 rows of 4 doubles, 128 KiB). Enough for about 6 waves of
/// blocks on a 132-SM GPU, so the last wave's idle SMs cost a few percent.
const int kReduceBlocks = 4096;

/// Columns of the per-block partial sums, in LossSums's order.
enum SumColumn {
  kLossColumn = 0, kCountedColumn, kBadTargetsColumn, kBadWeightsColumn, kSumColumns
};

/// Blocks of `threads` for a grid-stride loop over `count` items: enough
/// to cover them, at most `most`; computed in 64 bits (no negative grid
/// past 2^31 items).
inline int GridBlocks(int64_t count, int threads = kReduceThreads, int most = 65535) {
  const int64_t wanted = (count + threads - 1) / threads;
  return static_cast<int>(wanted < 1 ? 1 : wanted < most ? wanted : most);
}

/// ProbeDeviceMemory for the data of every bottom.
template <typename Dtype>
void ProbeBottomMemory(const vector<Blob<Dtype>*>& bottom, const LayerParameter& layer_param) {
  for (size_t i = 0; i < bottom.size(); ++i) {
    const std::string what = "bottom[" + std::to_string(i) + "]";
    ProbeDeviceMemory(bottom[i]->data(), layer_param, what.c_str());
  }
}


/// Sums of N values over a block at once, each by the same fixed tree
/// (warp shuffles, then one warp over the warp sums), with one pair of
/// barriers for all N; the results are valid in thread 0.
template <int N>
__device__ __forceinline__ void BlockSums(double (&values)[N]) {
  __shared__ double warp_sums[N][kReduceThreads / 32];
  for (int k = 0; k < N; ++k) {
    for (int offset = 16; offset > 0; offset >>= 1) {
      values[k] += __shfl_down_sync(0xffffffffu, values[k], offset);
    }
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) {
    for (int k = 0; k < N; ++k) warp_sums[k][warp] = values[k];
  }
  __syncthreads();
  for (int k = 0; k < N; ++k) {
    values[k] = threadIdx.x < kReduceThreads / 32 ? warp_sums[k][threadIdx.x] : 0.0;
  }
  if (warp == 0) {
    for (int k = 0; k < N; ++k) {
      for (int offset = 16; offset > 0; offset >>= 1) {
        values[k] += __shfl_down_sync(0xffffffffu, values[k], offset);
      }
    }
  }
  __syncthreads();  // warp_sums may be reused by a following call
}

/// Sum of `value` over a block; the result is valid in thread 0.
__device__ __forceinline__ double BlockSum(double value) {
  double values[1] = {value};
  BlockSums(values);
  return values[0];
}

/// End of a first-stage kernel: the block's four sums (every thread takes
/// part; layers without weights pass bad_weights 0) into its row of
/// `partial`.
__device__ __forceinline__ void StoreBlockSums(double loss, double counted, double bad_targets,
                                               double bad_weights, double* partial) {
  double sums[kSumColumns];
  sums[kLossColumn] = loss;
  sums[kCountedColumn] = counted;
  sums[kBadTargetsColumn] = bad_targets;
  sums[kBadWeightsColumn] = bad_weights;
  BlockSums(sums);
  if (threadIdx.x == 0) {
    for (int k = 0; k < kSumColumns; ++k) partial[blockIdx.x * kSumColumns + k] = sums[k];
  }
}

/// Doubles after the totals row of a block-sum buffer that a layer's
/// kernels may use as scratch between launches of one call (BlockScratch).
const int kScratchDoubles = 2048 * 9;

/// The layer's buffer of partial sums (`memory`, a XentLossLayer member):
/// kReduceBlocks rows of kSumColumns doubles, one more row for the totals,
/// then kScratchDoubles of scratch (275 KiB in all), allocated on first use
/// (a shortage throws XentError) and kept.
double* BlockSumBuffer(shared_ptr<SyncedMemory>* memory, const LayerParameter& layer_param);

/// The scratch area of a BlockSumBuffer (kScratchDoubles doubles).
inline double* BlockScratch(double* partial) {
  return partial + (kReduceBlocks + 1) * kSumColumns;
}

/// Second stage: adds the first `blocks` rows of `partial` (a
/// BlockSumBuffer) in a fixed order on the device, into its totals row,
/// and copies the totals to the host: one launch and one small copy (32
/// bytes, the only host synchronization of a Forward), no allocation.
LossSums FinishSums(double* partial, int blocks, const LayerParameter& layer_param);

}  // namespace xent
}  // namespace caffe

#endif  // CAFFE_UTIL_XENT_REDUCE_CUH_
