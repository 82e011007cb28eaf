// GPU path of SigmoidCrossEntropyLoss. Three thin layers:
//   element math  sigmoid_cross_entropy_loss_math.hpp (shared with the CPU loop),
//   kernels       below: forward reads x, t (and w) once and writes per-block
//                 partial sums; backward reads them again and writes dx,
//   layer glue    Forward_gpu / Backward_gpu (launch, check, normalize).
// No float atomics: a fixed grid of kReduceBlocks blocks and a second stage
// (xent::FinishSums) add the partials in a fixed order, so the loss has the
// same bits run after run. Scratch: the layer's block_sums_, kept.
#include <vector>

#include "caffe/layers/sigmoid_cross_entropy_loss_layer.hpp"
#include "caffe/layers/sigmoid_cross_entropy_loss_math.hpp"
#include "caffe/util/xent_reduce.cuh"

namespace caffe {

namespace xent {
namespace sigmoid {
namespace {

/// What every thread needs to compute one element.
template <typename Dtype>
struct KernelArgs {
  const Dtype* __restrict__ x;             ///< logits
  const Dtype* __restrict__ t;             ///< targets
  const Dtype* __restrict__ w;             ///< per-element weights or NULL
  const Dtype* __restrict__ pos_weight;    ///< C values
  const Dtype* __restrict__ class_weight;  ///< C values
  int count;                               ///< K
  int inner;                               ///< elements after the class axis
  int classes;                             ///< C
  bool per_class;                          ///< whether the class of an element matters
  bool has_ignore_label;
  Dtype ignore_label;
  Constants<Dtype> constants;
};

/// ℓ_i (and ∂ℓ_i/∂x when grad != NULL) of element i, counted, from its
/// loaded x, t and weight w_i.
template <typename Dtype>
__device__ __forceinline__ Dtype ElementLoss(const KernelArgs<Dtype>& a, long long i, Dtype x,
                                             Dtype t, Dtype weight, Dtype* grad) {
  const int c = a.per_class ? static_cast<int>((i / a.inner) % a.classes) : 0;  // its class
  return Element<Dtype>(x, t, a.pos_weight[c], a.class_weight[c] * weight, a.constants, grad);
}

// Both kernels load every input of an element before any branch on it, so
// the loads of x, t and w are in flight together (one DRAM round trip per
// element, not one after another); grid-stride loops with a 64-bit index
// (i + stride must not overflow near INT_MAX elements).

template <typename Dtype>
__global__ void ForwardKernel(const KernelArgs<Dtype> a, Dtype* __restrict__ element_loss,
                              double* partial) {
  double loss = 0.0, counted = 0.0, bad_targets = 0.0, bad_weights = 0.0;
  for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < a.count;
       i += static_cast<long long>(blockDim.x) * gridDim.x) {
    const Dtype x = a.x[i];
    const Dtype t = a.t[i];
    const Dtype weight = a.w ? a.w[i] : Dtype(1);
    const int kind = TargetKind(t, a.has_ignore_label, a.ignore_label);
    bad_weights += !xent::XentIsValidWeight(weight);  // NaN and +inf count as bad
    bad_targets += kind < 0;
    Dtype element = 0;
    if (kind != 0) {
      element = ElementLoss(a, i, x, t, weight, static_cast<Dtype*>(NULL));
      loss += element;  // summed in double, also for float blobs
      counted += 1.0;
    }
    if (element_loss) element_loss[i] = element;
  }
  xent::StoreBlockSums(loss, counted, bad_targets, bad_weights, partial);
}

template <typename Dtype>
__global__ void BackwardKernel(const KernelArgs<Dtype> a, const Dtype* __restrict__ element_diff,
                               Dtype scale, Dtype* __restrict__ dx) {
  for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < a.count;
       i += static_cast<long long>(blockDim.x) * gridDim.x) {
    const Dtype x = a.x[i];
    const Dtype t = a.t[i];
    const Dtype weight = a.w ? a.w[i] : Dtype(1);
    const Dtype factor = element_diff ? scale + element_diff[i] : scale;  // λ/norm + λ'_i
    Dtype grad = 0;
    if (TargetKind(t, a.has_ignore_label, a.ignore_label) != 0) {
      ElementLoss(a, i, x, t, weight, &grad);
      grad *= factor;
    }
    dx[i] = grad;  // ignored elements: 0
  }
}

/// The kernels' arguments: the bottoms, the per-class vectors and the
/// element math's constants.
template <typename Dtype>
KernelArgs<Dtype> MakeArgs(const vector<Blob<Dtype>*>& bottom, const Blob<Dtype>& pos_weight,
                           const Blob<Dtype>& class_weight, int inner, int classes,
                           bool per_class, bool has_ignore_label, Dtype ignore_label,
                           const Constants<Dtype>& constants) {
  KernelArgs<Dtype> a;
  a.x = bottom[0]->gpu_data();
  a.t = bottom[1]->gpu_data();
  a.w = bottom.size() == 3 ? bottom[2]->gpu_data() : NULL;
  a.pos_weight = pos_weight.gpu_data();
  a.class_weight = class_weight.gpu_data();
  a.count = bottom[0]->count();
  a.inner = inner;
  a.classes = classes;
  a.per_class = per_class;
  a.has_ignore_label = has_ignore_label;
  a.ignore_label = ignore_label;
  a.constants = constants;
  return a;
}

}  // namespace
}  // namespace sigmoid
}  // namespace xent

