#ifndef CAFFE_LAYERS_XENT_COMMON_HPP_
#define CAFFE_LAYERS_XENT_COMMON_HPP_

// Shared by caffe-xent's loss layers (SigmoidCrossEntropyLoss,
// MultiLabelSoftmaxLoss): host/device annotation for element math, input
// checks that throw instead of aborting, the per-class vector rule. The
// layer glue is XentLossLayer (xent_loss_layer.hpp); the deterministic sums
// are in caffe/util/xent_reduce.hpp (CPU) and xent_reduce.cuh (GPU).

#include <algorithm>
#include <cfloat>
#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#ifdef __CUDACC__
/// Element math is compiled for both the CPU loop and the CUDA kernel.
#define XENT_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define XENT_HOST_DEVICE inline
#endif

namespace caffe {
namespace xent {

/// Bad input or parameters of a layer. Thrown (not CHECK-aborted) so that
/// pycaffe and the harness raise a Python exception and the caffe tool exits
/// with the message; std::invalid_argument maps to ValueError in
/// Boost.Python and pybind11.
class XentError : public std::invalid_argument {
 public:
  explicit XentError(const std::string& what) : std::invalid_argument(what) {}
};

/// Streams a message naming the layer, then throws XentError:
///   XENT_CHECK(layer_param, count_x == count_t,
///              "bottom[1] (targets) has " << n << " elements, ...");
#define XENT_CHECK(layer_param, condition, message)                          \
  do {                                                                       \
    if (!(condition)) {                                                      \
      std::ostringstream xent_check_stream_;                                 \
      xent_check_stream_ << (layer_param).type() << " layer '"               \
                         << (layer_param).name() << "': " << message;        \
      throw ::caffe::xent::XentError(xent_check_stream_.str());              \
    }                                                                        \
  } while (0)

/// The largest finite value of T, on host and device.
XENT_HOST_DEVICE float XentMaxFinite(float) { return FLT_MAX; }
XENT_HOST_DEVICE double XentMaxFinite(double) { return DBL_MAX; }

/// A per-element weight is data: finite and >= 0 (false for NaN and +inf).
template <typename T>
XENT_HOST_DEVICE bool XentIsValidWeight(T w) {
  return w >= T(0) && w <= XentMaxFinite(w);
}

/// Error path of the data checks. A forward pass counts the values of a
/// bottom that break its rule in the same pass over memory that computes the
/// loss; only when that count is not 0 does this scan (`is_bad`, the same
/// rule) look for the first one, to name it. Throws XentError:
///   "<bottom> has <bad> <what>; the first is <value> at flat index <i>
///    (shape <shape>)<advice>"
template <typename Param, typename Dtype, typename IsBad>
void ThrowFirstBadValue(const Param& layer_param, const char* bottom_name, const Dtype* data,
                        int64_t count, const std::string& shape, int64_t bad, const char* what,
                        IsBad is_bad, const std::string& advice) {
  int64_t first = 0;
  while (first < count && !is_bad(data[first])) ++first;
  std::ostringstream where;
  if (first < count) {
    where << "; the first is " << data[first] << " at flat index " << first;
  }
  XENT_CHECK(layer_param, false, bottom_name << " has " << bad << " " << what << where.str()
             << " (shape " << shape << ")" << advice);
}

/// Per-class vector rule of both layers: empty -> 1 for every class, one
/// value broadcasts, else exactly `classes` values, each finite and >= 0.
/// Returns `classes` values.
template <typename Param, typename Field>
std::vector<float> ExpandPerClass(const Param& layer_param, const Field& values,
                                  int classes, const char* field_name) {
  XENT_CHECK(layer_param, values.size() == 0 || values.size() == 1 || values.size() == classes,
             field_name << " has " << values.size() << " values; give none, one (broadcast) or "
                        << classes << " (one per class along the class axis)");
  std::vector<float> out(classes, values.size() == 0 ? 1.0f : values.Get(0));
  if (values.size() == classes) {
    for (int c = 0; c < classes; ++c) out[c] = values.Get(c);
  }
  for (int c = 0; c < classes; ++c) {
    XENT_CHECK(layer_param, XentIsValidWeight(out[c]),
               field_name << "[" << c << "] = " << out[c]
               << (out[c] < 0.0f ? " is negative" : " is not finite")
               << "; weights must be finite and >= 0");
  }
  return out;
}

}  // namespace xent
}  // namespace caffe

#endif  // CAFFE_LAYERS_XENT_COMMON_HPP_
