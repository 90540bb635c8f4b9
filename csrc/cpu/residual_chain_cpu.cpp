// One fused CPU call for the depth-sequential part of a SaShiMi tier's step (ssm::residual_chain).
//
// At generation time a tier is a run of prenorm residual blocks applied to one (B, H) sample:
//
//   SSM block:  h = LN(x);  y = s + d * h  (per-channel core) | s + h @ D  (S5);  u <- h;
//               x = x + final(act(y))              final: identity | y @ W + b | GLU(y @ W + b)
//   FF block:   h = LN(x);  x = x + gelu(h @ W1 + b1) @ W2 + b2
//
// where s is the state part of the layer's output, precomputed by the state bank
// (ssm/models/generation.py), and u is the bank's slot for the layer's input. In Python that is
// about seven ATen calls per block, each costing several microseconds of dispatch for a few
// thousand flops; here the layer norm, the skip term, the bias and residual adds and the GLU
// product are plain loops, and only the matrix products and the transcendental activations go
// through ATen (at::addmm_out, at::gelu_, at::sigmoid_, ...: the same kernels the Python path
// calls, so the two agree to rounding). The Python chain in generation.py is the reference this
// op is tested against.
#include <ATen/Dispatch.h>
#include <ATen/ops/addmm.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/gelu.h>
#include <ATen/ops/sigmoid.h>
#include <ATen/ops/silu.h>
#include <ATen/ops/tanh.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <string>
#include <vector>

#include "../parallel.h"

namespace ssm {
namespace {

enum Kind : int64_t { kFeedForward = 0, kChannelSSM = 1, kDenseSSM = 2 };
enum Act : int64_t { kIdentity = 0, kGelu = 1, kSilu = 2, kRelu = 3, kTanh = 4 };
enum Final : int64_t { kNone = 0, kLinear = 1, kGlu = 2 };

// The op takes its choices as strings (the names ssm.ops.step documents); the codes stay in here.
int64_t choice(c10::string_view value, std::initializer_list<const char*> names, const char* what) {
  int64_t code = 0;
  std::string listed;
  for (const char* name : names) {
    if (value == name) return code;
    listed += (code++ ? ", " : "") + std::string(name);
  }
  TORCH_CHECK(false, "ssm.residual_chain: ", what, " must be one of ", listed, ", got '", std::string(value), "'");
}

constexpr int64_t kFeedForwardParams = 6;  // ln_w, ln_b, W1 (H, F), b1 (F,), W2 (F, H), b2 (H,)
constexpr int64_t kSSMParams = 5;          // ln_w, ln_b, d (H,) or (H, H), W (H, H or 2H), b

void check_param(const at::Tensor& t, const at::Tensor& x, std::vector<int64_t> shape, int64_t block,
                 const char* what) {
  TORCH_CHECK(t.sizes() == at::IntArrayRef(shape), "ssm.residual_chain: block ", block, ": `", what,
              "` must have shape ", at::IntArrayRef(shape), ", got ", t.sizes());
  TORCH_CHECK(t.scalar_type() == x.scalar_type() && t.device() == x.device(), "ssm.residual_chain: block ",
              block, ": `", what, "` must be ", x.scalar_type(), " on ", x.device(), ", got ", t.scalar_type(),
              " on ", t.device());
  TORCH_CHECK(t.is_contiguous(), "ssm.residual_chain: block ", block, ": `", what, "` must be contiguous");
}

void check_slot(const at::Tensor& t, const at::Tensor& x, int64_t layer, const char* what) {
  TORCH_CHECK(t.sizes() == x.sizes(), "ssm.residual_chain: SSM layer ", layer, ": `", what, "` must be ",
              x.sizes(), ", got ", t.sizes());
  TORCH_CHECK(t.scalar_type() == x.scalar_type() && t.device() == x.device(), "ssm.residual_chain: SSM layer ",
              layer, ": `", what, "` must be ", x.scalar_type(), " on ", x.device());
}

// f(r) for every row r < B of H values, rows split among threads when there are enough of them.
template <class F>
void for_rows(int64_t B, int64_t H, const F& f) {
  ssm::parallel_for(0, B, grain_for(H), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) f(r);
  });
}

// h = (x - mean) / sqrt(var + eps) * w + b, row by row (biased variance, as nn.LayerNorm).
template <typename T>
void layer_norm(const T* x, const T* w, const T* b, double eps, T* h, int64_t B, int64_t H) {
  for_rows(B, H, [&](int64_t r) {
    const T* xr = x + r * H;
    T* hr = h + r * H;
    double sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int64_t i = 0; i < H; ++i) sum += xr[i];
    const double mean = sum / H;
    double sq = 0;
#pragma omp simd reduction(+ : sq)
    for (int64_t i = 0; i < H; ++i) {
      const double c = xr[i] - mean;
      sq += c * c;
    }
    const T rstd = static_cast<T>(1.0 / std::sqrt(sq / H + eps));
    const T m = static_cast<T>(mean);
#pragma omp simd
    for (int64_t i = 0; i < H; ++i) hr[i] = (xr[i] - m) * rstd * w[i] + b[i];
  });
}

