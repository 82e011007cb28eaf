// Tests of caffe-xent's SigmoidCrossEntropyLoss (upstream's own test file for
// this layer is compiled into the same binary and must pass unchanged).
// Typed over float/double x CPU/GPU; a naive float64 reference written from
// the documented formula (not from sigmoid_cross_entropy_loss_math.hpp); GradientChecker for every
// option; behaviour tests; bad input throws xent::XentError.
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "gtest/gtest.h"

#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/filler.hpp"
#include "caffe/layers/sigmoid_cross_entropy_loss_layer.hpp"
#include "caffe/layers/xent_common.hpp"

#include "caffe/test/test_caffe_main.hpp"
#include "caffe/test/test_gradient_check_util.hpp"

namespace caffe {

namespace {

/// One option set of the layer.
struct XentCase {
  const char* name;
  std::vector<float> pos_weight, class_weight;
  float gamma, alpha, smoothing;
  bool weights;      ///< third bottom w
  bool ignore;       ///< ignore_label -1 on some targets
};

std::vector<XentCase> Cases() {
  return {
      {"plain", {}, {}, 0.f, -1.f, 0.f, false, false},
      {"ignore", {}, {}, 0.f, -1.f, 0.f, false, true},
      {"weights", {}, {}, 0.f, -1.f, 0.f, true, false},
      {"pos_weight_per_class", {0.5f, 2.f, 3.f, 1.f}, {}, 0.f, -1.f, 0.f, false, false},
      {"pos_weight_broadcast", {2.5f}, {}, 0.f, -1.f, 0.f, false, false},
      {"class_weight", {}, {1.f, 0.f, 2.f, 0.5f}, 0.f, -1.f, 0.f, false, true},
      {"focal", {}, {}, 2.f, 0.25f, 0.f, false, false},
      {"focal_gamma_half", {}, {}, 0.5f, -1.f, 0.f, false, false},
      {"smoothing", {}, {}, 0.f, -1.f, 0.1f, false, false},
      {"everything", {2.f, 1.f, 0.5f, 3.f}, {1.f, 2.f, 0.5f, 1.f}, 1.5f, 0.75f, 0.2f, true, true},
      // Whole focal γ: the CPU's SIMD path (a fractional one: the element loop).
      {"focal_alpha_only", {}, {}, 0.f, 0.25f, 0.f, false, false},
      {"everything_whole_gamma", {2.f, 1.f, 0.5f, 3.f}, {1.f, 2.f, 0.5f, 1.f}, 3.f, 0.75f, 0.2f,
       true, true},
  };
}

void SetCase(const XentCase& c, LayerParameter* param) {
  SigmoidCrossEntropyLossParameter* p = param->mutable_sigmoid_cross_entropy_loss_param();
  for (float v : c.pos_weight) p->add_pos_weight(v);
  for (float v : c.class_weight) p->add_class_weight(v);
  if (c.gamma != 0.f) p->set_focal_gamma(c.gamma);
  if (c.alpha != -1.f) p->set_focal_alpha(c.alpha);
  if (c.smoothing != 0.f) p->set_label_smoothing(c.smoothing);
  if (c.ignore) param->mutable_loss_param()->set_ignore_label(-1);
}

/// The documented formula, literally, in double: ℓ and ∂ℓ/∂x.
double ReferenceElement(double x, double t, double pos_weight, double weight, double gamma,
                        double alpha, double eps, double* grad) {
  const double tau = t * (1 - eps) + eps / 2;
  const double l = 1 + (pos_weight - 1) * tau;
  const double softplus_neg = std::max(-x, 0.0) + std::log1p(std::exp(-std::fabs(x)));
  const double bce = (1 - tau) * x + l * softplus_neg;
  const double s = 1 / (1 + std::exp(-x));
  const double p_t = tau * s + (1 - tau) * (1 - s);
  const double alpha_t = alpha < 0 ? 1.0 : alpha * tau + (1 - alpha) * (1 - tau);
  const double modulator = std::pow(1 - p_t, gamma);
  const double dbce = (1 - tau) - l * (1 - s);
  const double d_one_minus_pt = -(2 * tau - 1) * s * (1 - s);
  const double dmodulator = gamma == 0 ? 0.0 : gamma * std::pow(1 - p_t, gamma - 1) * d_one_minus_pt;
  *grad = weight * alpha_t * (modulator * dbce + bce * dmodulator);
  return weight * alpha_t * modulator * bce;
}

}  // namespace

template <typename TypeParam>
class XentSigmoidCrossEntropyLossLayerTest : public MultiDeviceTest<TypeParam> {
  typedef typename TypeParam::Dtype Dtype;

