// Causal multi-head self-attention with RoPE: RoPE's properties (identity at position 0,
// norms kept, scores that depend only on the distance, the inverse undoes it), the forward
// against a naive float64 reference written another way (complex rotations, one query at a
// time), causal masking, the backward against central finite differences in float64
// (relative error <= 1e-4), and the decode step over context_store KV shards against the
// full forward (max abs diff <= 1e-5).

#include "context_store/kv_shard.hpp"
#include "experts/nn/attention.hpp"
#include "experts/base/rng.hpp"

#include <catch2/catch.hpp>

#include <cmath>
#include <complex>
#include <string>

using namespace eoe;
using namespace eoe::experts;

namespace {

using dmatrix = basic_matrix<double>;

template <class S = double>
basic_matrix<S> randn(Eigen::Index rows, Eigen::Index cols, std::uint64_t seed, double scale = 1) {
  rng r{seed};
  basic_matrix<S> m(rows, cols);
  for (Eigen::Index i = 0; i < m.size(); ++i)
    m.data()[i] = static_cast<S>(scale * r.normal());
  return m;
}

layer_config attention_layer(int heads, double base = 10000.0) {
  layer_config lc;
  lc.kind = layer_kind::attention;
  lc.experts = 0;
  lc.heads = heads;
  lc.rope_base = base;
  return lc;
}

template <class S = double>
basic_attention_params<S> random_params(Eigen::Index d, std::uint64_t seed) {
  const double s = 1.0 / std::sqrt(static_cast<double>(d));
  return {randn<S>(d, d, seed, s), randn<S>(d, d, seed + 1, s), randn<S>(d, d, seed + 2, s),
          randn<S>(d, d, seed + 3, s)};
}

/// RoPE written another way: pair i of a head as the complex number x_2i + i x_2i+1, multiplied
/// by exp(i p theta_i).
Eigen::RowVectorXd rotate_complex(const Eigen::RowVectorXd& x, int heads, std::int64_t p,
                                  double base) {
  const auto d = x.size() / heads;
  Eigen::RowVectorXd out(x.size());
  for (int h = 0; h < heads; ++h)
    for (Eigen::Index i = 0; i < d / 2; ++i) {
      const double theta = std::pow(base, -2.0 * static_cast<double>(i) / static_cast<double>(d));
      const std::complex<double> z{x(h * d + 2 * i), x(h * d + 2 * i + 1)};
      const auto r = z * std::polar(1.0, static_cast<double>(p) * theta);
      out(h * d + 2 * i) = r.real();
      out(h * d + 2 * i + 1) = r.imag();
    }
  return out;
}

/// Causal attention of one sequence, query by query, in float64.
dmatrix naive_attention(const basic_attention_params<double>& w, int heads, double base,
                        const dmatrix& x) {
  const auto t = x.rows(), dim = x.cols(), d = dim / heads;
  dmatrix q = x * w.wq, k = x * w.wk, v = x * w.wv, o(t, dim);
  for (Eigen::Index r = 0; r < t; ++r) {
    q.row(r) = rotate_complex(q.row(r), heads, r, base);
    k.row(r) = rotate_complex(k.row(r), heads, r, base);
  }
  for (int h = 0; h < heads; ++h)
    for (Eigen::Index i = 0; i < t; ++i) {
      std::vector<double> s;
      double mx = -1e300, sum = 0;
      for (Eigen::Index j = 0; j <= i; ++j) {
        s.push_back(q.row(i).segment(h * d, d).dot(k.row(j).segment(h * d, d)) / std::sqrt(double(d)));
        mx = std::max(mx, s.back());
      }
      Eigen::RowVectorXd acc = Eigen::RowVectorXd::Zero(d);
      for (Eigen::Index j = 0; j <= i; ++j) {
        const double e = std::exp(s[j] - mx);
        sum += e;
        acc += e * v.row(j).segment(h * d, d);
      }
      o.row(i).segment(h * d, d) = acc / sum;
    }
  return o * w.wo;
}

} // namespace

