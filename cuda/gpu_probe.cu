// xent_gpu_probe: is a CUDA device usable, what is it, and how fast does it
// copy memory? Prints one JSON object on stdout; exits 0 whether or not a
// GPU is present ("gpu": false with the reason), non-zero only when the
// probe itself fails on a device it found.
//
// The copy bandwidth is the ceiling the loss kernels are measured against:
// a device-to-device cudaMemcpy of a buffer far larger than the L2 cache,
// counting the bytes read plus the bytes written, the median of several
// timed rounds after a warm-up.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

namespace {

std::string Escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '"' || c == '\\') out += '\\';
    if (c == '\n') { out += "\\n"; continue; }
    out += c;
  }
  return out;
}

int NoGpu(const std::string& reason) {
  std::printf("{\"gpu\": false, \"reason\": \"%s\"}\n", Escape(reason).c_str());
  return 0;
}

int Fail(const char* what, cudaError_t err) {
  std::printf("{\"gpu\": true, \"error\": \"%s: %s\"}\n", what, cudaGetErrorString(err));
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  // Bytes per buffer: 1 GiB by default, far beyond the L2 of any current GPU.
  size_t bytes = size_t(1) << 30;
  if (argc > 1) bytes = std::stoull(argv[1]);

  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    return NoGpu(std::string("cudaGetDeviceCount: ") + cudaGetErrorString(err));
  }
  if (count == 0) return NoGpu("cudaGetDeviceCount: no CUDA device");

  cudaDeviceProp prop;
  if ((err = cudaGetDeviceProperties(&prop, 0)) != cudaSuccess) {
    return Fail("cudaGetDeviceProperties", err);
  }
  int driver = 0, runtime = 0;
  cudaDriverGetVersion(&driver);
  cudaRuntimeGetVersion(&runtime);

  void* src = nullptr;
  void* dst = nullptr;
  if ((err = cudaMalloc(&src, bytes)) != cudaSuccess) return Fail("cudaMalloc", err);
  if ((err = cudaMalloc(&dst, bytes)) != cudaSuccess) return Fail("cudaMalloc", err);
  if ((err = cudaMemset(src, 0x5a, bytes)) != cudaSuccess) return Fail("cudaMemset", err);
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  // Warm-up, then rounds of 10 copies each.
  for (int i = 0; i < 3; ++i) cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice);
  std::vector<double> rates;
  for (int round = 0; round < 7; ++round) {
    cudaEventRecord(start);
    for (int i = 0; i < 10; ++i) {
      cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice);
    }
    cudaEventRecord(stop);
    if ((err = cudaEventSynchronize(stop)) != cudaSuccess) return Fail("cudaMemcpy", err);
    float ms = 0.f;
    cudaEventElapsedTime(&ms, start, stop);
    rates.push_back(2.0 * 10.0 * double(bytes) / (ms * 1e-3) / 1e9);
  }
  std::sort(rates.begin(), rates.end());
  cudaFree(src);
  cudaFree(dst);

  std::printf("{\"gpu\": true, \"count\": %d, \"name\": \"%s\", \"compute_capability\": \"%d.%d\", "
              "\"multiprocessors\": %d, \"memory_gib\": %.1f, \"l2_mib\": %.1f, "
              "\"driver_api\": %d, \"runtime_api\": %d, \"copy_bytes\": %zu, "
              "\"copy_gbs_median\": %.1f, \"copy_gbs_max\": %.1f}\n",
              count, Escape(prop.name).c_str(), prop.major, prop.minor, prop.multiProcessorCount,
              prop.totalGlobalMem / double(1 << 30), prop.l2CacheSize / double(1 << 20), driver,
              runtime, bytes, rates[rates.size() / 2], rates.back());
  return 0;
}