 protected:
  // x: (3, 4, 2), classes along axis 1, 2 elements per class and row.
  XentSigmoidCrossEntropyLossLayerTest()
      : x_(new Blob<Dtype>(std::vector<int>{3, 4, 2})),
        t_(new Blob<Dtype>(std::vector<int>{3, 4, 2})),
        w_(new Blob<Dtype>(std::vector<int>{3, 4, 2})),
        loss_(new Blob<Dtype>()),
        element_loss_(new Blob<Dtype>()) {
    FillerParameter gaussian;
    gaussian.set_std(2);
    GaussianFiller<Dtype>(gaussian).Fill(x_.get());
    FillerParameter uniform;
    uniform.set_min(0);
    uniform.set_max(1);
    UniformFiller<Dtype>(uniform).Fill(t_.get());
    uniform.set_max(2);
    UniformFiller<Dtype>(uniform).Fill(w_.get());
    // Some hard targets, as in multi-label data.
    Dtype* t = t_->mutable_cpu_data();
    for (int i = 0; i < t_->count(); i += 3) t[i] = (i % 2) ? 1 : 0;
    x_original_.CopyFrom(*x_, false, true);
    t_original_.CopyFrom(*t_, false, true);
  }

  /// Fresh x and t (tests edit them), ignored targets for cases with ignore.
  void Bottoms(const XentCase& c, vector<Blob<Dtype>*>* bottom) {
    x_->CopyFrom(x_original_);
    t_->CopyFrom(t_original_);
    if (c.ignore) {
      Dtype* t = t_->mutable_cpu_data();
      for (int i = 1; i < t_->count(); i += 5) t[i] = -1;
    }
    bottom->clear();
    bottom->push_back(x_.get());
    bottom->push_back(t_.get());
    if (c.weights) bottom->push_back(w_.get());
  }

  /// Σ ℓ in double and the number of non-ignored elements.
  double ReferenceSum(const XentCase& c, double* valid) {
    const Dtype* x = x_->cpu_data();
    const Dtype* t = t_->cpu_data();
    const Dtype* w = w_->cpu_data();
    double sum = 0;
    *valid = 0;
    for (int i = 0; i < x_->count(); ++i) {
      if (c.ignore && t[i] == Dtype(-1)) continue;
      const int k = (i / 2) % 4;
      const double pw = c.pos_weight.empty() ? 1.0
                        : c.pos_weight.size() == 1 ? c.pos_weight[0] : c.pos_weight[k];
      const double cw = c.class_weight.empty() ? 1.0
                        : c.class_weight.size() == 1 ? c.class_weight[0] : c.class_weight[k];
      double grad;
      sum += ReferenceElement(x[i], t[i], pw, cw * (c.weights ? w[i] : 1.0), c.gamma, c.alpha,
                              c.smoothing, &grad);
      *valid += 1;
    }
    return sum;
  }

  /// Relative tolerance of one loss against the float64 reference.
  double Tolerance() const { return sizeof(Dtype) == 4 ? 2e-6 : 1e-12; }

