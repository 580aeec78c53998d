// Fused float32 CPU kernels for InterIR's per-pixel pieces at inference (docs/performance.md, "The CPU kernels").
//
// Every kernel works on NCHW maps as B × C × P (P = H·W pixels, contiguous) and walks blocks of kBlock pixels: a
// block's values for all channels are a few KB, so each chain below reads its input from memory once and writes
// its output once, with the intermediate maps in L1/L2 instead of full-size tensors. Each block's input is first
// copied into a contiguous C × kBlock buffer: in place, its rows lie a whole map apart and fall into the same few L1
// sets (docs/performance.md, "On an AVX2 CPU"). The products are register tiles of kRows output channels × kBlock
// pixels, accumulated over the input channels in order (one FMA per product, float32), with the weights packed per
// tile (`Panel`). Pixels sit in the vector lanes, so LayerNorm's reduction over channels is a plain loop.
//
//   convs(x)        Conv1×1(cin→h) → ReLU → Conv1×1(h→cout)           the `Convs` block (docs/model.md)
//   ffn(x)          x + γ·Conv1×1(SimpleGate(Conv1×1(LN(x))))          the EPBlock's second half
//   ln_conv1x1(x)   Conv1×1(LN(x))                                     the EPBlock's first LayerNorm and conv1
//   gate_mean(u)    SimpleGate(u) averaged over the pixels, per (b, c)  the input of the channel attention (SCA)
//   gated_residual  x + β·Conv1×1(SimpleGate(u)·s)                    the EPBlock's conv3 and first residual
//   attention       k²·softmax(adaptive k×k pooling of 1[x > θ])       the explainable attention
//   winograd3x3     the modulated 3×3 convolution, Winograd F(4×2, 3×3)  the explainable convolution's products
//   winograd3x3_grad  its weight and attention gradients, F(4×2, 3×3) transposed  the same, in training
//   epblock_tail    gate_mean → the channel attention's 1×1 → gated_residual → ffn   the EPBlock after its 3×3 conv
//   epblock         the calls above for a whole EPBlock with its explainable convolution, without Python between them
//
// No autograd here. Inference runs them all; training runs winograd3x3 (the modulated convolution's forward and its
// gradient with respect to x) and winograd3x3_grad inside the op's forward and backward. Python
// (interir/cpu_kernels.py, interir/ops/reference.py) decides when these run.
#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

namespace {

#define ALWAYS_INLINE_LAMBDA __attribute__((always_inline))
#define ALWAYS_INLINE inline __attribute__((always_inline))  // the register tiles must not pass through memory

// Vectors of the host's own width, and tiles sized to its register file, so that a tile's kRows × kVecs
// accumulators stay in registers. Wider generic vectors are split by the compiler through the stack: on an AVX2
// host they made these kernels several times slower than oneDNN (docs/performance.md, "On an AVX2 CPU").
// AVX-512: 32 registers of 16 floats, 6 × 4 accumulators + 4 inputs; AVX2: 16 of 8, 6 × 2 + 2 (the 6×16 tile of
// BLIS's Haswell kernel); SSE and NEON: 4 floats, 6 × 2 + 2.
#if defined(__AVX512F__)
constexpr int kLanes = 16, kVecs = 4;
#elif defined(__AVX__)
constexpr int kLanes = 8, kVecs = 2;
#else
constexpr int kLanes = 4, kVecs = 2;
#endif
typedef float vf __attribute__((vector_size(4 * kLanes)));
typedef int vi __attribute__((vector_size(4 * kLanes)));  // what comparing two vf gives: −1 where true

constexpr int kBlock = kLanes * kVecs;  // pixels per block
constexpr int kRows = 6;                // output channels per register tile

inline vf load(const float* p) { vf v; __builtin_memcpy(&v, p, sizeof v); return v; }
inline void store(float* p, vf v) { __builtin_memcpy(p, &v, sizeof v); }
// s − 0 is s for every float (−0 and NaN included), so the compiler drops the subtraction and broadcasts s, straight
// from memory where s is a load; 0 + s would not be dropped (0 + (−0) is +0) and costs an add and a register
// broadcast per weight in the tiles' inner loop.
inline vf splat(float s) { return s - vf{}; }
inline vf relu(vf v) { return v < 0 ? vf{} : v; }  // NaN stays NaN, as torch.relu

// The weights of a matrix product in the order its register tiles read them. A tile of R output rows is stored as
// its R biases, then K groups of R weights (input channel k's weight for each of the tile's rows), so the tile's
// inner loop reads one contiguous run and broadcasts each weight from memory. The tiles follow each other in the
// order of the tiling (`over_rows`), so the tile whose first packed row is r starts at r·(K + 1).
struct Panel {
  std::vector<float> data;
  int rows, K;
  Panel(int rows, int K) : data((size_t)rows * (K + 1)), rows(rows), K(K) {}
  // Stores the tile whose first packed row is `first` from rows idx[0..R) of W (rows K apart) and their biases.
  void pack(int first, const float* W, const float* bias, const int* idx, int R) {
    float* p = data.data() + (size_t)first * (K + 1);
    for (int r = 0; r < R; ++r) p[r] = bias[idx[r]];
    for (int k = 0; k < K; ++k)
      for (int r = 0; r < R; ++r) p[R + k * R + r] = W[(long)idx[r] * K + k];
  }
  const float* tile(int first) const { return data.data() + (size_t)first * (K + 1); }
  // Where `gemm_panel`'s tiling (kRows rows, then the remainder) stores the weight of row r, input channel k.
  size_t slot(int r, int k) const {
    const int first = r / kRows * kRows, R = std::min(kRows, rows - first);
    return (size_t)first * (K + 1) + R + (size_t)k * R + (r - first);
  }
};

// acc[r][j] = bias[r] + Σ_k w[r][k] · in[k][kLanes·j : kLanes·(j+1)], from a tile of ROWS rows of a `Panel`; `in`
// is K rows of kBlock contiguous pixels.
template <int ROWS>
ALWAYS_INLINE void dot_tile(const float* tile, int K, const float* in, vf (&acc)[ROWS][kVecs]) {
  for (int r = 0; r < ROWS; ++r)
    for (int j = 0; j < kVecs; ++j) acc[r][j] = splat(tile[r]);
  const float* w = tile + ROWS;
  for (int k = 0; k < K; ++k, w += ROWS) {
    const float* x = in + k * kBlock;
    vf xv[kVecs];
    for (int j = 0; j < kVecs; ++j) xv[j] = load(x + kLanes * j);
    for (int r = 0; r < ROWS; ++r) {
      const vf wv = splat(w[r]);
      for (int j = 0; j < kVecs; ++j) acc[r][j] += wv * xv[j];
    }
  }
}

// Runs f.template operator()<ROWS>(first row) over rows [0, M) in tiles of TILE (≤ kRows) rows, then the remainder
// in one tile.
template <int TILE = kRows, class F>
ALWAYS_INLINE void over_rows(int M, F&& f) {
  int r = 0;
  for (; r + TILE <= M; r += TILE) f.template operator()<TILE>(r);
  switch (M - r) {
    case 1: f.template operator()<1>(r); break;
    case 2: f.template operator()<2>(r); break;
    case 3: f.template operator()<3>(r); break;
    case 4: f.template operator()<4>(r); break;
    case 5: f.template operator()<5>(r); break;
    default: break;
  }
}

// W (M × K) and its bias packed for `gemm_block`: tiles of kRows rows, then the remainder.
Panel gemm_panel(const float* W, const float* bias, int M, int K) {
  Panel panel(M, K);
  over_rows(M, [&]<int ROWS>(int r0) ALWAYS_INLINE_LAMBDA {
    int idx[ROWS];
    for (int r = 0; r < ROWS; ++r) idx[r] = r0 + r;
    panel.pack(r0, W, bias, idx, ROWS);
  });
  return panel;
}

// out[M × kBlock] = act(W · in + b) for the M × K matrix W packed by `gemm_panel`, `in` K × kBlock contiguous, rows
// of `out` ldo apart.
template <bool RELU>
void gemm_block(const Panel& W, const float* in, float* out, long ldo) {
  over_rows(W.rows, [&]<int ROWS>(int r0) ALWAYS_INLINE_LAMBDA {
    vf acc[ROWS][kVecs];
    dot_tile<ROWS>(W.tile(r0), W.K, in, acc);
    for (int r = 0; r < ROWS; ++r)
      for (int j = 0; j < kVecs; ++j) store(out + (r0 + r) * ldo + kLanes * j, RELU ? relu(acc[r][j]) : acc[r][j]);
  });
}

// W (2c × K) and its bias packed for `gated_gemm_block`: each tile holds rows r… and r + c… of W together.
Panel gated_panel(const float* W, const float* bias, int c, int K) {
  Panel panel(2 * c, K);
  over_rows<kRows / 2>(c, [&]<int ROWS>(int r0) ALWAYS_INLINE_LAMBDA {
    int idx[2 * ROWS];
    for (int r = 0; r < ROWS; ++r) idx[r] = r0 + r, idx[ROWS + r] = c + r0 + r;
    panel.pack(2 * r0, W, bias, idx, 2 * ROWS);
  });
  return panel;
}

// out[c × kBlock] = a · b with a = W[r] · in + bias[r], b = W[r + c] · in + bias[r + c] (W packed by `gated_panel`):
// Conv1×1(K → 2c) then SimpleGate, without the 2c-channel map.
void gated_gemm_block(const Panel& W, const float* in, float* out) {
  over_rows<kRows / 2>(W.rows / 2, [&]<int ROWS>(int r0) ALWAYS_INLINE_LAMBDA {
    vf acc[2 * ROWS][kVecs];
    dot_tile<2 * ROWS>(W.tile(2 * r0), W.K, in, acc);
    for (int r = 0; r < ROWS; ++r)
      for (int j = 0; j < kVecs; ++j) store(out + (r0 + r) * kBlock + kLanes * j, acc[r][j] * acc[ROWS + r][j]);
  });
}

// LayerNorm over the C channels of one pixel block (LayerNorm2d of docs/model.md: mean, then the mean of the
// squared deviations, eps inside the root), scaled and shifted per channel: in[C × kBlock] → out[C × kBlock].
void layer_norm_block(const float* in, int C, const float* weight, const float* bias, float eps, float* out) {
  const float inv = 1.0f / C;
  for (int j = 0; j < kVecs; ++j) {
    vf sum{};
    for (int ch = 0; ch < C; ++ch) sum += load(in + ch * kBlock + kLanes * j);
    const vf mu = sum * inv;
    vf sq{};
    for (int ch = 0; ch < C; ++ch) {
      const vf d = load(in + ch * kBlock + kLanes * j) - mu;
      sq += d * d;
    }
    const vf var = sq * inv + eps;
    vf rstd;
    for (int l = 0; l < kLanes; ++l) rstd[l] = 1.0f / std::sqrt(var[l]);
    for (int ch = 0; ch < C; ++ch)
      store(out + ch * kBlock + kLanes * j, (load(in + ch * kBlock + kLanes * j) - mu) * rstd * weight[ch] + bias[ch]);
  }
}

// out = x + y·scale per channel, for one block of C channels: x and y C × kBlock, out rows ldo apart
// (the EPBlock's residual updates).
void add_scaled_block(const float* x, const float* y, const float* scale, int C, float* out, long ldo) {
  for (int ch = 0; ch < C; ++ch)
    for (int j = 0; j < kVecs; ++j)
      store(out + ch * ldo + kLanes * j, load(x + ch * kBlock + kLanes * j) + load(y + ch * kBlock + kLanes * j) * scale[ch]);
}

// The pixel blocks of a B × C × P map, each copied into a contiguous C × kBlock buffer (zero-padded past the last
// pixel of a sample); `Out` writes a full block in place and a partial one through its own buffer.
struct In {
  const float* base; int C; long P;
  std::vector<float> buf;
  In(const torch::Tensor& t, int C, long P) : base(t.data_ptr<float>()), C(C), P(P), buf((size_t)C * kBlock) {}
  // block (b, p0) with n valid pixels: C rows of kBlock values
  const float* rows(long b, long p0, int n) {
    const float* src = base + (b * C) * P + p0;
    for (int ch = 0; ch < C; ++ch) {
      float* dst = buf.data() + ch * kBlock;
      std::copy_n(src + ch * P, n, dst);
      std::fill(dst + n, dst + kBlock, 0.0f);
    }
    return buf.data();
  }
};

struct Out {
  float* base; int C; long P;
  std::vector<float> pad;
  Out(torch::Tensor& t, int C, long P) : base(t.data_ptr<float>()), C(C), P(P), pad((size_t)C * kBlock) {}
  float* rows(long b, long p0, int n, long& ld) {
    if (n == kBlock) { ld = P; return base + (b * C) * P + p0; }
    ld = kBlock;
    return pad.data();
  }
  void finish(long b, long p0, int n) {
    if (n == kBlock) return;
    float* dst = base + (b * C) * P + p0;
    for (int ch = 0; ch < C; ++ch) std::copy_n(pad.data() + ch * kBlock, n, dst + ch * P);
  }
};

void check_map(const torch::Tensor& t, const char* name, int channels = -1) {
  TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == torch::kFloat32 && t.dim() == 4 && t.is_contiguous(),
              name, ": expected a contiguous float32 CPU tensor B×C×H×W");
  TORCH_CHECK(channels < 0 || t.size(1) == channels, name, ": expected ", channels, " channels, got ", t.size(1));
}

