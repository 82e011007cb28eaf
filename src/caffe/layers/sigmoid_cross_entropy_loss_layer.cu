// GPU path of SigmoidCrossEntropyLoss. Three thin layers:
//   element math  sigmoid_cross_entropy_loss_math.hpp (shared with the CPU loop),
//   kernels       below: forward reads x, t (and w) once and writes per-block
//                 partial sums; backward reads them again and writes dx,
//   layer glue    Forward_gpu / Backward_gpu (launch, check, normalize).
// No float atomics: a fixed grid of kReduceBlocks blocks and a second stage
// (xent::FinishSums) add the partials in a fixed order, so the loss has the
// same bits run after run. Scratch: kReduceBlocks x 4 doubles.
#include <vector>

#include "caffe/layers/sigmoid_cross_entropy_loss_layer.hpp"
#include "caffe/layers/sigmoid_cross_entropy_loss_math.hpp"
#include "caffe/util/xent_reduce.cuh"

namespace caffe {

namespace {

/// Columns of the per-block partial sums.
enum SumColumn { kLoss = 0, kCounted = 1, kBadTargets = 2, kBadWeights = 3, kColumns = 4 };

/// What every thread needs to compute one element.
template <typename Dtype>
struct KernelArgs {
  const Dtype* x;             ///< logits
  const Dtype* t;             ///< targets
  const Dtype* w;             ///< per-element weights or NULL
  const Dtype* pos_weight;    ///< C values
  const Dtype* class_weight;  ///< C values
  int count;                  ///< K
  int inner;                  ///< elements after the class axis
  int classes;                ///< C
  bool per_class;             ///< whether the class of an element matters
  bool has_ignore_label;
  Dtype ignore_label;
  xent::sigmoid::Constants<Dtype> constants;
};

/// ℓ_i (and ∂ℓ_i/∂x when grad != NULL) for a counted element i.
template <typename Dtype>
__device__ __forceinline__ Dtype ElementLoss(const KernelArgs<Dtype>& a, int i, Dtype t,
                                             Dtype weight, Dtype* grad) {
  const int c = a.per_class ? (i / a.inner) % a.classes : 0;  // class along the axis
  return xent::sigmoid::Element<Dtype>(a.x[i], t, a.pos_weight[c],
                                         a.class_weight[c] * weight, a.constants, grad);
}

template <typename Dtype>
__global__ void ForwardKernel(const KernelArgs<Dtype> a, Dtype* element_loss,
                                         double* partial) {
  double loss = 0.0, counted = 0.0, bad_targets = 0.0, bad_weights = 0.0;
  // 64-bit index: i + stride must not overflow near INT_MAX elements.
  for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < a.count;
       i += static_cast<long long>(blockDim.x) * gridDim.x) {
    const Dtype t = a.t[i];
    const int kind = xent::sigmoid::TargetKind(t, a.has_ignore_label, a.ignore_label);
    const Dtype weight = a.w ? a.w[i] : Dtype(1);
    bad_weights += !xent::XentIsValidWeight(weight);  // NaN and +inf count as bad
    bad_targets += kind < 0;
    Dtype element = 0;
    if (kind != 0) {
      element = ElementLoss(a, static_cast<int>(i), t, weight, static_cast<Dtype*>(NULL));
      loss += element;  // summed in double, also for float blobs
      counted += 1.0;
    }
    if (element_loss) element_loss[i] = element;
  }
  // Every thread takes part in each BlockSum (they synchronize).
  loss = xent::BlockSum(loss);
  counted = xent::BlockSum(counted);
  bad_targets = xent::BlockSum(bad_targets);
  bad_weights = xent::BlockSum(bad_weights);
  if (threadIdx.x == 0) {
    double* out = partial + blockIdx.x * kColumns;
    out[kLoss] = loss;
    out[kCounted] = counted;
    out[kBadTargets] = bad_targets;
    out[kBadWeights] = bad_weights;
  }
}

template <typename Dtype>
__global__ void BackwardKernel(const KernelArgs<Dtype> a, const Dtype* element_diff,
                                          Dtype scale, Dtype* dx) {
  for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < a.count;
       i += static_cast<long long>(blockDim.x) * gridDim.x) {
    const Dtype t = a.t[i];
    Dtype grad = 0;
    if (xent::sigmoid::TargetKind(t, a.has_ignore_label, a.ignore_label) != 0) {
      ElementLoss(a, static_cast<int>(i), t, a.w ? a.w[i] : Dtype(1), &grad);
      grad *= element_diff ? scale + element_diff[i] : scale;  // λ/norm + λ'_i
    }
    dx[i] = grad;  // ignored elements: 0
  }
}

}  // namespace