  shared_ptr<Blob<Dtype> > x_, t_, w_, loss_, element_loss_;
  Blob<Dtype> x_original_, t_original_;
};

TYPED_TEST_CASE(XentSigmoidCrossEntropyLossLayerTest, TestDtypesAndDevices);

TYPED_TEST(XentSigmoidCrossEntropyLossLayerTest, TestForwardMatchesReference) {
  typedef typename TypeParam::Dtype Dtype;
  for (const XentCase& c : Cases()) {
    SCOPED_TRACE(c.name);
    LayerParameter param;
    SetCase(c, &param);
    param.mutable_loss_param()->set_normalization(LossParameter_NormalizationMode_NONE);
    vector<Blob<Dtype>*> bottom, top{this->loss_.get(), this->element_loss_.get()};
    this->Bottoms(c, &bottom);
    SigmoidCrossEntropyLossLayer<Dtype> layer(param);
    layer.SetUp(bottom, top);
    layer.Forward(bottom, top);
    double valid;
    const double expected = this->ReferenceSum(c, &valid);
    EXPECT_NEAR(this->loss_->cpu_data()[0], expected, this->Tolerance() * std::fabs(expected) + 1e-30);
    // The per-element top sums to the loss (NONE) and is 0 where ignored.
    double element_sum = 0;
    for (int i = 0; i < this->element_loss_->count(); ++i) {
      element_sum += this->element_loss_->cpu_data()[i];
      if (c.ignore && this->t_->cpu_data()[i] == Dtype(-1)) {
        EXPECT_EQ(this->element_loss_->cpu_data()[i], Dtype(0));
      }
    }
    EXPECT_NEAR(element_sum, expected, 1e-5 * std::fabs(expected));
  }
}

TYPED_TEST(XentSigmoidCrossEntropyLossLayerTest, TestGradientEveryOption) {
  typedef typename TypeParam::Dtype Dtype;
  for (const XentCase& c : Cases()) {
    SCOPED_TRACE(c.name);
    LayerParameter param;
    SetCase(c, &param);
    param.add_loss_weight(Dtype(3.7));
    vector<Blob<Dtype>*> bottom, top{this->loss_.get()};
    this->Bottoms(c, &bottom);
    SigmoidCrossEntropyLossLayer<Dtype> layer(param);
    GradientChecker<Dtype> checker(1e-2, 1e-2, 1701);
    checker.CheckGradientExhaustive(&layer, bottom, top, 0);
  }
}

// The asymmetric form (ASL): focal_gamma_neg and focal_margin, with the
// other options; whole γ± (the CPU's SIMD path for float) and fractional ones
// (the element loop). γ- >= 1 with a margin: the derivative is continuous
// at p = m (with γ- = 0 it jumps there, which a finite difference across
// it would not follow).
TYPED_TEST(XentSigmoidCrossEntropyLossLayerTest, TestGradientAsymmetric) {
  typedef typename TypeParam::Dtype Dtype;
  struct Asymmetric {
    const char* name;
    float gamma, gamma_neg, margin;
    XentCase base;
  };
  const std::vector<XentCase> cases = Cases();
  const std::vector<Asymmetric> asymmetric = {
      {"asl_paper", 0.f, 4.f, 0.05f, cases[0]},
      {"asl_timm_ignore", 1.f, 4.f, 0.05f, cases[1]},
      {"gamma_neg_only_pos_weight", 2.f, 0.f, 0.f, cases[3]},
      {"margin_class_weight", 0.f, 1.f, 0.2f, cases[5]},
      {"everything", 1.f, 3.f, 0.1f, cases[9]},
      {"fractional", 0.5f, 2.5f, 0.1f, cases[2]},
  };
  for (const Asymmetric& a : asymmetric) {
    SCOPED_TRACE(a.name);
    LayerParameter param;
    SetCase(a.base, &param);
    SigmoidCrossEntropyLossParameter* p = param.mutable_sigmoid_cross_entropy_loss_param();
    p->set_focal_gamma(a.gamma);
    p->set_focal_gamma_neg(a.gamma_neg);
    p->set_focal_margin(a.margin);
    param.add_loss_weight(Dtype(3.7));
    vector<Blob<Dtype>*> bottom, top{this->loss_.get()};
    this->Bottoms(a.base, &bottom);
    SigmoidCrossEntropyLossLayer<Dtype> layer(param);
    GradientChecker<Dtype> checker(1e-2, 1e-2, 1701);
    checker.CheckGradientExhaustive(&layer, bottom, top, 0);
  }
}

TYPED_TEST(XentSigmoidCrossEntropyLossLayerTest, TestGradientMatchesReference) {
  typedef typename TypeParam::Dtype Dtype;
  for (const XentCase& c : Cases()) {
    SCOPED_TRACE(c.name);
    LayerParameter param;
    SetCase(c, &param);
    param.mutable_loss_param()->set_normalization(LossParameter_NormalizationMode_FULL);
    vector<Blob<Dtype>*> bottom, top{this->loss_.get()};
    this->Bottoms(c, &bottom);
    SigmoidCrossEntropyLossLayer<Dtype> layer(param);
    layer.SetUp(bottom, top);
    layer.Forward(bottom, top);
    vector<bool> down(bottom.size(), false);
    down[0] = true;
    layer.Backward(top, down, bottom);
    const Dtype* x = this->x_->cpu_data();
    const Dtype* t = this->t_->cpu_data();
    const Dtype* w = this->w_->cpu_data();
    const Dtype* dx = this->x_->cpu_diff();
    const double count = this->x_->count();
    for (int i = 0; i < this->x_->count(); ++i) {
      double grad = 0;
      if (!(c.ignore && t[i] == Dtype(-1))) {
        const int k = (i / 2) % 4;
        const double pw = c.pos_weight.empty() ? 1.0
                          : c.pos_weight.size() == 1 ? c.pos_weight[0] : c.pos_weight[k];
        const double cw = c.class_weight.empty() ? 1.0 : c.class_weight[k];
        ReferenceElement(x[i], t[i], pw, cw * (c.weights ? w[i] : 1.0), c.gamma, c.alpha,
                         c.smoothing, &grad);
      }
      grad /= count;
      // A few ulp of the larger terms (|terms| <~ 1/count = 0.04).
      EXPECT_NEAR(dx[i], grad, (sizeof(Dtype) == 4 ? 2e-6 : 1e-13) * (std::fabs(grad) + 1e-2))
          << "element " << i;
    }
  }
}

TYPED_TEST(XentSigmoidCrossEntropyLossLayerTest, TestGradientWhereTermsCancel) {
  // ∂ℓ/∂x = (1-t)σ(x) - pw·t·σ(-x) is a difference of two terms. Targets at
  // its root, t = σ(x) / (σ(x) + pw·σ(-x)) rounded to Dtype, leave only the
  // rounding of t: the exact derivative is tiny next to its terms. Where the
  // layer takes such differences in double (double blobs, the GPU) the bound
  // is one rounding to Dtype plus double's error on the terms: 2 ulp of the
  // value + 8·2^-53·terms. The CPU's float path keeps the difference as
  // computed (docs/sigmoid_cross_entropy_loss.md): 4 ulp of the larger term.
  // The reference is long double (64-bit significand), well inside either.
  typedef typename TypeParam::Dtype Dtype;
  const bool retaken = sizeof(Dtype) == 8 || TypeParam::device == Caffe::GPU;
  const double magnitudes[] = {1e-9, 3e-8, 1e-5, 0.01, 0.3, 0.49, 0.7, 2, 4.5, 9, 15, 20};
  std::vector<double> xs;
  for (double m : magnitudes) {
    xs.push_back(m);
    xs.push_back(-m);
  }
  const int n = static_cast<int>(xs.size());
  for (float pw : {1.f, 3.f}) {  // 1: the SIMD plain path; 3: the general element path
    SCOPED_TRACE(pw);
    Blob<Dtype> x(std::vector<int>{1, 1, n}), t(std::vector<int>{1, 1, n}), loss;
    for (int i = 0; i < n; ++i) {
      const long double xi = static_cast<Dtype>(xs[i]);
      const long double s = 1 / (1 + std::exp(-xi)), s_neg = 1 / (1 + std::exp(xi));
      x.mutable_cpu_data()[i] = static_cast<Dtype>(xi);
      t.mutable_cpu_data()[i] = static_cast<Dtype>(s / (s + pw * s_neg));
    }
    LayerParameter param;
    if (pw != 1.f) param.mutable_sigmoid_cross_entropy_loss_param()->add_pos_weight(pw);
    param.mutable_loss_param()->set_normalization(LossParameter_NormalizationMode_NONE);
    vector<Blob<Dtype>*> bottom{&x, &t}, top{&loss};
    SigmoidCrossEntropyLossLayer<Dtype> layer(param);
    layer.SetUp(bottom, top);
    layer.Forward(bottom, top);
    layer.Backward(top, vector<bool>{true, false}, bottom);
    for (int i = 0; i < n; ++i) {
      const long double xi = x.cpu_data()[i], ti = t.cpu_data()[i];
      const long double s = 1 / (1 + std::exp(-xi)), s_neg = 1 / (1 + std::exp(xi));
      const long double first = (1 - ti) * s, second = pw * ti * s_neg;
      const double exact = static_cast<double>(first - second);
      const double eps = std::numeric_limits<Dtype>::epsilon();
      const double bound =
          (retaken ? 2 * eps * std::fabs(exact) +
                         8 * std::ldexp(1.0, -53) * static_cast<double>(first + second)
                   : 4 * eps * static_cast<double>(std::max(first, second))) +
          std::numeric_limits<Dtype>::denorm_min();
      EXPECT_NEAR(x.cpu_diff()[i], exact, bound) << "x = " << xs[i] << ", t = " << ti;
    }
  }
}

TYPED_TEST(XentSigmoidCrossEntropyLossLayerTest, TestGradientElementTop) {
  typedef typename TypeParam::Dtype Dtype;
  LayerParameter param;
  SetCase(Cases()[9], &param);
  vector<Blob<Dtype>*> bottom, top{this->loss_.get(), this->element_loss_.get()};
  this->Bottoms(Cases()[9], &bottom);
  SigmoidCrossEntropyLossLayer<Dtype> layer(param);
  GradientChecker<Dtype> checker(1e-2, 1e-2, 1701);
  checker.CheckGradientExhaustive(&layer, bottom, top, 0);
}

TYPED_TEST(XentSigmoidCrossEntropyLossLayerTest, TestIgnoredElementsGetZeroGradient) {
  typedef typename TypeParam::Dtype Dtype;
  for (const XentCase& c : Cases()) {
    if (!c.ignore) continue;
    SCOPED_TRACE(c.name);
    LayerParameter param;
    SetCase(c, &param);
    vector<Blob<Dtype>*> bottom, top{this->loss_.get()};
    this->Bottoms(c, &bottom);
    SigmoidCrossEntropyLossLayer<Dtype> layer(param);
    layer.SetUp(bottom, top);
    layer.Forward(bottom, top);
    vector<bool> down(bottom.size(), false);
    down[0] = true;
    layer.Backward(top, down, bottom);
    for (int i = 0; i < this->x_->count(); ++i) {
      if (this->t_->cpu_data()[i] == Dtype(-1)) {
        EXPECT_EQ(this->x_->cpu_diff()[i], Dtype(0));
      }
    }
  }
}

TYPED_TEST(XentSigmoidCrossEntropyLossLayerTest, TestNormalizationModes) {
  typedef typename TypeParam::Dtype Dtype;
  const XentCase c = Cases()[1];  // with ignored elements: VALID < FULL
  double valid;
  vector<Blob<Dtype>*> bottom, top{this->loss_.get()};
  this->Bottoms(c, &bottom);
  const double sum = this->ReferenceSum(c, &valid);
  ASSERT_LT(valid, this->x_->count());
  struct Mode { LossParameter_NormalizationMode mode; double normalizer; };
  const Mode modes[] = {{LossParameter_NormalizationMode_FULL, 24.0},
                        {LossParameter_NormalizationMode_VALID, valid},
                        {LossParameter_NormalizationMode_BATCH_SIZE, 3.0},
                        {LossParameter_NormalizationMode_NONE, 1.0}};
  for (const Mode& m : modes) {
    LayerParameter param;
    SetCase(c, &param);
    param.mutable_loss_param()->set_normalization(m.mode);
    SigmoidCrossEntropyLossLayer<Dtype> layer(param);
    layer.SetUp(bottom, top);
    layer.Forward(bottom, top);
    EXPECT_NEAR(this->loss_->cpu_data()[0], sum / m.normalizer,
                this->Tolerance() * std::fabs(sum / m.normalizer))
        << LossParameter_NormalizationMode_Name(m.mode);
  }
  // Default: BATCH_SIZE, as upstream; deprecated normalize: true means VALID.
  LayerParameter param;
  SetCase(c, &param);
  SigmoidCrossEntropyLossLayer<Dtype> layer(param);
  layer.SetUp(bottom, top);
  layer.Forward(bottom, top);
  EXPECT_NEAR(this->loss_->cpu_data()[0], sum / 3.0, this->Tolerance() * sum);
  param.mutable_loss_param()->set_normalize(true);
  SigmoidCrossEntropyLossLayer<Dtype> normalize_layer(param);
  normalize_layer.SetUp(bottom, top);
  normalize_layer.Forward(bottom, top);
  EXPECT_NEAR(this->loss_->cpu_data()[0], sum / valid, this->Tolerance() * sum);
}

TYPED_TEST(XentSigmoidCrossEntropyLossLayerTest, TestNeutralOptionsGiveThePlainLoss) {
  typedef typename TypeParam::Dtype Dtype;
  vector<Blob<Dtype>*> bottom, top{this->loss_.get()};
  this->Bottoms(Cases()[0], &bottom);
  LayerParameter plain_param;
  SigmoidCrossEntropyLossLayer<Dtype> plain(plain_param);
  plain.SetUp(bottom, top);
  const Dtype plain_loss = plain.Forward(bottom, top);
  // Explicit neutral values take the general path; same loss.
  LayerParameter neutral_param;
  SigmoidCrossEntropyLossParameter* p = neutral_param.mutable_sigmoid_cross_entropy_loss_param();
  for (int c = 0; c < 4; ++c) {
    p->add_pos_weight(1);
    p->add_class_weight(1);
  }
  p->set_focal_gamma(0);
  p->set_focal_alpha(-1);
  p->set_label_smoothing(0);
  SigmoidCrossEntropyLossLayer<Dtype> neutral(neutral_param);
  neutral.SetUp(bottom, top);
  EXPECT_NEAR(neutral.Forward(bottom, top), plain_loss, this->Tolerance() * plain_loss);
  // α = 0.5 weighs every element by 0.5; γ = 0 leaves it.
  p->set_focal_alpha(0.5);
  SigmoidCrossEntropyLossLayer<Dtype> half(neutral_param);
  half.SetUp(bottom, top);
  EXPECT_NEAR(half.Forward(bottom, top), plain_loss / 2, this->Tolerance() * plain_loss);
  // A weights bottom of ones: the plain loss.
  caffe_set(this->w_->count(), Dtype(1), this->w_->mutable_cpu_data());
  bottom.push_back(this->w_.get());
  SigmoidCrossEntropyLossLayer<Dtype> ones(plain_param);
  ones.SetUp(bottom, top);
  EXPECT_NEAR(ones.Forward(bottom, top), plain_loss, this->Tolerance() * plain_loss);
}

TYPED_TEST(XentSigmoidCrossEntropyLossLayerTest, TestInfinityAndNaN) {
  typedef typename TypeParam::Dtype Dtype;
  const Dtype inf = std::numeric_limits<Dtype>::infinity();
  for (const XentCase& c : Cases()) {
    SCOPED_TRACE(c.name);
    LayerParameter param;
    SetCase(c, &param);
    vector<Blob<Dtype>*> bottom, top{this->loss_.get(), this->element_loss_.get()};
    this->Bottoms(c, &bottom);
    Dtype* x = this->x_->mutable_cpu_data();
    Dtype* t = this->t_->mutable_cpu_data();
    // Right answers at ±inf (loss 0 there, except where a weight is 0 anyway)
    // and huge finite logits: never NaN.
    x[0] = inf;    t[0] = 1;
    x[2] = -inf;   t[2] = 0;
    x[3] = 1e4;    t[3] = 0.5;
    x[4] = -1e4;   t[4] = 0.25;
    SigmoidCrossEntropyLossLayer<Dtype> layer(param);
    layer.SetUp(bottom, top);
    layer.Forward(bottom, top);
    vector<bool> down(bottom.size(), false);
    down[0] = true;
    layer.Backward(top, down, bottom);
    // With smoothing, τ is inside (0,1) and the loss at x = ±inf is +inf.
    const int first_finite = c.smoothing == 0 ? 0 : 3;
    for (int i = 0; i < this->x_->count(); ++i) {
      EXPECT_TRUE(std::isfinite(this->x_->cpu_diff()[i])) << "element " << i;
      if (i >= first_finite) {
        EXPECT_TRUE(std::isfinite(this->element_loss_->cpu_data()[i])) << "element " << i;
      }
    }
    if (c.smoothing == 0) EXPECT_TRUE(std::isfinite(this->loss_->cpu_data()[0]));
    if (c.smoothing == 0 && !c.ignore) {
      EXPECT_EQ(this->element_loss_->cpu_data()[0], Dtype(0));
      EXPECT_EQ(this->element_loss_->cpu_data()[2], Dtype(0));
    }
    // x = +inf with a target < 1: the loss is +inf, the gradient finite.
    x[0] = inf;    t[0] = 0;
    layer.Forward(bottom, top);
    layer.Backward(top, down, bottom);
    EXPECT_TRUE(std::isfinite(this->x_->cpu_diff()[0]));
    // NaN in, NaN out.
    x[5] = std::numeric_limits<Dtype>::quiet_NaN();
    t[5] = 1;
    layer.Forward(bottom, top);
    layer.Backward(top, down, bottom);
    EXPECT_TRUE(std::isnan(this->loss_->cpu_data()[0]));
    EXPECT_TRUE(std::isnan(this->x_->cpu_diff()[5]));
  }
}

TYPED_TEST(XentSigmoidCrossEntropyLossLayerTest, TestBadInputThrows) {
  typedef typename TypeParam::Dtype Dtype;
  vector<Blob<Dtype>*> bottom, top{this->loss_.get()};
  this->Bottoms(Cases()[0], &bottom);
  auto expect_refused = [&](const LayerParameter& param, vector<Blob<Dtype>*> b,
                            vector<Blob<Dtype>*> tops, const std::string& needle) {
    SigmoidCrossEntropyLossLayer<Dtype> layer(param);
    try {
      layer.SetUp(b, tops);
      layer.Forward(b, tops);
      ADD_FAILURE() << "no error; expected one mentioning '" << needle << "'";
    } catch (const xent::XentError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  LayerParameter ok;
  ok.set_name("xent");
  ok.set_type("SigmoidCrossEntropyLoss");
  // Blob numbers.
  expect_refused(ok, {bottom[0]}, top, "2 bottoms");
  expect_refused(ok, {bottom[0], bottom[1], this->w_.get(), this->w_.get()}, top, "2 bottoms");
  Blob<Dtype> extra;
  expect_refused(ok, bottom, {this->loss_.get(), this->element_loss_.get(), &extra}, "1 top");
  // Counts.
  Blob<Dtype> short_targets(std::vector<int>{3, 4});
  expect_refused(ok, {bottom[0], &short_targets}, top, "bottom[1] (targets) has 12");
  expect_refused(ok, {bottom[0], bottom[1], &short_targets}, top, "bottom[2] (weights) has 12");
  // Parameters.
  LayerParameter p = ok;
  p.mutable_sigmoid_cross_entropy_loss_param()->set_focal_gamma(-1);
  expect_refused(p, bottom, top, "focal_gamma");
  p = ok;
  p.mutable_sigmoid_cross_entropy_loss_param()->set_focal_alpha(1.5);
  expect_refused(p, bottom, top, "focal_alpha");
  p = ok;
  p.mutable_sigmoid_cross_entropy_loss_param()->set_focal_gamma_neg(-2);
  expect_refused(p, bottom, top, "focal_gamma_neg = -2");
  p = ok;
  p.mutable_sigmoid_cross_entropy_loss_param()->set_focal_margin(1);
  expect_refused(p, bottom, top, "focal_margin = 1");
  p = ok;
  p.mutable_sigmoid_cross_entropy_loss_param()->set_label_smoothing(1);
  expect_refused(p, bottom, top, "label_smoothing");
  p = ok;
  p.mutable_sigmoid_cross_entropy_loss_param()->add_pos_weight(1);
  p.mutable_sigmoid_cross_entropy_loss_param()->add_pos_weight(2);
  expect_refused(p, bottom, top, "pos_weight has 2 values");
  p = ok;
  p.mutable_sigmoid_cross_entropy_loss_param()->add_class_weight(-1);
  expect_refused(p, bottom, top, "class_weight[0]");
  p = ok;
  p.mutable_sigmoid_cross_entropy_loss_param()->set_axis(3);
  expect_refused(p, bottom, top, "axis");
  // Values: targets out of range, negative weights.
  this->t_->mutable_cpu_data()[7] = Dtype(1.5);
  expect_refused(ok, bottom, top, "bottom[1] (targets) has 1 values outside [0, 1]");
  this->t_->mutable_cpu_data()[7] = Dtype(0.5);
  this->w_->mutable_cpu_data()[3] = Dtype(-2);
  expect_refused(ok, {bottom[0], bottom[1], this->w_.get()}, top, "bottom[2] (weights) has 1 negative");
  // Non-finite targets and weights are data errors too, named by index.
  const Dtype inf = std::numeric_limits<Dtype>::infinity();
  this->w_->mutable_cpu_data()[3] = inf;
  expect_refused(ok, {bottom[0], bottom[1], this->w_.get()}, top, "inf at flat index 3");
  this->w_->mutable_cpu_data()[3] = std::numeric_limits<Dtype>::quiet_NaN();
  expect_refused(ok, {bottom[0], bottom[1], this->w_.get()}, top, "at flat index 3");
  this->w_->mutable_cpu_data()[3] = Dtype(1);
  this->t_->mutable_cpu_data()[5] = inf;
  expect_refused(ok, bottom, top, "the first is inf at flat index 5");
  this->t_->mutable_cpu_data()[5] = -inf;
  expect_refused(ok, bottom, top, "the first is -inf at flat index 5");
  this->t_->mutable_cpu_data()[5] = Dtype(0.5);
  p = ok;
  p.mutable_sigmoid_cross_entropy_loss_param()->add_pos_weight(inf);
  expect_refused(p, bottom, top, "pos_weight[0] = inf is not finite");
  // Gradient into the targets.
  SigmoidCrossEntropyLossLayer<Dtype> layer(ok);
  layer.SetUp(bottom, top);
  layer.Forward(bottom, top);
  EXPECT_THROW(layer.Backward(top, vector<bool>{true, true}, bottom), xent::XentError);
  EXPECT_FALSE(layer.AllowForceBackward(1));
  EXPECT_TRUE(layer.AllowForceBackward(0));
}

TYPED_TEST(XentSigmoidCrossEntropyLossLayerTest, TestEmptyBlobsGiveZeroLoss) {
  typedef typename TypeParam::Dtype Dtype;
  const std::vector<std::vector<int>> shapes{{0, 3}, {2, 3, 0}, {0}, {2, 0, 4}};
  const LossParameter_NormalizationMode modes[] = {
      LossParameter_NormalizationMode_VALID, LossParameter_NormalizationMode_BATCH_SIZE,
      LossParameter_NormalizationMode_FULL, LossParameter_NormalizationMode_NONE};
  for (const XentCase& c : Cases()) {
    for (const std::vector<int>& shape : shapes) {
      for (LossParameter_NormalizationMode mode : modes) {
        Blob<Dtype> x(shape), t(shape), w(shape);
        vector<Blob<Dtype>*> bottom{&x, &t};
        if (c.weights) bottom.push_back(&w);
        vector<Blob<Dtype>*> top{this->loss_.get(), this->element_loss_.get()};
        LayerParameter param;
        SetCase(c, &param);
        // Per-class vectors of 4 values do not fit these shapes: none here.
        param.mutable_sigmoid_cross_entropy_loss_param()->clear_pos_weight();
        param.mutable_sigmoid_cross_entropy_loss_param()->clear_class_weight();
        param.mutable_loss_param()->set_normalization(mode);
        SigmoidCrossEntropyLossLayer<Dtype> layer(param);
        layer.SetUp(bottom, top);
        layer.Forward(bottom, top);
        EXPECT_EQ(this->loss_->cpu_data()[0], Dtype(0)) << c.name;
        EXPECT_EQ(this->element_loss_->count(), 0);
        vector<bool> down(bottom.size(), false);
        down[0] = true;
        layer.Backward(top, down, bottom);
        EXPECT_EQ(x.count(), 0);
      }
    }
  }
}

TYPED_TEST(XentSigmoidCrossEntropyLossLayerTest, TestSameBitsForAnyThreadCount) {
  typedef typename TypeParam::Dtype Dtype;
  // Larger than one reduction chunk, so several chunks are summed.
  Blob<Dtype> x(std::vector<int>{5, 7001}), t(std::vector<int>{5, 7001});
  FillerParameter gaussian;
  gaussian.set_std(4);
  GaussianFiller<Dtype>(gaussian).Fill(&x);
  FillerParameter uniform;
  UniformFiller<Dtype>(uniform).Fill(&t);
  vector<Blob<Dtype>*> bottom{&x, &t}, top{this->loss_.get()};
  LayerParameter param;
  SigmoidCrossEntropyLossLayer<Dtype> layer(param);
  layer.SetUp(bottom, top);
  const Dtype first = layer.Forward(bottom, top);
  for (int run = 0; run < 3; ++run) EXPECT_EQ(layer.Forward(bottom, top), first);
}

}  // namespace caffe