TEST_CASE("RoPE: identity at position 0, norms kept, the inverse undoes it", "[attention]") {
  const int heads = 2, d = 8;
  const auto t = make_rope<double>(0, 6, d, 10000.0);
  dmatrix x = randn(6, heads * d, 1);
  const dmatrix before = x;
  apply_rope(x, heads, t);
  CHECK(x.row(0) == before.row(0)); // angle 0: cos 1, sin 0
  CHECK(x.row(3) != before.row(3));
  for (Eigen::Index r = 0; r < x.rows(); ++r)
    for (int h = 0; h < heads; ++h)
      for (int i = 0; i < d / 2; ++i) // each pair is rotated, so its length stays
        CHECK(std::hypot(x(r, h * d + 2 * i), x(r, h * d + 2 * i + 1))
              == Approx(std::hypot(before(r, h * d + 2 * i), before(r, h * d + 2 * i + 1))).epsilon(1e-12));
  // Rows of the table at an offset equal a table that starts there.
  const auto later = make_rope<double>(4, 2, d, 10000.0);
  CHECK(later.cos.row(1) == t.cos.row(5));
  CHECK(later.sin.row(0) == t.sin.row(4));
  apply_rope(x, heads, t, true);
  CHECK((x - before).cwiseAbs().maxCoeff() < 1e-14);
  // The same rotation as multiplying each pair, read as a complex number, by exp(i p theta).
  dmatrix y = before;
  apply_rope(y, heads, t);
  for (Eigen::Index r = 0; r < y.rows(); ++r)
    CHECK((y.row(r) - rotate_complex(before.row(r), heads, r, 10000.0)).cwiseAbs().maxCoeff() < 1e-14);
}

TEST_CASE("RoPE: a query-key score depends only on the distance of the positions", "[attention]") {
  const int d = 16;
  const Eigen::RowVectorXd q = randn(1, d, 2), k = randn(1, d, 3);
  auto score = [&](std::int64_t pq, std::int64_t pk) {
    dmatrix a = q, b = k;
    apply_rope(a, 1, make_rope<double>(pq, 1, d, 10000.0));
    apply_rope(b, 1, make_rope<double>(pk, 1, d, 10000.0));
    return a.row(0).dot(b.row(0));
  };
  for (std::int64_t shift : {1, 7, 100, 5000})
    for (auto [pq, pk] : {std::pair<std::int64_t, std::int64_t>{3, 1}, {9, 9}, {20, 4}})
      CHECK(score(pq + shift, pk + shift) == Approx(score(pq, pk)).margin(1e-10));
  CHECK(std::abs(score(3, 1) - score(4, 1)) > 1e-3); // another distance, another score
}

TEST_CASE("attention forward equals a naive float64 reference, sequence by sequence",
          "[attention]") {
  const int heads = 2;
  const Eigen::Index dim = 8, t = 7;
  const auto lc = attention_layer(heads, 100.0);
  const auto w = random_params(dim, 10);
  const dmatrix x = randn(3 * t, dim, 11); // three sequences
  dmatrix y;
  attention_forward(w, lc, x, t, y);
  REQUIRE(y.rows() == 3 * t);
  for (Eigen::Index b = 0; b < 3; ++b) {
    const dmatrix want = naive_attention(w, heads, 100.0, x.middleRows(b * t, t));
    CHECK((y.middleRows(b * t, t) - want).cwiseAbs().maxCoeff() < 1e-12);
  }
}

TEST_CASE("causal masking: a later input never changes an earlier output", "[attention]") {
  const auto lc = attention_layer(2);
  const auto w = random_params(8, 20);
  const dmatrix x = randn(2 * 6, 8, 21);
  dmatrix y, y2;
  attention_forward(w, lc, x, 6, y);
  for (Eigen::Index changed = 0; changed < 6; ++changed) {
    dmatrix x2 = x;
    x2.row(changed) += randn(1, 8, 22 + changed);
    attention_forward(w, lc, x2, 6, y2);
    INFO("changed row " << changed);
    CHECK(y2.topRows(changed) == y.topRows(changed));           // exactly: probability 0
    CHECK(y2.row(changed) != y.row(changed));                   // the row itself changes
    CHECK(y2.middleRows(6, 6) == y.middleRows(6, 6));           // the other sequence too
    if (changed + 1 < 6)
      CHECK((y2.row(5) - y.row(5)).cwiseAbs().maxCoeff() > 1e-6); // and what follows does
  }
}

