#include "caffe/util/xent_device.hpp"

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

}  // namespace xent
}  // namespace caffe
