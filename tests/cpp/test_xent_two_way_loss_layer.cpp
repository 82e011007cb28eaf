// Tests of TwoWayLossLayer: a naive long double reference straight from the
// formula (rows and columns), the GradientChecker, lines without positives
// or negatives, ignored elements, temperatures, and bad input (an
// exception, never an abort).
#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"

#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/filler.hpp"
#include "caffe/layers/two_way_loss_layer.hpp"
#include "caffe/layers/xent_common.hpp"

#include "caffe/test/test_caffe_main.hpp"
#include "caffe/test/test_gradient_check_util.hpp"

namespace caffe {

namespace {

struct TwoWayOptions {
  int axis = 1;
  double tp = 4.0, tn = 1.0;
  bool has_ignore_label = false;
  int ignore_label = -1;
  LossParameter_NormalizationMode normalization = LossParameter_NormalizationMode_VALID;
};

/// One line's loss softplus(a) and its elements' d/dx (added into grad at
/// `index`, times `scale`); false for a line without a positive (not
/// counted). Naive sums of e^v in long double.
bool LineReference(const std::vector<long double>& x, const std::vector<int>& kind,
                   const std::vector<int>& index, long double tp, long double tn, double scale,
                   double* loss, std::vector<double>* grad) {
  long double neg = 0, pos = 0;
  bool any_pos = false, any_neg = false;
  for (size_t k = 0; k < x.size(); ++k) {
    if (kind[k] == 0) neg += std::exp(x[k] / tn), any_neg = true;
    if (kind[k] == 1) pos += std::exp(-x[k] / tp), any_pos = true;
  }
  if (!any_pos) return false;
  if (!any_neg) return true;  // a = -inf: loss 0, gradient 0
  const long double a = tn * std::log(neg) + tp * std::log(pos);
  *loss += static_cast<double>(std::log1p(std::exp(a)));
  const long double sigma = 1 / (1 + std::exp(-a));
  for (size_t k = 0; k < x.size(); ++k) {
    if (kind[k] == 0) (*grad)[index[k]] += scale * static_cast<double>(sigma * std::exp(x[k] / tn) / neg);
    if (kind[k] == 1) (*grad)[index[k]] -= scale * static_cast<double>(sigma * std::exp(-x[k] / tp) / pos);
  }
  return true;
}

template <typename Dtype>
double ReferenceLoss(const Blob<Dtype>& x_blob, const Blob<Dtype>& t_blob,
                     const TwoWayOptions& opt, std::vector<double>* grad) {
  const int axis = x_blob.CanonicalAxisIndex(opt.axis);
  const int outer = x_blob.count(0, axis), C = x_blob.shape(axis);
  const int inner = x_blob.count(axis + 1), rows = outer * inner;
  const Dtype* x = x_blob.cpu_data();
  const Dtype* t = t_blob.cpu_data();
  auto kind_of = [&](int k) {
    if (opt.has_ignore_label && t[k] == opt.ignore_label) return 2;
    return t[k] == 1 ? 1 : 0;
  };
  const long double tp = static_cast<float>(opt.tp), tn = static_cast<float>(opt.tn);
  // Two passes: count the lines first (normalizers), then the gradient.
  double counts[2] = {0, 0};
  double sums[2] = {0, 0};
  std::vector<double> row_grad(x_blob.count(), 0.0), column_grad(x_blob.count(), 0.0);
  for (int line_kind = 0; line_kind < 2; ++line_kind) {
    const int lines = line_kind == 0 ? rows : C;
    const int length = line_kind == 0 ? C : rows;
    for (int l = 0; l < lines; ++l) {
      std::vector<long double> xs;
      std::vector<int> kinds, index;
      for (int j = 0; j < length; ++j) {
        const int r = line_kind == 0 ? l : j, c = line_kind == 0 ? j : l;
        const int k = ((r / inner) * C + c) * inner + r % inner;
        xs.push_back(x[k]);
        kinds.push_back(kind_of(k));
        index.push_back(k);
      }
      if (LineReference(xs, kinds, index, tp, tn, 1.0, &sums[line_kind],
                        line_kind == 0 ? &row_grad : &column_grad)) {
        counts[line_kind] += 1;
      }
    }
  }
  double z[2] = {1, 1};
  for (int i = 0; i < 2; ++i) {
    switch (opt.normalization) {
      case LossParameter_NormalizationMode_FULL: z[i] = i == 0 ? rows : C; break;
      case LossParameter_NormalizationMode_VALID: z[i] = counts[i]; break;
      case LossParameter_NormalizationMode_BATCH_SIZE: z[i] = x_blob.shape(0); break;
      case LossParameter_NormalizationMode_NONE: z[i] = 1; break;
    }
    z[i] = std::max(1.0, z[i]);
  }
  grad->assign(x_blob.count(), 0.0);
  for (int k = 0; k < x_blob.count(); ++k) (*grad)[k] = row_grad[k] / z[0] + column_grad[k] / z[1];
  return sums[0] / z[0] + sums[1] / z[1];
}

LayerParameter MakeParam(const TwoWayOptions& opt) {
  LayerParameter param;
  param.set_type("TwoWayLoss");
  param.set_name("twoway");
  TwoWayLossParameter* tw = param.mutable_two_way_loss_param();
  tw->set_axis(opt.axis);
  tw->set_positive_temperature(opt.tp);
  tw->set_negative_temperature(opt.tn);
  if (opt.has_ignore_label) param.mutable_loss_param()->set_ignore_label(opt.ignore_label);
  param.mutable_loss_param()->set_normalization(opt.normalization);
  return param;
}

}  // namespace

template <typename TypeParam>
class TwoWayLossLayerTest : public MultiDeviceTest<TypeParam> {
  typedef typename TypeParam::Dtype Dtype;

