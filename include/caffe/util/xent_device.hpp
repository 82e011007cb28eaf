#ifndef CAFFE_UTIL_XENT_DEVICE_HPP_
#define CAFFE_UTIL_XENT_DEVICE_HPP_

namespace caffe {
namespace xent {

/// Number of usable CUDA devices: 0 in a CPU-only build, or where the driver
/// reports none (or is missing). Never aborts.
int GpuCount();

/// Whether this libcaffe was compiled with CUDA kernels.
bool CudaBuild();

/// Waits until the current CUDA device has finished all work (nothing in a
/// CPU-only build); a CUDA error found there is thrown as std::runtime_error.
void Synchronize();

}  // namespace xent
}  // namespace caffe

#endif  // CAFFE_UTIL_XENT_DEVICE_HPP_