// y: B×channels×H×W like x, contiguous float32, and not overlapping x (the kernels read x while writing y).
void check_output(const torch::Tensor& y, const torch::Tensor& x, int64_t channels, const char* name) {
  check_map(y, name, channels);
  TORCH_CHECK(y.size(0) == x.size(0) && y.size(2) == x.size(2) && y.size(3) == x.size(3), name,
              ": the output's batch and size differ from the input's");
  const char *ylo = (const char*)y.data_ptr(), *yhi = ylo + y.nbytes(), *xlo = (const char*)x.data_ptr(),
             *xhi = xlo + x.nbytes();
  TORCH_CHECK(yhi <= xlo || xhi <= ylo, name, ": the output overlaps the input");
}

void check_vec(const torch::Tensor& t, const char* name, int64_t n) {
  TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == torch::kFloat32 && t.is_contiguous() && t.numel() == n,
              name, ": expected ", n, " contiguous float32 CPU values, got ", t.numel());
}

// Calls body(b, p0, n, scratch) for every pixel block of B samples × P pixels, in parallel over blocks.
template <class Scratch, class F>
void for_blocks(long B, long P, Scratch make, F&& body) {
  const long blocks = (P + kBlock - 1) / kBlock;
  at::parallel_for(0, B * blocks, 1, [&](long begin, long end) {
    auto scratch = make();
    for (long t = begin; t < end; ++t) {
      const long b = t / blocks, p0 = (t % blocks) * kBlock;
      body(b, p0, (int)std::min<long>(kBlock, P - p0), scratch);
    }
  });
}

// ------------------------------------------------------------------------------------------------------------------
// winograd3x3: the modulated 3×3 convolution (stride 1, padding 1) as Winograd's F(4×2, 3×3) (Lavin & Gray 2016;
// docs/performance.md, "Winograd F(4×2, 3×3)"): F(4, 3) down the columns and F(2, 3) along the rows. Each 4×2 output
// tile takes 24 products per (input, output channel) pair instead of 72: its 6×4 input patch d is transformed to
// V = B₄ᵀ·d·B₂, the kernel g to U = G₄·g·G₂ᵀ, and the tile is Y = A₄ᵀ·(Σ_c U ⊙ V)·A₂. The Σ_c are 24 matrix products
// (one per position ξ of the 6×4 transform), run on the register tiles above with the pixel lanes holding kBlock
// tiles of one tile row. F(4, 3) samples at 0, 1, −1, 2, −½ and ∞, whose float32 error measured no larger than the
// direct convolution's (F(4, 3) in both directions, or at ±2, measured 1.4–7× larger). B₄ᵀ's rows are scaled to
// small integers and G₄'s by the inverse; the kernel transform runs in float64. A NaN or ±∞ would spread over its
// whole tile, so the kernel declines (returns false) unless every input value is finite, and the caller convolves
// directly.
//
//   B₄ᵀ = [1 3/2 −2 −3/2 1 0; 0 2 5 1 −2 0; 0 2 1 −5 2 0; 0 −1 −2 1 2 0; 0 −2 1 2 −1 0; 0 1 3/2 −2 −3/2 1]
//   G₄ = [1 0 0; 1/6 1/6 1/6; 1/6 −1/6 1/6; 1/30 1/15 2/15; 16/15 −8/15 4/15; 0 0 1]
//   A₄ᵀ = [1 1 1 1 1 0; 0 1 −1 2 −½ 0; 0 1 1 4 ¼ 0; 0 1 −1 8 −⅛ 1]
//   B₂ᵀ = [1 0 −1 0; 0 1 1 0; 0 −1 1 0; 0 1 0 −1]   G₂ = [1 0 0; ½ ½ ½; ½ −½ ½; 0 0 1]   A₂ᵀ = [1 1 1 0; 0 1 −1 −1]
// ------------------------------------------------------------------------------------------------------------------