 protected:
  TwoWayLossLayerTest() : x_(new Blob<Dtype>()), t_(new Blob<Dtype>()), loss_(new Blob<Dtype>()) {
    Fill(std::vector<int>{6, 5}, 3);
  }

  /// Scores N(0, std^2); targets 0/1, about a third positive; row 0 without
  /// positives, row 1 without negatives.
  void Fill(const std::vector<int>& shape, double std) {
    x_->Reshape(shape);
    t_->Reshape(shape);
    FillerParameter filler_param;
    filler_param.set_std(std);
    GaussianFiller<Dtype>(filler_param).Fill(x_.get());
    Dtype* t = t_->mutable_cpu_data();
    for (int k = 0; k < t_->count(); ++k) t[k] = caffe_rng_rand() % 3 == 0 ? Dtype(1) : Dtype(0);
    const int C = shape[1], inner = t_->count(2);
    for (int c = 0; c < C; ++c) {
      for (int i = 0; i < inner; ++i) {
        t[c * inner + i] = Dtype(0);
        if (shape[0] > 1) t[(C + c) * inner + i] = Dtype(1);
      }
    }
    bottom_ = {x_.get(), t_.get()};
    top_ = {loss_.get()};
  }

  void CheckAgainstReference(const TwoWayOptions& opt) {
    TwoWayLossLayer<Dtype> layer(MakeParam(opt));
    layer.SetUp(bottom_, top_);
    layer.Forward(bottom_, top_);
    std::vector<double> grad;
    const double expected = ReferenceLoss(*x_, *t_, opt, &grad);
    const double tolerance = sizeof(Dtype) == 4 ? 1e-6 : 1e-12;
    EXPECT_NEAR(loss_->cpu_data()[0], expected, tolerance * std::max(1.0, std::fabs(expected)));
    layer.Backward(top_, std::vector<bool>{true, false}, bottom_);
    const Dtype* dx = x_->cpu_diff();
    for (int k = 0; k < x_->count(); ++k) {
      EXPECT_NEAR(dx[k], grad[k], tolerance * std::max(1e-3, std::fabs(grad[k]))) << "element " << k;
    }
  }

  void CheckGradient(const TwoWayOptions& opt) {
    LayerParameter param = MakeParam(opt);
    param.add_loss_weight(3);
    TwoWayLossLayer<Dtype> layer(param);
    GradientChecker<Dtype> checker(1e-2, 1e-2, 1701);
    checker.CheckGradientExhaustive(&layer, bottom_, top_, 0);
  }

