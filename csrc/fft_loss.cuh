// Per-thread bodies of the frequency loss (docs/model.md) on the half spectrum D = rfft2(pred − target), read as
// float32 (Re, Im) pairs of shape …×H×Wh×2 with Wh = ⌊W/2⌋ + 1.
//
// Columns 1 … ⌈W/2⌉−1 have a mirror twin in the missing half and count twice; column 0 and, for even W,
// column W/2 count once: the weighted sum equals FSNet's full-spectrum Σ|Re| + |Im|. The imaginary parts at
// the self-conjugate frequencies (row 0 or H/2 × column 0 or W/2) are exactly 0 for real input and count as 0.
#pragma once

#include <cmath>

#include "common.cuh"

namespace interir {

struct HalfSpectrum {
  int H, W, Wh;
  INTERIR_HD bool self_column(int col) const { return col == 0 || 2 * col == W; }
  INTERIR_HD bool self_row(int row) const { return row == 0 || 2 * row == H; }
};

INTERIR_HD void half_spectrum_position(const HalfSpectrum& s, int64_t idx, bool* is_im, int* row, int* col) {
  *is_im = (idx & 1) != 0;
  const int64_t pos = idx >> 1;
  *col = static_cast<int>(pos % s.Wh);
  *row = static_cast<int>((pos / s.Wh) % s.H);
}

// Weighted |·| of number idx (Re or Im) of the half spectrum.
INTERIR_HD float half_spectrum_term(const float* spec, const HalfSpectrum& s, int64_t idx) {
  bool is_im;
  int row, col;
  half_spectrum_position(s, idx, &is_im, &row, &col);
  if (is_im && s.self_column(col) && s.self_row(row)) return 0.f;
  return fabsf(spec[idx]) * (s.self_column(col) ? 1.f : 2.f);
}

// This thread's share of the weighted sum over a grid of `blocks` blocks of kThreads threads.
INTERIR_HD float half_spectrum_partial(const float* spec, const HalfSpectrum& s, int64_t n, int64_t block,
                                       int64_t blocks, int tid) {
  float total = 0.f;
  for (int64_t i = block * kThreads + tid; i < n; i += blocks * kThreads) total += half_spectrum_term(spec, s, i);
  return total;
}

// Sign (−1, 0, 1) of number idx of the half spectrum, made exactly Hermitian in columns 0 and W/2: rows past
// H/2 there take their twin's sign (Re the same, Im negated), so the inverse real FFT of the sign spectrum is
// well defined on every FFT library, even where a value is float noise around 0.
INTERIR_HD float hermitian_sign(const float* spec, const HalfSpectrum& s, int64_t idx) {
  bool is_im;
  int row, col;
  half_spectrum_position(s, idx, &is_im, &row, &col);
  if (is_im && s.self_column(col) && s.self_row(row)) return 0.f;
  float u = spec[idx];
  if (s.self_column(col) && 2 * row > s.H) {
    const float twin = spec[idx + static_cast<int64_t>(s.H - 2 * row) * s.Wh * 2];
    u = is_im ? -twin : twin;
  }
  return u > 0.f ? 1.f : (u < 0.f ? -1.f : 0.f);
}

}  // namespace interir