// The transcendental activations, through ATen's vectorised kernels (relu and identity are inline).
void activate(at::Tensor& y, int64_t act) {
  switch (act) {
    case kGelu: at::gelu_(y); break;
    case kSilu: at::silu_(y); break;
    case kTanh: at::tanh_(y); break;
    default: break;
  }
}

template <typename T>
void add_rows(T* x, const T* y, int64_t n) {
  ssm::parallel_for(0, n, kMinParallelWork, [&](int64_t i0, int64_t i1) {
#pragma omp simd
    for (int64_t i = i0; i < i1; ++i) x[i] += y[i];
  });
}

template <typename T>
void run_chain(at::Tensor& x, at::TensorList params, at::TensorList ys, at::TensorList us, at::IntArrayRef kinds,
               at::ArrayRef<double> eps, int64_t act, int64_t final_, at::TensorList collect, at::TensorList add) {
  const int64_t B = x.size(0), H = x.size(1);
  T* xp = x.data_ptr<T>();
  at::Tensor h = at::empty({B, H}, x.options());
  at::Tensor y = at::empty({B, H}, x.options());
  T* hp = h.data_ptr<T>();
  T* yp = y.data_ptr<T>();
  at::Tensor z;  // (B, F) or (B, 2H): the wide intermediate, allocated on first need
  int64_t p = 0, layer = 0;
  for (size_t j = 0; j < kinds.size(); ++j) {
    const T* w_ln = params[p].data_ptr<T>();
    const T* b_ln = params[p + 1].data_ptr<T>();
    layer_norm<T>(xp, w_ln, b_ln, eps[j], hp, B, H);
    if (kinds[j] == kFeedForward) {
      const at::Tensor &W1 = params[p + 2], &b1 = params[p + 3], &W2 = params[p + 4], &b2 = params[p + 5];
      const int64_t Fw = W1.size(1);
      if (!z.defined() || z.size(1) != Fw) z = at::empty({B, Fw}, x.options());
      at::addmm_out(z, b1, h, W1);
      at::gelu_(z);
      at::addmm_out(y, b2, z, W2);
      add_rows<T>(xp, yp, B * H);
      p += kFeedForwardParams;
    } else {
      const at::Tensor &d = params[p + 2], &W = params[p + 3], &bias = params[p + 4];
      const at::Tensor &s = ys[layer], &u = us[layer];
      if (kinds[j] == kChannelSSM) {
        // s and u may be the same memory (transposed views of the bank's rows): read, then write.
        const T* dp = d.data_ptr<T>();
        T* sp = s.data_ptr<T>();
        T* up = u.data_ptr<T>();
        const int64_t s0 = s.stride(0), s1 = s.stride(1), u0 = u.stride(0), u1 = u.stride(1);
        for_rows(B, H, [&](int64_t r) {
          for (int64_t i = 0; i < H; ++i) {
            const T hv = hp[r * H + i];
            yp[r * H + i] = sp[r * s0 + i * s1] + dp[i] * hv;
            up[r * u0 + i * u1] = hv;
          }
        });
      } else {
        at::addmm_out(y, s, h, d);
        u.copy_(h);
      }
      if (act == kRelu) {
        for_rows(B, H, [&](int64_t r) {
          T* yr = yp + r * H;
#pragma omp simd
          for (int64_t i = 0; i < H; ++i) yr[i] = yr[i] > T(0) ? yr[i] : (yr[i] != yr[i] ? yr[i] : T(0));
        });
      } else {
        activate(y, act);
      }
      if (final_ == kNone) {
        add_rows<T>(xp, yp, B * H);
      } else {
        const int64_t Fw = W.size(1);
        if (!z.defined() || z.size(1) != Fw) z = at::empty({B, Fw}, x.options());
        at::addmm_out(z, bias, y, W);
        T* zp = z.data_ptr<T>();
        if (final_ == kLinear) {
          add_rows<T>(xp, zp, B * H);
        } else {  // GLU: first half times the sigmoid of the second half
          at::Tensor gate = z.narrow(1, H, H);
          at::sigmoid_(gate);
          for_rows(B, H, [&](int64_t r) {
            const T* zr = zp + r * 2 * H;
            T* xr = xp + r * H;
#pragma omp simd
            for (int64_t i = 0; i < H; ++i) xr[i] += zr[i] * zr[H + i];
          });
        }
      }
      p += kSSMParams;
      ++layer;
    }
    if (!collect.empty()) collect[j].copy_(x);
    if (!add.empty()) add_rows<T>(xp, add[j].data_ptr<T>(), B * H);
  }
}

