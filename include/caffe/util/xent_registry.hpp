#ifndef CAFFE_UTIL_XENT_REGISTRY_HPP_
#define CAFFE_UTIL_XENT_REGISTRY_HPP_

#include <string>

#include "caffe/common.hpp"
#include "caffe/layer.hpp"
#include "caffe/proto/caffe.pb.h"

namespace caffe {
namespace xent {

// The layer registry lives in a static inside a header-inline function
// (caffe/layer_factory.hpp). A Python extension built with hidden visibility
// gets its own, empty copy of that static, so modules other than libcaffe
// must reach the registry through these out-of-line functions.

/// Whether a layer type is registered for Dtype.
template <typename Dtype>
bool HasLayerType(const std::string& type);

/// LayerRegistry<Dtype>::CreateLayer, compiled inside libcaffe.
template <typename Dtype>
shared_ptr<Layer<Dtype> > CreateLayer(const LayerParameter& param);

}  // namespace xent
}  // namespace caffe

#endif  // CAFFE_UTIL_XENT_REGISTRY_HPP_
