// Tests of MultiLabelSoftmaxLossLayer: a naive double reference, the
// GradientChecker for each target normalization, axis and option, and the
// behaviour of ignored rows, neutral options, the probabilities top and bad
// input (an exception, never an abort).
#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"

#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/filler.hpp"
#include "caffe/layers/multi_label_softmax_loss_layer.hpp"
#include "caffe/layers/xent_common.hpp"

#include "caffe/test/test_caffe_main.hpp"
#include "caffe/test/test_gradient_check_util.hpp"

namespace caffe {

namespace {

/// Options of one reference evaluation (defaults = the layer's defaults).
struct ReferenceOptions {
  int axis = 1;
  MultiLabelSoftmaxLossParameter_TargetNormalization target_normalization =
      MultiLabelSoftmaxLossParameter_TargetNormalization_COUNT;
  std::vector<double> class_weight;  // empty: 1
  double smoothing = 0.0;
  bool has_ignore_label = false;
  int ignore_label = -1;
  LossParameter_NormalizationMode normalization = LossParameter_NormalizationMode_VALID;
};

/// Naive loss, straight from the header's formula, in double; fills d loss / d x and, if
/// asked, the size of its two terms, (Q p_c + q_c) / normalizer.
template <typename Dtype>
double ReferenceLoss(const Blob<Dtype>& x_blob, const Blob<Dtype>& t_blob,
                     const ReferenceOptions& opt, std::vector<double>* grad,
                     std::vector<double>* terms = NULL) {
  const int axis = x_blob.CanonicalAxisIndex(opt.axis);
  const int outer = x_blob.count(0, axis), C = x_blob.shape(axis);
  const int inner = x_blob.count(axis + 1);
  const Dtype* x = x_blob.cpu_data();
  const Dtype* t = t_blob.cpu_data();
  grad->assign(x_blob.count(), 0.0);
  if (terms != NULL) terms->assign(x_blob.count(), 0.0);
  double total = 0.0, valid = 0.0;
  for (int o = 0; o < outer; ++o) {
    for (int i = 0; i < inner; ++i) {
      std::vector<double> xr(C), tr(C), q(C);
      int positives = 0;
      bool ignored = false;
      double target_sum = 0.0;
      for (int c = 0; c < C; ++c) {
        xr[c] = x[(o * C + c) * inner + i];
        tr[c] = t[(o * C + c) * inner + i];
        if (opt.has_ignore_label && tr[c] == opt.ignore_label) ignored = true;
        if (tr[c] > 0) ++positives;
        target_sum += tr[c];
      }
      if (ignored || positives == 0) continue;
      valid += 1;
      const double norm =
          opt.target_normalization == MultiLabelSoftmaxLossParameter_TargetNormalization_COUNT
              ? positives
          : opt.target_normalization == MultiLabelSoftmaxLossParameter_TargetNormalization_SUM
              ? target_sum
              : 1.0;
      double m = xr[0];
      for (int c = 1; c < C; ++c) m = std::max(m, xr[c]);
      double sum_exp = 0.0;
      for (int c = 0; c < C; ++c) sum_exp += std::exp(xr[c] - m);
      const double log_sum_exp = m + std::log(sum_exp);
      double q_total = 0.0;
      // caffe.proto stores class_weight and label_smoothing as float.
      const double eps = static_cast<float>(opt.smoothing);
      for (int c = 0; c < C; ++c) {
        const double w = static_cast<float>(opt.class_weight.empty() ? 1.0
                         : opt.class_weight.size() == 1 ? opt.class_weight[0]
                                                        : opt.class_weight[c]);
        q[c] = (1 - eps) * w * tr[c] / norm + eps / C;
        q_total += q[c];
        total += q[c] * (log_sum_exp - xr[c]);  // -q_c log p_c
      }
      for (int c = 0; c < C; ++c) {
        const double p = std::exp(xr[c] - log_sum_exp);
        (*grad)[(o * C + c) * inner + i] = q_total * p - q[c];
        if (terms != NULL) (*terms)[(o * C + c) * inner + i] = q_total * p + q[c];
      }
    }
  }
  double normalizer = 1.0;
  switch (opt.normalization) {
    case LossParameter_NormalizationMode_FULL: normalizer = outer * inner; break;
    case LossParameter_NormalizationMode_VALID: normalizer = valid; break;
    case LossParameter_NormalizationMode_BATCH_SIZE: normalizer = x_blob.shape(0); break;
    case LossParameter_NormalizationMode_NONE: normalizer = 1.0; break;
  }
  normalizer = std::max(1.0, normalizer);
  for (double& g : *grad) g /= normalizer;
  if (terms != NULL) {
    for (double& v : *terms) v /= normalizer;
  }
  return total / normalizer;
}

/// The layer parameter matching a ReferenceOptions.
LayerParameter MakeParam(const ReferenceOptions& opt) {
  LayerParameter param;
  param.set_type("MultiLabelSoftmaxLoss");
  param.set_name("mlsoftmax");
  MultiLabelSoftmaxLossParameter* ml = param.mutable_multi_label_softmax_loss_param();
  ml->set_axis(opt.axis);
  ml->set_target_normalization(opt.target_normalization);
  for (double w : opt.class_weight) ml->add_class_weight(w);
  ml->set_label_smoothing(opt.smoothing);
  if (opt.has_ignore_label) param.mutable_loss_param()->set_ignore_label(opt.ignore_label);
  param.mutable_loss_param()->set_normalization(opt.normalization);
  return param;
}

}  // namespace

template <typename TypeParam>
class MultiLabelSoftmaxLossLayerTest : public MultiDeviceTest<TypeParam> {
  typedef typename TypeParam::Dtype Dtype;

