// Bindings of the layer harness: run one Caffe layer on numpy arrays.
// Only m.def calls and array <-> Blob copies live here; argument checking
// with friendly messages is in caffe_xent/_run.py, and layers check their
// own input (throwing std::exception, translated to caffe_xent.LayerError).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <google/protobuf/text_format.h>

#include <algorithm>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/layer.hpp"
#include "caffe/proto/caffe.pb.h"
#include "caffe/util/xent_device.hpp"
#include "caffe/util/xent_registry.hpp"

namespace py = pybind11;

namespace {

template <typename Dtype>
using Array = py::array_t<Dtype, py::array::c_style | py::array::forcecast>;

template <typename Dtype>
void CopyToBlob(const Array<Dtype>& array, caffe::Blob<Dtype>* blob, bool diff) {
  std::vector<int> shape(array.shape(), array.shape() + array.ndim());
  if (!diff) {
    blob->Reshape(shape);
  } else if (blob->shape() != shape) {
    caffe::Blob<Dtype> given(shape);
    throw std::invalid_argument("top_diffs: shape " + given.shape_string() +
                                " does not match the top's shape " + blob->shape_string());
  }
  Dtype* dst = diff ? blob->mutable_cpu_diff() : blob->mutable_cpu_data();
  std::copy(array.data(), array.data() + array.size(), dst);
}

template <typename Dtype>
py::array_t<Dtype> FromBlob(const caffe::Blob<Dtype>& blob, bool diff) {
  std::vector<py::ssize_t> shape(blob.shape().begin(), blob.shape().end());
  py::array_t<Dtype> out(shape);
  const Dtype* src = diff ? blob.cpu_diff() : blob.cpu_data();
  std::copy(src, src + blob.count(), out.mutable_data());
  return out;
}

// Upstream's Layer::CheckBlobCounts CHECK-aborts the process; check the
// same declared counts first and throw instead.
void CheckCount(const caffe::LayerParameter& param, const char* what, int given,
                int exact, int min, int max) {
  std::string problem;
  if (exact >= 0 && given != exact) {
    problem = "exactly " + std::to_string(exact);
  } else if (min >= 0 && given < min) {
    problem = "at least " + std::to_string(min);
  } else if (max >= 0 && given > max) {
    problem = "at most " + std::to_string(max);
  }
  if (!problem.empty()) {
    throw std::invalid_argument(param.type() + " layer '" + param.name() + "' takes " + problem +
                                " " + what + " blob(s), got " + std::to_string(given));
  }
}

// SetUp, Reshape (inside SetUp), Forward, then Backward with the given top
// diffs; returns (tops, bottom diffs or None).
template <typename Dtype>
py::tuple RunLayer(const std::string& layer_text, const std::vector<Array<Dtype>>& bottoms,
                   bool use_gpu, const std::vector<Array<Dtype>>& top_diffs,
                   std::vector<bool> propagate_down) {
  caffe::LayerParameter param;
  if (!google::protobuf::TextFormat::ParseFromString(layer_text, &param)) {
    throw std::invalid_argument("could not parse the layer as a LayerParameter in prototxt text");
  }
  if (!caffe::xent::HasLayerType<Dtype>(param.type())) {
    throw std::invalid_argument("unknown layer type \"" + param.type() + "\"");
  }
  caffe::Caffe::set_mode(use_gpu ? caffe::Caffe::GPU : caffe::Caffe::CPU);
  caffe::shared_ptr<caffe::Layer<Dtype>> layer = caffe::xent::CreateLayer<Dtype>(param);

  std::vector<std::unique_ptr<caffe::Blob<Dtype>>> owned;
  std::vector<caffe::Blob<Dtype>*> bottom, top;
  for (const Array<Dtype>& array : bottoms) {
    owned.emplace_back(new caffe::Blob<Dtype>());
    CopyToBlob(array, owned.back().get(), false);
    bottom.push_back(owned.back().get());
  }
  int num_tops = std::max(layer->ExactNumTopBlobs(), layer->MinTopBlobs());
  num_tops = std::max(num_tops, static_cast<int>(param.top_size()));
  num_tops = std::max(num_tops, static_cast<int>(top_diffs.size()));
  num_tops = std::max(num_tops, 1);
  for (int i = 0; i < num_tops; ++i) {
    owned.emplace_back(new caffe::Blob<Dtype>());
    top.push_back(owned.back().get());
  }
  CheckCount(param, "bottom", bottom.size(), layer->ExactNumBottomBlobs(),
             layer->MinBottomBlobs(), layer->MaxBottomBlobs());
  CheckCount(param, "top", top.size(), layer->ExactNumTopBlobs(), layer->MinTopBlobs(),
             layer->MaxTopBlobs());
  layer->SetUp(bottom, top);  // also sets loss tops' diffs to their loss weights
  layer->Forward(bottom, top);

  for (size_t i = 0; i < top_diffs.size(); ++i) {
    CopyToBlob(top_diffs[i], top[i], true);
  }
  if (propagate_down.empty()) {
    for (size_t i = 0; i < bottom.size(); ++i) {
      propagate_down.push_back(layer->AllowForceBackward(i));
    }
  }
  if (propagate_down.size() != bottom.size()) {
    throw std::invalid_argument("propagate_down needs one entry per bottom");
  }
  layer->Backward(top, propagate_down, bottom);

  py::list tops_out, diffs_out;
  for (caffe::Blob<Dtype>* blob : top) tops_out.append(FromBlob(*blob, false));
  for (size_t i = 0; i < bottom.size(); ++i) {
    if (propagate_down[i]) {
      diffs_out.append(FromBlob(*bottom[i], true));
    } else {
      diffs_out.append(py::none());
    }
  }
  return py::make_tuple(tops_out, diffs_out);
}

}  // namespace

PYBIND11_MODULE(_harness, m) {
  m.doc() = "Run one Caffe layer on numpy arrays (private; use caffe_xent.run_layer).";
  static py::object* layer_error =
      new py::object(py::module_::import("caffe_xent._errors").attr("LayerError"));
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const std::exception& e) {
      PyErr_SetString(layer_error->ptr(), e.what());
    }
  });
  m.def("run_layer_float", &RunLayer<float>, py::arg("layer"), py::arg("bottoms"),
        py::arg("use_gpu"), py::arg("top_diffs"), py::arg("propagate_down"));
  m.def("run_layer_double", &RunLayer<double>, py::arg("layer"), py::arg("bottoms"),
        py::arg("use_gpu"), py::arg("top_diffs"), py::arg("propagate_down"));
  m.def("gpu_count", &caffe::xent::GpuCount, "Number of CUDA devices (0 in a CPU-only build).");
  m.def("cuda_build", &caffe::xent::CudaBuild, "Whether this Caffe was built with CUDA.");
}