constexpr long kStrips = 2;  // strips of kBlock tiles per block, each weight tile read once for all of them
constexpr int kXi = 24;      // transform positions ξ = 4i + k, i < 6 down the columns, k < 4 along the rows

typedef double vd __attribute__((vector_size(32)));  // four kernels' values, transformed side by side

// U = G₄·g·G₂ᵀ of four 3×3 kernels at once, in float64 (rounded once, when stored): g[t] holds tap t (row-major) of
// each kernel, u[4i + k] their transforms.
void winograd_kernels(const vd* g, vd* u) {
  vd t[6][3];  // G₄·g
  for (int j = 0; j < 3; ++j) {
    const vd g0 = g[j], g1 = g[3 + j], g2 = g[6 + j];
    t[0][j] = g0, t[1][j] = (g0 + g1 + g2) / 6, t[2][j] = (g0 - g1 + g2) / 6;
    t[3][j] = (g0 + 2 * g1 + 4 * g2) / 30, t[4][j] = (16 * g0 - 8 * g1 + 4 * g2) / 15, t[5][j] = g2;
  }
  for (int i = 0; i < 6; ++i) {
    const vd a = t[i][0], b = t[i][1], c = t[i][2];
    u[4 * i + 0] = a, u[4 * i + 1] = 0.5 * (a + b + c), u[4 * i + 2] = 0.5 * (a - b + c), u[4 * i + 3] = c;
  }
}

// Lanes 2l + OFF of the 2·kLanes values lo, hi (lo first): the even (OFF 0) or odd (OFF 1) columns of a row.
template <int OFF, int... I>
constexpr vi stride2(std::integer_sequence<int, I...>) { return vi{(2 * I + OFF)...}; }
constexpr vi kEven = stride2<0>(std::make_integer_sequence<int, kLanes>{});
constexpr vi kOdd = stride2<1>(std::make_integer_sequence<int, kLanes>{});

// B₂ᵀ·d along a row: (d0 − d2, d1 + d2, d2 − d1, d1 − d3).
ALWAYS_INLINE void winograd_in4(vf d0, vf d1, vf d2, vf d3, vf* t) { t[0] = d0 - d2, t[1] = d1 + d2, t[2] = d2 - d1, t[3] = d1 - d3; }

// B₄ᵀ·d down a column of six.
ALWAYS_INLINE void winograd_in6(const vf* d, vf* t) {
  const vf d31 = d[3] - d[1], d24 = d[2] - d[4];
  t[0] = d[0] + d[4] - 2.0f * d[2] + 1.5f * (d[1] - d[3]);
  t[1] = 2.0f * (d[1] - d[4]) + 5.0f * d[2] + d[3];
  t[2] = 2.0f * (d[1] + d[4]) + d[2] - 5.0f * d[3];
  t[3] = d31 - 2.0f * d24;
  t[4] = 2.0f * d31 + d24;
  t[5] = d[1] + d[5] - 2.0f * d[3] + 1.5f * (d[2] - d[4]);
}

// Whether the n values at p are all finite: v·0 is 0 for a finite v and NaN for ±∞ and NaN.
bool all_finite(const float* p, long n) {
  std::atomic<bool> finite{true};
  at::parallel_for(0, n, 1 << 16, [&](long begin, long end) {
    vf acc{};
    long i = begin;
    for (; i + kLanes <= end; i += kLanes) acc += load(p + i) * 0.0f;
    float rest = 0.0f;
    for (; i < end; ++i) rest += p[i] * 0.0f;
    for (int l = 0; l < kLanes; ++l) rest += acc[l];
    if (rest != 0.0f) finite = false;
  });
  return finite;
}

}  // namespace

