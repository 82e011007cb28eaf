#include "caffe/util/xent_simd.hpp"

#include <hwy/highway.h>
#include <hwy/targets.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace caffe {
namespace xent {

namespace {

// Targets with code here (HWY_TARGETS: the same default set the SIMD files
// are compiled for) that this CPU runs, as a bit mask; a lower bit is a
// better target.
int64_t Runnable() { return hwy::SupportedTargets() & HWY_TARGETS; }

// The same before CAFFE_XENT_SIMD restricts it (first called while loading).
int64_t RunnableOnThisCpu() {
  static const int64_t mask = Runnable();
  return mask;
}

std::string& RequestError() {
  static std::string error;
  return error;
}

// Applies CAFFE_XENT_SIMD once, when libcaffe loads (before any dispatch:
// Highway's dispatch tables and the layers' cached lane counts then agree).
// The mask keeps the chosen target and the worse ones, so Highway still has
// a fallback for anything compiled for fewer targets.
struct ApplyRequest {
  ApplyRequest() {
    const int64_t runnable = RunnableOnThisCpu();
    const char* wanted = std::getenv("CAFFE_XENT_SIMD");
    if (wanted == nullptr || *wanted == '\0') return;
    for (int64_t bits = runnable; bits != 0; bits &= bits - 1) {
      const int64_t target = bits & -bits;
      if (std::string(hwy::TargetName(target)) == wanted) {
        hwy::SetSupportedTargetsForTest(runnable & ~(target - 1));
        return;
      }
    }
    std::string names;
    for (const std::string& name : SimdTargets()) names += (names.empty() ? "" : ", ") + name;
    RequestError() = std::string("CAFFE_XENT_SIMD=") + wanted +
                     " is not a SIMD target this build and CPU can run (" + names + ")";
    std::fprintf(stderr, "caffe-xent: %s; using %s\n", RequestError().c_str(),
                 SimdTarget().c_str());
  }
};
const ApplyRequest apply_request;

}  // namespace

std::string SimdTarget() {
  const int64_t runnable = Runnable();
  return hwy::TargetName(runnable & -runnable);
}

std::vector<std::string> SimdTargets() {
  std::vector<std::string> names;
  for (int64_t bits = RunnableOnThisCpu(); bits != 0; bits &= bits - 1) {
    names.push_back(hwy::TargetName(bits & -bits));
  }
  return names;
}

std::string SimdTargetRequestError() { return RequestError(); }

}  // namespace xent
}  // namespace caffe