TEST_CASE("attention gradients match central finite differences", "[attention]") {
  const int heads = 2;
  const Eigen::Index dim = 8, t = 5, rows = 2 * t;
  const auto lc = attention_layer(heads, 50.0);
  auto w = random_params(dim, 30);
  dmatrix x = randn(rows, dim, 31);
  const dmatrix r = randn(rows, dim, 32); // loss = sum(y . r)
  auto loss = [&] {
    dmatrix y;
    attention_forward(w, lc, x, t, y);
    return y.cwiseProduct(r).sum();
  };
  attention_tape<double> tape;
  dmatrix y, dx;
  attention_forward(w, lc, x, t, y, &tape);
  basic_attention_params<double> g{dmatrix::Zero(dim, dim), dmatrix::Zero(dim, dim),
                                   dmatrix::Zero(dim, dim), dmatrix::Zero(dim, dim)};
  attention_backward(w, lc, tape, t, r, g, dx);
  double worst = 0;
  std::string worst_at;
  size_t checked = 0;
  auto check = [&](const std::string& name, dmatrix& p, const dmatrix& analytic) {
    for (Eigen::Index i = 0; i < p.size(); ++i) {
      const double h = 1e-6, keep = p.data()[i];
      p.data()[i] = keep + h;
      const double up = loss();
      p.data()[i] = keep - h;
      const double down = loss();
      p.data()[i] = keep;
      const double numeric = (up - down) / (2 * h), a = analytic.data()[i];
      const double diff = std::abs(numeric - a);
      const double err = diff <= 1e-9 ? 0.0 : diff / std::max(std::abs(numeric), std::abs(a));
      ++checked;
      if (err > worst) {
        worst = err;
        worst_at = name + "[" + std::to_string(i) + "] analytic " + std::to_string(a) + " numeric "
                   + std::to_string(numeric);
      }
    }
  };
  check("wq", w.wq, g.wq);
  check("wk", w.wk, g.wk);
  check("wv", w.wv, g.wv);
  check("wo", w.wo, g.wo);
  check("x", x, dx);
  INFO("worst: " << worst_at);
  CHECK(checked == 4 * 64 + 80);
  CHECK(worst <= 1e-4);
  CHECK(g.wq.cwiseAbs().maxCoeff() > 1e-3); // RoPE and the softmax are in the path: not trivial
}

TEST_CASE("the decode step over KV shards equals the full causal forward", "[attention]") {
  const int heads = 4;
  const Eigen::Index dim = 16, t = 11;
  const auto lc = attention_layer(heads);
  const auto w = random_params<float>(dim, 40);
  const matrix x = randn<float>(t, dim, 41);
  matrix y;
  attention_forward(w, lc, x, t, y);
  std::vector<context::kv_shard> shards;
  const kv_layout layout{3, 2}; // shards of 3 positions, blocks of 2: 4 shards for 11
  float worst = 0;
  for (Eigen::Index p = 0; p < t; ++p) {
    const matrix step = attention_decode(w, lc, x.row(p), p, shards, layout);
    worst = std::max(worst, (step - y.row(p)).cwiseAbs().maxCoeff());
  }
  CHECK(worst <= 1e-5f);
  REQUIRE(shards.size() == 4);
  CHECK(shards[0].begin() == 0);
  CHECK(shards[3].begin() == 9);
  CHECK(shards[3].size() == 2);
  // Keys are stored rotated by their own position: the shard needs no positions to answer.
  matrix k = x * w.wk;
  apply_rope(k, heads, make_rope<float>(0, t, static_cast<int>(dim / heads), lc.rope_base));
  CHECK((shards[2].keys(1).row(1) - k.row(7).segment(4, 4)).cwiseAbs().maxCoeff() < 1e-6f);
  // Positions come in order, one after the other.
  CHECK_THROWS_AS(attention_decode(w, lc, x.row(0), 5, shards, layout), std::invalid_argument);
}
