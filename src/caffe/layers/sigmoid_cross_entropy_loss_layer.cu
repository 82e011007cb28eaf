// GPU path of SigmoidCrossEntropyLoss. Three thin layers:
//   element math  sigmoid_cross_entropy_loss_math.hpp (shared with the CPU
//                 loop): Element, TargetKind;
//   kernels       below: forward reads x, t (and w) once and writes one row
//                 of sums per block; backward reads them again and writes dx;
//   layer glue    Forward_gpu / Backward_gpu (launch, check, normalize).
//
// Kernels are specialized (template flags) on the options that change the
// work: the focal term, the asymmetric form, per-class values, per-element
// weights, the per-element top. Without the focal flag the kernel passes γ = 0, α = -1
// as constants, so the compiler folds Element's focal branch away, and a
// backward that discards the loss drops bce and its log1p (the SASS of
// the plain backward has no log1p: docs/sigmoid_cross_entropy_loss.md).
//
// Memory: a thread takes a group of V consecutive elements (V = 16 bytes /
// sizeof(Dtype): a float4 or double2 load per input where every pointer is
// 16-byte aligned, as cudaMalloc's are; scalar loads otherwise, the same
// elements in the same order, so the bits do not depend on alignment).
//
// Sums: block b adds the elements of chunk b, [b·chunk, (b+1)·chunk), with
// `chunk` a function of the element count only (ForwardChunk): at most
// kReduceBlocks blocks, each row of the layer's block_sums_, then
// xent::FinishSums adds the rows in a fixed order. No float atomics, no
// dependence on the GPU or the run: the same bits for the same shape and
// data.
#include <stdint.h>

#include <algorithm>
#include <vector>

#include "caffe/layers/sigmoid_cross_entropy_loss_layer.hpp"
#include "caffe/layers/sigmoid_cross_entropy_loss_math.hpp"
#include "caffe/util/xent_device.hpp"
#include "caffe/util/xent_reduce.cuh"

