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

void FinishSums(const double* partial, int blocks, int columns, double* host_out) {
  double* device_out = NULL;
  CUDA_CHECK(cudaMalloc(&device_out, columns * sizeof(double)));
  FinishBlockSums<<<1, kReduceThreads>>>(partial, blocks, columns, device_out);
  CUDA_POST_KERNEL_CHECK;
  CUDA_CHECK(cudaMemcpy(host_out, device_out, columns * sizeof(double), cudaMemcpyDeviceToHost));
  CUDA_CHECK(cudaFree(device_out));
}

}  // namespace xent
}  // namespace caffe
