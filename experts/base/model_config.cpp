#include "experts/base/model_config.hpp"

#include "experts/base/toml_reader.hpp"

#include <toml++/toml.h>

#include <algorithm>
#include <fstream>
#include <iomanip>
#include <limits>
#include <optional>
#include <sstream>

namespace eoe::experts {

std::string_view to_string(layer_kind k) noexcept {
  switch (k) {
    case layer_kind::eoe: return "eoe";
    case layer_kind::dense: return "dense";
    case layer_kind::router: return "router";
    case layer_kind::hash: return "hash";
    case layer_kind::attention: return "attention";
  }
  return "?";
}

std::string_view to_string(model_kind k) noexcept {
  return k == model_kind::lm ? "lm" : "classifier";
}

std::string_view to_string(activation_mode m) noexcept {
  return m == activation_mode::topk ? "topk" : "threshold";
}

namespace {

constexpr std::int64_t max_width = 1 << 20;   // D, H, D_in: generous, but not absurd
constexpr std::int64_t max_experts = 4096;
constexpr std::int64_t max_layers = 1024;
constexpr std::int64_t max_vocab = 256;      // byte-level: a token is one byte
constexpr std::int64_t max_context = 1 << 16;
constexpr size_t max_name_bytes = 256;

/// tau: one non-negative number for every expert, or an array of `experts` of them.
std::vector<float> read_tau(table_reader& r, int experts) {
  const std::string want = "a number >= 0 or an array of " + std::to_string(experts)
                           + " numbers >= 0 (one per expert)";
  auto* n = r.take("tau");
  if (!n) {
    r.missing("tau", want + " for mode \"threshold\"");
    return {};
  }
  auto number = [](const toml::node& x) -> std::optional<double> {
    if (auto i = x.as_integer())
      return static_cast<double>(i->get());
    if (auto f = x.as_floating_point())
      return f->get();
    return std::nullopt;
  };
  if (auto v = number(*n)) {
    if (*v >= 0 && *v < std::numeric_limits<float>::max())
      return std::vector<float>(static_cast<size_t>(experts), static_cast<float>(*v));
    r.bad(*n, "tau", want);
    return {};
  }
  auto arr = n->as_array();
  if (!arr || arr->size() != static_cast<size_t>(experts)) {
    r.bad(*n, "tau", want);
    return {};
  }
  std::vector<float> out;
  for (size_t i = 0; i < arr->size(); ++i) {
    auto v = number((*arr)[i]);
    if (!v || *v < 0 || *v >= std::numeric_limits<float>::max()) {
      r.bad((*arr)[i], "tau[" + std::to_string(i) + "]", "a number >= 0");
      return {};
    }
    out.push_back(static_cast<float>(*v));
  }
  return out;
}

/// One [[layer]] table. Problems go to the reader's list; the layer comes back regardless so
/// that later layers still see the right number of experts before them.
layer_config read_layer(table_reader& r, const model_config& m, size_t index, int experts_before) {
  layer_config l;
  if (auto* k = r.table().get("kind"); k && !m.is_lm() && k->value<std::string>() == "attention") {
    r.take("kind");
    r.out().add(k->source(), r.key_path("kind"),
                "\"attention\" layers belong to language models ([model] kind = \"lm\")");
    return l;
  }
  auto kind = m.is_lm() ? r.choice("kind", {"attention", "eoe", "dense", "router", "hash"}, std::nullopt)
                        : r.choice("kind", {"eoe", "dense", "router", "hash"}, std::nullopt);
  if (!kind)
    return l; // the kind decides which keys exist: nothing more to check
  if (*kind == "attention") {
    l.kind = layer_kind::attention;
    l.experts = 0;
    l.bias = false;
    const auto* hn = r.table().get("heads");
    l.heads = static_cast<int>(
      r.integer("heads", 1, std::max(1, m.dim), std::nullopt, " (at most dim)").value_or(0));
    if (hn && l.heads > 0 && m.dim > 0 && (m.dim % l.heads != 0 || (m.dim / l.heads) % 2 != 0))
      r.out().add(hn->source(), r.key_path("heads"),
                  "dim (" + std::to_string(m.dim) + ") must split into " + std::to_string(l.heads)
                    + " heads of an even width (RoPE rotates pairs of dimensions)");
    l.rope_base = r.number("rope_base", 2.0, 1e9, 10000.0).value_or(10000.0);
    r.reject_unknown(" for an \"attention\" layer");
    return l;
  }
  l.kind = *kind == "eoe"      ? layer_kind::eoe
           : *kind == "dense"  ? layer_kind::dense
           : *kind == "router" ? layer_kind::router
                               : layer_kind::hash;

  bool experts_ok = true;
  if (l.kind != layer_kind::dense) {
    auto e = r.integer("experts", l.kind == layer_kind::eoe ? 1 : 2, max_experts, std::nullopt);
    experts_ok = e.has_value();
    l.experts = static_cast<int>(e.value_or(1));
  }
  l.hidden = static_cast<int>(r.integer("hidden", 1, max_width, std::nullopt).value_or(0));
  l.act = kernels::parse_activation(r.choice("activation", {"silu", "gelu"}, std::string{"silu"})
                                      .value_or("silu"))
            .value();
  l.bias = r.boolean("bias", true).value_or(true);

  auto read_k = [&] {
    if (experts_ok)
      l.k = static_cast<int>(
        r.integer("k", 1, l.experts, std::nullopt, " (the layer's experts)").value_or(1));
    else
      r.take("k"); // its range is unknown: the experts error says enough
  };
  switch (l.kind) {
    case layer_kind::eoe: {
      l.rank = static_cast<int>(
        r.integer("rank", 0, std::max(1, m.dim), 0, " (at most dim; 0: not factored)").value_or(0));
      if (l.hidden > 0) {
        const bool factored = l.rank > 0;
        l.score_columns = static_cast<int>(
          r.integer("score_columns", 1, l.score_width(), l.score_width(),
                    factored ? " (at most rank)" : " (at most hidden: the expert is not factored)")
            .value_or(l.score_width()));
      } else {
        r.take("score_columns"); // its range is unknown: the hidden error says enough
      }
      auto mode = r.choice("mode", {"topk", "threshold"}, std::string{"topk"});
      if (mode == "threshold") {
        l.mode = activation_mode::threshold;
        if (experts_ok)
          l.tau = read_tau(r, l.experts);
        else
          r.take("tau");
      } else {
        read_k();
      }
      l.affinity = r.boolean("affinity", false).value_or(false);
      if (l.affinity && m.is_lm())
        r.out().add(r.table().get("affinity")->source(), r.key_path("affinity"),
                    "a language model's layers are residual branches of their own: no affinity");
      else if (l.affinity && experts_before == 0)
        r.out().add(r.table().get("affinity")->source(), r.key_path("affinity"),
                    index == 0 ? "the first layer has no previous experts to have affinity to"
                               : "the previous layer has no experts");
      break;
    }
    case layer_kind::router:
    case layer_kind::hash:
      read_k();
      break;
    case layer_kind::dense:
    case layer_kind::attention: // read above
      break;
  }
  l.steps = static_cast<int>(r.integer("steps", 1, 64, 1, " (1: not recurrent)").value_or(1));
  if (l.steps > 1 && l.affinity)
    r.out().add(r.table().get("steps")->source(), r.key_path("steps"),
                "a recurrent layer (steps > 1) cannot also have affinity");
  r.reject_unknown(std::string{" for a \""} + *kind + "\" layer");
  return l;
}

} // namespace

expected<config_file> parse_config_file(std::string_view text, std::string_view source) {
  auto parsed = parse_toml(text, source);
  if (!parsed)
    return eoe::unexpected(parsed.error());
  const toml::table& doc = *parsed;

  problems out{source, {}};
  table_reader top{doc, "", out};
  model_config m;

  auto* model_node = top.take("model");
  if (!model_node) {
    top.missing("model", "a [model] table with dim");
  } else if (auto mt = model_node->as_table()) {
    table_reader r{*mt, "model", out};
    if (auto v = r.string("name", std::string{"model"})) {
      // The name is printed (eoe inspect, forward, train) and embedded in every checkpoint: no
      // control characters (a terminal's escape sequences), no megabytes.
      const bool control = std::any_of(v->begin(), v->end(), [](char c) {
        return static_cast<unsigned char>(c) < 0x20 || c == 0x7f;
      });
      if (control || v->empty() || v->size() > max_name_bytes)
        r.bad(*mt->get("name"), "name",
              "a string of 1.." + std::to_string(max_name_bytes)
                + " bytes without control characters");
      else
        m.name = *v;
    }
    if (r.choice("kind", {"classifier", "lm"}, std::string{"classifier"}) == "lm")
      m.kind = model_kind::lm;
    if (m.is_lm()) {
      if (auto v = r.integer("vocab", 2, max_vocab, 256, " (byte-level tokens)"))
        m.vocab = static_cast<int>(*v);
      if (auto v = r.integer("context", 1, max_context, std::nullopt))
        m.context = static_cast<int>(*v);
    } else {
      if (auto v = r.integer("input_dim", 0, max_width, 0, " (0: no embedding)"))
        m.input_dim = static_cast<int>(*v);
    }
    if (auto v = r.integer("dim", 1, max_width, std::nullopt))
      m.dim = static_cast<int>(*v);
    if (!m.is_lm())
      if (auto v = r.integer("classes", 0, max_width, 0, " (0: no head)"))
        m.classes = static_cast<int>(*v);
    if (auto v = r.integer("seed", 0, std::numeric_limits<std::int64_t>::max(), 0))
      m.seed = static_cast<std::uint64_t>(*v);
    r.reject_unknown(m.is_lm() ? " in [model] of a language model" : " in [model]");
  } else {
    top.bad(*model_node, "model", "a table");
  }

  auto* layers_node = top.take("layer");
  if (!layers_node) {
    top.missing("layer", "at least one [[layer]] table");
  } else if (auto arr = layers_node->as_array(); arr && arr->is_array_of_tables()
                                                  && !arr->empty() && arr->size() <= max_layers) {
    for (size_t i = 0; i < arr->size(); ++i) {
      table_reader r{*(*arr)[i].as_table(), "layer[" + std::to_string(i) + "]", out};
      m.layers.push_back(read_layer(r, m, i, m.experts_before(i)));
    }
  } else {
    top.bad(*layers_node, "layer",
            "an array of 1.." + std::to_string(max_layers) + " [[layer]] tables");
  }
  config_file file;
  if (auto* train_node = top.take("train")) {
    if (auto tt = train_node->as_table()) {
      table_reader r{*tt, "train", out};
      read_train_table(r, file.train);
      file.has_train = true;
    } else {
      top.bad(*train_node, "train", "a table");
    }
  }
  top.reject_unknown(" at the top level");

  if (!out.lines.empty())
    return fail(errc::config_invalid, out.joined());
  file.model = std::move(m);
  return file;
}

expected<model_config> parse_model_config(std::string_view text, std::string_view source) {
  auto f = parse_config_file(text, source);
  if (!f)
    return eoe::unexpected(f.error());
  return std::move(f->model);
}

expected<config_file> load_config_file(const std::string& path) {
  std::ifstream in{path, std::ios::binary};
  if (!in)
    return fail(errc::io, path + ": cannot open the config file");
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad())
    return fail(errc::io, path + ": read error");
  return parse_config_file(text.str(), path);
}

