#include "experts/model_config.hpp"

#include <toml++/toml.h>

#include <algorithm>
#include <fstream>
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
  }
  return "?";
}

std::string_view to_string(activation_mode m) noexcept {
  return m == activation_mode::topk ? "topk" : "threshold";
}

namespace {

constexpr std::int64_t max_width = 1 << 20;   // D, H, D_in: generous, but not absurd
constexpr std::int64_t max_experts = 4096;
constexpr std::int64_t max_layers = 1024;

std::string describe(const toml::node& n) {
  std::ostringstream os;
  switch (n.type()) {
    case toml::node_type::string: os << "a string (\"" << n.as_string()->get() << "\")"; break;
    case toml::node_type::integer: os << "an integer (" << n.as_integer()->get() << ")"; break;
    case toml::node_type::floating_point:
      os << "a float (" << n.as_floating_point()->get() << ")";
      break;
    case toml::node_type::boolean:
      os << "a boolean (" << (n.as_boolean()->get() ? "true" : "false") << ")";
      break;
    case toml::node_type::array: os << "an array"; break;
    case toml::node_type::table: os << "a table"; break;
    default: os << "a date or time"; break;
  }
  return os.str();
}

/// Collects every problem of a document, each as "file:line:col: key: message".
struct problems {
  std::string_view file;
  std::vector<std::string> lines;

  void add(const toml::source_region& at, const std::string& key, const std::string& msg) {
    std::ostringstream os;
    os << file << ":" << at.begin.line << ":" << at.begin.column << ": " << key << ": " << msg;
    lines.push_back(os.str());
  }
};

/// Reads the keys of one table, remembering which were read so that the rest can be reported
/// as unknown.
class table_reader {
public:
  table_reader(const toml::table& t, std::string path, problems& out)
    : table_(t), path_(std::move(path)), out_(out) {
    // nop
  }

  std::string key_path(std::string_view key) const {
    return path_.empty() ? std::string{key} : path_ + "." + std::string{key};
  }

  const toml::node* take(std::string_view key) {
    used_.emplace_back(key);
    return table_.get(key);
  }

  void missing(std::string_view key, const std::string& expected) {
    out_.add(table_.source(), key_path(key), "missing; expected " + expected);
  }

  void bad(const toml::node& n, std::string_view key, const std::string& expected) {
    out_.add(n.source(), key_path(key), "expected " + expected + ", got " + describe(n));
  }

  std::optional<std::int64_t> integer(std::string_view key, std::int64_t lo, std::int64_t hi,
                                      std::optional<std::int64_t> fallback,
                                      const std::string& range_note = {}) {
    std::ostringstream want;
    want << "an integer in " << lo << ".." << hi << range_note;
    auto* n = take(key);
    if (!n) {
      if (!fallback)
        missing(key, want.str());
      return fallback;
    }
    auto v = n->as_integer();
    if (!v || v->get() < lo || v->get() > hi) {
      bad(*n, key, want.str());
      return std::nullopt;
    }
    return v->get();
  }

  std::optional<bool> boolean(std::string_view key, bool fallback) {
    auto* n = take(key);
    if (!n)
      return fallback;
    if (auto v = n->as_boolean())
      return v->get();
    bad(*n, key, "true or false");
    return std::nullopt;
  }

  std::optional<std::string> string(std::string_view key, std::optional<std::string> fallback) {
    auto* n = take(key);
    if (!n) {
      if (!fallback)
        missing(key, "a string");
      return fallback;
    }
    if (auto v = n->as_string())
      return v->get();
    bad(*n, key, "a string");
    return std::nullopt;
  }

  /// A string that must be one of `choices`.
  std::optional<std::string> choice(std::string_view key, std::vector<std::string_view> choices,
                                    std::optional<std::string> fallback) {
    std::string want = "one of";
    for (auto c : choices)
      want += std::string{" \""} + std::string{c} + "\"";
    auto* n = take(key);
    if (!n) {
      if (!fallback)
        missing(key, want);
      return fallback;
    }
    auto v = n->as_string();
    if (!v || std::find(choices.begin(), choices.end(), v->get()) == choices.end()) {
      bad(*n, key, want);
      return std::nullopt;
    }
    return v->get();
  }