// winograd3x3: x B×cin×H×W → y B×cout×H×W, + bias (cout), each sample convolved with its own kernels, which the
// transform below builds tap by tap (docs/performance.md, "The Winograd backward"):
//   weight B×cout×cin×3×3 and no attn (None): sample b's kernels are weight[b];
//   weight cout×cin×3×3 and attn B×cin×3×3: K_b = weight ⊙ attn_b, the modulated convolution's (the float32 product,
//   as the reference's _modulated_weight rounds it);
//   adjoint: the kernels of the convolution whose input gradient this is. With a forward weight fo×fi×3×3 (and attn
//   B×fi×3×3) x then has fo channels and y fi, and K'_b[c][o][t] = K_b[o][c][8 − t]: transposed and flipped.
// Returns false, writing nothing, when x or a kernel holds a NaN or an infinity (the caller convolves directly then).
bool winograd3x3(torch::Tensor x, torch::Tensor weight, std::optional<torch::Tensor> attn, bool adjoint,
                 torch::Tensor bias, torch::Tensor y) {
  check_map(x, "winograd3x3: x");
  const long B = x.size(0), H = x.size(2), W = x.size(3);
  const int cin = x.size(1);
  const bool per_sample = weight.dim() == 5, modulated = attn.has_value();
  TORCH_CHECK(weight.device().is_cpu() && weight.scalar_type() == torch::kFloat32 && weight.is_contiguous() &&
                  (weight.dim() == 4 || (per_sample && weight.size(0) == B && !modulated)) &&
                  weight.size(-2) == 3 && weight.size(-1) == 3,
              "winograd3x3: expected weight cout×cin×3×3 or, without attn, B×cout×cin×3×3, float32, contiguous");
  const int fo = weight.size(-4), fi = weight.size(-3);  // the forward convolution's output and input channels
  const int cout = adjoint ? fi : fo;
  TORCH_CHECK((adjoint ? fo : fi) == cin, "winograd3x3: x has ", cin, " channels, the kernels take ",
              adjoint ? fo : fi);
  if (modulated) check_vec(*attn, "winograd3x3: attn", B * fi * 9);
  check_vec(bias, "winograd3x3: bias", cout);
  check_output(y, x, cout, "winograd3x3");
  if (!all_finite(x.data_ptr<float>(), x.numel())) return false;
  // U[b][ξ]: a Panel (cout × cin, zero bias) per sample and transform position, each kernel transformed straight
  // into its 24 slots
  std::vector<Panel> U(B * kXi, Panel(cout, cin));
  const float *Wk = weight.data_ptr<float>(), *A = modulated ? attn->data_ptr<float>() : nullptr;
  const long wstride = per_sample ? (long)fo * fi * 9 : 0;
  std::atomic<bool> finite{true};
  at::parallel_for(0, B * cout, 1, [&](long begin, long end) {
    float bad = 0.0f;  // Σ g·0: 0 while every g is finite, NaN after a NaN or ±∞
    for (long t = begin; t < end; ++t) {
      const long b = t / cout;
      const int o = t % cout;
      for (int c0 = 0; c0 < cin; c0 += 4) {
        const int n = std::min(4, cin - c0);
        vd g[9] = {}, u[kXi];
        for (int l = 0; l < n; ++l) {
          const int c = c0 + l, fo_ = adjoint ? c : o, fi_ = adjoint ? o : c;  // the forward's channel pair
          const float* w = Wk + b * wstride + ((long)fo_ * fi + fi_) * 9;
          const float* a = A ? A + (b * fi + fi_) * 9 : nullptr;
          for (int tap = 0; tap < 9; ++tap) {
            const int src = adjoint ? 8 - tap : tap;
            const float k = a ? w[src] * a[src] : w[src];
            bad += k * 0.0f;
            g[tap][l] = k;
          }
        }
        winograd_kernels(g, u);
        for (int l = 0; l < n; ++l) {
          const size_t slot = U[0].slot(o, c0 + l);
          for (int xi = 0; xi < kXi; ++xi) U[b * kXi + xi].data[slot] = (float)u[xi][l];
        }
      }
    }
    if (bad != 0.0f) finite = false;
  });
  if (!finite) return false;
  const float *X = x.data_ptr<float>(), *Bi = bias.data_ptr<float>();
  float* Y = y.data_ptr<float>();
  const long TH = (H + 3) / 4, TW = (W + 1) / 2, strips = (TW + kBlock - 1) / kBlock;
  const long NB = std::min<long>(strips, kStrips);
  const long groups = (strips + NB - 1) / NB;
  // ξ after ξ in V and M, one cache line more than a ξ's values: a multiple of 4 KB would put them all in one L1 set
  const size_t vstep = (size_t)NB * cin * kBlock + 16, mstep = (size_t)NB * cout * kBlock + 16;
  struct S { std::vector<float> seg, v, m; };
  at::parallel_for(0, B * TH * groups, 1, [&](long begin, long end) {
    S s{std::vector<float>(2 * kBlock + 2 + kLanes), std::vector<float>(kXi * vstep), std::vector<float>(kXi * mstep)};
    for (long t = begin; t < end; ++t) {
      const long b = t / (TH * groups), ty = t / groups % TH, first = t % groups * NB;
      const long nb = std::min<long>(NB, strips - first);
      // V[ξ][s][c][l] = (B₄ᵀ·d·B₂)[ξ] of tile (ty, tx0 + l) of strip s, channel c
      for (long sb = 0; sb < nb; ++sb) {
        const long tx0 = (first + sb) * kBlock;
        // the columns the strip reads, 2·tx0 − 1 …, that lie in the map; border strips read a zero-padded copy
        const long lo = std::max<long>(0, 1 - 2 * tx0), hi = std::min<long>(2 * kBlock + 2, W + 1 - 2 * tx0);
        const bool inside = lo == 0 && hi == 2 * kBlock + 2;
        for (int c = 0; c < cin; ++c) {
          const float* plane = X + (b * cin + c) * H * W;
          vf rows[6][4][kVecs];  // B₂ᵀ along each of the patch's six input rows
          for (int i = 0; i < 6; ++i) {
            const long yy = 4 * ty - 1 + i;
            if (yy < 0 || yy >= H) {
              for (int q = 0; q < 4; ++q)
                for (int j = 0; j < kVecs; ++j) rows[i][q][j] = vf{};
              continue;
            }
            // row[2l] is column 2(tx0 + l) − 1, the patch's first column for tile l
            const float* row = plane + yy * W + 2 * tx0 - 1;
            if (!inside) {
              std::fill(s.seg.begin(), s.seg.begin() + 2 * kBlock + 2, 0.0f);
              std::copy(row + lo, row + hi, s.seg.data() + lo);
              row = s.seg.data();
            }
            for (int j = 0; j < kVecs; ++j) {
              const float* r = row + 2 * kLanes * j;
              // columns 2l − 1 + {0, 1} and, two further on, 2l − 1 + {2, 3} of tile l, from lanes l of each pair
              const vf c01 = load(r), c01h = load(r + kLanes), c23 = load(r + 2), c23h = load(r + 2 + kLanes);
              vf q[4];
              winograd_in4(__builtin_shuffle(c01, c01h, kEven), __builtin_shuffle(c01, c01h, kOdd),
                           __builtin_shuffle(c23, c23h, kEven), __builtin_shuffle(c23, c23h, kOdd), q);
              for (int k = 0; k < 4; ++k) rows[i][k][j] = q[k];
            }
          }
          float* v = &s.v[(sb * cin + c) * kBlock];
          for (int k = 0; k < 4; ++k)
            for (int j = 0; j < kVecs; ++j) {
              const vf d[6] = {rows[0][k][j], rows[1][k][j], rows[2][k][j], rows[3][k][j], rows[4][k][j], rows[5][k][j]};
              vf col[6];
              winograd_in6(d, col);
              for (int i = 0; i < 6; ++i) store(v + (4 * i + k) * vstep + kLanes * j, col[i]);
            }
        }
      }
      // M[ξ][s] = U[b][ξ] · V[ξ][s]: cout × kBlock per ξ and strip, each weight tile used for every strip
      for (int xi = 0; xi < kXi; ++xi) {
        const Panel& P = U[b * kXi + xi];
        over_rows(cout, [&]<int ROWS>(int r0) ALWAYS_INLINE_LAMBDA {
          for (long sb = 0; sb < nb; ++sb) {
            vf acc[ROWS][kVecs];
            dot_tile<ROWS>(P.tile(r0), cin, &s.v[xi * vstep + sb * cin * kBlock], acc);
            float* out = &s.m[xi * mstep + (sb * cout + r0) * kBlock];
            for (int r = 0; r < ROWS; ++r)
              for (int j = 0; j < kVecs; ++j) store(out + r * kBlock + kLanes * j, acc[r][j]);
          }
        });
      }
      // Y = A₄ᵀ·M·A₂ + bias, written where the 4×2 tiles fall inside the map
      for (long sb = 0; sb < nb; ++sb) {
        const long tx0 = (first + sb) * kBlock;
        const int n = (int)std::min<long>(kBlock, TW - tx0);
        for (int o = 0; o < cout; ++o) {
          const float* m = &s.m[((size_t)sb * cout + o) * kBlock];
          float out[4][2][kBlock];
          for (int j = 0; j < kVecs; ++j) {
            vf r[2][6];  // (M·A₂) along the rows, for the tile's two columns, down the transform's six rows i
            for (int i = 0; i < 6; ++i) {
              const vf m0 = load(m + (4 * i + 0) * mstep + kLanes * j), m1 = load(m + (4 * i + 1) * mstep + kLanes * j),
                       m2 = load(m + (4 * i + 2) * mstep + kLanes * j), m3 = load(m + (4 * i + 3) * mstep + kLanes * j);
              r[0][i] = m0 + m1 + m2, r[1][i] = m1 - m2 - m3;
            }
            const vf bv = splat(Bi[o]);
            for (int dx = 0; dx < 2; ++dx) {
              const vf* c = r[dx];
              const vf sum = c[1] + c[2], dif = c[1] - c[2];
              store(&out[0][dx][kLanes * j], c[0] + sum + c[3] + c[4] + bv);
              store(&out[1][dx][kLanes * j], dif + 2.0f * c[3] - 0.5f * c[4] + bv);
              store(&out[2][dx][kLanes * j], sum + 4.0f * c[3] + 0.25f * c[4] + bv);
              store(&out[3][dx][kLanes * j], dif + 8.0f * c[3] - 0.125f * c[4] + c[5] + bv);
            }
          }
          float* plane = Y + (b * cout + o) * H * W;
          for (int dy = 0; dy < 4; ++dy) {
            const long yy = 4 * ty + dy;
            if (yy >= H) break;
            float* row = plane + yy * W + 2 * tx0;
            if (n == kBlock && 2 * (tx0 + kBlock) <= W) {
              for (int l = 0; l < kBlock; ++l) row[2 * l] = out[dy][0][l], row[2 * l + 1] = out[dy][1][l];
            } else {
              for (int l = 0; l < n; ++l) {
                row[2 * l] = out[dy][0][l];
                if (2 * (tx0 + l) + 1 < W) row[2 * l + 1] = out[dy][1][l];
              }
            }
          }
        }
      }
    }
  });
  return true;
}

// ------------------------------------------------------------------------------------------------------------------
// winograd3x3_grad: the modulated 3×3 convolution's weight and attention gradients, for training (docs/performance.md,
// "The Winograd backward"). With sample b's kernel K_b = W ⊙ A_b, its gradient dK_b[o][c] = Σ_p dy[b,o,p]·x[b,c,p+t]
// is the forward's F(4×2, 3×3) transposed: a tile's Y = A₄ᵀ·(U ⊙ V)·A₂ is linear in U = G₄·g·G₂ᵀ, so
// dU = (A₄·dY·A₂ᵀ) ⊙ V and dg = G₄ᵀ·dU·G₂. Summed over the T tiles in the transform domain, that is 24 matrix
// products M[ξ] = Σ_t Ŷ[ξ][t]ᵀ·V[ξ][t] (cout × cin, over the tiles) and then dK = G₄ᵀ·M·G₂ per (o, c): 24 products
// per tile and channel pair instead of 72. From dK_b: dW = Σ_b dK_b ⊙ A_b (samples in order) and
// dA_b = Σ_o dK_b ⊙ W. The products run over the tiles, so here the channels sit in the vector lanes: each sample's
// maps are first copied channels-last. The gradient with respect to x is the forward kernel itself, run on dy with
// the kernels transposed and flipped (interir/cpu_kernels.py).
// ------------------------------------------------------------------------------------------------------------------