namespace caffe {

namespace xent {
namespace sigmoid {
namespace {

/// The options that change a kernel's work, as template flags.
enum KernelFlag {
  kFocal = 1,       ///< focal γ > 0 or α set: Element's focal branch
  kPerClass = 2,    ///< pos_weight / class_weight differ between classes
  kWeights = 4,     ///< bottom[2], per-element weights
  kElementTop = 8,  ///< top[1]: forward writes ℓ_i, backward reads its diff
  kAsymmetric = 16,  ///< the asymmetric form (AsymmetricElement); never with kFocal
  kFlagCombinations = 32
};

/// Elements of a thread's group: one 16-byte vector of each input.
template <typename Dtype>
struct Group {
  static const int V = 16 / sizeof(Dtype);
};

/// Loads the V elements of group g of p (g·V + V <= count, or the last
/// group: `n` < V elements valid, the rest left unread and set to 0).
template <typename Dtype>
__device__ __forceinline__ void LoadGroup(const Dtype* __restrict__ p, uint32_t g, int n,
                                          bool aligned, Dtype (&v)[Group<Dtype>::V]) {
  const int V = Group<Dtype>::V;
  if (aligned && n == V) {
    if constexpr (sizeof(Dtype) == 4) {
      const float4 q = reinterpret_cast<const float4*>(p)[g];
      reinterpret_cast<float*>(v)[0] = q.x;
      reinterpret_cast<float*>(v)[1] = q.y;
      reinterpret_cast<float*>(v)[2] = q.z;
      reinterpret_cast<float*>(v)[3] = q.w;
    } else {
      const double2 q = reinterpret_cast<const double2*>(p)[g];
      reinterpret_cast<double*>(v)[0] = q.x;
      reinterpret_cast<double*>(v)[1] = q.y;
    }
    return;
  }
#pragma unroll
  for (int k = 0; k < V; ++k) v[k] = k < n ? p[g * V + k] : Dtype(0);
}

/// Stores the first n of the V values into group g of p (as LoadGroup).
template <typename Dtype>
__device__ __forceinline__ void StoreGroup(Dtype* __restrict__ p, uint32_t g, int n, bool aligned,
                                           const Dtype (&v)[Group<Dtype>::V]) {
  const int V = Group<Dtype>::V;
  if (aligned && n == V) {
    if constexpr (sizeof(Dtype) == 4) {
      const float* f = reinterpret_cast<const float*>(v);
      reinterpret_cast<float4*>(p)[g] = make_float4(f[0], f[1], f[2], f[3]);
    } else {
      const double* f = reinterpret_cast<const double*>(v);
      reinterpret_cast<double2*>(p)[g] = make_double2(f[0], f[1]);
    }
    return;
  }
#pragma unroll
  for (int k = 0; k < V; ++k) {
    if (k < n) p[g * V + k] = v[k];
  }
}

/// What every thread needs to compute one element.
template <typename Dtype>
struct KernelArgs {
  const Dtype* __restrict__ x;             ///< logits
  const Dtype* __restrict__ t;             ///< targets
  const Dtype* __restrict__ w;             ///< per-element weights (kWeights)
  const Dtype* __restrict__ pos_weight;    ///< C values (kPerClass)
  const Dtype* __restrict__ class_weight;  ///< C values (kPerClass)
  Dtype pos_weight_all;                    ///< the one value without kPerClass
  Dtype class_weight_all;                  ///< likewise
  uint32_t count;                          ///< K < 2^31 (a Blob's count is an int)
  FastDivmod inner;                        ///< elements after the class axis
  FastDivmod classes;                      ///< C
  bool aligned;                            ///< every pointer used is 16-byte aligned
  bool has_ignore_label;
  Dtype ignore_label;
  Constants<Dtype> constants;
};

/// The constants a kernel passes to Element: without kFocal, γ = 0 and
/// α = -1 as literals, so Element's focal branch folds away; `asymmetric`
/// as the literal kAsymmetric, so Element's test of it folds away too
/// (with kAsymmetric Element is AsymmetricElement, with its γ and α).
template <typename Dtype, int kFlags>
__device__ __forceinline__ Constants<Dtype> KernelConstants(const KernelArgs<Dtype>& a) {
  Constants<Dtype> k = a.constants;
  if (!(kFlags & (kFocal | kAsymmetric))) {
    k.gamma = Dtype(0);
    k.alpha = Dtype(-1);
  }
  k.asymmetric = (kFlags & kAsymmetric) != 0;
  return k;
}

/// Everything element i needs besides x and t, loaded before any branch:
/// its pos_weight and its weight class_weight·w_i (and w_i, for the check).
/// The class of element i is (i / inner) % C, by FastDivmod.
template <typename Dtype, int kFlags>
__device__ __forceinline__ void ElementWeights(const KernelArgs<Dtype>& a, uint32_t i, Dtype w,
                                               Dtype* pos_weight, Dtype* weight) {
  if (kFlags & kPerClass) {
    const uint32_t c = a.classes.Mod(a.inner.Div(i));
    *pos_weight = a.pos_weight[c];
    *weight = a.class_weight[c] * w;
  } else {
    *pos_weight = a.pos_weight_all;
    *weight = a.class_weight_all * w;
  }
}

/// What the elements of a group need, loaded before any branch on them.
template <typename Dtype>
struct GroupInputs {
  Dtype x[Group<Dtype>::V];           ///< logits
  Dtype t[Group<Dtype>::V];           ///< targets
  Dtype w[Group<Dtype>::V];           ///< per-element weights (1 without kWeights)
  Dtype pos_weight[Group<Dtype>::V];  ///< of each element's class
  Dtype weight[Group<Dtype>::V];      ///< class_weight·w
};

/// x, t (and w) of group g, n valid elements, and each element's weights.
template <typename Dtype, int kFlags>
__device__ __forceinline__ void LoadInputs(const KernelArgs<Dtype>& a, uint32_t g, int n,
                                           GroupInputs<Dtype>* in) {
  const int V = Group<Dtype>::V;
  LoadGroup(a.x, g, n, a.aligned, in->x);
  LoadGroup(a.t, g, n, a.aligned, in->t);
  if (kFlags & kWeights) {
    LoadGroup(a.w, g, n, a.aligned, in->w);
  } else {
#pragma unroll
    for (int j = 0; j < V; ++j) in->w[j] = Dtype(1);
  }
#pragma unroll
  for (int j = 0; j < V; ++j) {
    // The last group's elements past the end take element g·V's class
    // (FastDivmod needs an index < 2^31; their results are never used).
    ElementWeights<Dtype, kFlags>(a, g * V + (j < n ? j : 0), in->w[j], &in->pos_weight[j],
                                  &in->weight[j]);
  }
}

/// Elements per block of the forward pass, a function of the count only:
/// a multiple of 1024 (a float4 per thread), at least 2048, and large
/// enough that at most kReduceBlocks blocks cover the count. At 2^20
/// elements 512 blocks of 2048, at 2^24 4096 blocks of 4096, at 2^26 4096
/// of 16384.
inline int64_t ForwardChunk(int64_t count) {
  const int64_t unit = 4 * kReduceThreads;
  const int64_t units = (count + unit * kReduceBlocks - 1) / (unit * kReduceBlocks);
  return unit * std::max<int64_t>(2, units);
}

/// Forward: block b sums the elements of [b·chunk, min((b+1)·chunk, K)),
/// thread j its groups j, j + 256, ... of the chunk, in order; the block's
/// four sums go to row b of `partial`.
template <typename Dtype, int kFlags>
__global__ void __launch_bounds__(kReduceThreads)
ForwardKernel(const KernelArgs<Dtype> a, uint32_t chunk, Dtype* __restrict__ element_loss,
              double* __restrict__ partial) {
  const int V = Group<Dtype>::V;
  const Constants<Dtype> k = KernelConstants<Dtype, kFlags>(a);
  const uint32_t begin = blockIdx.x * chunk;  // < K < 2^31, a multiple of V
  const uint32_t end = begin + chunk < a.count ? begin + chunk : a.count;  // no overflow: < 2^32
  double loss = 0.0;
  uint32_t counted = 0, bad_targets = 0, bad_weights = 0;
  for (uint32_t g = begin / V + threadIdx.x; g * V < end; g += kReduceThreads) {
    const int n = end - g * V < V ? static_cast<int>(end - g * V) : V;  // valid elements
    GroupInputs<Dtype> in;
    LoadInputs<Dtype, kFlags>(a, g, n, &in);
    Dtype out[Group<Dtype>::V];
#pragma unroll
    for (int j = 0; j < V; ++j) {
      out[j] = Dtype(0);
      if (j >= n) continue;  // past the end (the last group only)
      const int kind = TargetKind(in.t[j], a.has_ignore_label, a.ignore_label);
      if (kFlags & kWeights) bad_weights += !XentIsValidWeight(in.w[j]);  // NaN, +inf: bad
      bad_targets += kind < 0;
      if (kind != 0) {
        out[j] = Element<Dtype>(in.x[j], in.t[j], in.pos_weight[j], in.weight[j], k,
                                static_cast<Dtype*>(NULL));
        loss += out[j];  // summed in double, also for float blobs
        ++counted;
      }
    }
    if (kFlags & kElementTop) StoreGroup(element_loss, g, n, a.aligned, out);
  }
  StoreBlockSums(loss, counted, bad_targets, bad_weights, partial);
}

/// Backward: thread g takes group g (one group per thread; the grid covers
/// the count). dx_i = ∂ℓ_i/∂x · (scale + λ'_i), 0 for ignored elements.
template <typename Dtype, int kFlags>
__global__ void __launch_bounds__(kReduceThreads)
BackwardKernel(const KernelArgs<Dtype> a, const Dtype* __restrict__ element_diff, Dtype scale,
               Dtype* __restrict__ dx) {
  const int V = Group<Dtype>::V;
  const Constants<Dtype> k = KernelConstants<Dtype, kFlags>(a);
  const uint32_t g = blockIdx.x * kReduceThreads + threadIdx.x;  // < 2^29 groups
  if (g * V >= a.count) return;
  const int n = a.count - g * V < V ? static_cast<int>(a.count - g * V) : V;
  GroupInputs<Dtype> in;
  LoadInputs<Dtype, kFlags>(a, g, n, &in);
  Dtype factor[Group<Dtype>::V], grad[Group<Dtype>::V];
  if (kFlags & kElementTop) {
    LoadGroup(element_diff, g, n, a.aligned, factor);
#pragma unroll
    for (int j = 0; j < V; ++j) factor[j] = scale + factor[j];  // λ/norm + λ'_i
  } else {
#pragma unroll
    for (int j = 0; j < V; ++j) factor[j] = scale;
  }
#pragma unroll
  for (int j = 0; j < V; ++j) {
    grad[j] = Dtype(0);  // ignored elements (and the last group's tail): 0
    if (TargetKind(in.t[j], a.has_ignore_label, a.ignore_label) != 0) {
      Element<Dtype>(in.x[j], in.t[j], in.pos_weight[j], in.weight[j], k, &grad[j]);  // loss unused
      grad[j] *= factor[j];
    }
  }
  StoreGroup(dx, g, n, a.aligned, grad);
}

/// Launches kernel<Dtype, F>(...) for the run-time flags F by a chain of
/// compile-time comparisons (every one of the 24 valid combinations
/// instantiated: kFocal and kAsymmetric never come together).
template <int F = 0, class Launch>
void WithFlags(int flags, const Launch& launch) {
  if constexpr ((F & kFocal) && (F & kAsymmetric)) {
    WithFlags<F + 1>(flags, launch);
  } else if constexpr (F < kFlagCombinations) {
    if (flags == F) {
      launch(std::integral_constant<int, F>());
    } else {
      WithFlags<F + 1>(flags, launch);
    }
  }
}

inline bool Aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

/// The kernels' arguments: the bottoms, the per-class vectors and the
/// element math's constants; `out` is the written blob's pointer (checked
/// for alignment with the inputs).
template <typename Dtype>
KernelArgs<Dtype> MakeArgs(const vector<Blob<Dtype>*>& bottom, const Blob<Dtype>& pos_weight,
                           const Blob<Dtype>& class_weight, int inner, int classes,
                           bool per_class, bool has_ignore_label, Dtype ignore_label,
                           const Constants<Dtype>& constants, const void* out,
                           const void* element_top) {
  KernelArgs<Dtype> a;
  a.x = bottom[0]->gpu_data();
  a.t = bottom[1]->gpu_data();
  a.w = bottom.size() == 3 ? bottom[2]->gpu_data() : NULL;
  a.pos_weight = per_class ? pos_weight.gpu_data() : NULL;
  a.class_weight = per_class ? class_weight.gpu_data() : NULL;
  a.pos_weight_all = pos_weight.cpu_data()[0];
  a.class_weight_all = class_weight.cpu_data()[0];
  a.count = static_cast<uint32_t>(bottom[0]->count());
  a.inner = FastDivmod(static_cast<uint32_t>(std::max(inner, 1)));
  a.classes = FastDivmod(static_cast<uint32_t>(std::max(classes, 1)));
  a.aligned = Aligned16(a.x) && Aligned16(a.t) && Aligned16(a.w) && Aligned16(out) &&
              Aligned16(element_top);
  a.has_ignore_label = has_ignore_label;
  a.ignore_label = ignore_label;
  a.constants = constants;
  return a;
}

/// The kernel flags of a layer's options.
template <typename Dtype>
int Flags(const Constants<Dtype>& k, bool per_class, bool weights, bool element_top) {
  const int form = k.asymmetric ? kAsymmetric
                   : k.gamma != Dtype(0) || k.alpha >= Dtype(0) ? kFocal : 0;
  return form | (per_class ? kPerClass : 0) |
         (weights ? kWeights : 0) | (element_top ? kElementTop : 0);
}

}  // namespace
}  // namespace sigmoid
}  // namespace xent

template <typename Dtype>
void SigmoidCrossEntropyLossLayer<Dtype>::Forward_gpu(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  // A CPU Backward after this Forward must not take the diff an earlier
  // Forward_cpu wrote (DiffInForward) for data it may no longer hold.
  diff_ready_ = false;
  const LayerParameter& lp = this->layer_param_;
  const int64_t count = bottom[0]->count();
  xent::LossSums sums;
  if (count > 0) {  // an empty blob: no kernel, and no gpu_data of it
    // Out of device memory on first use: XentError, not Caffe's abort.
    xent::ProbeBottomMemory(bottom, lp);
    xent::ProbeDeviceMemory(pos_weight_.data(), lp, "pos_weight");
    xent::ProbeDeviceMemory(class_weight_.data(), lp, "class_weight");
    if (top.size() == 2) xent::ProbeDeviceMemory(top[1]->data(), lp, "top[1] (element losses)");
    double* partial = xent::BlockSumBuffer(&this->block_sums_, lp);
    Dtype* element_loss = top.size() == 2 ? top[1]->mutable_gpu_data() : NULL;
    const xent::sigmoid::KernelArgs<Dtype> a = xent::sigmoid::MakeArgs(
        bottom, pos_weight_, class_weight_, inner_num_, classes_, per_class_,
        this->has_ignore_label_, Dtype(this->ignore_label_), Constants(), element_loss, NULL);
    const int64_t chunk = xent::sigmoid::ForwardChunk(count);
    const int blocks = static_cast<int>((count + chunk - 1) / chunk);  // <= kReduceBlocks
    const int flags =
        xent::sigmoid::Flags(a.constants, per_class_, bottom.size() == 3, element_loss != NULL);
    xent::sigmoid::WithFlags(flags, [&](auto f) {
      // NOLINT_NEXT_LINE(whitespace/operators)
      xent::sigmoid::ForwardKernel<Dtype, decltype(f)::value><<<blocks, xent::kReduceThreads>>>(
          a, static_cast<uint32_t>(chunk), element_loss, partial);
    });
    XENT_LAUNCH_CHECK(lp, "ForwardKernel");
    sums = xent::FinishSums(partial, blocks, lp);
  }
  CheckData(bottom, sums);
  this->SetLoss(top, sums, static_cast<double>(count_), outer_num_);
}

template <typename Dtype>
void SigmoidCrossEntropyLossLayer<Dtype>::Backward_gpu(
    const vector<Blob<Dtype>*>& top, const vector<bool>& propagate_down,
    const vector<Blob<Dtype>*>& bottom) {
  if (!this->GradientWanted(propagate_down, bottom)) return;
  const LayerParameter& lp = this->layer_param_;
  xent::ProbeDeviceMemory(bottom[0]->diff(), lp, "bottom[0]'s gradient");
  if (top.size() == 2) xent::ProbeDeviceMemory(top[1]->diff(), lp, "top[1]'s gradient");
  const Dtype* element_diff = top.size() == 2 ? top[1]->gpu_diff() : NULL;
  Dtype* dx = bottom[0]->mutable_gpu_diff();
  const xent::sigmoid::KernelArgs<Dtype> a = xent::sigmoid::MakeArgs(
      bottom, pos_weight_, class_weight_, inner_num_, classes_, per_class_,
      this->has_ignore_label_, Dtype(this->ignore_label_), Constants(), dx, element_diff);
  const Dtype scale = static_cast<Dtype>(top[0]->cpu_diff()[0] / this->normalizer_);
  const int64_t groups = (bottom[0]->count() + xent::sigmoid::Group<Dtype>::V - 1) /
                         xent::sigmoid::Group<Dtype>::V;
  const int blocks = static_cast<int>((groups + xent::kReduceThreads - 1) / xent::kReduceThreads);
  const int flags =
      xent::sigmoid::Flags(a.constants, per_class_, bottom.size() == 3, element_diff != NULL);
  xent::sigmoid::WithFlags(flags, [&](auto f) {
    // NOLINT_NEXT_LINE(whitespace/operators)
    xent::sigmoid::BackwardKernel<Dtype, decltype(f)::value><<<blocks, xent::kReduceThreads>>>(
        a, element_diff, scale, dx);
  });
  XENT_LAUNCH_CHECK(lp, "BackwardKernel");
}

INSTANTIATE_LAYER_GPU_FUNCS(SigmoidCrossEntropyLossLayer);

}  // namespace caffe
