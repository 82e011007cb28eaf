#ifndef CAFFE_LAYERS_MULTI_LABEL_SOFTMAX_LOSS_SIMD_HPP_
#define CAFFE_LAYERS_MULTI_LABEL_SOFTMAX_LOSS_SIMD_HPP_

// CPU fast path of MultiLabelSoftmaxLoss for float scores, dispatched at run
// time to the widest vectors of the CPU (multi_label_softmax_loss_simd.cpp).
//
// Contiguous rows ((N, C) scores, inner = 1): the exps and their sums are
// vectorized; the target terms only for vectors holding a non-zero target,
// so multi-hot and sparse targets cost little.
//
// Spatial maps (inner > 1, a SIMD lane per row): rows are short (C = 21 for
// segmentation), so per-row scalar work (the target terms of a positive in
// nearly every row, FinishRow's log and division) would cost more than the
// exps; every row sum and the row's loss and coefficients are computed on
// vectors. Where every class weight is 1 and the targets are 0/1 (or
// ignore_label), as a segmentation map's, the target sums of a vector of rows
// are a count and a sum of the positives' scores (sum w t (m - x_c) =
// M m - sum x_c, in double); a vector of rows with any other target takes
// the general sums from its tile's local copy, and the run keeps to them.
//
// Every e^(x - m) has its argument exact (x - m is never rounded to float
// before the exp: see ShiftedExpVec), so it is within ~1.75 float ulps for
// any x - m; rows whose |max| reaches 32640, where that construction runs
// out of bits, take the scalar math.
//
// Which formula lives where. The row's loss and coefficients (RowIsValid,
// RowLoss: FinishRow's) and the gradient of a target element in double
// (ScaledGradient: ElementGradient's) are the templates of
// multi_label_softmax_loss_formulas-inl.h, the same the scalar math uses,
// here over vectors of doubles (a lane per row). Written again here, as
// vector code: the target sums (TargetSums, AccumulateTarget's terms with
// its target checks), and the float gradient of the contiguous rows and of
// spatial tiles without an ignored row, k e - (scale a w_c t_c + scale b)
// with per-row k = scale Q / S: the same value as ScaledGradient
// rearranged for float (about 2 ulp of Q p + q; the scalar ElementGradient
// rounds once, from double). Sums are in double as the scalar math's (a
// row's lane sums totalled in lane order: a fixed order, the same bits for
// any thread count). The last C % lanes elements of a contiguous row are
// one more vector, from padded copies. The scalar math stays the
// reference, used for double blobs, short spatial runs, non-finite scores
// and |max| >= 32640, and the tests hold both to the same float64 truth.

#include "caffe/layers/multi_label_softmax_loss_math.hpp"

namespace caffe {
namespace xent {
namespace multilabel {

/// Pass 1 of one contiguous float row x[0..C), t[0..C): the max and the row
/// sums, as AccumulateElement over the row. Returns false, having changed
/// nothing, when the row holds a non-finite score (the caller then takes the
/// scalar path, which gives the limits for +-inf and NaN for NaN) or its
/// |max| is 32640 or more. When exps != NULL (and it returns true) it also
/// stores each e^(x_c - m) there, for SimdRowGradient.
bool SimdRowSums(const float* x, const float* t, const double* w, const RowOptions& opt,
                 float* max, RowSums* sums, float* exps = NULL);

/// Pass 2 of one contiguous float row whose max is finite and which is not
/// ignored: dx_c = scale (Q p_c - q_c). exps: the row's e^(x_c - m) as
/// SimdRowSums stored them (may be dx itself), or NULL to take them again.
void SimdRowGradient(const float* x, const float* t, const double* w,
                     const RowCoefficients& coef, double scale, int classes, float* dx,
                     const float* exps = NULL);

/// Most rows of a spatial tile (SimdSpatialGradient: per call).
const int kSpatialTileRows = 1024;

/// Float lanes of the CPU's vectors for the spatial functions below, 0 where
/// they are not vectorized. A call's `count` is a multiple of it.
int SimdSpatialLanes();

/// Forward of `count` neighbouring rows of a spatial map (inner > 1; a
/// multiple of SimdSpatialLanes(), any length): class c of row j is at
/// x[c * inner + j]; they are rows first_row.. of the structure-of-arrays
/// coefficient buffer of `rows` rows. Writes each row's coefficients (as
/// FinishRow), *loss = the rows' losses added in row order, *valid = rows
/// not ignored, *invalid = invalid targets. Returns false when a score is
/// not finite or a row's |max| is 32640 or more; the caller's scalar loop
/// then redoes all `count` rows (the coefficients and dx of some may have
/// been written). dx, unless NULL: where the rows' gradient for `scale` goes
/// (laid out as x; the values SimdSpatialGradient gives), taken right after
/// each vector of rows' sums (only meaningful when it returns true).
bool SimdSpatialForward(const float* x, const float* t, const double* w, int64_t inner,
                        const RowOptions& opt, int count, int64_t first_row, int64_t rows,
                        double* coefficients, double* loss, double* valid, double* invalid,
                        double scale = 0.0, float* dx = NULL);

/// Pass 2 of `count` (at most kSpatialTileRows) neighbouring rows of a
/// spatial map, all their classes: rows first_row.. of the structure-of-arrays
/// coefficient buffer of `rows` rows. Returns false, having written nothing,
/// when a row's max is not finite (the caller's scalar loop gives the
/// limits) or its |max| is 32640 or more.
bool SimdSpatialGradient(const float* x, const float* t, const double* w, int64_t inner,
                         int classes, const double* coefficients, int64_t first_row,
                         int64_t rows, int count, double scale, float* dx);

}  // namespace multilabel
}  // namespace xent
}  // namespace caffe

#endif  // CAFFE_LAYERS_MULTI_LABEL_SOFTMAX_LOSS_SIMD_HPP_
