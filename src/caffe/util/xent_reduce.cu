#include "caffe/util/xent_reduce.cuh"

namespace caffe {
namespace xent {

namespace {

/// out[j] = Σ over the `blocks` rows of column j: thread k adds rows k,
/// k + 256, ... in order (one 32-byte row at a time, all four columns),
/// then the block adds the threads' sums by BlockSums's fixed tree.
__global__ void FinishBlockSums(const double* __restrict__ partial, int blocks,
                                double* __restrict__ out) {
  double sums[kSumColumns] = {0.0, 0.0, 0.0, 0.0};
  for (int b = threadIdx.x; b < blocks; b += blockDim.x) {
    for (int j = 0; j < kSumColumns; ++j) sums[j] += partial[b * kSumColumns + j];
  }
  BlockSums(sums);
  if (threadIdx.x == 0) {
    for (int j = 0; j < kSumColumns; ++j) out[j] = sums[j];
  }
}

}  // namespace

double* BlockSumBuffer(shared_ptr<SyncedMemory>* memory, const LayerParameter& layer_param) {
  if (!*memory) {
    memory->reset(new SyncedMemory(
        ((kReduceBlocks + 1) * kSumColumns + kScratchDoubles) * sizeof(double)));
  }
  ProbeDeviceMemory(*memory, layer_param, "the block sums");
  return static_cast<double*>((*memory)->mutable_gpu_data());
}

LossSums FinishSums(double* partial, int blocks, const LayerParameter& layer_param) {
  double* totals = partial + kReduceBlocks * kSumColumns;
  FinishBlockSums<<<1, kReduceThreads>>>(partial, blocks, totals);
  cudaError_t error = cudaGetLastError();
  double host[kSumColumns] = {0.0, 0.0, 0.0, 0.0};
  if (error == cudaSuccess) {
    error = cudaMemcpy(host, totals, sizeof(host), cudaMemcpyDeviceToHost);
  }
  ThrowIfCudaError(error, layer_param, "adding the block sums (FinishBlockSums)");
  LossSums sums;
  sums.loss = host[kLossColumn];
  sums.counted = host[kCountedColumn];
  sums.bad_targets = host[kBadTargetsColumn];
  sums.bad_weights = host[kBadWeightsColumn];
  return sums;
}

}  // namespace xent
}  // namespace caffe
