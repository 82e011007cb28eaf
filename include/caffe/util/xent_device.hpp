#ifndef CAFFE_UTIL_XENT_DEVICE_HPP_
#define CAFFE_UTIL_XENT_DEVICE_HPP_

#include <cstdint>

#include "caffe/layers/xent_common.hpp"

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

/// Division by a divisor fixed before a kernel runs, without a division
/// instruction per element: for n < 2^31 (every flat index of a Caffe blob)
/// and 1 <= d <= 2^31,
///   n / d = mulhi(n, m) >> s,   l = ceil(log2 d), s = l - 1,
///                               m = ceil(2^(31+l) / d)  (< 2^32)
/// (Granlund and Montgomery's round-up method for 31-bit dividends): with
/// m·d = 2^(31+l) + e, 0 <= e < d <= 2^l,
///   m·n / 2^(31+l) = n/d + n·e / (d·2^(31+l)) < n/d + 1/d,
/// and n/d + 1/d <= floor(n/d) + 1, so the floor is floor(n/d). d = 1 (l = 0)
/// is n itself. On the device mulhi is __umulhi; the host computes the same
/// in 64 bits (tests/cpp check it against / and %).
class FastDivmod {
 public:
  FastDivmod() : d_(1), m_(0), s_(0) {}
  explicit FastDivmod(uint32_t d) : d_(d), m_(0), s_(0) {
    if (d <= 1) return;
    int l = 0;
    while ((uint64_t(1) << l) < d) ++l;  // l = ceil(log2 d), 1..31
    s_ = l - 1;
    m_ = static_cast<uint32_t>(((uint64_t(1) << (31 + l)) + d - 1) / d);
  }
  /// n / d, for n < 2^31.
  XENT_HOST_DEVICE uint32_t Div(uint32_t n) const {
    return d_ == 1 ? n : MulHi(n, m_) >> s_;
  }
  /// n % d, for n < 2^31.
  XENT_HOST_DEVICE uint32_t Mod(uint32_t n) const { return n - Div(n) * d_; }
  XENT_HOST_DEVICE uint32_t divisor() const { return d_; }

 private:
  XENT_HOST_DEVICE static uint32_t MulHi(uint32_t a, uint32_t b) {
#ifdef __CUDA_ARCH__
    return __umulhi(a, b);
#else
    return static_cast<uint32_t>((static_cast<uint64_t>(a) * b) >> 32);
#endif
  }
  uint32_t d_, m_;
  int s_;
};

}  // namespace xent
}  // namespace caffe

#endif  // CAFFE_UTIL_XENT_DEVICE_HPP_