expected<model_config> load_model_config(const std::string& path) {
  auto f = load_config_file(path);
  if (!f)
    return eoe::unexpected(f.error());
  return std::move(f->model);
}

std::string to_toml(const model_config& c) {
  std::ostringstream os;
  os.precision(9);
  auto quoted = [](const std::string& s) {
    toml::table t{{"s", s}};
    std::ostringstream q;
    // Every character past ASCII as an escape: the text must read back, and parse_toml refuses
    // some characters written raw (U+00E9 in a name made a checkpoint that did not load). An
    // ASCII name is written as it always was.
    q << toml::toml_formatter{t, toml::toml_formatter::default_flags
                                   & ~toml::format_flags::allow_unicode_strings};
    auto text = q.str(); // s = "..."
    return text.substr(text.find('=') + 2);
  };
  os << "[model]\n"
     << "name = " << quoted(c.name) << "\n";
  if (c.is_lm()) // classifiers keep the text they always had: checkpoints stay byte-identical
    os << "kind = \"lm\"\n"
       << "vocab = " << c.vocab << "\n"
       << "context = " << c.context << "\n"
       << "dim = " << c.dim << "\n";
  else
    os << "input_dim = " << c.input_dim << "\n"
       << "dim = " << c.dim << "\n"
       << "classes = " << c.classes << "\n";
  os << "seed = " << c.seed << "\n";
  for (auto& l : c.layers) {
    os << "\n[[layer]]\n"
       << "kind = \"" << to_string(l.kind) << "\"\n";
    if (l.kind == layer_kind::attention) {
      os << "heads = " << l.heads << "\n"
         << "rope_base = " << std::setprecision(17) << std::showpoint << l.rope_base
         << std::noshowpoint << std::setprecision(9) << "\n";
      continue;
    }
    if (l.kind != layer_kind::dense)
      os << "experts = " << l.experts << "\n";
    os << "hidden = " << l.hidden << "\n"
       << "activation = \"" << kernels::to_string(l.act) << "\"\n"
       << "bias = " << (l.bias ? "true" : "false") << "\n";
    if (l.kind == layer_kind::eoe) {
      if (l.rank > 0)
        os << "rank = " << l.rank << "\n";
      if (l.score_columns != l.score_width())
        os << "score_columns = " << l.score_columns << "\n";
      os << "mode = \"" << to_string(l.mode) << "\"\n";
      if (l.mode == activation_mode::threshold) {
        os << "tau = [";
        for (size_t i = 0; i < l.tau.size(); ++i)
          os << (i ? ", " : "") << std::showpoint << l.tau[i] << std::noshowpoint;
        os << "]\n";
      } else {
        os << "k = " << l.k << "\n";
      }
      os << "affinity = " << (l.affinity ? "true" : "false") << "\n";
    } else if (l.kind != layer_kind::dense) {
      os << "k = " << l.k << "\n";
    }
    if (l.steps != 1)
      os << "steps = " << l.steps << "\n";
  }
  return os.str();
}

const model_config& default_model_config() {
  static const model_config config = [] {
    auto c = parse_model_config(default_config_text(), "<embedded default>");
    if (!c)
      throw std::logic_error("the embedded default config is invalid: " + c.error().message);
    return *c;
  }();
  return config;
}

} // namespace eoe::experts