 protected:
  MultiLabelSoftmaxLossLayerTest()
      : x_(new Blob<Dtype>()), t_(new Blob<Dtype>()), loss_(new Blob<Dtype>()),
        prob_(new Blob<Dtype>()) {
    Fill(std::vector<int>{4, 5, 2, 3}, 1);
  }

  /// Scores N(0, 3^2); multi-hot targets along `axis` with at least one
  /// positive per row (in class (o + i) % C), so no row is ignored by chance.
  void Fill(const std::vector<int>& shape, int axis) {
    x_->Reshape(shape);
    t_->Reshape(shape);
    FillerParameter filler_param;
    filler_param.set_std(3);
    GaussianFiller<Dtype> filler(filler_param);
    filler.Fill(x_.get());
    const int a = x_->CanonicalAxisIndex(axis);
    const int outer = x_->count(0, a), C = x_->shape(a), inner = x_->count(a + 1);
    Dtype* t = t_->mutable_cpu_data();
    for (int o = 0; o < outer; ++o) {
      for (int c = 0; c < C; ++c) {
        for (int i = 0; i < inner; ++i) {
          t[(o * C + c) * inner + i] =
              (c == (o + i) % C || caffe_rng_rand() % 3 == 0) ? Dtype(1) : Dtype(0);
        }
      }
    }
    bottom_ = {x_.get(), t_.get()};
    top_ = {loss_.get()};
  }

  /// Replaces the targets by soft, non-negative values (some zeros).
  void SoftTargets() {
    Dtype* t = t_->mutable_cpu_data();
    for (int k = 0; k < t_->count(); ++k) {
      t[k] = (caffe_rng_rand() % 4 == 0) ? Dtype(0) : Dtype((caffe_rng_rand() % 100) / 40.0);
    }
  }

  /// Forward and backward of the layer against the reference.
  void CheckAgainstReference(const ReferenceOptions& opt) {
    LayerParameter param = MakeParam(opt);
    MultiLabelSoftmaxLossLayer<Dtype> layer(param);
    layer.SetUp(bottom_, top_);
    layer.Forward(bottom_, top_);
    std::vector<double> grad;
    const double expected = ReferenceLoss(*x_, *t_, opt, &grad);
    // float blobs: the exps are float (1 ulp each), sums in double.
    const double tolerance = sizeof(Dtype) == 4 ? 1e-6 : 1e-12;
    EXPECT_NEAR(loss_->cpu_data()[0], expected, tolerance * std::max(1.0, std::fabs(expected)));
    layer.Backward(top_, std::vector<bool>{true, false}, bottom_);
    const Dtype* dx = x_->cpu_diff();
    const double grad_tolerance = sizeof(Dtype) == 4 ? 1e-6 : 1e-13;
    for (int k = 0; k < x_->count(); ++k) {
      EXPECT_NEAR(dx[k], grad[k], grad_tolerance) << "element " << k;
    }
  }