at::Tensor residual_chain_cpu(const at::Tensor& x_in, at::TensorList params, at::TensorList ys, at::TensorList us,
                              c10::List<std::string> kind_names, at::ArrayRef<double> eps, c10::string_view activation,
                              c10::string_view final_name, at::TensorList collect, at::TensorList add) {
  TORCH_CHECK(x_in.dim() == 2, "ssm.residual_chain: `x` must be (B, H), got shape ", x_in.sizes());
  TORCH_CHECK(x_in.scalar_type() == at::kFloat || x_in.scalar_type() == at::kDouble,
              "ssm.residual_chain: `x` must be float32 or float64, got ", x_in.scalar_type());
  const int64_t act = choice(activation, {"identity", "gelu", "silu", "relu", "tanh"}, "`activation`");
  const int64_t final_ = choice(final_name, {"identity", "linear", "glu"}, "`final`");
  std::vector<int64_t> kinds;
  for (size_t j = 0; j < kind_names.size(); ++j) {
    const std::string name = kind_names.get(j);
    kinds.push_back(choice(name, {"feed_forward", "channel_ssm", "dense_ssm"}, "each of `kinds`"));
  }
  TORCH_CHECK(eps.size() == kinds.size(), "ssm.residual_chain: `eps` needs one entry per block (",
              kinds.size(), "), got ", eps.size());
  TORCH_CHECK(collect.empty() || collect.size() == kinds.size(),
              "ssm.residual_chain: `collect` must be empty or one tensor per block");
  TORCH_CHECK(add.empty() || add.size() == kinds.size(),
              "ssm.residual_chain: `add` must be empty or one tensor per block");
  TORCH_CHECK(ys.size() == us.size(), "ssm.residual_chain: `ys` and `us` must have one entry per SSM layer");
  const int64_t H = x_in.size(1);
  // Validate the whole plan before touching any buffer: a bad call changes nothing.
  int64_t p = 0, layer = 0;
  for (size_t j = 0; j < kinds.size(); ++j) {
    const int64_t k = kinds[j], blk = static_cast<int64_t>(j);
    const int64_t need = k == kFeedForward ? kFeedForwardParams : kSSMParams;
    TORCH_CHECK(p + need <= static_cast<int64_t>(params.size()), "ssm.residual_chain: `params` ends inside block ",
                blk);
    check_param(params[p], x_in, {H}, blk, "ln_weight");
    check_param(params[p + 1], x_in, {H}, blk, "ln_bias");
    if (k == kFeedForward) {
      const int64_t Fw = params[p + 2].dim() == 2 ? params[p + 2].size(1) : -1;
      check_param(params[p + 2], x_in, {H, Fw}, blk, "W1");
      check_param(params[p + 3], x_in, {Fw}, blk, "b1");
      check_param(params[p + 4], x_in, {Fw, H}, blk, "W2");
      check_param(params[p + 5], x_in, {H}, blk, "b2");
    } else {
      TORCH_CHECK(layer < static_cast<int64_t>(ys.size()), "ssm.residual_chain: `ys` has fewer entries than SSM blocks");
      check_param(params[p + 2], x_in, k == kChannelSSM ? std::vector<int64_t>{H} : std::vector<int64_t>{H, H}, blk,
                  "d");
      if (final_ != kNone) {
        const int64_t Fw = final_ == kGlu ? 2 * H : H;
        check_param(params[p + 3], x_in, {H, Fw}, blk, "W");
        check_param(params[p + 4], x_in, {Fw}, blk, "bias");
      }
      check_slot(ys[layer], x_in, layer, "ys");
      check_slot(us[layer], x_in, layer, "us");
      ++layer;
    }
    if (!collect.empty()) check_slot(collect[j], x_in, blk, "collect");
    if (!add.empty()) {
      check_slot(add[j], x_in, blk, "add");
      TORCH_CHECK(add[j].is_contiguous(), "ssm.residual_chain: block ", blk, ": `add` must be contiguous");
    }
    p += need;
  }
  TORCH_CHECK(p == static_cast<int64_t>(params.size()), "ssm.residual_chain: `params` has ",
              params.size() - p, " entries beyond the last block");
  TORCH_CHECK(layer == static_cast<int64_t>(ys.size()), "ssm.residual_chain: `ys` has more entries than SSM blocks");
  at::Tensor x = x_in.contiguous().clone();  // the caller's x is left as it was
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "residual_chain_cpu",
                             [&] { run_chain<scalar_t>(x, params, ys, us, kinds, eps, act, final_, collect, add); });
  return x;
}

}  // namespace

TORCH_LIBRARY_IMPL(ssm, CPU, m) { m.impl("residual_chain", &residual_chain_cpu); }

}  // namespace ssm
