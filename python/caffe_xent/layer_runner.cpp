// Runs, or times, one Caffe layer on numpy arrays; see layer_runner.hpp.
#include "layer_runner.hpp"

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

namespace py = pybind11;

namespace caffe_xent {
namespace {

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

}  // namespace

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

// The data stays on the device between calls (one warm-up Forward/Backward moves it there);
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

template py::tuple RunLayer<float>(const std::string&, const std::vector<Array<float>>&, bool,
                                   const std::vector<Array<float>>&, std::vector<bool>);
template py::tuple RunLayer<double>(const std::string&, const std::vector<Array<double>>&, bool,
                                    const std::vector<Array<double>>&, std::vector<bool>);
template py::dict TimeLayer<float>(const std::string&, const std::vector<Array<float>>&, bool, int,
                                   int);
template py::dict TimeLayer<double>(const std::string&, const std::vector<Array<double>>&, bool,
                                    int, int);

}  // namespace caffe_xent
