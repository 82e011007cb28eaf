#ifndef CAFFE_UTIL_XENT_SIMD_HPP_
#define CAFFE_UTIL_XENT_SIMD_HPP_

#include <string>
#include <vector>

namespace caffe {
namespace xent {

/// The SIMD target the loss layers' CPU paths dispatch to, by Highway's
/// name: AVX3 (AVX-512), AVX2, SSE4, SSSE3 or SCALAR on x86.
///
/// The best one this CPU runs, unless the environment variable
/// CAFFE_XENT_SIMD names another when libcaffe loads: then that one (and
/// only worse ones as fallback), so one machine can measure and test each
/// of its paths. A name this build or CPU cannot run is ignored with a
/// line on stderr, and SimdTargetRequestError() says why.
std::string SimdTarget();

/// Every target this build has code for and this CPU can run, best first.
std::vector<std::string> SimdTargets();

/// Why CAFFE_XENT_SIMD was not applied ("" when it was, or is unset).
std::string SimdTargetRequestError();

}  // namespace xent
}  // namespace caffe

#endif  // CAFFE_UTIL_XENT_SIMD_HPP_