  void CheckGradient(const ReferenceOptions& opt) {
    LayerParameter param = MakeParam(opt);
    param.add_loss_weight(3);
    MultiLabelSoftmaxLossLayer<Dtype> layer(param);
    GradientChecker<Dtype> checker(1e-2, 1e-2, 1701);
    checker.CheckGradientExhaustive(&layer, bottom_, top_, 0);
  }

  std::unique_ptr<Blob<Dtype>> x_, t_, loss_, prob_;
  vector<Blob<Dtype>*> bottom_, top_;
};

TYPED_TEST_CASE(MultiLabelSoftmaxLossLayerTest, TestDtypesAndDevices);

TYPED_TEST(MultiLabelSoftmaxLossLayerTest, TestForwardBackwardCount) {
  this->CheckAgainstReference(ReferenceOptions());
}

TYPED_TEST(MultiLabelSoftmaxLossLayerTest, TestForwardBackwardSumSoftTargets) {
  this->SoftTargets();
  ReferenceOptions opt;
  opt.target_normalization = MultiLabelSoftmaxLossParameter_TargetNormalization_SUM;
  this->CheckAgainstReference(opt);
}

TYPED_TEST(MultiLabelSoftmaxLossLayerTest, TestForwardBackwardNoneWeightsSmoothing) {
  this->SoftTargets();
  ReferenceOptions opt;
  opt.target_normalization = MultiLabelSoftmaxLossParameter_TargetNormalization_NONE;
  opt.class_weight = {0.5, 1.0, 2.0, 0.0, 3.0};
  opt.smoothing = 0.1;
  opt.normalization = LossParameter_NormalizationMode_FULL;
  this->CheckAgainstReference(opt);
}

TYPED_TEST(MultiLabelSoftmaxLossLayerTest, TestForwardBackwardLastAxisBatchSize) {
  this->Fill(std::vector<int>{3, 2, 7}, -1);
  ReferenceOptions opt;
  opt.axis = -1;
  opt.normalization = LossParameter_NormalizationMode_BATCH_SIZE;
  this->CheckAgainstReference(opt);
}

TYPED_TEST(MultiLabelSoftmaxLossLayerTest, TestForwardBackwardLongRows) {
  this->Fill(std::vector<int>{3, 3000}, 1);
  this->SoftTargets();
  ReferenceOptions opt;
  opt.target_normalization = MultiLabelSoftmaxLossParameter_TargetNormalization_SUM;
  this->CheckAgainstReference(opt);
}

TYPED_TEST(MultiLabelSoftmaxLossLayerTest, TestGradientCount) {
  this->CheckGradient(ReferenceOptions());
}

TYPED_TEST(MultiLabelSoftmaxLossLayerTest, TestGradientSum) {
  this->SoftTargets();
  ReferenceOptions opt;
  opt.target_normalization = MultiLabelSoftmaxLossParameter_TargetNormalization_SUM;
  this->CheckGradient(opt);
}

TYPED_TEST(MultiLabelSoftmaxLossLayerTest, TestGradientNone) {
  this->SoftTargets();
  ReferenceOptions opt;
  opt.target_normalization = MultiLabelSoftmaxLossParameter_TargetNormalization_NONE;
  opt.normalization = LossParameter_NormalizationMode_NONE;
  this->CheckGradient(opt);
}

TYPED_TEST(MultiLabelSoftmaxLossLayerTest, TestGradientAxis2WeightsSmoothing) {
  this->Fill(std::vector<int>{2, 3, 4}, 2);
  ReferenceOptions opt;
  opt.axis = 2;
  opt.class_weight = {1.5, 0.5, 1.0, 2.0};
  opt.smoothing = 0.2;
  this->CheckGradient(opt);
}

TYPED_TEST(MultiLabelSoftmaxLossLayerTest, TestGradientIgnoreLabel) {
  typedef typename TypeParam::Dtype Dtype;
  this->t_->mutable_cpu_data()[0] = Dtype(-1);
  this->t_->mutable_cpu_data()[7] = Dtype(-1);
  ReferenceOptions opt;
  opt.has_ignore_label = true;
  opt.ignore_label = -1;
  this->CheckGradient(opt);
}

TYPED_TEST(MultiLabelSoftmaxLossLayerTest, TestIgnoredRowsZeroAndNotCounted) {
  typedef typename TypeParam::Dtype Dtype;
  this->Fill(std::vector<int>{4, 6}, 1);
  Dtype* t = this->t_->mutable_cpu_data();
  for (int c = 0; c < 6; ++c) t[1 * 6 + c] = Dtype(0);  // row 1: no positive
  t[2 * 6 + 3] = Dtype(255);                             // row 2: ignore_label
  this->x_->mutable_cpu_data()[1 * 6 + 2] = Dtype(NAN);  // NaN in an ignored row
  ReferenceOptions opt;
  opt.has_ignore_label = true;
  opt.ignore_label = 255;
  LayerParameter param = MakeParam(opt);
  MultiLabelSoftmaxLossLayer<Dtype> layer(param);
  layer.SetUp(this->bottom_, this->top_);
  layer.Forward(this->bottom_, this->top_);
  layer.Backward(this->top_, std::vector<bool>{true, false}, this->bottom_);
  const Dtype* dx = this->x_->cpu_diff();
  for (int c = 0; c < 6; ++c) {
    EXPECT_EQ(dx[1 * 6 + c], Dtype(0));
    EXPECT_EQ(dx[2 * 6 + c], Dtype(0));
  }
  // VALID: the two remaining rows, each with its own loss, averaged over 2.
  std::vector<double> grad;
  const double expected = ReferenceLoss(*this->x_, *this->t_, opt, &grad);
  EXPECT_TRUE(std::isfinite(static_cast<double>(this->loss_->cpu_data()[0])));
  EXPECT_NEAR(this->loss_->cpu_data()[0], expected, 1e-6 * std::max(1.0, expected));
  // Twice the loss summed under NONE means exactly 2 rows were counted.
  opt.normalization = LossParameter_NormalizationMode_NONE;
  LayerParameter none_param = MakeParam(opt);
  MultiLabelSoftmaxLossLayer<Dtype> none_layer(none_param);
  none_layer.SetUp(this->bottom_, this->top_);
  none_layer.Forward(this->bottom_, this->top_);
  EXPECT_NEAR(this->loss_->cpu_data()[0], 2 * expected, 2e-6 * std::max(1.0, expected));
}

TYPED_TEST(MultiLabelSoftmaxLossLayerTest, TestNeutralOptionsReduceToPlainLoss) {
  typedef typename TypeParam::Dtype Dtype;
  ReferenceOptions plain;
  MultiLabelSoftmaxLossLayer<Dtype> plain_layer(MakeParam(plain));
  plain_layer.SetUp(this->bottom_, this->top_);
  plain_layer.Forward(this->bottom_, this->top_);
  const Dtype plain_loss = this->loss_->cpu_data()[0];
  ReferenceOptions neutral;
  neutral.class_weight = {1.0};
  neutral.smoothing = 0.0;
  MultiLabelSoftmaxLossLayer<Dtype> neutral_layer(MakeParam(neutral));
  neutral_layer.SetUp(this->bottom_, this->top_);
  neutral_layer.Forward(this->bottom_, this->top_);
  EXPECT_EQ(this->loss_->cpu_data()[0], plain_loss);
}

TYPED_TEST(MultiLabelSoftmaxLossLayerTest, TestProbabilityTop) {
  typedef typename TypeParam::Dtype Dtype;
  this->top_.push_back(this->prob_.get());
  MultiLabelSoftmaxLossLayer<Dtype> layer(MakeParam(ReferenceOptions()));
  layer.SetUp(this->bottom_, this->top_);
  layer.Forward(this->bottom_, this->top_);
  ASSERT_EQ(this->prob_->shape(), this->x_->shape());
  const Dtype* x = this->x_->cpu_data();
  const Dtype* p = this->prob_->cpu_data();
  // shape (4, 5, 2, 3), axis 1: rows are (o, i) with C = 5, inner = 6.
  for (int o = 0; o < 4; ++o) {
    for (int i = 0; i < 6; ++i) {
      double m = x[o * 30 + i], sum_exp = 0.0, sum_p = 0.0;
      for (int c = 1; c < 5; ++c) m = std::max(m, static_cast<double>(x[o * 30 + c * 6 + i]));
      for (int c = 0; c < 5; ++c) sum_exp += std::exp(x[o * 30 + c * 6 + i] - m);
      for (int c = 0; c < 5; ++c) {
        const double expected = std::exp(x[o * 30 + c * 6 + i] - m) / sum_exp;
        EXPECT_NEAR(p[o * 30 + c * 6 + i], expected, 1e-6);
        sum_p += p[o * 30 + c * 6 + i];
      }
      EXPECT_NEAR(sum_p, 1.0, 1e-5);
    }
  }
  // The probabilities top carries no loss weight by default.
  EXPECT_EQ(layer.loss(0), Dtype(1));
  EXPECT_EQ(layer.loss(1), Dtype(0));
}

/// The float ulp at |v| (rounded to float).
double FloatUlp(double v) {
  const float f = std::fabs(static_cast<float>(v));
  return std::nextafter(f, INFINITY) - f;
}

/// |a - b| in float ulps of b.
double FloatUlps(double a, double b) { return std::fabs(a - b) / FloatUlp(b); }

TYPED_TEST(MultiLabelSoftmaxLossLayerTest, TestFloatWithinFewUlps) {
  // float blobs only: the double reference resolves float ulps, not double
  // ones. Scores N(0, 20^2), where x - m spans ~150 and rounding it to float
  // before the exp cost up to 60 ulps. Budget (u = 2^-24, see the Python
  // test of the same name): e^(x - m) < 1.75 u with the argument exact, S
  // < 1.75 u, the gradient k e - q' < 4 u Q p + 2 u q + 0.5 ulp: < 4.5 ulp
  // where q = 0, < 8.5 ulp where Q p and q do not cancel (|Q p - q| >=
  // (Q p + q) / 2), an absolute 4 u (Q p + q) + 0.5 ulp where they do; the
  // probabilities < 1.75 u + 0.5 ulp. Long rows, a spatial map and a short
  // row (SIMD tail and the scalar math).
  typedef typename TypeParam::Dtype Dtype;
  if (sizeof(Dtype) != 4) return;
  const std::vector<std::vector<int>> shapes = {{3, 3000}, {2, 21, 4, 16}, {5, 7}};
  for (const std::vector<int>& shape : shapes) {
    this->Fill(shape, 1);
    this->SoftTargets();
    FillerParameter filler_param;
    filler_param.set_std(20);
    GaussianFiller<Dtype>(filler_param).Fill(this->x_.get());
    Dtype* t = this->t_->mutable_cpu_data();
    const int C = shape[1], inner = this->x_->count(2);
    for (int o = 0; o < shape[0]; ++o) {
      for (int i = 0; i < inner; ++i) t[o * C * inner + i] += Dtype(0.5);  // a positive per row
    }
    this->top_.assign({this->loss_.get(), this->prob_.get()});
    ReferenceOptions opt;
    opt.target_normalization = MultiLabelSoftmaxLossParameter_TargetNormalization_SUM;
    MultiLabelSoftmaxLossLayer<Dtype> layer(MakeParam(opt));
    layer.SetUp(this->bottom_, this->top_);
    layer.Forward(this->bottom_, this->top_);
    layer.Backward(this->top_, std::vector<bool>{true, false}, this->bottom_);
    std::vector<double> grad, terms;
    const double expected = ReferenceLoss(*this->x_, *this->t_, opt, &grad, &terms);
    EXPECT_NEAR(this->loss_->cpu_data()[0], expected, 1e-6 * expected);
    const Dtype* x = this->x_->cpu_data();
    const Dtype* dx = this->x_->cpu_diff();
    const Dtype* p = this->prob_->cpu_data();
    const double u = std::ldexp(1.0, -24);
    for (int o = 0; o < shape[0]; ++o) {
      for (int i = 0; i < inner; ++i) {
        double m = x[o * C * inner + i], sum_exp = 0.0;
        for (int c = 1; c < C; ++c) m = std::max(m, static_cast<double>(x[(o * C + c) * inner + i]));
        for (int c = 0; c < C; ++c) sum_exp += std::exp(x[(o * C + c) * inner + i] - m);
        for (int c = 0; c < C; ++c) {
          const int k = (o * C + c) * inner + i;
          const double q = (terms[k] - grad[k]) / 2;  // (Q p + q - (Q p - q)) / 2
          if (q == 0) {
            EXPECT_LE(FloatUlps(dx[k], grad[k]), 4.5) << "element " << k;
          } else if (std::fabs(grad[k]) >= terms[k] / 2) {
            EXPECT_LE(FloatUlps(dx[k], grad[k]), 8.5) << "element " << k;
          } else {
            EXPECT_LE(std::fabs(dx[k] - grad[k]), 4 * u * terms[k] + 0.5 * FloatUlp(grad[k]))
                << "element " << k;
          }
          const double expected_p = std::exp(x[k] - m) / sum_exp;
          EXPECT_LE(FloatUlps(p[k], expected_p), 2.25) << "element " << k;
        }
      }
    }
  }
}

TYPED_TEST(MultiLabelSoftmaxLossLayerTest, TestHugeScoresStayFinite) {
  typedef typename TypeParam::Dtype Dtype;
  Dtype* x = this->x_->mutable_cpu_data();
  for (int k = 0; k < this->x_->count(); ++k) x[k] = (k % 2 ? Dtype(1e4) : Dtype(-1e4)) + k;
  MultiLabelSoftmaxLossLayer<Dtype> layer(MakeParam(ReferenceOptions()));
  layer.SetUp(this->bottom_, this->top_);
  layer.Forward(this->bottom_, this->top_);
  layer.Backward(this->top_, std::vector<bool>{true, false}, this->bottom_);
  EXPECT_TRUE(std::isfinite(static_cast<double>(this->loss_->cpu_data()[0])));
  for (int k = 0; k < this->x_->count(); ++k) {
    EXPECT_TRUE(std::isfinite(static_cast<double>(this->x_->cpu_diff()[k])));
  }
}

TYPED_TEST(MultiLabelSoftmaxLossLayerTest, TestBadInputThrows) {
  typedef typename TypeParam::Dtype Dtype;
  typedef MultiLabelSoftmaxLossLayer<Dtype> Layer;
  {  // shape mismatch
    Blob<Dtype> t(std::vector<int>{4, 5, 2, 2});
    vector<Blob<Dtype>*> bottom{this->x_.get(), &t};
    Layer layer(MakeParam(ReferenceOptions()));
    EXPECT_THROW(layer.SetUp(bottom, this->top_), xent::XentError);
  }
  {  // three bottoms
    vector<Blob<Dtype>*> bottom{this->x_.get(), this->t_.get(), this->t_.get()};
    Layer layer(MakeParam(ReferenceOptions()));
    EXPECT_THROW(layer.SetUp(bottom, this->top_), xent::XentError);
  }
  {  // three tops
    Blob<Dtype> a, b;
    vector<Blob<Dtype>*> top{this->loss_.get(), &a, &b};
    Layer layer(MakeParam(ReferenceOptions()));
    EXPECT_THROW(layer.SetUp(this->bottom_, top), xent::XentError);
  }
  {  // axis out of range
    ReferenceOptions opt;
    opt.axis = 4;
    Layer layer(MakeParam(opt));
    EXPECT_THROW(layer.SetUp(this->bottom_, this->top_), xent::XentError);
  }
  {  // class_weight of the wrong length, and negative
    ReferenceOptions opt;
    opt.class_weight = {1.0, 2.0};
    Layer layer(MakeParam(opt));
    EXPECT_THROW(layer.SetUp(this->bottom_, this->top_), xent::XentError);
    opt.class_weight = {-1.0};
    Layer negative_layer(MakeParam(opt));
    EXPECT_THROW(negative_layer.SetUp(this->bottom_, this->top_), xent::XentError);
  }
  {  // label smoothing outside [0, 1)
    ReferenceOptions opt;
    opt.smoothing = 1.0;
    Layer layer(MakeParam(opt));
    EXPECT_THROW(layer.SetUp(this->bottom_, this->top_), xent::XentError);
  }
  {  // propagate_down to the targets
    Layer layer(MakeParam(ReferenceOptions()));
    layer.SetUp(this->bottom_, this->top_);
    layer.Forward(this->bottom_, this->top_);
    EXPECT_THROW(layer.Backward(this->top_, std::vector<bool>{true, true}, this->bottom_),
                 xent::XentError);
  }
  {  // a negative target (no ignore_label)
    this->t_->mutable_cpu_data()[5] = Dtype(-0.5);
    Layer layer(MakeParam(ReferenceOptions()));
    layer.SetUp(this->bottom_, this->top_);
    EXPECT_THROW(layer.Forward(this->bottom_, this->top_), xent::XentError);
  }
}

TYPED_TEST(MultiLabelSoftmaxLossLayerTest, TestNonFiniteTargetsThrowNamingTheFirst) {
  typedef typename TypeParam::Dtype Dtype;
  // Contiguous rows long enough for the SIMD row path (C = 19), and a
  // spatial map (inner 16): a NaN, +inf or -inf target is refused, never
  // skipped, and the message names the first one.
  const std::vector<std::vector<int>> shapes{{4, 19}, {2, 5, 16}};
  const Dtype bad[] = {std::numeric_limits<Dtype>::quiet_NaN(),
                       std::numeric_limits<Dtype>::infinity(),
                       -std::numeric_limits<Dtype>::infinity()};
  for (const std::vector<int>& shape : shapes) {
    for (Dtype value : bad) {
      this->Fill(shape, 1);
      this->t_->mutable_cpu_data()[7] = value;
      this->t_->mutable_cpu_data()[9] = value;
      MultiLabelSoftmaxLossLayer<Dtype> layer(MakeParam(ReferenceOptions()));
      layer.SetUp(this->bottom_, this->top_);
      try {
        layer.Forward(this->bottom_, this->top_);
        ADD_FAILURE() << "target " << value << " was accepted";
      } catch (const xent::XentError& e) {
        const std::string message = e.what();
        EXPECT_NE(message.find("bottom[1] (targets) has 2 "), std::string::npos) << message;
        EXPECT_NE(message.find("at flat index 7"), std::string::npos) << message;
      }
    }
  }
}

TYPED_TEST(MultiLabelSoftmaxLossLayerTest, TestEmptyBlobsGiveZeroLoss) {
  typedef typename TypeParam::Dtype Dtype;
  const std::vector<std::vector<int>> shapes{{0, 3}, {2, 3, 0}, {2, 0}, {0, 0, 4}};
  const LossParameter_NormalizationMode modes[] = {
      LossParameter_NormalizationMode_VALID, LossParameter_NormalizationMode_BATCH_SIZE,
      LossParameter_NormalizationMode_FULL, LossParameter_NormalizationMode_NONE};
  for (const std::vector<int>& shape : shapes) {
    for (LossParameter_NormalizationMode mode : modes) {
      this->x_->Reshape(shape);
      this->t_->Reshape(shape);
      ReferenceOptions opt;
      opt.normalization = mode;
      MultiLabelSoftmaxLossLayer<Dtype> layer(MakeParam(opt));
      vector<Blob<Dtype>*> top{this->loss_.get(), this->prob_.get()};
      layer.SetUp(this->bottom_, top);
      layer.Forward(this->bottom_, top);
      EXPECT_EQ(this->loss_->cpu_data()[0], Dtype(0));
      EXPECT_EQ(this->prob_->count(), 0);
      layer.Backward(top, std::vector<bool>{true, false}, this->bottom_);
      EXPECT_EQ(this->x_->count(), 0);
    }
  }
}

TYPED_TEST(MultiLabelSoftmaxLossLayerTest, TestTooManyRowsThrowBeforeAllocating) {
  typedef typename TypeParam::Dtype Dtype;
  // 5 doubles per row must fit one Blob (INT_MAX values): 429496730 rows do
  // not. Reshape allocates nothing, so this costs no memory.
  this->x_->Reshape(std::vector<int>{429496730, 1});
  this->t_->Reshape(std::vector<int>{429496730, 1});
  MultiLabelSoftmaxLossLayer<Dtype> layer(MakeParam(ReferenceOptions()));
  EXPECT_THROW(layer.SetUp(this->bottom_, this->top_), xent::XentError);
}

// The loss-weight rule both layers share (XentLossLayer): one loss_weight
// for two tops weights the loss only; a count that fits neither rule throws.
TYPED_TEST(MultiLabelSoftmaxLossLayerTest, TestOneLossWeightForTwoTops) {
  typedef typename TypeParam::Dtype Dtype;
  this->top_.push_back(this->prob_.get());
  LayerParameter param = MakeParam(ReferenceOptions());
  param.add_loss_weight(2);
  MultiLabelSoftmaxLossLayer<Dtype> layer(param);
  layer.SetUp(this->bottom_, this->top_);
  EXPECT_EQ(layer.loss(0), Dtype(2));
  EXPECT_EQ(layer.loss(1), Dtype(0));
  param.add_loss_weight(1);
  param.add_loss_weight(1);
  MultiLabelSoftmaxLossLayer<Dtype> three(param);
  EXPECT_THROW(three.SetUp(this->bottom_, this->top_), xent::XentError);
}

}  // namespace caffe
