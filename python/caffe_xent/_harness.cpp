// Bindings of the layer harness: run, or time, one Caffe layer on numpy
// arrays. Only m.def calls, array <-> Blob copies and the timing loop live
// here; argument checking with friendly messages is in caffe_xent/_run.py,
// and layers check their own input (throwing std::exception, translated to
// caffe_xent.LayerError).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <google/protobuf/text_format.h>

#include <algorithm>
#include <chrono>
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
#include "caffe/util/xent_simd.hpp"

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

// One layer with its own bottom and top blobs, after SetUp (which also
// sets a loss top's diff to its loss weight).
template <typename Dtype>
struct PreparedLayer {
  caffe::shared_ptr<caffe::Layer<Dtype>> layer;
  std::vector<std::unique_ptr<caffe::Blob<Dtype>>> owned;
  std::vector<caffe::Blob<Dtype>*> bottom, top;

  PreparedLayer(const std::string& layer_text, const std::vector<Array<Dtype>>& bottoms,
                bool use_gpu, size_t min_tops) {
    caffe::LayerParameter param;
    if (!google::protobuf::TextFormat::ParseFromString(layer_text, &param)) {
      throw std::invalid_argument("could not parse the layer as a LayerParameter in prototxt text");
    }
    if (!caffe::xent::HasLayerType<Dtype>(param.type())) {
      throw std::invalid_argument("unknown layer type \"" + param.type() + "\"");
    }
    caffe::Caffe::set_mode(use_gpu ? caffe::Caffe::GPU : caffe::Caffe::CPU);
    layer = caffe::xent::CreateLayer<Dtype>(param);
    for (const Array<Dtype>& array : bottoms) {
      bottom.push_back(NewBlob());
      CopyToBlob(array, bottom.back(), false);
    }
    int num_tops = std::max(layer->ExactNumTopBlobs(), layer->MinTopBlobs());
    num_tops = std::max(num_tops, static_cast<int>(param.top_size()));
    num_tops = std::max(num_tops, static_cast<int>(min_tops));
    num_tops = std::max(num_tops, 1);
    for (int i = 0; i < num_tops; ++i) top.push_back(NewBlob());
    CheckCount(param, "bottom", bottom.size(), layer->ExactNumBottomBlobs(),
               layer->MinBottomBlobs(), layer->MaxBottomBlobs());
    CheckCount(param, "top", top.size(), layer->ExactNumTopBlobs(), layer->MinTopBlobs(),
               layer->MaxTopBlobs());
    layer->SetUp(bottom, top);
  }

  // Every bottom the layer lets gradients into.
  std::vector<bool> DefaultPropagateDown() const {
    std::vector<bool> down;
    for (size_t i = 0; i < bottom.size(); ++i) down.push_back(layer->AllowForceBackward(i));
    return down;
  }

 private:
  caffe::Blob<Dtype>* NewBlob() {
    owned.emplace_back(new caffe::Blob<Dtype>());
    return owned.back().get();
  }
};

// SetUp, Reshape (inside SetUp), Forward, then Backward with the given top
// diffs; returns (tops, bottom diffs or None).
template <typename Dtype>
py::tuple RunLayer(const std::string& layer_text, const std::vector<Array<Dtype>>& bottoms,
                   bool use_gpu, const std::vector<Array<Dtype>>& top_diffs,
                   std::vector<bool> propagate_down) {
  PreparedLayer<Dtype> run(layer_text, bottoms, use_gpu, top_diffs.size());
  run.layer->Forward(run.bottom, run.top);
  for (size_t i = 0; i < top_diffs.size(); ++i) {
    CopyToBlob(top_diffs[i], run.top[i], true);
  }
  if (propagate_down.empty()) propagate_down = run.DefaultPropagateDown();
  if (propagate_down.size() != run.bottom.size()) {
    throw std::invalid_argument("propagate_down needs one entry per bottom");
  }
  run.layer->Backward(run.top, propagate_down, run.bottom);

  py::list tops_out, diffs_out;
  for (caffe::Blob<Dtype>* blob : run.top) tops_out.append(FromBlob(*blob, false));
  for (size_t i = 0; i < run.bottom.size(); ++i) {
    if (propagate_down[i]) {
      diffs_out.append(FromBlob(*run.bottom[i], true));
    } else {
      diffs_out.append(py::none());
    }
  }
  return py::make_tuple(tops_out, diffs_out);
}

// Seconds per Forward and per Backward (default propagate_down), each the
// mean over `iters` calls in a row, for `repeats` rounds. The data stays on
// the device between calls (one warm-up Forward/Backward moves it there);
// each round ends with a device synchronize, so the time is what a net
// waits for, launches and host synchronizations inside the layer included.
template <typename Dtype>
py::dict TimeLayer(const std::string& layer_text, const std::vector<Array<Dtype>>& bottoms,
                   bool use_gpu, int iters, int repeats) {
  if (iters < 1 || repeats < 1) {
    throw std::invalid_argument("iters and repeats must be at least 1");
  }
  PreparedLayer<Dtype> run(layer_text, bottoms, use_gpu, 0);
  const std::vector<bool> down = run.DefaultPropagateDown();
  using Clock = std::chrono::steady_clock;
  auto seconds = [](Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double>(b - a).count();
  };
  auto synchronize = [use_gpu] {
    if (use_gpu) caffe::xent::Synchronize();
  };
  run.layer->Forward(run.bottom, run.top);
  run.layer->Backward(run.top, down, run.bottom);
  synchronize();
  py::list forward, backward;
  for (int r = 0; r < repeats; ++r) {
    const Clock::time_point t0 = Clock::now();
    for (int i = 0; i < iters; ++i) run.layer->Forward(run.bottom, run.top);
    synchronize();
    const Clock::time_point t1 = Clock::now();
    for (int i = 0; i < iters; ++i) run.layer->Backward(run.top, down, run.bottom);
    synchronize();
    const Clock::time_point t2 = Clock::now();
    forward.append(seconds(t0, t1) / iters);
    backward.append(seconds(t1, t2) / iters);
  }
  py::dict out;
  out["forward"] = forward;
  out["backward"] = backward;
  return out;
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
  m.def("time_layer_float", &TimeLayer<float>, py::arg("layer"), py::arg("bottoms"),
        py::arg("use_gpu"), py::arg("iters"), py::arg("repeats"));
  m.def("time_layer_double", &TimeLayer<double>, py::arg("layer"), py::arg("bottoms"),
        py::arg("use_gpu"), py::arg("iters"), py::arg("repeats"));
  m.def("gpu_count", &caffe::xent::GpuCount, "Number of CUDA devices (0 in a CPU-only build).");
  m.def("cuda_build", &caffe::xent::CudaBuild, "Whether this Caffe was built with CUDA.");
  m.def("simd_target", &caffe::xent::SimdTarget, "The SIMD target the CPU loss paths use.");
  m.def("simd_targets", &caffe::xent::SimdTargets, "SIMD targets this build and CPU run, best first.");
  m.def("simd_target_request_error", &caffe::xent::SimdTargetRequestError,
        "Why CAFFE_XENT_SIMD was not applied (empty when it was, or is unset).");
}