  /// Reports every key that no reader asked for.
  void reject_unknown(std::string_view kind_note) {
    for (auto&& [k, n] : table_) {
      if (std::find(used_.begin(), used_.end(), k.str()) != used_.end())
        continue;
      std::string known;
      for (auto& u : used_)
        known += (known.empty() ? "" : ", ") + u;
      out_.add(k.source(), key_path(k.str()),
               std::string{"unknown key"} + std::string{kind_note} + " (expected one of: " + known
                 + ")");
    }
  }

  const toml::table& table() const noexcept {
    return table_;
  }

  problems& out() noexcept {
    return out_;
  }

private:
  const toml::table& table_;
  std::string path_;
  problems& out_;
  std::vector<std::string> used_;
};

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
  auto kind = r.choice("kind", {"eoe", "dense", "router", "hash"}, std::nullopt);
  if (!kind)
    return l; // the kind decides which keys exist: nothing more to check
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
        r.integer("rank", 1, std::max(1, m.dim), std::nullopt, " (at most dim)").value_or(0));
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
      if (l.affinity && experts_before == 0)
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
      break;
  }
  r.reject_unknown(std::string{" for a \""} + *kind + "\" layer");
  return l;
}

} // namespace

expected<model_config> parse_model_config(std::string_view text, std::string_view source) {
  toml::table doc;
  try {
    doc = toml::parse(text, source);
  } catch (const toml::parse_error& e) {
    std::ostringstream os;
    os << source << ":" << e.source().begin.line << ":" << e.source().begin.column
       << ": TOML syntax: " << e.description();
    return fail(errc::config_syntax, os.str());
  }

  problems out{source, {}};
  table_reader top{doc, "", out};
  model_config m;

  auto* model_node = top.take("model");
  if (!model_node) {
    top.missing("model", "a [model] table with dim");
  } else if (auto mt = model_node->as_table()) {
    table_reader r{*mt, "model", out};
    if (auto v = r.string("name", std::string{"model"}))
      m.name = *v;
    if (auto v = r.integer("input_dim", 0, max_width, 0, " (0: no embedding)"))
      m.input_dim = static_cast<int>(*v);
    if (auto v = r.integer("dim", 1, max_width, std::nullopt))
      m.dim = static_cast<int>(*v);
    if (auto v = r.integer("classes", 0, max_width, 0, " (0: no head)"))
      m.classes = static_cast<int>(*v);
    if (auto v = r.integer("seed", 0, std::numeric_limits<std::int64_t>::max(), 0))
      m.seed = static_cast<std::uint64_t>(*v);
    r.reject_unknown(" in [model]");
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
  top.reject_unknown(" at the top level");

  if (!out.lines.empty()) {
    std::string msg;
    for (auto& l : out.lines)
      msg += (msg.empty() ? "" : "\n") + l;
    return fail(errc::config_invalid, msg);
  }
  return m;
}

expected<model_config> load_model_config(const std::string& path) {
  std::ifstream in{path, std::ios::binary};
  if (!in)
    return fail(errc::io, path + ": cannot open the config file");
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad())
    return fail(errc::io, path + ": read error");
  return parse_model_config(text.str(), path);
}

std::string to_toml(const model_config& c) {
  std::ostringstream os;
  os.precision(9);
  auto quoted = [](const std::string& s) {
    toml::table t{{"s", s}};
    std::ostringstream q;
    q << t;
    auto text = q.str();              // s = "..."
    return text.substr(text.find('=') + 2);
  };
  os << "[model]\n"
     << "name = " << quoted(c.name) << "\n"
     << "input_dim = " << c.input_dim << "\n"
     << "dim = " << c.dim << "\n"
     << "classes = " << c.classes << "\n"
     << "seed = " << c.seed << "\n";
  for (auto& l : c.layers) {
    os << "\n[[layer]]\n"
       << "kind = \"" << to_string(l.kind) << "\"\n";
    if (l.kind != layer_kind::dense)
      os << "experts = " << l.experts << "\n";
    os << "hidden = " << l.hidden << "\n"
       << "activation = \"" << kernels::to_string(l.act) << "\"\n"
       << "bias = " << (l.bias ? "true" : "false") << "\n";
    if (l.kind == layer_kind::eoe) {
      os << "rank = " << l.rank << "\n"
         << "mode = \"" << to_string(l.mode) << "\"\n";
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