template <typename Dtype>
void SigmoidCrossEntropyLossLayer<Dtype>::Forward_gpu(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  const LayerParameter& lp = this->layer_param_;
  if (!partial_sums_) {
    partial_sums_.reset(new SyncedMemory(xent::kReduceBlocks * kColumns * sizeof(double)));
  }
  // Out of device memory on first use: XentError, not Caffe's abort.
  xent::ProbeBottomMemory(bottom, lp);
  xent::ProbeDeviceMemory(pos_weight_.data(), lp, "pos_weight");
  xent::ProbeDeviceMemory(class_weight_.data(), lp, "class_weight");
  if (top.size() == 2) xent::ProbeDeviceMemory(top[1]->data(), lp, "top[1] (element losses)");
  xent::ProbeDeviceMemory(partial_sums_, lp, "the block sums");
  KernelArgs<Dtype> a;
  a.x = bottom[0]->gpu_data();
  a.t = bottom[1]->gpu_data();
  a.w = bottom.size() == 3 ? bottom[2]->gpu_data() : NULL;
  a.pos_weight = pos_weight_.gpu_data();
  a.class_weight = class_weight_.gpu_data();
  a.count = bottom[0]->count();
  a.inner = inner_num_;
  a.classes = classes_;
  a.per_class = per_class_;
  a.has_ignore_label = has_ignore_label_;
  a.ignore_label = ignore_label_;
  a.constants.keep = Dtype(1) - label_smoothing_;
  a.constants.shift = label_smoothing_ / Dtype(2);
  a.constants.gamma = focal_gamma_;
  a.constants.alpha = focal_alpha_;
  Dtype* element_loss = top.size() == 2 ? top[1]->mutable_gpu_data() : NULL;
  double* partial = static_cast<double*>(partial_sums_->mutable_gpu_data());
  // NOLINT_NEXT_LINE(whitespace/operators)
  ForwardKernel<Dtype><<<xent::kReduceBlocks, xent::kReduceThreads>>>(
      a, element_loss, partial);
  XENT_LAUNCH_CHECK(lp, "ForwardKernel");
  double sums[kColumns];
  xent::FinishSums(partial, xent::kReduceBlocks, kColumns, sums, lp);
  CheckCounts(bottom, sums[kBadTargets], sums[kBadWeights]);
  normalizer_ = get_normalizer(normalization_, sums[kCounted]);
  top[0]->mutable_cpu_data()[0] = static_cast<Dtype>(sums[kLoss] / normalizer_);
}

template <typename Dtype>
void SigmoidCrossEntropyLossLayer<Dtype>::Backward_gpu(
    const vector<Blob<Dtype>*>& top, const vector<bool>& propagate_down,
    const vector<Blob<Dtype>*>& bottom) {
  CheckPropagateDown(propagate_down);
  if (!propagate_down[0] || bottom[0]->count() == 0) return;  // no empty grid launch
  const LayerParameter& lp = this->layer_param_;
  xent::ProbeDeviceMemory(bottom[0]->diff(), lp, "bottom[0]'s gradient");
  if (top.size() == 2) xent::ProbeDeviceMemory(top[1]->diff(), lp, "top[1]'s gradient");
  KernelArgs<Dtype> a;
  a.x = bottom[0]->gpu_data();
  a.t = bottom[1]->gpu_data();
  a.w = bottom.size() == 3 ? bottom[2]->gpu_data() : NULL;
  a.pos_weight = pos_weight_.gpu_data();
  a.class_weight = class_weight_.gpu_data();
  a.count = bottom[0]->count();
  a.inner = inner_num_;
  a.classes = classes_;
  a.per_class = per_class_;
  a.has_ignore_label = has_ignore_label_;
  a.ignore_label = ignore_label_;
  a.constants.keep = Dtype(1) - label_smoothing_;
  a.constants.shift = label_smoothing_ / Dtype(2);
  a.constants.gamma = focal_gamma_;
  a.constants.alpha = focal_alpha_;
  const Dtype* element_diff = top.size() == 2 ? top[1]->gpu_diff() : NULL;
  const Dtype scale = static_cast<Dtype>(top[0]->cpu_diff()[0] / normalizer_);
  // NOLINT_NEXT_LINE(whitespace/operators)
  BackwardKernel<Dtype><<<CAFFE_GET_BLOCKS(a.count), CAFFE_CUDA_NUM_THREADS>>>(
      a, element_diff, scale, bottom[0]->mutable_gpu_diff());
  XENT_LAUNCH_CHECK(lp, "BackwardKernel");
}

INSTANTIATE_LAYER_GPU_FUNCS(SigmoidCrossEntropyLossLayer);

}  // namespace caffe
