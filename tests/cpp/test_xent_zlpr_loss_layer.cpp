// Tests of ZLPRLossLayer: a naive double reference straight from the
// formula, the GradientChecker (with and without the row-loss top), rows
// without positives or negatives, ignored elements, huge and infinite
// scores, and bad input (an exception, never an abort).
#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"

#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/filler.hpp"
#include "caffe/layers/xent_common.hpp"
#include "caffe/layers/zlpr_loss_layer.hpp"

#include "caffe/test/test_caffe_main.hpp"
#include "caffe/test/test_gradient_check_util.hpp"

namespace caffe {

namespace {

struct ZlprOptions {
  int axis = 1;
  bool has_ignore_label = false;
  int ignore_label = -1;
  LossParameter_NormalizationMode normalization = LossParameter_NormalizationMode_VALID;
};

/// log(1 + sum_k e^(v_k)), naively in long double (exp of values up to
/// ~11000 stays finite there), so the reference shares no trick with the
/// layer's shifted sums.
long double Log1pSumExp(const std::vector<long double>& v) {
  long double sum = 1.0L;
  for (long double value : v) sum += std::exp(value);
  return std::log(sum);
}

/// Naive loss from the header's formula; fills d loss / d x and the row losses.
template <typename Dtype>
double ReferenceLoss(const Blob<Dtype>& x_blob, const Blob<Dtype>& t_blob,
                     const ZlprOptions& opt, std::vector<double>* grad,
                     std::vector<double>* row_losses = NULL) {
  const int axis = x_blob.CanonicalAxisIndex(opt.axis);
  const int outer = x_blob.count(0, axis), C = x_blob.shape(axis);
  const int inner = x_blob.count(axis + 1);
  const Dtype* x = x_blob.cpu_data();
  const Dtype* t = t_blob.cpu_data();
  grad->assign(x_blob.count(), 0.0);
  if (row_losses != NULL) row_losses->assign(outer * inner, 0.0);
  double total = 0.0, counted = 0.0;
  for (int o = 0; o < outer; ++o) {
    for (int i = 0; i < inner; ++i) {
      std::vector<long double> neg, pos;
      for (int c = 0; c < C; ++c) {
        const int k = (o * C + c) * inner + i;
        if (opt.has_ignore_label && t[k] == opt.ignore_label) continue;
        if (t[k] == 1) pos.push_back(-static_cast<long double>(x[k]));
        if (t[k] == 0) neg.push_back(static_cast<long double>(x[k]));
      }
      if (!neg.empty() || !pos.empty()) counted += 1;
      const long double row = Log1pSumExp(neg) + Log1pSumExp(pos);
      total += static_cast<double>(row);
      if (row_losses != NULL) (*row_losses)[o * inner + i] = static_cast<double>(row);
      const long double neg_sum = std::exp(Log1pSumExp(neg));
      const long double pos_sum = std::exp(Log1pSumExp(pos));
      for (int c = 0; c < C; ++c) {
        const int k = (o * C + c) * inner + i;
        if (opt.has_ignore_label && t[k] == opt.ignore_label) continue;
        const long double v = x[k];
        (*grad)[k] = t[k] == 1 ? static_cast<double>(-std::exp(-v) / pos_sum)
                               : static_cast<double>(std::exp(v) / neg_sum);
      }
    }
  }
  double normalizer = 1.0;
  switch (opt.normalization) {
    case LossParameter_NormalizationMode_FULL: normalizer = outer * inner; break;
    case LossParameter_NormalizationMode_VALID: normalizer = counted; break;
    case LossParameter_NormalizationMode_BATCH_SIZE: normalizer = x_blob.shape(0); break;
    case LossParameter_NormalizationMode_NONE: normalizer = 1.0; break;
  }
  normalizer = std::max(1.0, normalizer);
  for (double& g : *grad) g /= normalizer;
  return total / normalizer;
}

LayerParameter MakeParam(const ZlprOptions& opt) {
  LayerParameter param;
  param.set_type("ZLPRLoss");
  param.set_name("zlpr");
  param.mutable_zlpr_loss_param()->set_axis(opt.axis);
  if (opt.has_ignore_label) param.mutable_loss_param()->set_ignore_label(opt.ignore_label);
  param.mutable_loss_param()->set_normalization(opt.normalization);
  return param;
}

}  // namespace

template <typename TypeParam>
class ZLPRLossLayerTest : public MultiDeviceTest<TypeParam> {
  typedef typename TypeParam::Dtype Dtype;

