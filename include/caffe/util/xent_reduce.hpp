#ifndef CAFFE_UTIL_XENT_REDUCE_HPP_
#define CAFFE_UTIL_XENT_REDUCE_HPP_

// Deterministic sums of caffe-xent's loss layers on the CPU; the GPU's are
// in xent_reduce.cuh, with the same LossSums. Both add in double over a
// partition fixed by the shape alone (never by the thread count or the
// device), in a fixed order: the same bits run after run.

#include <cstdint>
#include <vector>

namespace caffe {
namespace xent {

/// Elements per chunk of the CPU reductions. Fixed (never derived from the
/// thread count), so sums are bit-identical for any thread count.
const int64_t kReduceChunk = 1 << 14;

/// What a loss layer's forward pass adds up over its elements (or rows).
/// Counts are integers held in double: exact below 2^53.
struct LossSums {
  double loss;         ///< Σ of the element (row) losses
  double counted;      ///< elements (rows) that take part: the VALID normalizer
  double bad_targets;  ///< targets breaking the layer's rule
  double bad_weights;  ///< weights breaking the rule (layers with weights)

  LossSums() : loss(0.0), counted(0.0), bad_targets(0.0), bad_weights(0.0) {}
  LossSums& operator+=(const LossSums& other) {
    loss += other.loss;
    counted += other.counted;
    bad_targets += other.bad_targets;
    bad_weights += other.bad_weights;
    return *this;
  }
};

/// Number of fixed chunks of `chunk` items covering `count`.
inline int64_t ChunkCount(int64_t count, int64_t chunk = kReduceChunk) {
  return (count + chunk - 1) / chunk;
}

/// Σ body(k) over k in [0, chunks): chunks run in parallel under OpenMP,
/// their LossSums are then added in chunk order. One chunk runs on the
/// calling thread: no thread team (its start-up, and its threads spinning
/// against OpenBLAS's afterwards, cost more than a small blob's work).
/// Chunks are handed out dynamically: a thread that waits for a core (held
/// by another process, or by OpenBLAS's threads) takes fewer, instead of
/// the others spinning at the barrier for its fixed share
/// (bench/bench_threads.py, InnerProduct then a 65536-element loss: 1.2 to
/// 8 ms an iteration with a static schedule, 1.4 in most runs with a dynamic
/// one but still up to 8; 0.8-0.9 with OMP_WAIT_POLICY=passive; pycaffe,
/// caffe_xent and the `caffe` command now load libgomp with a short spin,
/// GOMP_SPINCOUNT=10000, when the user has not chosen: _openmp.py). Two
/// threads pay from two chunks on (2^15 elements: 24 µs against 35 on one,
/// 2-core Xeon, forward+backward).
/// Memory: one LossSums per chunk.
template <typename Body>
LossSums ChunkedSums(int64_t chunks, Body body) {
  if (chunks <= 1) return chunks == 1 ? body(int64_t(0)) : LossSums();
  std::vector<LossSums> partial(chunks);
#pragma omp parallel for schedule(dynamic)
  for (int64_t k = 0; k < chunks; ++k) partial[k] = body(k);
  LossSums total;
  for (int64_t k = 0; k < chunks; ++k) total += partial[k];
  return total;
}

}  // namespace xent
}  // namespace caffe

#endif  // CAFFE_UTIL_XENT_REDUCE_HPP_
