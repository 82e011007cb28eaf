#include "caffe/util/xent_reduce.cuh"

namespace caffe {
namespace xent {

__global__ void FinishBlockSums(const double* partial, int blocks, int columns, double* out) {
  for (int j = 0; j < columns; ++j) {
    double value = 0.0;
    for (int b = threadIdx.x; b < blocks; b += blockDim.x) {
      value += partial[b * columns + j];
    }
    value = BlockSum(value);
    if (threadIdx.x == 0) out[j] = value;
  }
}

void FinishSums(const double* partial, int blocks, int columns, double* host_out,
                const LayerParameter& layer_param) {
  double* device_out = NULL;
  ThrowIfCudaError(cudaMalloc(&device_out, columns * sizeof(double)), layer_param,
                   "allocating the sums");
  FinishBlockSums<<<1, kReduceThreads>>>(partial, blocks, columns, device_out);
  cudaError_t error = cudaGetLastError();
  if (error == cudaSuccess) {
    error = cudaMemcpy(host_out, device_out, columns * sizeof(double), cudaMemcpyDeviceToHost);
  }
  cudaFree(device_out);  // also when the launch or the copy failed
  ThrowIfCudaError(error, layer_param, "adding the block sums (FinishBlockSums)");
}

}  // namespace xent
}  // namespace caffe
