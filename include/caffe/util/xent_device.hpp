#ifndef CAFFE_UTIL_XENT_DEVICE_HPP_
#define CAFFE_UTIL_XENT_DEVICE_HPP_

namespace caffe {
namespace xent {

/// Number of usable CUDA devices: 0 in a CPU-only build, or where the driver
/// reports none (or is missing). Never aborts.
int GpuCount();

/// Whether this libcaffe was compiled with CUDA kernels.
bool CudaBuild();

}  // namespace xent
}  // namespace caffe

#endif  // CAFFE_UTIL_XENT_DEVICE_HPP_