  std::unique_ptr<Blob<Dtype>> x_, t_, loss_;
  vector<Blob<Dtype>*> bottom_, top_;
};

TYPED_TEST_CASE(TwoWayLossLayerTest, TestDtypesAndDevices);

TYPED_TEST(TwoWayLossLayerTest, TestForwardBackward) {
  this->CheckAgainstReference(TwoWayOptions());
}

TYPED_TEST(TwoWayLossLayerTest, TestForwardBackwardSpatialFull) {
  this->Fill(std::vector<int>{3, 4, 5, 6}, 2);
  TwoWayOptions opt;
  opt.normalization = LossParameter_NormalizationMode_FULL;
  this->CheckAgainstReference(opt);
}

TYPED_TEST(TwoWayLossLayerTest, TestForwardBackwardManyColumnsTemperatures) {
  this->Fill(std::vector<int>{40, 150}, 3);  // three column blocks on the CPU
  TwoWayOptions opt;
  opt.tp = 0.5;
  opt.tn = 2.0;
  opt.normalization = LossParameter_NormalizationMode_BATCH_SIZE;
  this->CheckAgainstReference(opt);
}

TYPED_TEST(TwoWayLossLayerTest, TestForwardBackwardIgnoreNone) {
  typedef typename TypeParam::Dtype Dtype;
  Dtype* t = this->t_->mutable_cpu_data();
  t[12] = Dtype(255);
  t[17] = Dtype(255);
  this->x_->mutable_cpu_data()[12] = Dtype(NAN);  // ignored: no effect
  TwoWayOptions opt;
  opt.has_ignore_label = true;
  opt.ignore_label = 255;
  opt.normalization = LossParameter_NormalizationMode_NONE;
  this->CheckAgainstReference(opt);
  EXPECT_EQ(this->x_->cpu_diff()[12], Dtype(0));
  EXPECT_EQ(this->x_->cpu_diff()[17], Dtype(0));
}

TYPED_TEST(TwoWayLossLayerTest, TestGradient) { this->CheckGradient(TwoWayOptions()); }

TYPED_TEST(TwoWayLossLayerTest, TestGradientSpatialTemperatures) {
  this->Fill(std::vector<int>{3, 4, 5}, 2);
  TwoWayOptions opt;
  opt.tp = 2.0;
  opt.tn = 0.5;
  this->CheckGradient(opt);
}

TYPED_TEST(TwoWayLossLayerTest, TestBadInputThrows) {
  typedef typename TypeParam::Dtype Dtype;
  typedef TwoWayLossLayer<Dtype> Layer;
  for (double temperature : {0.0, -1.0, static_cast<double>(INFINITY)}) {
    TwoWayOptions opt;
    opt.tp = temperature;
    Layer layer(MakeParam(opt));
    EXPECT_THROW(layer.SetUp(this->bottom_, this->top_), xent::XentError);
    opt.tp = 4;
    opt.tn = temperature;
    Layer negative(MakeParam(opt));
    EXPECT_THROW(negative.SetUp(this->bottom_, this->top_), xent::XentError);
  }
  {  // ignore_label 0
    TwoWayOptions opt;
    opt.has_ignore_label = true;
    opt.ignore_label = 0;
    Layer layer(MakeParam(opt));
    EXPECT_THROW(layer.SetUp(this->bottom_, this->top_), xent::XentError);
  }
  {  // a soft target
    this->t_->mutable_cpu_data()[3] = Dtype(0.5);
    Layer layer(MakeParam(TwoWayOptions()));
    layer.SetUp(this->bottom_, this->top_);
    EXPECT_THROW(layer.Forward(this->bottom_, this->top_), xent::XentError);
  }
}

TYPED_TEST(TwoWayLossLayerTest, TestEmptyBlobsGiveZeroLoss) {
  typedef typename TypeParam::Dtype Dtype;
  const std::vector<std::vector<int>> shapes{{0, 3}, {2, 0}, {2, 3, 0}};
  for (const std::vector<int>& shape : shapes) {
    this->x_->Reshape(shape);
    this->t_->Reshape(shape);
    TwoWayLossLayer<Dtype> layer(MakeParam(TwoWayOptions()));
    layer.SetUp(this->bottom_, this->top_);
    layer.Forward(this->bottom_, this->top_);
    EXPECT_EQ(this->loss_->cpu_data()[0], Dtype(0));
    layer.Backward(this->top_, std::vector<bool>{true, false}, this->bottom_);
  }
}

}  // namespace caffe