 protected:
  ZLPRLossLayerTest()
      : x_(new Blob<Dtype>()), t_(new Blob<Dtype>()), loss_(new Blob<Dtype>()),
        rows_(new Blob<Dtype>()) {
    Fill(std::vector<int>{4, 5, 2, 3}, 1, 3);
  }

  /// Scores N(0, std^2); targets 0/1, about a third positive.
  void Fill(const std::vector<int>& shape, int axis, double std) {
    x_->Reshape(shape);
    t_->Reshape(shape);
    FillerParameter filler_param;
    filler_param.set_std(std);
    GaussianFiller<Dtype> filler(filler_param);
    filler.Fill(x_.get());
    Dtype* t = t_->mutable_cpu_data();
    for (int k = 0; k < t_->count(); ++k) t[k] = caffe_rng_rand() % 3 == 0 ? Dtype(1) : Dtype(0);
    axis_ = axis;
    bottom_ = {x_.get(), t_.get()};
    top_ = {loss_.get()};
  }

  /// Forward and backward (with the row top) against the reference.
  void CheckAgainstReference(ZlprOptions opt) {
    opt.axis = axis_;
    top_ = {loss_.get(), rows_.get()};
    ZLPRLossLayer<Dtype> layer(MakeParam(opt));
    layer.SetUp(bottom_, top_);
    layer.Forward(bottom_, top_);
    std::vector<double> grad, row_losses;
    const double expected = ReferenceLoss(*x_, *t_, opt, &grad, &row_losses);
    // float: the exps are double on float inputs, sums in double; one
    // rounding of the result (and of each row loss) to float.
    const double tolerance = sizeof(Dtype) == 4 ? 1e-6 : 1e-12;
    EXPECT_NEAR(loss_->cpu_data()[0], expected, tolerance * std::max(1.0, std::fabs(expected)));
    ASSERT_EQ(rows_->count(), static_cast<int>(row_losses.size()));
    for (int r = 0; r < rows_->count(); ++r) {
      EXPECT_NEAR(rows_->cpu_data()[r], row_losses[r], tolerance * std::max(1.0, row_losses[r]));
    }
    // The row top carries loss weight 0: its diff (0) adds nothing.
    layer.Backward(top_, std::vector<bool>{true, false}, bottom_);
    const Dtype* dx = x_->cpu_diff();
    for (int k = 0; k < x_->count(); ++k) {
      EXPECT_NEAR(dx[k], grad[k], tolerance * std::max(1e-3, std::fabs(grad[k])))
          << "element " << k;
    }
  }

  void CheckGradient(ZlprOptions opt, bool row_top) {
    opt.axis = axis_;
    LayerParameter param = MakeParam(opt);
    param.add_loss_weight(3);
    if (row_top) {
      param.add_loss_weight(0.5);
      top_ = {loss_.get(), rows_.get()};
    }
    ZLPRLossLayer<Dtype> layer(param);
    GradientChecker<Dtype> checker(1e-2, 1e-2, 1701);
    checker.CheckGradientExhaustive(&layer, bottom_, top_, 0);
  }