namespace {

// Ŷ = A₄·e·A₂ᵀ of one 4×2 tile of output gradients e[2·row + column] → yh[4i + k] (i < 6, k < 4).
ALWAYS_INLINE void winograd_grad_out(const vf* e, vf* yh) {
  vf c[2][6];  // A₄ down each of the tile's two columns
  for (int j = 0; j < 2; ++j) {
    const vf e0 = e[j], e1 = e[2 + j], e2 = e[4 + j], e3 = e[6 + j];
    c[j][0] = e0, c[j][1] = e0 + e1 + e2 + e3, c[j][2] = e0 - e1 + e2 - e3;
    c[j][3] = e0 + 2.0f * e1 + 4.0f * e2 + 8.0f * e3, c[j][4] = e0 - 0.5f * e1 + 0.25f * e2 - 0.125f * e3;
    c[j][5] = e3;
  }
  for (int i = 0; i < 6; ++i) {  // A₂ᵀ along the rows: (r0, r0 + r1, r0 − r1, −r1)
    const vf r0 = c[0][i], r1 = c[1][i];
    yh[4 * i] = r0, yh[4 * i + 1] = r0 + r1, yh[4 * i + 2] = r0 - r1, yh[4 * i + 3] = -r1;
  }
}

// dg = G₄ᵀ·m·G₂ of 24 transform values m[4i + k] → dk[3·row + column].
ALWAYS_INLINE void winograd_grad_kernel(const vf* m, vf* dk) {
  vf n[6][3];  // G₂ along the rows
  for (int i = 0; i < 6; ++i) {
    const vf s = 0.5f * (m[4 * i + 1] + m[4 * i + 2]), d = 0.5f * (m[4 * i + 1] - m[4 * i + 2]);
    n[i][0] = m[4 * i] + s, n[i][1] = d, n[i][2] = s + m[4 * i + 3];
  }
  for (int j = 0; j < 3; ++j) {  // G₄ down the columns
    const vf s = (n[1][j] + n[2][j]) * (1.0f / 6), d = (n[1][j] - n[2][j]) * (1.0f / 6);
    dk[j] = n[0][j] + s + n[3][j] * (1.0f / 30) + n[4][j] * (16.0f / 15);
    dk[3 + j] = d + n[3][j] * (1.0f / 15) - n[4][j] * (8.0f / 15);
    dk[6 + j] = s + n[3][j] * (2.0f / 15) + n[4][j] * (4.0f / 15) + n[5][j];
  }
}

// acc[r][j] = Σ_k w[k·ldw + r] · in[k·ldin + kLanes·j …]: a register tile of ROWS rows over K, both operands strided.
template <int ROWS>
ALWAYS_INLINE void dot_strided(const float* w, long ldw, long K, const float* in, long ldin, vf (&acc)[ROWS][kVecs]) {
  for (int r = 0; r < ROWS; ++r)
    for (int j = 0; j < kVecs; ++j) acc[r][j] = vf{};
  for (long k = 0; k < K; ++k, w += ldw, in += ldin) {
    vf xv[kVecs];
    for (int j = 0; j < kVecs; ++j) xv[j] = load(in + kLanes * j);
    for (int r = 0; r < ROWS; ++r) {
      const vf wv = splat(w[r]);
      for (int j = 0; j < kVecs; ++j) acc[r][j] += wv * xv[j];
    }
  }
}

// Sample b's C maps of P pixels (X + b·C·P) → out[(b·P + p)·ld + c], channels-last, for the samples b0 … b1 − 1; the
// lanes C … ld − 1 are zeroed. In blocks of 16 pixels, so that the 16 output rows being written stay in L1.
void channels_last(const float* X, long C, long P, long b0, long b1, float* out, long ld) {
  constexpr long kPix = 16;
  const long blocks = (P + kPix - 1) / kPix;
  at::parallel_for(b0 * blocks, b1 * blocks, 1, [&](long begin, long end) {
    for (long task = begin; task < end; ++task) {
      const long b = task / blocks, p0 = task % blocks * kPix, p1 = std::min(P, p0 + kPix);
      float* dst = out + (b * P) * ld;
      for (long c = 0; c < C; ++c) {
        const float* src = X + (b * C + c) * P;
        for (long p = p0; p < p1; ++p) dst[p * ld + c] = src[p];
      }
      for (long p = p0; p < p1; ++p) std::fill(dst + p * ld + C, dst + (p + 1) * ld, 0.0f);
    }
  });
}

}  // namespace

