// Bindings of the layer harness: caffe_xent._harness, the compiled part of
// caffe_xent.run_layer / time_layer / simd_target. Only binding calls live
// here: the work is in layer_runner.cpp (run or time one layer on numpy
// arrays) and caffe/util/xent_*.hpp (devices, SIMD targets); argument
// checking with friendly messages is in caffe_xent/_run.py. Any
// std::exception becomes caffe_xent.LayerError.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <exception>

#include "caffe/util/xent_device.hpp"
#include "caffe/util/xent_simd.hpp"
#include "layer_runner.hpp"

namespace py = pybind11;

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
  m.def("run_layer_float", &caffe_xent::RunLayer<float>, py::arg("layer"), py::arg("bottoms"),
        py::arg("use_gpu"), py::arg("top_diffs"), py::arg("propagate_down"));
  m.def("run_layer_double", &caffe_xent::RunLayer<double>, py::arg("layer"), py::arg("bottoms"),
        py::arg("use_gpu"), py::arg("top_diffs"), py::arg("propagate_down"));
  m.def("time_layer_float", &caffe_xent::TimeLayer<float>, py::arg("layer"), py::arg("bottoms"),
        py::arg("use_gpu"), py::arg("iters"), py::arg("repeats"));
  m.def("time_layer_double", &caffe_xent::TimeLayer<double>, py::arg("layer"), py::arg("bottoms"),
        py::arg("use_gpu"), py::arg("iters"), py::arg("repeats"));
  m.def("gpu_count", &caffe::xent::GpuCount, "Number of CUDA devices (0 in a CPU-only build).");
  m.def("cuda_build", &caffe::xent::CudaBuild, "Whether this Caffe was built with CUDA.");
  m.def("simd_target", &caffe::xent::SimdTarget, "The SIMD target the CPU loss paths use.");
  m.def("simd_targets", &caffe::xent::SimdTargets, "SIMD targets this build and CPU run, best first.");
  m.def("simd_target_request_error", &caffe::xent::SimdTargetRequestError,
        "Why CAFFE_XENT_SIMD was not applied (empty when it was, or is unset).");
}
