// Runs, or times, one Caffe layer on numpy arrays: what caffe_xent.run_layer
// and caffe_xent.time_layer do below the argument checks of
// caffe_xent/_run.py. _harness.cpp binds these functions to Python.
//
// The layer is built from one LayerParameter in prototxt text, through the
// registry (caffe/util/xent_registry.hpp); its bottoms are the given arrays
// copied into Blobs. Errors throw std::exception (the binding turns them
// into caffe_xent.LayerError), never CHECK-abort the process.
#ifndef CAFFE_XENT_PYTHON_LAYER_RUNNER_HPP_
#define CAFFE_XENT_PYTHON_LAYER_RUNNER_HPP_

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

namespace caffe_xent {

// A C-contiguous array of Dtype; pybind11 converts other arrays to it.
template <typename Dtype>
using Array = pybind11::array_t<Dtype, pybind11::array::c_style | pybind11::array::forcecast>;

// SetUp, Reshape (inside SetUp), Forward, then Backward with the given top
// diffs (none: the loss weights SetUp put there) and propagate_down (empty:
// every bottom the layer allows). Returns (tops, bottom diffs or None).
template <typename Dtype>
pybind11::tuple RunLayer(const std::string& layer_text, const std::vector<Array<Dtype>>& bottoms,
                         bool use_gpu, const std::vector<Array<Dtype>>& top_diffs,
                         std::vector<bool> propagate_down);

// Seconds per Forward and per Backward (default propagate_down), each the
// mean over `iters` calls in a row, for `repeats` rounds:
// {"forward": [...], "backward": [...]}.
template <typename Dtype>
pybind11::dict TimeLayer(const std::string& layer_text, const std::vector<Array<Dtype>>& bottoms,
                         bool use_gpu, int iters, int repeats);

}  // namespace caffe_xent

#endif  // CAFFE_XENT_PYTHON_LAYER_RUNNER_HPP_