// winograd3x3_grad: x B×cin×H×W, dy B×cout×H×W (the output's gradient), weight cout×cin×3×3, attn B×cin×3×3 →
// dweight cout×cin×3×3 and dattn B×cin×3×3, overwritten. Returns false, writing nothing, when x or dy holds a NaN or
// an infinity (the transforms would spread it over whole tiles; the caller convolves directly then).
bool winograd3x3_grad(torch::Tensor x, torch::Tensor dy, torch::Tensor weight, torch::Tensor attn,
                      torch::Tensor dweight, torch::Tensor dattn) {
  check_map(x, "winograd3x3_grad: x");
  check_map(dy, "winograd3x3_grad: dy");
  const long B = x.size(0), H = x.size(2), W = x.size(3), P = H * W;
  const int cin = x.size(1), cout = dy.size(1);
  TORCH_CHECK(dy.size(0) == B && dy.size(2) == H && dy.size(3) == W,
              "winograd3x3_grad: dy's batch and size differ from x's");
  check_vec(weight, "winograd3x3_grad: weight", (int64_t)cout * cin * 9);
  check_vec(attn, "winograd3x3_grad: attn", B * cin * 9);
  check_vec(dweight, "winograd3x3_grad: dweight", (int64_t)cout * cin * 9);
  check_vec(dattn, "winograd3x3_grad: dattn", B * cin * 9);
  if (!all_finite(x.data_ptr<float>(), x.numel()) || !all_finite(dy.data_ptr<float>(), dy.numel())) return false;
  const long TH = (H + 3) / 4, TW = (W + 1) / 2, T = TH * TW;
  const long cp = (cin + kBlock - 1) / kBlock * kBlock, op = (cout + kLanes - 1) / kLanes * kLanes;  // padded
  // W and A tap-major with the channels padded: wt[o][tap][c], av[b][tap][c]; dW the same way
  std::vector<float> wt(cout * 9 * cp), av(B * 9 * cp), dwt(cout * 9 * cp);
  const float *Wp = weight.data_ptr<float>(), *Ap = attn.data_ptr<float>();
  for (long o = 0; o < cout; ++o)
    for (int c = 0; c < cin; ++c)
      for (int tap = 0; tap < 9; ++tap) wt[(o * 9 + tap) * cp + c] = Wp[(o * cin + c) * 9 + tap];
  for (long b = 0; b < B; ++b)
    for (int c = 0; c < cin; ++c)
      for (int tap = 0; tap < 9; ++tap) av[(b * 9 + tap) * cp + c] = Ap[(b * cin + c) * 9 + tap];
  // Samples in chunks of about 1 M floats (4 MB) of buffers: the maps channels-last, V[b][ξ][t][c] = (B₄ᵀ·d·B₂)[ξ]
  // of tile t's input patch, Ŷ[b][ξ][t][o] = (A₄·dY·A₂ᵀ)[ξ] of its output gradient, and M[b][ξ][o][c]
  const long per_sample = P * (cp + op) + kXi * T * (cp + op) + kXi * cout * cp;
  const long chunk = std::clamp<long>((1l << 20) / per_sample, 1, B);
  auto buffer = [](long n) { return std::unique_ptr<float[]>(new float[n]); };  // left uninitialised
  const auto xc = buffer(chunk * P * cp), ec = buffer(chunk * P * op), V = buffer(chunk * kXi * T * cp),
             Yh = buffer(chunk * kXi * T * op), M = buffer(chunk * kXi * cout * cp);
  std::vector<float> dav(B * 9 * cp);  // dA[b][tap][c]
  const float *X = x.data_ptr<float>(), *E = dy.data_ptr<float>();
  constexpr long kRun = 32;
  for (long b0 = 0; b0 < B; b0 += chunk) {
    const long nb = std::min(chunk, B - b0);
    channels_last(X + b0 * cin * P, cin, P, 0, nb, xc.get(), cp);
    channels_last(E + b0 * cout * P, cout, P, 0, nb, ec.get(), op);
    at::parallel_for(0, nb * T, 1, [&](long begin, long end) {
      for (long task = begin; task < end; ++task) {
        const long b = task / T, t = task % T, ty = t / TW, tx = t % TW;
        const float* xb = xc.get() + b * P * cp;
        float* v = V.get() + b * kXi * T * cp;
        for (long c = 0; c < cp; c += kLanes) {
          vf rows[6][4];  // B₂ᵀ along each of the patch's six rows (columns 2tx − 1 … 2tx + 2), zero outside the map
          for (int i = 0; i < 6; ++i) {
            const long yy = 4 * ty - 1 + i;
            vf d[4];
            for (int q = 0; q < 4; ++q) {
              const long xx = 2 * tx - 1 + q;
              d[q] = yy >= 0 && yy < H && xx >= 0 && xx < W ? load(xb + (yy * W + xx) * cp + c) : vf{};
            }
            winograd_in4(d[0], d[1], d[2], d[3], rows[i]);
          }
          for (int k = 0; k < 4; ++k) {
            const vf d[6] = {rows[0][k], rows[1][k], rows[2][k], rows[3][k], rows[4][k], rows[5][k]};
            vf col[6];
            winograd_in6(d, col);
            for (int i = 0; i < 6; ++i) store(v + ((4 * i + k) * T + t) * cp + c, col[i]);
          }
        }
        const float* eb = ec.get() + b * P * op;
        float* yh = Yh.get() + b * kXi * T * op;
        for (long o = 0; o < op; o += kLanes) {
          vf e[8], u[kXi];  // the tile's 4×2 output gradients, zero outside the map
          for (int r = 0; r < 4; ++r)
            for (int j = 0; j < 2; ++j) {
              const long yy = 4 * ty + r, xx = 2 * tx + j;
              e[2 * r + j] = yy < H && xx < W ? load(eb + (yy * W + xx) * op + o) : vf{};
            }
          winograd_grad_out(e, u);
          for (int xi = 0; xi < kXi; ++xi) store(yh + (xi * T + t) * op + o, u[xi]);
        }
      }
    });
    // M[b][ξ] = Σ_t Ŷ[b][ξ][t]ᵀ·V[b][ξ][t], one register tile of output channels × kBlock input channels at a time
    at::parallel_for(0, nb * kXi, 1, [&](long begin, long end) {
      for (long bx = begin; bx < end; ++bx) {  // b·kXi + ξ
        over_rows(cout, [&]<int ROWS>(int r0) ALWAYS_INLINE_LAMBDA {
          for (long c = 0; c < cp; c += kBlock) {
            // over the tiles in runs of kRun, the runs' sums added: one sum in order over thousands of tiles
            // measured 8× the direct convolution's error
            vf sum[ROWS][kVecs] = {};
            for (long t0 = 0; t0 < T; t0 += kRun) {
              vf acc[ROWS][kVecs];
              dot_strided<ROWS>(Yh.get() + (bx * T + t0) * op + r0, op, std::min(kRun, T - t0),
                                V.get() + (bx * T + t0) * cp + c, cp, acc);
              for (int r = 0; r < ROWS; ++r)
                for (int j = 0; j < kVecs; ++j) sum[r][j] += acc[r][j];
            }
            for (int r = 0; r < ROWS; ++r)
              for (int j = 0; j < kVecs; ++j) store(M.get() + (bx * cout + r0 + r) * cp + c + kLanes * j, sum[r][j]);
          }
        });
      }
    });
    // dK_b = G₄ᵀ·M·G₂ for each (o, c); dW += Σ_b dK_b ⊙ A_b, samples in order; dA_b = Σ_o dK_b ⊙ W, output
    // channels in order. Each task owns kLanes channels.
    at::parallel_for(0, cp / kLanes, 1, [&](long g0, long g1) {
      std::vector<vf> da(nb * 9);
      for (long g = g0; g < g1; ++g) {
        const long c = g * kLanes;
        std::fill(da.begin(), da.end(), vf{});
        for (int o = 0; o < cout; ++o) {
          vf dw[9], w[9];
          for (int tap = 0; tap < 9; ++tap) {
            float* p = &dwt[(o * 9 + tap) * cp + c];
            dw[tap] = b0 == 0 ? vf{} : load(p);
            w[tap] = load(&wt[(o * 9 + tap) * cp + c]);
          }
          for (long b = 0; b < nb; ++b) {
            vf m[kXi], dk[9];
            for (int xi = 0; xi < kXi; ++xi) m[xi] = load(M.get() + ((b * kXi + xi) * cout + o) * cp + c);
            winograd_grad_kernel(m, dk);
            for (int tap = 0; tap < 9; ++tap) {
              dw[tap] += dk[tap] * load(&av[((b0 + b) * 9 + tap) * cp + c]);
              da[b * 9 + tap] += dk[tap] * w[tap];
            }
          }
          for (int tap = 0; tap < 9; ++tap) store(&dwt[(o * 9 + tap) * cp + c], dw[tap]);
        }
        for (long b = 0; b < nb; ++b)
          for (int tap = 0; tap < 9; ++tap) store(&dav[((b0 + b) * 9 + tap) * cp + c], da[b * 9 + tap]);
      }
    });
  }
  float *DW = dweight.data_ptr<float>(), *DA = dattn.data_ptr<float>();
  for (long o = 0; o < cout; ++o)
    for (int c = 0; c < cin; ++c)
      for (int tap = 0; tap < 9; ++tap) DW[(o * cin + c) * 9 + tap] = dwt[(o * 9 + tap) * cp + c];
  for (long b = 0; b < B; ++b)
    for (int c = 0; c < cin; ++c)
      for (int tap = 0; tap < 9; ++tap) DA[(b * cin + c) * 9 + tap] = dav[(b * 9 + tap) * cp + c];
  return true;
}

// Convs: x B×cin×H×W, w1 h×cin, b1 h, w2 cout×h, b2 cout → y B×cout×H×W.
void convs(torch::Tensor x, torch::Tensor w1, torch::Tensor b1, torch::Tensor w2, torch::Tensor b2, torch::Tensor y) {
  check_map(x, "convs: x");
  const int cin = x.size(1), hidden = w1.size(0), cout = w2.size(0);
  check_vec(w1, "convs: w1", (int64_t)hidden * cin), check_vec(b1, "convs: b1", hidden);
  check_vec(w2, "convs: w2", (int64_t)cout * hidden), check_vec(b2, "convs: b2", cout);
  const long B = x.size(0), P = x.size(2) * x.size(3);
  check_output(y, x, cout, "convs");
  const Panel W1 = gemm_panel(w1.data_ptr<float>(), b1.data_ptr<float>(), hidden, cin);
  const Panel W2 = gemm_panel(w2.data_ptr<float>(), b2.data_ptr<float>(), cout, hidden);
  struct S { In in; Out out; std::vector<float> h; };
  for_blocks(B, P, [&] { return S{In(x, cin, P), Out(y, cout, P), std::vector<float>((size_t)hidden * kBlock)}; },
             [&](long b, long p0, int n, S& s) {
               long ldo;
               gemm_block<true>(W1, s.in.rows(b, p0, n), s.h.data(), kBlock);
               float* out = s.out.rows(b, p0, n, ldo);
               gemm_block<false>(W2, s.h.data(), out, ldo);
               s.out.finish(b, p0, n);
             });
}

