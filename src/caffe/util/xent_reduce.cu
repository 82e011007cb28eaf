#include "caffe/util/xent_reduce.cuh"

namespace caffe {
namespace xent {

namespace {

/// out[j] = Σ over the `blocks` rows of column j, in a fixed tree order.
__global__ void FinishBlockSums(const double* partial, int blocks, double* out) {
  for (int j = 0; j < kSumColumns; ++j) {
    double value = 0.0;
    for (int b = threadIdx.x; b < blocks; b += blockDim.x) {
      value += partial[b * kSumColumns + j];
    }
    value = BlockSum(value);
    if (threadIdx.x == 0) out[j] = value;
  }
}

}  // namespace

double* BlockSumBuffer(shared_ptr<SyncedMemory>* memory, const LayerParameter& layer_param) {
  if (!*memory) {
    memory->reset(new SyncedMemory((kReduceBlocks + 1) * kSumColumns * sizeof(double)));
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
