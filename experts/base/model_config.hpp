#pragma once
// The model configuration: the shape of an EoE stack and the baselines, read from TOML with
// strict validation. Every error names file, line, key, the expected and the actual value.

#include "experts/base/error.hpp"
#include "experts/base/train_config.hpp"
#include "kernels/activation.hpp"

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace eoe::experts {

/// What a layer of the stack is.
enum class layer_kind : std::uint8_t {
  eoe,       ///< experts score themselves (Autonomy-of-Experts), no router
  dense,     ///< one FFN on every token
  router,    ///< softmax router picks the top-k experts (Switch / GShard baseline)
  hash,      ///< a stable hash of the token id picks the experts
  attention, ///< language models only: causal multi-head self-attention with RoPE
};

/// What the whole model is.
enum class model_kind : std::uint8_t {
  classifier, ///< tokens (T, D_in) -> embedding -> expert layers -> head (T, classes)
  lm,         ///< a decoder-only byte-level language model: sequences of tokens -> next-token logits
};

/// How an EoE layer decides which experts are active on a token.
enum class activation_mode : std::uint8_t {
  topk,      ///< the k highest-scoring experts, ties to the lower index
  threshold, ///< every expert whose score exceeds its tau
};

std::string_view to_string(layer_kind k) noexcept;
std::string_view to_string(activation_mode m) noexcept;
std::string_view to_string(model_kind k) noexcept;

/// One layer of the stack. Fields not used by a kind keep their defaults.
struct layer_config {
  layer_kind kind = layer_kind::eoe;
  int experts = 1;                  ///< experts in the layer (dense: 1)
  int hidden = 0;                   ///< H of each FFN D -> H -> D
  /// eoe: r of the factored first projection A (D, r) B (r, H); 0: not factored, the expert
  /// is D -> H -> D and scores itself with the first `score_columns` columns of its W1.
  int rank = 0;
  /// eoe: the columns of the first projection whose norm is the score: of u = x A (at most r,
  /// every expert still computes all of u), or of x W1 when not factored (at most H; every
  /// expert computes only those columns of x W1 to score itself).
  int score_columns = 0;
  kernels::activation act = kernels::activation::silu;
  activation_mode mode = activation_mode::topk; ///< eoe only
  int k = 1;                        ///< topk / router / hash: experts per token
  std::vector<float> tau;           ///< eoe threshold: one threshold per expert
  bool affinity = false;            ///< eoe: trained affinity (E_prev, E) to the previous layer
  bool bias = true;                 ///< FFN biases b1 (H) and b2 (D)
  /// Recurrent layer: the layer runs `steps` times with the same weights, its experts feeding
  /// themselves (and their peers) from one step to the next. 1: an ordinary layer.
  int steps = 1;
  int heads = 0;              ///< attention: heads, each of dim / heads (even, for RoPE)
  double rope_base = 10000.0; ///< attention: RoPE frequency base (theta_i = base^(-2i / head_dim))

  bool operator==(const layer_config&) const = default;

  /// Columns of the first projection an EoE expert computes for every token to score itself.
  int score_width() const noexcept {
    return rank > 0 ? rank : hidden;
  }
};

/// The whole stack. A classifier: embedding D_in -> D, layers, head D -> classes. A language
/// model: token embedding (vocab, D), pre-norm residual layers h += layer(rmsnorm(h)) where
/// attention and expert layers interleave, a final RMSNorm and the head D -> vocab.
struct model_config {
  model_kind kind = model_kind::classifier;
  std::string name = "model";
  int input_dim = 0; ///< D_in of the embedding; 0: no embedding, inputs are (tokens, dim)
  int dim = 0;       ///< D, the width of the residual stream
  int classes = 0;   ///< outputs of the head; 0: no head, outputs are (tokens, dim)
  int vocab = 0;     ///< lm: tokens (bytes: 256); the embedding's rows and the head's outputs
  int context = 0;   ///< lm: the longest sequence (positions 0..context-1) it trains and runs on
  std::uint64_t seed = 0; ///< weight initialisation seed
  std::vector<layer_config> layers;

  bool is_lm() const noexcept {
    return kind == model_kind::lm;
  }

  bool operator==(const model_config&) const = default;

  /// Experts of layer `l`; the layer before the first has none.
  int experts_before(size_t l) const {
    return l == 0 ? 0 : layers[l - 1].experts;
  }

  /// Layers as run: every layer counted `steps` times.
  size_t unrolled_layers() const {
    size_t n = 0;
    for (auto& l : layers)
      n += static_cast<size_t>(l.steps);
    return n;
  }
};

/// A whole config file: the model, and how to train it ([train], defaults when absent).
struct config_file {
  model_config model;
  train_config train;
  bool has_train = false; ///< the file had a [train] table
};

/// Parses and validates a whole config file; `source` names it in errors.
expected<config_file> parse_config_file(std::string_view text, std::string_view source);

/// Reads and validates a whole config file.
expected<config_file> load_config_file(const std::string& path);

/// Parses and validates TOML text; `source` names it in errors (a path, or "<embedded>").
expected<model_config> parse_model_config(std::string_view text, std::string_view source);

/// Reads and validates a TOML file.
expected<model_config> load_model_config(const std::string& path);

/// Canonical TOML of a config; parse_model_config(to_toml(c)) == c.
std::string to_toml(const model_config& c);

/// The default model compiled into the binary (configs/default.toml).
std::string_view default_config_text() noexcept;
const model_config& default_model_config();

} // namespace eoe::experts
