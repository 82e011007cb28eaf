#include "caffe/util/xent_registry.hpp"

#include "caffe/layer_factory.hpp"

namespace caffe {
namespace xent {

template <typename Dtype>
bool HasLayerType(const std::string& type) {
  return LayerRegistry<Dtype>::Registry().count(type) == 1;
}

template <typename Dtype>
shared_ptr<Layer<Dtype> > CreateLayer(const LayerParameter& param) {
  return LayerRegistry<Dtype>::CreateLayer(param);
}

template bool HasLayerType<float>(const std::string&);
template bool HasLayerType<double>(const std::string&);
template shared_ptr<Layer<float> > CreateLayer<float>(const LayerParameter&);
template shared_ptr<Layer<double> > CreateLayer<double>(const LayerParameter&);

}  // namespace xent
}  // namespace caffe
