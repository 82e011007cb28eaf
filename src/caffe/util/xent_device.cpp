#include "caffe/util/xent_device.hpp"

#include <stdexcept>
#include <string>

#ifndef CPU_ONLY
#include <cuda_runtime.h>
#endif

namespace caffe {
namespace xent {

int GpuCount() {
#ifdef CPU_ONLY
  return 0;
#else
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // no driver or no device: clear the error, report 0
    return 0;
  }
  return count;
#endif
}

bool CudaBuild() {
#ifdef CPU_ONLY
  return false;
#else
  return true;
#endif
}

void Synchronize() {
#ifndef CPU_ONLY
  const cudaError_t err = cudaDeviceSynchronize();
  if (err != cudaSuccess) {
    throw std::runtime_error(std::string("CUDA error: ") + cudaGetErrorString(err));
  }
#endif
}

}  // namespace xent
}  // namespace caffe
