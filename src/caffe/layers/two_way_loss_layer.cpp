#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <sstream>
#include <vector>

#include "caffe/layers/two_way_loss_layer.hpp"
#include "caffe/layers/two_way_loss_math.hpp"
#include "caffe/layers/xent_common.hpp"
#include "caffe/layers/xent_hard_targets.hpp"
#include "caffe/util/xent_reduce.hpp"

#include "two_way_loss_simd.hpp"

namespace caffe {

namespace xent {
namespace twoway {
namespace {

/// Lines handled together: the rows of a spatial tile (neighbouring inner
/// positions), or a block of columns; their shifts and sums stay in L1 while
/// the loops read the blob in memory order.
const int kTile = kColumnBlock;

// The SIMD passes where they apply (float, (N, C) scores; see
// two_way_loss_simd.hpp); false (0 lanes) where the caller must take the
// scalar loop.
inline bool RowPassSimd(const float* x, const float* t, const Options& o, Shifts* m,
                        LineSums* s) {
  return SimdRowPass(x, t, o, m, s);
}
inline bool RowPassSimd(const double*, const double*, const Options&, Shifts*, LineSums*) {
  return false;
}
inline int ColumnLanes(const float*) { return SimdColumnLanes(); }
inline int ColumnLanes(const double*) { return 0; }
inline bool ColumnPassSimd(const float* x, const float* t, int64_t rows, const Options& o,
                           int first, int count, Shifts* m, LineSums* s) {
  return SimdColumnPass(x, t, rows, o, first, count, m, s);
}
inline bool ColumnPassSimd(const double*, const double*, int64_t, const Options&, int, int,
                           Shifts*, LineSums*) {
  return false;
}
inline bool RowAndColumnsSimd(const float* x, const float* t, const Options& o, Shifts* m,
                              LineSums* s, ColumnRun* run) {
  return SimdRowAndColumns(x, t, o, m, s, run);
}
inline bool RowAndColumnsSimd(const double*, const double*, const Options&, Shifts*, LineSums*,
                              ColumnRun*) {
  return false;
}
inline bool RowGradientSharedSimd(const float* x, const float* t, const Options& o,
                                  const LineCoefficients& row, const Shifts& column_shift,
                                  const double* column_shares, double row_scale, float* dx) {
  return SimdRowGradientShared(x, t, o, row, column_shift, column_shares, row_scale, dx);
}
inline bool RowGradientSharedSimd(const double*, const double*, const Options&,
                                  const LineCoefficients&, const Shifts&, const double*, double,
                                  double*) {
  return false;
}
inline bool TileAndColumnsSimd(const float* x, const float* t, int64_t inner, int n,
                               const Options& o, Shifts* m, LineSums* s, TileRun* run) {
  return SimdTileAndColumns(x, t, inner, n, o, m, s, run);
}
inline bool TileAndColumnsSimd(const double*, const double*, int64_t, int, const Options&,
                               Shifts*, LineSums*, TileRun*) {
  return false;
}
inline bool TileGradientSharedSimd(const float* x, const float* t, int64_t inner, int n,
                                   const Options& o, const double* rows_coefficients,
                                   int64_t rows, const Shifts& shift, const double* shares,
                                   double row_scale, float* dx) {
  return SimdTileGradientShared(x, t, inner, n, o, rows_coefficients, rows, shift, shares,
                                row_scale, dx);
}
inline bool TileGradientSharedSimd(const double*, const double*, int64_t, int, const Options&,
                                   const double*, int64_t, const Shifts&, const double*, double,
                                   double*) {
  return false;
}
inline bool RowGradientSimd(const float* x, const float* t, const Options& o,
                            const LineCoefficients& row, const double* columns,
                            double row_scale, double column_scale, float* dx) {
  return SimdRowGradient(x, t, o, row, columns, row_scale, column_scale, dx);
}
inline bool RowGradientSimd(const double*, const double*, const Options&,
                            const LineCoefficients&, const double*, double, double, double*) {
  return false;
}

/// Whether a line's exps are safe on vectors: weight 0 (no share) or both
/// shifts finite (no inf - inf).
inline bool VectorSafe(const LineCoefficients& c) {
  return c.weight == 0.0 || (std::isfinite(c.neg_shift) && std::isfinite(c.pos_shift));
}

/// Sweeps 1 and 2 of one contiguous row, on vectors where they apply.
template <typename Dtype>
void OneRow(const Dtype* xr, const Dtype* tr, const Options& o, Shifts* m, LineSums* s) {
  if (RowPassSimd(xr, tr, o, m, s)) return;
  for (int c = 0; c < o.targets.classes; ++c) AccumulateShift(xr[c], tr[c], o, m);
  for (int c = 0; c < o.targets.classes; ++c) AccumulateElement(*m, xr[c], tr[c], o, s);
}

/// Sweeps 1 and 2 of n neighbouring rows of a spatial map (row j's class c
/// at offset + c * inner + j), scalar.
template <typename Dtype>
void ScalarTile(const Dtype* x, const Dtype* t, int64_t offset, int n, int inner,
                const Options& o, Shifts* m, LineSums* s) {
  const int C = o.targets.classes;
  for (int c = 0; c < C; ++c) {
    for (int j = 0; j < n; ++j) {
      const int64_t e = offset + static_cast<int64_t>(c) * inner + j;
      AccumulateShift(x[e], t[e], o, &m[j]);
    }
  }
  for (int c = 0; c < C; ++c) {
    for (int j = 0; j < n; ++j) {
      const int64_t e = offset + static_cast<int64_t>(c) * inner + j;
      AccumulateElement(m[j], x[e], t[e], o, &s[j]);
    }
  }
}

/// The sample-wise pass over rows [begin, end): for each tile of
/// neighbouring rows (one row where inner = 1), the shifts, then the sums,
/// then FinishLine. Row r is at (outer o, inner i) = (r / inner, r % inner);
/// its C elements are `inner` apart.
template <typename Dtype>
LossSums RowPass(const Dtype* x, const Dtype* t, int64_t begin, int64_t end, int64_t rows,
                 int inner, const Options& o, double* coefficients) {
  const int C = o.targets.classes;
  LossSums range;
  Shifts shifts[kTile];
  LineSums sums[kTile];
  if (inner == 1) {  // contiguous rows
    for (int64_t r = begin; r < end; ++r) {
      Shifts m = EmptyShifts();
      LineSums s = ZeroSums();
      OneRow(x + r * C, t + r * C, o, &m, &s);
      StoreLine(m, s, o, r, rows, coefficients, &range.loss, &range.counted, &range.bad_targets);
    }
    return range;
  }
  for (int64_t r = begin; r < end;) {
    const int64_t i = r % inner;
    const int n = static_cast<int>(std::min<int64_t>(kTile, std::min(end - r, inner - i)));
    const int64_t offset = (r / inner) * C * inner + i;
    for (int j = 0; j < n; ++j) {
      shifts[j] = EmptyShifts();
      sums[j] = ZeroSums();
    }
    ScalarTile(x, t, offset, n, inner, o, shifts, sums);
    for (int j = 0; j < n; ++j) {
      StoreLine(shifts[j], sums[j], o, r + j, rows, coefficients, &range.loss, &range.counted,
                &range.bad_targets);
    }
    r += n;
  }
  return range;
}

/// The class-wise pass over the columns of block k (kTile columns): every
/// row in order, for each column of the block, so that each column's sums
/// are added in row order on one thread. Bad targets are counted by the row
/// pass only.
template <typename Dtype>
LossSums ColumnPass(const Dtype* x, const Dtype* t, int64_t k, int64_t outer, int inner,
                    const Options& o, double* coefficients) {
  const int C = o.targets.classes;
  const int first = static_cast<int>(k * kTile);
  const int n = std::min(kTile, C - first);
  Shifts shifts[kTile];
  LineSums sums[kTile];
  for (int j = 0; j < n; ++j) {
    shifts[j] = EmptyShifts();
    sums[j] = ZeroSums();
  }
  // (N, C) float scores: the block's whole vectors of columns at once, then
  // the rest.
  const int lanes = inner == 1 ? ColumnLanes(x) : 0;
  const int vector_columns = lanes > 0 ? n - n % lanes : 0;
  const int done = vector_columns > 0 && ColumnPassSimd(x, t, outer, o, first, vector_columns,
                                                         shifts, sums) ? vector_columns : 0;
  for (int64_t q = 0; q < outer; ++q) {
    for (int j = done; j < n; ++j) {
      const int64_t offset = (q * C + first + j) * inner;
      for (int i = 0; i < inner; ++i) AccumulateShift(x[offset + i], t[offset + i], o, &shifts[j]);
    }
  }
  for (int64_t q = 0; q < outer; ++q) {
    for (int j = done; j < n; ++j) {
      const int64_t offset = (q * C + first + j) * inner;
      for (int i = 0; i < inner; ++i) {
        AccumulateElement(shifts[j], x[offset + i], t[offset + i], o, &sums[j]);
      }
    }
  }
  LossSums block;
  double unused_invalid = 0.0;
  for (int j = 0; j < n; ++j) {
    StoreLine(shifts[j], sums[j], o, first + j, C, coefficients, &block.loss, &block.counted,
              &unused_invalid);
  }
  return block;
}

/// Blocks of rows of the fused pass (FusedRows): at most kFusedBlocks;
/// of kFusedElements elements or more where that leaves at least
/// kFusedMinBlocks blocks (each block keeps, zeroes and finally reads 24
/// bytes per class: few rows per block would cost more than they share);
/// never below kReduceChunk elements (a small blob is one block, on the
/// calling thread, as ChunkedSums runs one chunk).
const int64_t kFusedBlocks = 16;
const int64_t kFusedMinBlocks = 4;
const int64_t kFusedElements = int64_t(1) << 18;

/// (Spatial maps: a multiple of kTileLanes, so that tiles of rows stay whole.)
inline int64_t FusedBlockRows(int64_t rows, int C, int inner) {
  const int64_t wide = std::min((kFusedElements + C - 1) / C,
                                (rows + kFusedMinBlocks - 1) / kFusedMinBlocks);
  const int64_t block = std::max({(rows + kFusedBlocks - 1) / kFusedBlocks, wide,
                                  (kReduceChunk + C - 1) / C});
  return inner == 1 ? block : (block + kTileLanes - 1) / kTileLanes * kTileLanes;
}

/// Whether the scores take the fused pass: float scores with a vector
/// path, rows below 2^24 (exact float counts per column).
template <typename Dtype>
bool Fused(const Dtype* x, int64_t rows) {
  return ColumnLanes(x) > 0 && rows < (int64_t(1) << 24);
}

/// Doubles and floats of the layer's buffers per block of the fused pass.
inline int64_t BlockDoubles(int C, int inner) {
  return 2 * static_cast<int64_t>(C) * (inner == 1 ? 1 : 1 + kTileLanes) +
         (inner == 1 ? 0 : 2 * kTileLanes);
}
inline int64_t BlockFloats(int C, int inner) {
  return 2 * static_cast<int64_t>(C) * (inner == 1 ? 1 : 1 + kTileLanes);
}

/// The class-wise sums of one block of rows in the fused pass, in the
/// layer's buffers: 2C doubles (the negatives' sums, then the positives')
/// and 2C floats (their counts); on a spatial map, the same lane by lane
/// while the block's tiles are swept, and the lanes' shifts.
struct ColumnBlock {
  ColumnRun run;  ///< the sums, the counts and their running shifts
  TileRun tile;   ///< spatial maps: the per-lane sums, counts and shifts
  bool complete;  ///< every row of the block added

