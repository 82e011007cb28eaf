#ifndef CAFFE_LAYERS_XENT_HARD_TARGETS_HPP_
#define CAFFE_LAYERS_XENT_HARD_TARGETS_HPP_

// What the two ranking losses with hard targets (ZLPRLoss, TwoWayLoss)
// share in their layer glue: the class-axis geometry of (scores, targets)
// with its checks, and the target rule's refusals (0 and 1 as
// ignore_label; any other target value). The rule itself is
// zlpr_loss_math.hpp's Kind.

#include <sstream>
#include <string>

#include "caffe/blob.hpp"
#include "caffe/proto/caffe.pb.h"

#include "caffe/layers/xent_common.hpp"

namespace caffe {
namespace xent {

/// The class axis of a blob and the dimensions around it.
struct ClassAxis {
  int axis;     ///< canonical (0 <= axis < num_axes)
  int outer;    ///< product of the dimensions before axis
  int classes;  ///< C, the dimension of axis
  int inner;    ///< product of the dimensions after axis
};

/// Checks that targets t have the shape of scores x and that `axis` (negative
/// counts from the end) is in range; returns the geometry.
template <typename Dtype>
ClassAxis CheckedClassAxis(const LayerParameter& param, const Blob<Dtype>& x,
                           const Blob<Dtype>& t, int axis) {
  XENT_CHECK(param, x.shape() == t.shape(),
             "bottom[1] (targets) has shape " << t.shape_string() << " but bottom[0] (scores) has "
             << x.shape_string() << "; they must be equal");
  const int num_axes = x.num_axes();
  XENT_CHECK(param, axis >= -num_axes && axis < num_axes,
             "axis " << axis << " is out of range for bottom[0] (scores) of shape "
                     << x.shape_string() << " (" << num_axes << " axes)");
  ClassAxis a;
  a.axis = axis < 0 ? axis + num_axes : axis;
  a.outer = x.count(0, a.axis);
  a.classes = x.shape(a.axis);
  a.inner = x.count(a.axis + 1);
  return a;
}

/// 0 and 1 are the targets of the two sets: as ignore_label either would
/// empty one of them.
inline void RefuseHardTargetIgnoreLabel(const LayerParameter& param, bool has_ignore,
                                        int ignore) {
  XENT_CHECK(param, !has_ignore || (ignore != 0 && ignore != 1),
             "ignore_label = " << ignore << " is refused: 0 and 1 are the targets of the "
             "negatives and the positives; choose another value (e.g. -1 or 255)");
}

/// What RefuseBadValues says was counted, and its advice, for hard targets.
inline std::string HardTargetWhat(bool has_ignore, int ignore) {
  std::ostringstream what;
  what << "values that are not 0 or 1";
  if (has_ignore) what << " (nor ignore_label, " << ignore << ")";
  return what.str();
}
inline std::string HardTargetAdvice(const char* loss) {
  return std::string("; ") + loss + " targets are hard labels: 1 (positive), 0 (negative) or "
         "ignore_label (neither)";
}

}  // namespace xent
}  // namespace caffe

#endif  // CAFFE_LAYERS_XENT_HARD_TARGETS_HPP_