// ffn: x B×c×H×W → y = x + γ·(W5·gate(W4·LN(x) + b4) + b5); w4 2c×c, w5 c×c, γ c.
void ffn(torch::Tensor x, torch::Tensor ln_w, torch::Tensor ln_b, double eps, torch::Tensor w4, torch::Tensor b4,
         torch::Tensor w5, torch::Tensor b5, torch::Tensor gamma, torch::Tensor y) {
  check_map(x, "ffn: x");
  const int c = x.size(1);
  check_vec(ln_w, "ffn: norm weight", c), check_vec(ln_b, "ffn: norm bias", c);
  check_vec(w4, "ffn: w4", 2L * c * c), check_vec(b4, "ffn: b4", 2L * c);
  check_vec(w5, "ffn: w5", (int64_t)c * c), check_vec(b5, "ffn: b5", c), check_vec(gamma, "ffn: gamma", c);
  const long B = x.size(0), P = x.size(2) * x.size(3);
  check_output(y, x, c, "ffn");
  const float *LW = ln_w.data_ptr<float>(), *LB = ln_b.data_ptr<float>(), *G = gamma.data_ptr<float>();
  const Panel W4 = gated_panel(w4.data_ptr<float>(), b4.data_ptr<float>(), c, c);
  const Panel W5 = gemm_panel(w5.data_ptr<float>(), b5.data_ptr<float>(), c, c);
  struct S { In in; Out out; std::vector<float> norm, gated, branch; };
  const size_t tile = (size_t)c * kBlock;
  for_blocks(B, P, [&] { return S{In(x, c, P), Out(y, c, P), std::vector<float>(tile), std::vector<float>(tile), std::vector<float>(tile)}; },
             [&](long b, long p0, int n, S& s) {
               long ldo;
               const float* in = s.in.rows(b, p0, n);
               layer_norm_block(in, c, LW, LB, (float)eps, s.norm.data());
               gated_gemm_block(W4, s.norm.data(), s.gated.data());
               gemm_block<false>(W5, s.gated.data(), s.branch.data(), kBlock);
               float* out = s.out.rows(b, p0, n, ldo);
               add_scaled_block(in, s.branch.data(), G, c, out, ldo);
               s.out.finish(b, p0, n);
             });
}

// ln_conv1x1: x B×c×H×W → y = W·LN(x) + bias; w cout×c.
void ln_conv1x1(torch::Tensor x, torch::Tensor ln_w, torch::Tensor ln_b, double eps, torch::Tensor w, torch::Tensor bias,
                torch::Tensor y) {
  check_map(x, "ln_conv1x1: x");
  const int c = x.size(1), cout = w.size(0);
  check_vec(ln_w, "ln_conv1x1: norm weight", c), check_vec(ln_b, "ln_conv1x1: norm bias", c);
  check_vec(w, "ln_conv1x1: weight", (int64_t)cout * c), check_vec(bias, "ln_conv1x1: bias", cout);
  const long B = x.size(0), P = x.size(2) * x.size(3);
  check_output(y, x, cout, "ln_conv1x1");
  const float *LW = ln_w.data_ptr<float>(), *LB = ln_b.data_ptr<float>();
  const Panel W = gemm_panel(w.data_ptr<float>(), bias.data_ptr<float>(), cout, c);
  struct S { In in; Out out; std::vector<float> norm; };
  for_blocks(B, P, [&] { return S{In(x, c, P), Out(y, cout, P), std::vector<float>((size_t)c * kBlock)}; },
             [&](long b, long p0, int n, S& s) {
               long ldo;
               layer_norm_block(s.in.rows(b, p0, n), c, LW, LB, (float)eps, s.norm.data());
               float* out = s.out.rows(b, p0, n, ldo);
               gemm_block<false>(W, s.norm.data(), out, ldo);
               s.out.finish(b, p0, n);
             });
}

// gate_mean: u B×2c×H×W → mean B×c, the pixel mean of u[:, :c]·u[:, c:] (kLanes float32 partial sums, then float64).
void gate_mean(torch::Tensor u, torch::Tensor mean) {
  check_map(u, "gate_mean: u");
  TORCH_CHECK(u.size(1) % 2 == 0, "gate_mean: u needs an even number of channels, got ", u.size(1));
  const long B = u.size(0), c = u.size(1) / 2, P = u.size(2) * u.size(3);
  check_vec(mean, "gate_mean: mean", B * c);
  const float* U = u.data_ptr<float>();
  float* M = mean.data_ptr<float>();
  at::parallel_for(0, B * c, 1, [&](long begin, long end) {
    for (long t = begin; t < end; ++t) {
      const long b = t / c, ch = t % c;
      const float* a = U + (b * 2 * c + ch) * P;
      const float* g = a + c * P;
      vf lanes{};
      long p = 0;
      for (; p + kLanes <= P; p += kLanes) lanes += load(a + p) * load(g + p);
      double sum = 0.0;
      for (int l = 0; l < kLanes; ++l) sum += lanes[l];
      for (; p < P; ++p) sum += (double)(a[p] * g[p]);
      M[t] = (float)(sum / P);
    }
  });
}

// gated_residual: x B×c×H×W, u B×2c×H×W, s B×c → y = x + β·(W·(gate(u)·s) + bias); w c×c (the per-sample scale s
// is folded into W's columns, as W·diag(s)).
void gated_residual(torch::Tensor x, torch::Tensor u, torch::Tensor s, torch::Tensor w, torch::Tensor bias,
                    torch::Tensor beta, torch::Tensor y) {
  check_map(x, "gated_residual: x");
  const long B = x.size(0), c = x.size(1), P = x.size(2) * x.size(3);
  check_map(u, "gated_residual: u", 2 * c);
  TORCH_CHECK(u.size(0) == B && u.size(2) == x.size(2) && u.size(3) == x.size(3), "gated_residual: u and x differ in shape");
  check_vec(s, "gated_residual: s", B * c), check_vec(w, "gated_residual: weight", c * c);
  check_vec(bias, "gated_residual: bias", c), check_vec(beta, "gated_residual: beta", c);
  check_output(y, x, c, "gated_residual");
  // W·diag(s_b) per sample
  auto ws = (w.view({1, c, c}) * s.view({B, 1, c})).contiguous();
  std::vector<Panel> WS;
  for (long b = 0; b < B; ++b) WS.push_back(gemm_panel(ws.data_ptr<float>() + b * c * c, bias.data_ptr<float>(), c, c));
  const float* Be = beta.data_ptr<float>();
  struct St { In in, gin; Out out; std::vector<float> gated, branch; };
  const size_t tile = (size_t)c * kBlock;
  for_blocks(B, P, [&] { return St{In(x, c, P), In(u, 2 * c, P), Out(y, c, P), std::vector<float>(tile), std::vector<float>(tile)}; },
             [&](long b, long p0, int n, St& st) {
               long ldo;
               const float* xin = st.in.rows(b, p0, n);
               const float* uin = st.gin.rows(b, p0, n);
               for (long ch = 0; ch < c; ++ch)
                 for (int j = 0; j < kVecs; ++j)
                   store(st.gated.data() + ch * kBlock + kLanes * j, load(uin + ch * kBlock + kLanes * j) * load(uin + (c + ch) * kBlock + kLanes * j));
               gemm_block<false>(WS[b], st.gated.data(), st.branch.data(), kBlock);
               float* out = st.out.rows(b, p0, n, ldo);
               add_scaled_block(xin, st.branch.data(), Be, c, out, ldo);
               st.out.finish(b, p0, n);
             });
}

// Adds the mask of one row of W pixels, 1[v > th] (with DIVIDE: 1[(v − th)/t > 0]), to `bins` rows of column
// counts (rows W apart: the row bins this image row falls in), and counts its NaNs into `nans`.
template <bool DIVIDE>
ALWAYS_INLINE void add_row_mask(const float* v, long W, float th, float t, int* counts, int bins, vi& nans) {
  long x = 0;
  for (; x + kLanes <= W; x += kLanes) {
    const vf value = load(v + x);
    const vi mask = DIVIDE ? (value - th) / t > 0 : value > th;  // −1 where true
    nans -= value != value;
    for (int b = 0; b < bins; ++b) {
      vi c;
      __builtin_memcpy(&c, counts + b * W + x, sizeof c);
      c -= mask;
      __builtin_memcpy(counts + b * W + x, &c, sizeof c);
    }
  }
  for (; x < W; ++x) {
    const int above = DIVIDE ? (v[x] - th) / t > 0 : v[x] > th;
    nans[0] += v[x] != v[x];
    for (int b = 0; b < bins; ++b) counts[b * W + x] += above;
  }
}