template <typename Dtype>
void SigmoidCrossEntropyLossLayer<Dtype>::Forward_gpu(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  const LayerParameter& lp = this->layer_param_;
  // Out of device memory on first use: XentError, not Caffe's abort.
  xent::ProbeBottomMemory(bottom, lp);
  xent::ProbeDeviceMemory(pos_weight_.data(), lp, "pos_weight");
  xent::ProbeDeviceMemory(class_weight_.data(), lp, "class_weight");
  if (top.size() == 2) xent::ProbeDeviceMemory(top[1]->data(), lp, "top[1] (element losses)");
  double* partial = xent::BlockSumBuffer(&this->block_sums_, lp);
  const xent::sigmoid::KernelArgs<Dtype> a = xent::sigmoid::MakeArgs(
      bottom, pos_weight_, class_weight_, inner_num_, classes_, per_class_,
      this->has_ignore_label_, Dtype(this->ignore_label_), Constants());
  Dtype* element_loss = top.size() == 2 ? top[1]->mutable_gpu_data() : NULL;
  // NOLINT_NEXT_LINE(whitespace/operators)
  xent::sigmoid::ForwardKernel<Dtype><<<xent::kReduceBlocks, xent::kReduceThreads>>>(
      a, element_loss, partial);
  XENT_LAUNCH_CHECK(lp, "ForwardKernel");
  const xent::LossSums sums = xent::FinishSums(partial, xent::kReduceBlocks, lp);
  CheckData(bottom, sums);
  this->normalizer_ = this->Normalizer(sums.counted, static_cast<double>(count_), outer_num_);
  top[0]->mutable_cpu_data()[0] = static_cast<Dtype>(sums.loss / this->normalizer_);
}

template <typename Dtype>
void SigmoidCrossEntropyLossLayer<Dtype>::Backward_gpu(
    const vector<Blob<Dtype>*>& top, const vector<bool>& propagate_down,
    const vector<Blob<Dtype>*>& bottom) {
  this->CheckPropagateDown(propagate_down);
  if (!propagate_down[0] || bottom[0]->count() == 0) return;  // no empty grid launch
  const LayerParameter& lp = this->layer_param_;
  xent::ProbeDeviceMemory(bottom[0]->diff(), lp, "bottom[0]'s gradient");
  if (top.size() == 2) xent::ProbeDeviceMemory(top[1]->diff(), lp, "top[1]'s gradient");
  const xent::sigmoid::KernelArgs<Dtype> a = xent::sigmoid::MakeArgs(
      bottom, pos_weight_, class_weight_, inner_num_, classes_, per_class_,
      this->has_ignore_label_, Dtype(this->ignore_label_), Constants());
  const Dtype* element_diff = top.size() == 2 ? top[1]->gpu_diff() : NULL;
  const Dtype scale = static_cast<Dtype>(top[0]->cpu_diff()[0] / this->normalizer_);
  // NOLINT_NEXT_LINE(whitespace/operators)
  xent::sigmoid::BackwardKernel<Dtype><<<xent::GridBlocks(a.count), xent::kReduceThreads>>>(
      a, element_diff, scale, bottom[0]->mutable_gpu_diff());
  XENT_LAUNCH_CHECK(lp, "BackwardKernel");
}

INSTANTIATE_LAYER_GPU_FUNCS(SigmoidCrossEntropyLossLayer);

}  // namespace caffe