  ColumnBlock(double* sums, float* counts, int C, int inner) : complete(true) {
    run.neg_shift = run.pos_shift = -INFINITY;
    run.neg_sum = sums;
    run.pos_sum = sums + C;
    run.negatives = counts;
    run.positives = counts + C;
    tile.sums = inner == 1 ? nullptr : sums + 2 * C;
    tile.counts = inner == 1 ? nullptr : counts + 2 * C;
    tile.shifts = inner == 1 ? nullptr : sums + 2 * C * (1 + kTileLanes);
  }
};

/// A spatial block's per-lane sums added into its ColumnRun: each lane's
/// scaled to the largest lane shift of its side, lanes in order.
inline void FinishTiles(int C, ColumnBlock* block) {
  const TileRun& tile = block->tile;
  ColumnRun& run = block->run;
  double* shift[2] = {&run.neg_shift, &run.pos_shift};
  double* sums[2] = {run.neg_sum, run.pos_sum};
  float* counts[2] = {run.negatives, run.positives};
  for (int side = 0; side < 2; ++side) {
    const double* lane_shift = tile.shifts + side * kTileLanes;
    double top = -INFINITY;
    for (int l = 0; l < kTileLanes; ++l) top = std::max(top, lane_shift[l]);
    double factor[kTileLanes];
    for (int l = 0; l < kTileLanes; ++l) {
      factor[l] = ShiftFactor(lane_shift[l], top);
    }
    *shift[side] = top;
    const int64_t base = static_cast<int64_t>(side) * C * kTileLanes;
    for (int c = 0; c < C; ++c) {
      double total = 0.0;
      float count = 0.0f;
      for (int l = 0; l < kTileLanes; ++l) {
        total += tile.sums[base + c * kTileLanes + l] * factor[l];
        count += tile.counts[base + c * kTileLanes + l];
      }
      sums[side][c] = total;
      counts[side][c] = count;
    }
  }
}

/// Both terms over the rows [begin, end), in order: each row's line (as
/// RowPass) and its elements into the block's column sums
/// (SimdRowAndColumns; on a spatial map, SimdTileAndColumns a tile of
/// neighbouring rows at a time, then FinishTiles). A row the vectors cannot
/// take (a kept score that is not finite) leaves the block incomplete: the
/// class-wise term is then taken by ColumnPass.
template <typename Dtype>
LossSums FusedRows(const Dtype* x, const Dtype* t, int64_t begin, int64_t end, int64_t rows,
                   int inner, const Options& o, double* coefficients, ColumnBlock* block) {
  const int C = o.targets.classes;
  ColumnRun& run = block->run;
  std::fill(run.neg_sum, run.neg_sum + 2 * static_cast<int64_t>(C), 0.0);
  std::fill(run.negatives, run.negatives + 2 * static_cast<int64_t>(C), 0.0f);
  LossSums range;
  if (inner > 1) {  // tiles of neighbouring rows, a lane each
    TileRun& tile = block->tile;
    std::fill(tile.sums, tile.sums + 2 * static_cast<int64_t>(C) * kTileLanes, 0.0);
    std::fill(tile.counts, tile.counts + 2 * static_cast<int64_t>(C) * kTileLanes, 0.0f);
    std::fill(tile.shifts, tile.shifts + 2 * kTileLanes, -INFINITY);
    const int lanes = std::min(ColumnLanes(x), kTileLanes);
    Shifts m[kTileLanes];
    LineSums s[kTileLanes];
    for (int64_t r = begin; r < end;) {
      const int64_t i = r % inner;
      const int n = static_cast<int>(std::min<int64_t>(lanes, std::min(end - r, inner - i)));
      const int64_t offset = (r / inner) * C * inner + i;
      for (int j = 0; j < n; ++j) {
        m[j] = EmptyShifts();
        s[j] = ZeroSums();
      }
      if (!block->complete ||
          !TileAndColumnsSimd(x + offset, t + offset, inner, n, o, m, s, &tile)) {
        block->complete = false;
        ScalarTile(x, t, offset, n, inner, o, m, s);
      }
      for (int j = 0; j < n; ++j) {
        StoreLine(m[j], s[j], o, r + j, rows, coefficients, &range.loss, &range.counted,
                  &range.bad_targets);
      }
      r += n;
    }
    if (block->complete) FinishTiles(C, block);
    return range;
  }
  for (int64_t r = begin; r < end; ++r) {
    Shifts m = EmptyShifts();
    LineSums s = ZeroSums();
    const Dtype* xr = x + r * C;
    const Dtype* tr = t + r * C;
    if (!block->complete || !RowAndColumnsSimd(xr, tr, o, &m, &s, &run)) {
      block->complete = false;
      OneRow(xr, tr, o, &m, &s);
    }
    StoreLine(m, s, o, r, rows, coefficients, &range.loss, &range.counted, &range.bad_targets);
  }
  return range;
}

/// The least shared-shift sum a side of a column may have to keep it: a
/// column whose sum of e^(v - shift) reaches e^-500 has its own largest
/// value within 500 + ln(rows) of the shift, so every term above 2^-53 of
/// its own sum was a normal double (above e^-708) all along; below it, the
/// column's sums are taken again with its own shifts.
const double kLeastSharedSum = 7.1245764067412855e-218;  // e^-500

/// The class-wise lines of block k (kTile columns) from the fused pass:
/// the blocks' sums in block order, each scaled to the shared shifts
/// `shift` (factors[2 b], factors[2 b + 1]: e^(block shift - shift) of the
/// negatives and the positives), then FinishLine; a column whose side sum
/// falls below kLeastSharedSum is swept again alone (rows in order).
template <typename Dtype>
LossSums MergeColumns(const Dtype* x, const Dtype* t, int64_t k, int64_t rows, int inner,
                      const std::vector<ColumnBlock>& blocks, const Shifts& shift,
                      const std::vector<double>& factors, const Options& o,
                      double* coefficients) {
  const int C = o.targets.classes;
  const int first = static_cast<int>(k * kTile);
  const int n = std::min(kTile, C - first);
  LineSums sums[kTile];
  for (int j = 0; j < n; ++j) sums[j] = ZeroSums();
  for (size_t b = 0; b < blocks.size(); ++b) {
    const double* s = blocks[b].run.neg_sum + first;
    const float* c = blocks[b].run.negatives + first;
    for (int j = 0; j < n; ++j) {
      sums[j].neg_sum += s[j] * factors[2 * b];
      sums[j].pos_sum += s[C + j] * factors[2 * b + 1];
      sums[j].negatives += c[j];
      sums[j].positives += c[C + j];
    }
  }
  LossSums block;
  double unused_invalid = 0.0;
  for (int j = 0; j < n; ++j) {
    Shifts m = shift;
    LineSums& s = sums[j];
    if ((s.negatives > 0.0 && !(s.neg_sum >= kLeastSharedSum)) ||
        (s.positives > 0.0 && !(s.pos_sum >= kLeastSharedSum))) {
      m = EmptyShifts();
      s = ZeroSums();
      const int64_t c = first + j;
      // Row r's element of class c.
      auto at = [&](int64_t r) { return ((r / inner) * C + c) * inner + r % inner; };
      for (int64_t r = 0; r < rows; ++r) AccumulateShift(x[at(r)], t[at(r)], o, &m);
      for (int64_t r = 0; r < rows; ++r) AccumulateElement(m, x[at(r)], t[at(r)], o, &s);
    }
    StoreLine(m, s, o, first + j, C, coefficients, &block.loss, &block.counted, &unused_invalid);
  }
  return block;
}

/// The shifts every column of non-zero weight shares (+inf where none has a
/// weight), and each column's share B_c = column_scale sigma(a_c) / S_c of
/// each side (shares[c] negatives, shares[C + c] minus the positives'), for
/// SimdRowGradientShared. False where the columns do not share finite
/// shifts.
inline bool SharedColumnShares(const double* column_coefficients, int C, double column_scale,
                               Shifts* shift, std::vector<double>* shares) {
  shift->neg = shift->pos = INFINITY;
  shares->assign(2 * static_cast<size_t>(C), 0.0);
  bool any = false;
  for (int c = 0; c < C; ++c) {
    const LineCoefficients column = LoadCoefficients(column_coefficients, c, C);
    if (column.weight == 0.0) continue;
    if (!any) {
      shift->neg = column.neg_shift;
      shift->pos = column.pos_shift;
      if (!std::isfinite(shift->neg) || !std::isfinite(shift->pos)) return false;
      any = true;
    }
    if (column.neg_shift != shift->neg || column.pos_shift != shift->pos) return false;
    const double w = column_scale * column.weight;
    (*shares)[c] = w * column.neg_inv_sum;
    (*shares)[C + c] = -(w * column.pos_inv_sum);
  }
  return true;
}

/// Whether a row's side shift suits SimdRowGradientShared: -inf (an empty
/// side) or finite and at most the columns' shared shift.
inline bool BelowShared(double row_shift, double shared) {
  return row_shift == -INFINITY || (std::isfinite(row_shift) && row_shift <= shared);
}

/// Backward: outer slices in parallel, each plane by plane (contiguous).
template <typename Dtype>
void Gradient(const Dtype* x, const Dtype* t, const double* row_coefficients,
              const double* column_coefficients, int64_t outer, int inner, const Options& o,
              double row_scale, double column_scale, Dtype* dx) {
  const int C = o.targets.classes;
  const int64_t rows = outer * inner;
  bool columns_safe = inner == 1;
  for (int c = 0; c < C && columns_safe; ++c) {
    columns_safe = VectorSafe(LoadCoefficients(column_coefficients, c, C));
  }
  // One exp per element where the columns share their shifts (the fused
  // forward pass's), else one for each share.
  Shifts shared;
  std::vector<double> shares;
  const bool columns_shared = ColumnLanes(x) > 0 &&
      SharedColumnShares(column_coefficients, C, column_scale, &shared, &shares);
  const int lanes = std::min(ColumnLanes(x), kTileLanes);
#pragma omp parallel for schedule(static) if (rows * C > kReduceChunk)
  for (int64_t q = 0; q < outer; ++q) {
    if (inner > 1 && columns_shared) {  // tiles of neighbouring rows, a lane each
      for (int i = 0; i < inner;) {
        const int n = std::min(lanes, inner - i);
        const int64_t first = q * inner + i;
        bool below = true;
        for (int j = 0; j < n; ++j) {
          const LineCoefficients row = LoadCoefficients(row_coefficients, first + j, rows);
          below = below && BelowShared(row.neg_shift, shared.neg) &&
                  BelowShared(row.pos_shift, shared.pos);
        }
        const int64_t offset = q * C * inner + i;
        if (!below || !TileGradientSharedSimd(x + offset, t + offset, inner, n, o,
                                              row_coefficients + first, rows, shared,
                                              shares.data(), row_scale, dx + offset)) {
          for (int c = 0; c < C; ++c) {
            const LineCoefficients column = LoadCoefficients(column_coefficients, c, C);
            for (int j = 0; j < n; ++j) {
              const LineCoefficients row = LoadCoefficients(row_coefficients, first + j, rows);
              const int64_t e = offset + static_cast<int64_t>(c) * inner + j;
              dx[e] = ElementGradient(row, column, x[e], t[e], o, row_scale, column_scale);
            }
          }
        }
        i += n;
      }
      continue;
    }
    if (columns_shared) {
      const LineCoefficients row = LoadCoefficients(row_coefficients, q, rows);
      if (BelowShared(row.neg_shift, shared.neg) && BelowShared(row.pos_shift, shared.pos) &&
          RowGradientSharedSimd(x + q * C, t + q * C, o, row, shared, shares.data(), row_scale,
                                dx + q * C)) {
        continue;
      }
    }
    if (columns_safe) {
      const LineCoefficients row = LoadCoefficients(row_coefficients, q, rows);
      if (VectorSafe(row) && RowGradientSimd(x + q * C, t + q * C, o, row, column_coefficients,
                                             row_scale, column_scale, dx + q * C)) {
        continue;
      }
    }
    for (int c = 0; c < C; ++c) {
      const LineCoefficients column = LoadCoefficients(column_coefficients, c, C);
      const int64_t offset = (q * C + c) * inner;
      for (int i = 0; i < inner; ++i) {
        const LineCoefficients row = LoadCoefficients(row_coefficients, q * inner + i, rows);
        dx[offset + i] = ElementGradient(row, column, x[offset + i], t[offset + i], o, row_scale,
                                         column_scale);
      }
    }
  }
}

}  // namespace
}  // namespace twoway
}  // namespace xent

template <typename Dtype>
void TwoWayLossLayer<Dtype>::LayerSetUp(const vector<Blob<Dtype>*>& bottom,
                                        const vector<Blob<Dtype>*>& top) {
  XentLossLayer<Dtype>::LayerSetUp(bottom, top);  // blob counts, loss weights, loss_param
  const LayerParameter& param = this->layer_param_;
  const TwoWayLossParameter& tw = param.two_way_loss_param();
  tp_ = tw.positive_temperature();
  tn_ = tw.negative_temperature();
  XENT_CHECK(param, tp_ > 0.0 && tp_ <= FLT_MAX,
             "positive_temperature = " << tp_ << " is invalid; it must be finite and > 0");
  XENT_CHECK(param, tn_ > 0.0 && tn_ <= FLT_MAX,
             "negative_temperature = " << tn_ << " is invalid; it must be finite and > 0");
  xent::RefuseHardTargetIgnoreLabel(param, this->has_ignore_label_, this->ignore_label_);
  row_normalizer_ = column_normalizer_ = 1.0;
}

template <typename Dtype>
void TwoWayLossLayer<Dtype>::Reshape(const vector<Blob<Dtype>*>& bottom,
                                     const vector<Blob<Dtype>*>& top) {
  const LayerParameter& param = this->layer_param_;
  const Blob<Dtype>& x = *bottom[0];
  const xent::ClassAxis geometry =
      xent::CheckedClassAxis(param, x, *bottom[1], param.two_way_loss_param().axis());
  axis_ = geometry.axis;
  outer_num_ = geometry.outer;
  classes_ = geometry.classes;
  inner_num_ = geometry.inner;
  const int64_t rows = static_cast<int64_t>(outer_num_) * inner_num_;
  const int64_t most = INT_MAX / xent::twoway::kCoefficients;
  XENT_CHECK(param, rows <= most && classes_ <= most,
             "bottom[0] (scores) of shape " << x.shape_string() << " has " << rows << " rows and "
             << classes_ << " classes; this layer keeps " << xent::twoway::kCoefficients
             << " values per row and per class in a Caffe blob, so it takes at most " << most
             << " of each: split the batch");
  top[0]->Reshape(std::vector<int>());
  row_coefficients_.Reshape(std::vector<int>{xent::twoway::kCoefficients, static_cast<int>(rows)});
  column_coefficients_.Reshape(std::vector<int>{xent::twoway::kCoefficients, classes_});
}

template <typename Dtype>
typename XentLossLayer<Dtype>::BlobNames TwoWayLossLayer<Dtype>::Blobs() const {
  typename XentLossLayer<Dtype>::BlobNames names;
  names.bottoms = {"scores", "targets"};
  names.required_bottoms = 2;
  names.tops = {"loss"};
  return names;
}

template <typename Dtype>
void TwoWayLossLayer<Dtype>::CheckData(const vector<Blob<Dtype>*>& bottom,
                                       double bad_targets) const {
  const xent::twoway::Options opt = Options();
  this->RefuseBadValues(
      bottom, 1, bad_targets, xent::HardTargetWhat(this->has_ignore_label_, this->ignore_label_),
      [&](Dtype t) { return xent::zlpr::Kind(t, opt.targets) == xent::zlpr::kInvalid; },
      xent::HardTargetAdvice("two-way"));
}

template <typename Dtype>
xent::twoway::Options TwoWayLossLayer<Dtype>::Options() const {
  const xent::twoway::Options opt = {
      {classes_, this->has_ignore_label_, static_cast<double>(this->ignore_label_)}, tp_, tn_,
      1.0 / tp_, 1.0 / tn_};
  return opt;
}

template <typename Dtype>
void TwoWayLossLayer<Dtype>::FinishForward(const vector<Blob<Dtype>*>& bottom,
                                           const vector<Blob<Dtype>*>& top,
                                           const xent::LossSums& rows,
                                           const xent::LossSums& columns) {
  CheckData(bottom, rows.bad_targets);
  const double batch = bottom[0]->num_axes() > 0 ? bottom[0]->shape(0) : 1;
  row_normalizer_ = this->Normalizer(rows.counted,
                                     static_cast<double>(outer_num_) * inner_num_, batch);
  column_normalizer_ = this->Normalizer(columns.counted, classes_, batch);
  top[0]->mutable_cpu_data()[0] =
      static_cast<Dtype>(rows.loss / row_normalizer_ + columns.loss / column_normalizer_);
}

template <typename Dtype>
void TwoWayLossLayer<Dtype>::Forward_cpu(const vector<Blob<Dtype>*>& bottom,
                                         const vector<Blob<Dtype>*>& top) {
  const xent::twoway::Options opt = Options();
  const Dtype* x = bottom[0]->cpu_data();
  const Dtype* t = bottom[1]->cpu_data();
  const int64_t rows = static_cast<int64_t>(outer_num_) * inner_num_;
  const int inner = inner_num_;
  const int64_t outer = outer_num_;
  xent::LossSums row_sums, column_sums;
  if (bottom[0]->count() > 0) {
    // Fixed chunks of rows and fixed blocks of columns (functions of the
    // shape, never of the thread count), sums added in order.
    double* row_coef = row_coefficients_.mutable_cpu_data();
    double* column_coef = column_coefficients_.mutable_cpu_data();
    bool columns_done = false;
    if (xent::twoway::Fused(x, rows)) {
      // Both terms in one sweep of the rows, per fixed block of rows; the
      // blocks' column sums then added in block order.
      const int64_t block_rows = xent::twoway::FusedBlockRows(rows, classes_, inner);
      const int64_t count = xent::ChunkCount(rows, block_rows);
      const int64_t doubles = xent::twoway::BlockDoubles(classes_, inner);
      const int64_t floats = xent::twoway::BlockFloats(classes_, inner);
      column_sums_.resize(count * doubles);
      column_counts_.resize(count * floats);
      std::vector<xent::twoway::ColumnBlock> blocks;
      for (int64_t k = 0; k < count; ++k) {
        blocks.emplace_back(column_sums_.data() + k * doubles, column_counts_.data() + k * floats,
                            classes_, inner);
      }
      row_sums = xent::ChunkedSums(count, [&](int64_t k) {
        return xent::twoway::FusedRows(x, t, k * block_rows, std::min(rows, (k + 1) * block_rows),
                                       rows, inner, opt, row_coef, &blocks[k]);
      });
      xent::twoway::Shifts shift = xent::twoway::EmptyShifts();
      bool complete = true;
      for (const xent::twoway::ColumnBlock& b : blocks) {
        complete = complete && b.complete;
        shift.neg = std::max(shift.neg, b.run.neg_shift);
        shift.pos = std::max(shift.pos, b.run.pos_shift);
      }
      if (complete) {
        std::vector<double> factors(2 * blocks.size());
        for (size_t b = 0; b < blocks.size(); ++b) {
          const xent::twoway::ColumnRun& run = blocks[b].run;
          factors[2 * b] = xent::twoway::ShiftFactor(run.neg_shift, shift.neg);
          factors[2 * b + 1] = xent::twoway::ShiftFactor(run.pos_shift, shift.pos);
        }
        column_sums = xent::ChunkedSums(xent::ChunkCount(classes_, xent::twoway::kTile),
                                        [&](int64_t k) {
          return xent::twoway::MergeColumns(x, t, k, rows, inner, blocks, shift, factors, opt,
                                            column_coef);
        });
        columns_done = true;
      }
    } else {
      const int64_t chunk_rows = std::max<int64_t>(1, xent::kReduceChunk / classes_);
      row_sums = xent::ChunkedSums(xent::ChunkCount(rows, chunk_rows), [&](int64_t k) {
        return xent::twoway::RowPass(x, t, k * chunk_rows, std::min(rows, (k + 1) * chunk_rows),
                                     rows, inner, opt, row_coef);
      });
    }
    if (!columns_done) {
      column_sums = xent::ChunkedSums(xent::ChunkCount(classes_, xent::twoway::kTile),
                                      [&](int64_t k) {
        return xent::twoway::ColumnPass(x, t, k, outer, inner, opt, column_coef);
      });
    }
  }
  FinishForward(bottom, top, row_sums, column_sums);
}

template <typename Dtype>
void TwoWayLossLayer<Dtype>::Backward_cpu(const vector<Blob<Dtype>*>& top,
                                          const vector<bool>& propagate_down,
                                          const vector<Blob<Dtype>*>& bottom) {
  if (!this->GradientWanted(propagate_down, bottom)) return;
  const double lambda = static_cast<double>(top[0]->cpu_diff()[0]);
  xent::twoway::Gradient(bottom[0]->cpu_data(), bottom[1]->cpu_data(),
                         row_coefficients_.cpu_data(), column_coefficients_.cpu_data(),
                         outer_num_, inner_num_, Options(), lambda / row_normalizer_,
                         lambda / column_normalizer_, bottom[0]->mutable_cpu_diff());
}

#ifdef CPU_ONLY
STUB_GPU(TwoWayLossLayer);
#endif

INSTANTIATE_CLASS(TwoWayLossLayer);
REGISTER_LAYER_CLASS(TwoWayLoss);

}  // namespace caffe