// attention: x B×C×H×W → A B×C×k², the explainable attention k²·softmax(p) without grad (interir/ops/reference.py,
// attention_without_grad): p is the adaptive k×k average pooling of the mask 1[x > θ] (1[(x − θ)/τ > 0] for τ > 1,
// as the reference computes it); a plane that holds a NaN gets NaN for every tap. Bin i of n pixels covers
// [⌊i·n/k⌋, ⌈(i+1)·n/k⌉), as adaptive pooling's bins; the counts are exact, divided by each bin's area at the end.
void attention(torch::Tensor x, double theta, int64_t k, double tau, torch::Tensor pooled) {
  check_map(x, "attention: x");
  const long B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  TORCH_CHECK(k >= 1 && k <= 15, "attention: kernel size out of range: ", k);
  check_vec(pooled, "attention: pooled", B * C * k * k);
  const float th = (float)theta, t = (float)tau;
  const bool divide = tau > 1;
  std::vector<long> r0(k), r1(k), c0(k), c1(k);
  for (long i = 0; i < k; ++i) {
    r0[i] = i * H / k, r1[i] = ((i + 1) * H + k - 1) / k;
    c0[i] = i * W / k, c1[i] = ((i + 1) * W + k - 1) / k;
  }
  const float* X = x.data_ptr<float>();
  float* out = pooled.data_ptr<float>();
  at::parallel_for(0, B * C, 1, [&](long begin, long end) {
    std::vector<int> columns(k * W);  // per row bin, each column's count of pixels above the threshold
    for (long plane = begin; plane < end; ++plane) {
      const float* p = X + plane * H * W;
      std::fill(columns.begin(), columns.end(), 0);
      vi nans{};
      for (long y = 0, first = 0; y < H; ++y) {
        while (r1[first] <= y) ++first;  // the row bins holding y: first and those after it that start by y
        int bins = 1;
        while (first + bins < k && r0[first + bins] <= y) ++bins;
        if (divide) add_row_mask<true>(p + y * W, W, th, t, columns.data() + first * W, bins, nans);
        else add_row_mask<false>(p + y * W, W, th, t, columns.data() + first * W, bins, nans);
      }
      bool nan = false;
      for (int l = 0; l < kLanes; ++l) nan |= nans[l] != 0;
      float* o = out + plane * k * k;
      for (long i = 0; i < k; ++i)
        for (long j = 0; j < k; ++j) {
          long count = 0;
          for (long xx = c0[j]; xx < c1[j]; ++xx) count += columns[i * W + xx];
          o[i * k + j] = nan ? NAN : (float)count / (float)((r1[i] - r0[i]) * (c1[j] - c0[j]));
        }
      // A = k²·softmax(o) over the k² taps, as torch.softmax: exp(o − max) / Σ exp(o − max)
      float top = o[0];
      for (long i = 1; i < k * k; ++i) top = std::max(top, o[i]);
      float sum = 0.0f;
      for (long i = 0; i < k * k; ++i) sum += o[i] = std::exp(o[i] - top);
      for (long i = 0; i < k * k; ++i) o[i] = o[i] / sum * (float)(k * k);
    }
  });
}

torch::Tensor flat_vec(const torch::Tensor& t) { return t.reshape({-1}).contiguous(); }
torch::Tensor flat_mat(const torch::Tensor& t) { return t.reshape({t.size(0), -1}).contiguous(); }  // a 1×1 weight

// epblock_tail: the EPBlock after its 3×3 convolution (docs/model.md), x B×c×H×W and v = conv2(…) B×2c×H×W → y:
// gate_mean → the channel attention's 1×1 on the means (addmm) → gated_residual → ffn. Weights come as the modules'
// own tensors.
void epblock_tail(torch::Tensor x, torch::Tensor v, torch::Tensor sca_w, torch::Tensor sca_b, torch::Tensor w3,
                  torch::Tensor b3, torch::Tensor beta, torch::Tensor ln2_w, torch::Tensor ln2_b, double eps2,
                  torch::Tensor w4, torch::Tensor b4, torch::Tensor w5, torch::Tensor b5, torch::Tensor gamma,
                  torch::Tensor y) {
  check_map(x, "epblock_tail: x");
  torch::Tensor mean = torch::empty({x.size(0), x.size(1)}, x.options());
  gate_mean(v, mean);
  const torch::Tensor s = at::addmm(flat_vec(sca_b), mean, flat_mat(sca_w).t()).contiguous();
  torch::Tensor x1 = torch::empty_like(x);
  gated_residual(x, v, s, flat_mat(w3), flat_vec(b3), flat_vec(beta), x1);
  ffn(x1, flat_vec(ln2_w), flat_vec(ln2_b), eps2, flat_mat(w4), flat_vec(b4), flat_mat(w5), flat_vec(b5),
      flat_vec(gamma), y);
}

// epblock: a whole EPBlock whose 3×3 convolution is an ExplainableConv (groups 1), x B×c×H×W → y, in one call:
// ln_conv1x1 → attention → winograd3x3 with the kernels W ⊙ A_b → epblock_tail, the calls of the module path of
// cpu_kernels.epblock in the same order, so y equals it bit for bit. Returns false, having written nothing to y,
// when the Winograd kernel declines (a NaN or an infinity), and the caller runs the module path. The tail's weights
// follow θ and τ as epblock_tail takes them.
bool epblock(torch::Tensor x, torch::Tensor ln1_w, torch::Tensor ln1_b, double eps1, torch::Tensor w1, torch::Tensor b1,
             torch::Tensor wt, torch::Tensor bt, double theta, double tau, torch::Tensor sca_w, torch::Tensor sca_b,
             torch::Tensor w3, torch::Tensor b3, torch::Tensor beta, torch::Tensor ln2_w, torch::Tensor ln2_b,
             double eps2, torch::Tensor w4, torch::Tensor b4, torch::Tensor w5, torch::Tensor b5, torch::Tensor gamma,
             torch::Tensor y) {
  check_map(x, "epblock: x");
  const long B = x.size(0), c = x.size(1), H = x.size(2), W = x.size(3);
  TORCH_CHECK(wt.dim() == 4 && wt.size(0) == 2 * c && wt.size(1) == 2 * c && wt.size(2) == 3 && wt.size(3) == 3,
              "epblock: expected a 2c×2c×3×3 explainable convolution");
  torch::Tensor u = torch::empty({B, 2 * c, H, W}, x.options());
  ln_conv1x1(x, flat_vec(ln1_w), flat_vec(ln1_b), eps1, flat_mat(w1), flat_vec(b1), u);
  torch::Tensor attn = torch::empty({B, 2 * c, 3, 3}, x.options());
  attention(u, theta, 3, tau, attn);
  torch::Tensor v = torch::empty_like(u);
  if (!winograd3x3(u, wt.contiguous(), attn, false, flat_vec(bt), v)) return false;
  epblock_tail(x, v, sca_w, sca_b, w3, b3, beta, ln2_w, ln2_b, eps2, w4, b4, w5, b5, gamma, y);
  return true;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "interir's fused float32 CPU kernels (docs/performance.md)";
  m.def("convs", &convs, "Conv1x1 -> ReLU -> Conv1x1");
  m.def("ffn", &ffn, "x + gamma * Conv1x1(SimpleGate(Conv1x1(LayerNorm(x))))");
  m.def("ln_conv1x1", &ln_conv1x1, "Conv1x1(LayerNorm(x))");
  m.def("gate_mean", &gate_mean, "pixel mean of SimpleGate(u)");
  m.def("gated_residual", &gated_residual, "x + beta * Conv1x1(SimpleGate(u) * s)");
  m.def("winograd3x3", &winograd3x3, "3x3 convolution with per-sample kernels, Winograd F(4x2, 3x3)");
  m.def("winograd3x3_grad", &winograd3x3_grad, "weight and attention gradients of the modulated 3x3 convolution");
  m.def("epblock_tail", &epblock_tail, "an EPBlock after its 3x3 convolution");
  m.def("epblock", &epblock, "an EPBlock with its explainable 3x3 convolution, in one call");
  m.def("attention", &attention, "k^2 softmax of the adaptive k x k average pooling of 1[x > theta]");
}
