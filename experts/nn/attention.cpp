#include "experts/nn/attention.hpp"

#include "context_store/kv_shard.hpp"
#include "context_store/partial.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace eoe::experts {

namespace {

template <class S>
using mat = basic_matrix<S>;

int head_width(const layer_config& lc, Eigen::Index dim) {
  if (lc.heads < 1 || dim % lc.heads != 0 || (dim / lc.heads) % 2 != 0)
    throw std::invalid_argument("attention: dim " + std::to_string(dim) + " does not split into "
                                + std::to_string(lc.heads) + " heads of an even width");
  return static_cast<int>(dim / lc.heads);
}

/// The scale of the scores, 1 / sqrt(d), computed as the KV shard computes it.
template <class S>
S score_scale(int d) {
  return S{1} / std::sqrt(static_cast<S>(d));
}

} // namespace

template <class S>
rope_table<S> make_rope(std::int64_t first, Eigen::Index n, int head_dim, double base) {
  const int pairs = head_dim / 2;
  rope_table<S> t;
  t.cos.resize(n, pairs);
  t.sin.resize(n, pairs);
  for (Eigen::Index r = 0; r < n; ++r)
    for (int i = 0; i < pairs; ++i) {
      const double theta = std::pow(base, -2.0 * i / head_dim);
      const double angle = static_cast<double>(first + r) * theta;
      t.cos(r, i) = static_cast<S>(std::cos(angle));
      t.sin(r, i) = static_cast<S>(std::sin(angle));
    }
  return t;
}

template <class S>
void apply_rope(basic_matrix<S>& x, int heads, const rope_table<S>& t, bool inverse) {
  const auto pairs = t.cos.cols();
  const auto d = 2 * pairs;
  if (x.cols() != heads * d || x.rows() != t.cos.rows())
    throw std::invalid_argument("apply_rope: (" + std::to_string(x.rows()) + ", "
                                + std::to_string(x.cols()) + ") does not fit the table");
  for (Eigen::Index r = 0; r < x.rows(); ++r)
    for (int h = 0; h < heads; ++h) {
      S* p = x.row(r).data() + h * d;
      for (Eigen::Index i = 0; i < pairs; ++i) {
        const S c = t.cos(r, i), s = inverse ? -t.sin(r, i) : t.sin(r, i);
        const S a = p[2 * i], b = p[2 * i + 1];
        p[2 * i] = a * c - b * s;
        p[2 * i + 1] = a * s + b * c;
      }
    }
}

template <class S>
void attention_forward(const basic_attention_params<S>& w, const layer_config& lc,
                       const basic_matrix<S>& x, Eigen::Index seq_len, basic_matrix<S>& y,
                       attention_tape<S>* tape) {
  const auto n = x.rows(), dim = x.cols();
  const int d = head_width(lc, dim);
  if (seq_len < 1 || n % seq_len != 0)
    throw std::invalid_argument("attention_forward: " + std::to_string(n)
                                + " rows are not whole sequences of " + std::to_string(seq_len));
  attention_tape<S> local;
  auto& tp = tape ? *tape : local;
  const auto sequences = n / seq_len;
  tp.x = x;
  tp.q.noalias() = x * w.wq;
  tp.k.noalias() = x * w.wk;
  tp.v.noalias() = x * w.wv;
  const auto rope = make_rope<S>(0, seq_len, d, lc.rope_base);
  for (Eigen::Index b = 0; b < sequences; ++b) {
    // Every sequence starts at position 0: rotate each one with the same table.
    mat<S> qb = tp.q.middleRows(b * seq_len, seq_len), kb = tp.k.middleRows(b * seq_len, seq_len);
    apply_rope(qb, lc.heads, rope);
    apply_rope(kb, lc.heads, rope);
    tp.q.middleRows(b * seq_len, seq_len) = qb;
    tp.k.middleRows(b * seq_len, seq_len) = kb;
  }
  tp.o.resize(n, dim);
  tp.p.resize(static_cast<size_t>(sequences * lc.heads));
  const S scale = score_scale<S>(d);
  for (Eigen::Index b = 0; b < sequences; ++b)
    for (int h = 0; h < lc.heads; ++h) {
      const auto q = tp.q.block(b * seq_len, h * d, seq_len, d);
      const auto k = tp.k.block(b * seq_len, h * d, seq_len, d);
      const auto v = tp.v.block(b * seq_len, h * d, seq_len, d);
      auto& p = tp.p[static_cast<size_t>(b * lc.heads + h)];
      p.noalias() = (q * k.transpose()) * scale;
      for (Eigen::Index i = 0; i < seq_len; ++i) {
        // Softmax over the visible keys j <= i; the rest get exactly 0.
        auto row = p.row(i);
        const S m = row.head(i + 1).maxCoeff();
        S sum = 0;
        for (Eigen::Index j = 0; j <= i; ++j)
          sum += row(j) = std::exp(row(j) - m);
        row.head(i + 1) /= sum;
        row.tail(seq_len - i - 1).setZero();
      }
      tp.o.block(b * seq_len, h * d, seq_len, d).noalias() = p * v;
    }
  y.noalias() = tp.o * w.wo;
}