  std::unique_ptr<Blob<Dtype>> x_, t_, loss_, rows_;
  int axis_;
  vector<Blob<Dtype>*> bottom_, top_;
};

TYPED_TEST_CASE(ZLPRLossLayerTest, TestDtypesAndDevices);

TYPED_TEST(ZLPRLossLayerTest, TestForwardBackwardSpatial) {
  this->CheckAgainstReference(ZlprOptions());
}

TYPED_TEST(ZLPRLossLayerTest, TestForwardBackwardRowsFull) {
  this->Fill(std::vector<int>{7, 13}, 1, 4);
  ZlprOptions opt;
  opt.normalization = LossParameter_NormalizationMode_FULL;
  this->CheckAgainstReference(opt);
}

TYPED_TEST(ZLPRLossLayerTest, TestForwardBackwardLastAxisBatchSize) {
  this->Fill(std::vector<int>{3, 2, 7}, -1, 2);
  ZlprOptions opt;
  opt.normalization = LossParameter_NormalizationMode_BATCH_SIZE;
  this->CheckAgainstReference(opt);
}

TYPED_TEST(ZLPRLossLayerTest, TestForwardBackwardLongRowsNone) {
  // Long rows: a block per row on the GPU.
  this->Fill(std::vector<int>{3, 3000}, 1, 3);
  ZlprOptions opt;
  opt.normalization = LossParameter_NormalizationMode_NONE;
  this->CheckAgainstReference(opt);
}

TYPED_TEST(ZLPRLossLayerTest, TestForwardBackwardWideSpatial) {
  // inner >= 32: a thread per row on the GPU, tiles of 64 rows (and a
  // partial one) on the CPU.
  this->Fill(std::vector<int>{2, 6, 10, 9}, 1, 3);
  this->CheckAgainstReference(ZlprOptions());
}

TYPED_TEST(ZLPRLossLayerTest, TestRowsWithoutPositivesOrNegatives) {
  typedef typename TypeParam::Dtype Dtype;
  this->Fill(std::vector<int>{4, 6}, 1, 3);
  Dtype* t = this->t_->mutable_cpu_data();
  for (int c = 0; c < 6; ++c) {
    t[0 * 6 + c] = Dtype(0);  // row 0: no positive
    t[1 * 6 + c] = Dtype(1);  // row 1: no negative
  }
  this->CheckAgainstReference(ZlprOptions());
  // Exactly one side each: row 0 is log(1 + sum e^x), row 1 log(1 + sum e^-x).
  const Dtype* x = this->x_->cpu_data();
  double neg = 1.0, pos = 1.0;
  for (int c = 0; c < 6; ++c) {
    neg += std::exp(static_cast<double>(x[c]));
    pos += std::exp(-static_cast<double>(x[6 + c]));
  }
  const double tolerance = sizeof(Dtype) == 4 ? 1e-6 : 1e-13;
  EXPECT_NEAR(this->rows_->cpu_data()[0], std::log(neg), tolerance * std::log(neg));
  EXPECT_NEAR(this->rows_->cpu_data()[1], std::log(pos), tolerance * std::log(pos));
}

TYPED_TEST(ZLPRLossLayerTest, TestIgnoredElementsAndRows) {
  typedef typename TypeParam::Dtype Dtype;
  this->Fill(std::vector<int>{4, 6}, 1, 3);
  Dtype* t = this->t_->mutable_cpu_data();
  for (int c = 0; c < 6; ++c) t[2 * 6 + c] = Dtype(255);  // row 2: all ignored
  t[0 * 6 + 1] = Dtype(255);
  t[3 * 6 + 4] = Dtype(255);
  this->x_->mutable_cpu_data()[2 * 6 + 3] = Dtype(NAN);  // NaN where ignored
  this->x_->mutable_cpu_data()[0 * 6 + 1] = Dtype(NAN);
  ZlprOptions opt;
  opt.has_ignore_label = true;
  opt.ignore_label = 255;
  this->CheckAgainstReference(opt);
  const Dtype* dx = this->x_->cpu_diff();
  for (int c = 0; c < 6; ++c) EXPECT_EQ(dx[2 * 6 + c], Dtype(0));
  EXPECT_EQ(dx[0 * 6 + 1], Dtype(0));
  EXPECT_EQ(dx[3 * 6 + 4], Dtype(0));
  EXPECT_EQ(this->rows_->cpu_data()[2], Dtype(0));
  // VALID counts the 3 rows with an element left: NONE gives 3 times VALID.
  const Dtype valid = this->loss_->cpu_data()[0];
  opt.normalization = LossParameter_NormalizationMode_NONE;
  ZLPRLossLayer<Dtype> none_layer(MakeParam(opt));
  none_layer.SetUp(this->bottom_, this->top_);
  none_layer.Forward(this->bottom_, this->top_);
  EXPECT_NEAR(this->loss_->cpu_data()[0], 3 * valid, 3e-6 * valid);
}

TYPED_TEST(ZLPRLossLayerTest, TestGradient) {
  this->CheckGradient(ZlprOptions(), false);
}

TYPED_TEST(ZLPRLossLayerTest, TestGradientWithRowTop) {
  this->Fill(std::vector<int>{3, 2, 5}, 2, 2);
  this->CheckGradient(ZlprOptions(), true);
}

TYPED_TEST(ZLPRLossLayerTest, TestGradientIgnoreLabelFull) {
  typedef typename TypeParam::Dtype Dtype;
  this->t_->mutable_cpu_data()[0] = Dtype(-1);
  this->t_->mutable_cpu_data()[7] = Dtype(-1);
  ZlprOptions opt;
  opt.has_ignore_label = true;
  opt.ignore_label = -1;
  opt.normalization = LossParameter_NormalizationMode_FULL;
  this->CheckGradient(opt, false);
}

TYPED_TEST(ZLPRLossLayerTest, TestHugeAndInfiniteScores) {
  typedef typename TypeParam::Dtype Dtype;
  const Dtype inf = std::numeric_limits<Dtype>::infinity();
  this->Fill(std::vector<int>{4, 3}, 1, 1);
  Dtype* x = this->x_->mutable_cpu_data();
  Dtype* t = this->t_->mutable_cpu_data();
  // Row 0: a positive at +1e30 and a negative at -1e30: loss 0 to float
  // and double precision (e^-1e30), gradient 0.
  x[0] = Dtype(1e30), t[0] = 1, x[1] = Dtype(-1e30), t[1] = 0, x[2] = Dtype(-2e30), t[2] = 0;
  // Row 1: infinities on the right side: the limit, loss 0, gradient 0.
  x[3] = inf, t[3] = 1, x[4] = -inf, t[4] = 0, x[5] = -inf, t[5] = 0;
  // Row 2: a huge negative: loss ~ 1e4 (finite), gradient 1 there.
  x[6] = Dtype(1e4), t[6] = 0, x[7] = Dtype(2), t[7] = 1, x[8] = Dtype(-3), t[8] = 0;
  // Row 3: an ordinary row.
  x[9] = Dtype(0.5), t[9] = 1, x[10] = Dtype(-0.5), t[10] = 0, x[11] = Dtype(0.25), t[11] = 0;
  this->top_ = {this->loss_.get(), this->rows_.get()};
  ZLPRLossLayer<Dtype> layer(MakeParam(ZlprOptions()));
  layer.SetUp(this->bottom_, this->top_);
  layer.Forward(this->bottom_, this->top_);
  layer.Backward(this->top_, std::vector<bool>{true, false}, this->bottom_);
  const Dtype* rows = this->rows_->cpu_data();
  const Dtype* dx = this->x_->cpu_diff();
  EXPECT_EQ(rows[0], Dtype(0));
  EXPECT_EQ(rows[1], Dtype(0));
  const double row2 = 1e4 + std::log1p(std::exp(-1e4) + std::exp(-3.0 - 1e4)) +
                      std::log1p(std::exp(-2.0));
  EXPECT_NEAR(rows[2], row2, 1e-6 * row2);
  for (int k = 0; k < 6; ++k) EXPECT_EQ(dx[k], Dtype(0)) << "element " << k;
  EXPECT_NEAR(dx[6], 1.0 / 4, 1e-7);  // 1 / 4 rows (VALID)
  for (int k = 0; k < 12; ++k) EXPECT_TRUE(std::isfinite(static_cast<double>(dx[k])));
  EXPECT_TRUE(std::isfinite(static_cast<double>(this->loss_->cpu_data()[0])));
  // Infinities on the wrong side: the loss is +inf, its limit; no NaN.
  x[3] = -inf;
  layer.Forward(this->bottom_, this->top_);
  layer.Backward(this->top_, std::vector<bool>{true, false}, this->bottom_);
  EXPECT_EQ(this->loss_->cpu_data()[0], inf);
  EXPECT_FALSE(std::isnan(static_cast<double>(dx[3])));
  EXPECT_NEAR(dx[3], -1.0 / 4, 1e-7);
}

TYPED_TEST(ZLPRLossLayerTest, TestBadInputThrows) {
  typedef typename TypeParam::Dtype Dtype;
  typedef ZLPRLossLayer<Dtype> Layer;
  {  // shape mismatch
    Blob<Dtype> t(std::vector<int>{4, 5, 2, 2});
    vector<Blob<Dtype>*> bottom{this->x_.get(), &t};
    Layer layer(MakeParam(ZlprOptions()));
    EXPECT_THROW(layer.SetUp(bottom, this->top_), xent::XentError);
  }
  {  // three tops
    Blob<Dtype> a, b;
    vector<Blob<Dtype>*> top{this->loss_.get(), &a, &b};
    Layer layer(MakeParam(ZlprOptions()));
    EXPECT_THROW(layer.SetUp(this->bottom_, top), xent::XentError);
  }
  {  // axis out of range
    ZlprOptions opt;
    opt.axis = 4;
    Layer layer(MakeParam(opt));
    EXPECT_THROW(layer.SetUp(this->bottom_, this->top_), xent::XentError);
  }
  for (int label : {0, 1}) {  // ignore_label on a target of the two sets
    ZlprOptions opt;
    opt.has_ignore_label = true;
    opt.ignore_label = label;
    Layer layer(MakeParam(opt));
    EXPECT_THROW(layer.SetUp(this->bottom_, this->top_), xent::XentError);
  }
  {  // propagate_down to the targets
    Layer layer(MakeParam(ZlprOptions()));
    layer.SetUp(this->bottom_, this->top_);
    layer.Forward(this->bottom_, this->top_);
    EXPECT_THROW(layer.Backward(this->top_, std::vector<bool>{true, true}, this->bottom_),
                 xent::XentError);
  }
}

TYPED_TEST(ZLPRLossLayerTest, TestTargetsOtherThan01ThrowNamingTheFirst) {
  typedef typename TypeParam::Dtype Dtype;
  const Dtype bad[] = {Dtype(0.5), Dtype(2), Dtype(-1), std::numeric_limits<Dtype>::quiet_NaN(),
                       std::numeric_limits<Dtype>::infinity()};
  for (Dtype value : bad) {
    this->Fill(std::vector<int>{2, 5, 16}, 1, 1);
    this->t_->mutable_cpu_data()[7] = value;
    this->t_->mutable_cpu_data()[9] = value;
    ZLPRLossLayer<Dtype> layer(MakeParam(ZlprOptions()));
    layer.SetUp(this->bottom_, this->top_);
    try {
      layer.Forward(this->bottom_, this->top_);
      ADD_FAILURE() << "target " << value << " was accepted";
    } catch (const xent::XentError& e) {
      const std::string message = e.what();
      EXPECT_NE(message.find("bottom[1] (targets) has 2 values that are not 0 or 1"),
                std::string::npos) << message;
      EXPECT_NE(message.find("at flat index 7"), std::string::npos) << message;
    }
  }
}

TYPED_TEST(ZLPRLossLayerTest, TestEmptyBlobsGiveZeroLoss) {
  typedef typename TypeParam::Dtype Dtype;
  const std::vector<std::vector<int>> shapes{{0, 3}, {2, 3, 0}, {2, 0}, {2, 0, 3}};
  const LossParameter_NormalizationMode modes[] = {
      LossParameter_NormalizationMode_VALID, LossParameter_NormalizationMode_BATCH_SIZE,
      LossParameter_NormalizationMode_FULL, LossParameter_NormalizationMode_NONE};
  for (const std::vector<int>& shape : shapes) {
    for (LossParameter_NormalizationMode mode : modes) {
      this->x_->Reshape(shape);
      this->t_->Reshape(shape);
      ZlprOptions opt;
      opt.normalization = mode;
      ZLPRLossLayer<Dtype> layer(MakeParam(opt));
      vector<Blob<Dtype>*> top{this->loss_.get(), this->rows_.get()};
      layer.SetUp(this->bottom_, top);
      layer.Forward(this->bottom_, top);
      EXPECT_EQ(this->loss_->cpu_data()[0], Dtype(0));
      for (int r = 0; r < this->rows_->count(); ++r) EXPECT_EQ(this->rows_->cpu_data()[r], Dtype(0));
      layer.Backward(top, std::vector<bool>{true, false}, this->bottom_);
      EXPECT_EQ(this->x_->count(), 0);
    }
  }
}

TYPED_TEST(ZLPRLossLayerTest, TestTooManyRowsThrowBeforeAllocating) {
  typedef typename TypeParam::Dtype Dtype;
  // 4 doubles per row must fit one Blob (INT_MAX values): 536870912 rows do
  // not. Reshape allocates nothing, so this costs no memory.
  this->x_->Reshape(std::vector<int>{536870912, 1});
  this->t_->Reshape(std::vector<int>{536870912, 1});
  ZLPRLossLayer<Dtype> layer(MakeParam(ZlprOptions()));
  EXPECT_THROW(layer.SetUp(this->bottom_, this->top_), xent::XentError);
}

}  // namespace caffe