template <class S>
void attention_backward(const basic_attention_params<S>& w, const layer_config& lc,
                        const attention_tape<S>& tape, Eigen::Index seq_len,
                        const basic_matrix<S>& dy, basic_attention_params<S>& g,
                        basic_matrix<S>& dx) {
  const auto n = tape.x.rows(), dim = tape.x.cols();
  const int d = head_width(lc, dim);
  const auto sequences = n / seq_len;
  const S scale = score_scale<S>(d);
  g.wo.noalias() += tape.o.transpose() * dy;
  const mat<S> d_o = dy * w.wo.transpose();
  mat<S> dq(n, dim), dk(n, dim), dv(n, dim);
  mat<S> dp, ds;
  for (Eigen::Index b = 0; b < sequences; ++b)
    for (int h = 0; h < lc.heads; ++h) {
      const auto& p = tape.p[static_cast<size_t>(b * lc.heads + h)];
      const auto q = tape.q.block(b * seq_len, h * d, seq_len, d);
      const auto k = tape.k.block(b * seq_len, h * d, seq_len, d);
      const auto v = tape.v.block(b * seq_len, h * d, seq_len, d);
      const auto doh = d_o.block(b * seq_len, h * d, seq_len, d);
      dp.noalias() = doh * v.transpose();
      dv.block(b * seq_len, h * d, seq_len, d).noalias() = p.transpose() * doh;
      // Through the softmax: ds = p (dp - <p, dp>) per row; masked entries have p = 0.
      ds.resize(seq_len, seq_len);
      for (Eigen::Index i = 0; i < seq_len; ++i) {
        const S dot = p.row(i).dot(dp.row(i));
        ds.row(i) = (p.row(i).array() * (dp.row(i).array() - dot)).matrix();
      }
      ds *= scale;
      dq.block(b * seq_len, h * d, seq_len, d).noalias() = ds * k;
      dk.block(b * seq_len, h * d, seq_len, d).noalias() = ds.transpose() * q;
    }
  // The gradients above are with respect to the rotated queries and keys: rotate back.
  const auto rope = make_rope<S>(0, seq_len, d, lc.rope_base);
  for (Eigen::Index b = 0; b < sequences; ++b) {
    mat<S> qb = dq.middleRows(b * seq_len, seq_len), kb = dk.middleRows(b * seq_len, seq_len);
    apply_rope(qb, lc.heads, rope, true);
    apply_rope(kb, lc.heads, rope, true);
    dq.middleRows(b * seq_len, seq_len) = qb;
    dk.middleRows(b * seq_len, seq_len) = kb;
  }
  g.wq.noalias() += tape.x.transpose() * dq;
  g.wk.noalias() += tape.x.transpose() * dk;
  g.wv.noalias() += tape.x.transpose() * dv;
  dx.noalias() = dq * w.wq.transpose();
  dx.noalias() += dk * w.wk.transpose();
  dx.noalias() += dv * w.wv.transpose();
}

attention_projection attention_project(const attention_params& w, const layer_config& lc,
                                       const matrix& x, std::int64_t first) {
  const int d = head_width(lc, x.cols());
  matrix q = x * w.wq, k = x * w.wk;
  const matrix v = x * w.wv;
  const auto rope = make_rope<float>(first, x.rows(), d, lc.rope_base);
  apply_rope(q, lc.heads, rope);
  apply_rope(k, lc.heads, rope);
  attention_projection out;
  for (int h = 0; h < lc.heads; ++h) {
    out.q.push_back(q.middleCols(h * d, d));
    out.k.push_back(k.middleCols(h * d, d));
    out.v.push_back(v.middleCols(h * d, d));
  }
  return out;
}

matrix attention_output(const attention_params& w, std::span<const matrix> heads) {
  if (heads.empty())
    throw std::invalid_argument("attention_output: no heads");
  const auto d = heads[0].cols();
  matrix o(heads[0].rows(), d * static_cast<Eigen::Index>(heads.size()));
  for (size_t h = 0; h < heads.size(); ++h)
    o.middleCols(static_cast<Eigen::Index>(h) * d, d) = heads[h];
  return o * w.wo;
}

matrix attention_decode(const attention_params& w, const layer_config& lc, const matrix& x,
                        std::int64_t position, std::vector<context::kv_shard>& shards,
                        const kv_layout& layout) {
  const int d = head_width(lc, x.cols());
  const std::int64_t next = shards.empty() ? 0 : shards.back().end();
  if (position != next)
    throw std::invalid_argument("attention_decode: position " + std::to_string(position)
                                + ", but the shards hold positions [0, " + std::to_string(next)
                                + ")");
  const auto n = x.rows();
  auto p = attention_project(w, lc, x, position);
  std::vector<matrix> kh(static_cast<size_t>(lc.heads)), vh(kh.size());
  for (Eigen::Index done = 0; done < n;) {
    if (shards.empty() || shards.back().size() == shards.back().capacity())
      shards.emplace_back(context::shard_shape{lc.heads, d, layout.block_size}, position + done,
                          layout.shard_capacity);
    const auto take = std::min<Eigen::Index>(n - done, shards.back().capacity()
                                                         - shards.back().size());
    for (int h = 0; h < lc.heads; ++h) {
      kh[h] = p.k[h].middleRows(done, take);
      vh[h] = p.v[h].middleRows(done, take);
    }
    shards.back().append(kh, vh);
    done += take;
  }
  std::vector<std::int64_t> pos(static_cast<size_t>(n));
  for (Eigen::Index r = 0; r < n; ++r)
    pos[static_cast<size_t>(r)] = position + r;
  std::vector<matrix> heads(static_cast<size_t>(lc.heads));
  std::vector<context::partial> parts;
  for (int h = 0; h < lc.heads; ++h) {
    parts.clear();
    for (auto& s : shards)
      parts.push_back(s.attend(h, p.q[h], pos, true));
    heads[h] = context::merge(parts).out;
  }
  return attention_output(w, heads);
}

#define EOE_ATTENTION_INSTANCE(S)                                                              \
  template rope_table<S> make_rope<S>(std::int64_t, Eigen::Index, int, double);                \
  template void apply_rope<S>(basic_matrix<S>&, int, const rope_table<S>&, bool);              \
  template void attention_forward<S>(const basic_attention_params<S>&, const layer_config&,    \
                                     const basic_matrix<S>&, Eigen::Index, basic_matrix<S>&,    \
                                     attention_tape<S>*);                                      \
  template void attention_backward<S>(const basic_attention_params<S>&, const layer_config&,   \
                                      const attention_tape<S>&, Eigen::Index,                  \
                                      const basic_matrix<S>&, basic_attention_params<S>&,      \
                                      basic_matrix<S>&);
EOE_ATTENTION_INSTANCE(float)
EOE_ATTENTION_INSTANCE(double)
#undef EOE_ATTENTION_INSTANCE

} // namespace eoe::experts
