// Config validation: every error names file, line, key, the expected and the actual value.

#include "experts/base/blocks.hpp"
#include "experts/base/model_config.hpp"

#include <catch2/catch.hpp>

#include <cstdlib>

using namespace eoe::experts;

namespace {

const std::string model_head = "[model]\ndim = 8\n\n"; // lines 1-3

/// The error message of parsing `text` as "t.toml"; fails the test if it parses.
std::string error_of(const std::string& text, errc want = errc::config_invalid) {
  auto c = parse_model_config(text, "t.toml");
  REQUIRE_FALSE(c.has_value());
  CHECK(c.error().code == want);
  return c.error().message;
}

std::string layer(const std::string& body) {
  return model_head + "[[layer]]\n" + body; // body starts on line 5
}

std::string source_dir() {
  const char* s = std::getenv("EOE_SOURCE_DIR");
  return s ? s : ".";
}

} // namespace

TEST_CASE("a valid config parses to what it says", "[config]") {
  auto c = parse_model_config(layer("kind = \"eoe\"\nexperts = 4\nhidden = 16\nrank = 2\nk = 2\n"
                                    "activation = \"gelu\"\nbias = false\n")
                                + "[[layer]]\nkind = \"eoe\"\nexperts = 3\nhidden = 8\nrank = 8\n"
                                  "mode = \"threshold\"\ntau = [0.5, 1, 2.5]\naffinity = true\n",
                              "t.toml");
  REQUIRE(c.has_value());
  CHECK(c->dim == 8);
  CHECK(c->input_dim == 0);
  CHECK(c->classes == 0);
  REQUIRE(c->layers.size() == 2);
  CHECK(c->layers[0].k == 2);
  CHECK(c->layers[0].act == eoe::kernels::activation::gelu);
  CHECK_FALSE(c->layers[0].bias);
  CHECK(c->layers[1].mode == activation_mode::threshold);
  CHECK(c->layers[1].tau == std::vector<float>{0.5f, 1.0f, 2.5f});
  CHECK(c->layers[1].affinity);
  // Canonical TOML round-trips.
  auto again = parse_model_config(to_toml(*c), "again");
  REQUIRE(again.has_value());
  CHECK(*again == *c);
}

TEST_CASE("an EoE expert scores on the first columns of x A, or of x W1 when not factored",
          "[config]") {
  auto c = parse_model_config(layer("kind = \"eoe\"\nexperts = 4\nhidden = 16\nrank = 4\n"
                                    "score_columns = 2\nk = 2\n")
                                + "[[layer]]\nkind = \"eoe\"\nexperts = 3\nhidden = 8\n"
                                  "score_columns = 3\nk = 2\n"
                                + "[[layer]]\nkind = \"eoe\"\nexperts = 3\nhidden = 8\nrank = 0\nk = 1\n"
                                + "[[layer]]\nkind = \"eoe\"\nexperts = 3\nhidden = 8\nrank = 5\nk = 1\n",
                              "t.toml");
  REQUIRE(c.has_value());
  CHECK(c->layers[0].rank == 4);
  CHECK(c->layers[0].score_columns == 2);
  CHECK(c->layers[1].rank == 0); // not factored
  CHECK(c->layers[1].score_columns == 3);
  CHECK(c->layers[2].rank == 0);
  CHECK(c->layers[2].score_columns == 8); // all of W1
  CHECK(c->layers[3].score_columns == 5); // all of u
  auto again = parse_model_config(to_toml(*c), "again");
  REQUIRE(again.has_value());
  CHECK(*again == *c);
  CHECK(error_of(layer("kind = \"router\"\nexperts = 4\nhidden = 16\nk = 2\nscore_columns = 2\n"))
          .starts_with("t.toml:9:1: layer[0].score_columns: unknown key"));
}

TEST_CASE("a scalar tau applies to every expert", "[config]") {
  auto c = parse_model_config(layer("kind = \"eoe\"\nexperts = 3\nhidden = 4\nrank = 2\n"
                                    "mode = \"threshold\"\ntau = 2\n"),
                              "t.toml");
  REQUIRE(c.has_value());
  CHECK(c->layers[0].tau == std::vector<float>{2.0f, 2.0f, 2.0f});
}

TEST_CASE("syntax errors name the line", "[config]") {
  CHECK(error_of("[model]\ndim = = 3\n", errc::config_syntax).starts_with("t.toml:2:"));
  // Found by fuzzing: toml++ 3.3.0 reaches undefined behaviour when it tests some non-ASCII
  // characters for whitespace; they are refused wherever they stand, with line and column.
  const std::string unsafe = " is a character the TOML parser of this build cannot read safely "
                             "(toml++ 3.3.0: U+00A1..U+0499, U+2C5E..U+3057, U+FB26..U+FEFE)";
  CHECK(error_of(std::string("\xce\xbf" "d \0", 5), errc::config_syntax) == "t.toml:1:1: U+03BF" + unsafe);
  CHECK(error_of("#7\"\nchopcekint = \"\"\"eoe\\\\\\\\  \\\\\\\xe2\xbb\xbf\\\"$J", errc::config_syntax)
        == "t.toml:2:29: U+2EFF" + unsafe);
  CHECK(error_of(std::string("#1\ne = -\"442<\0" "1tn>>\xc2\xbe>>eo", 21), errc::config_syntax)
        == "t.toml:2:17: U+00BE" + unsafe);
  CHECK(error_of("name = \"\xce\xbf\"\n", errc::config_syntax) == "t.toml:1:9: U+03BF" + unsafe);
  CHECK(error_of("#7\"\nchopcekint = \"\"\"eoe\\\\\\\\  \\\\\\\xef\xbb\xba\\\"$J", errc::config_syntax)
        == "t.toml:2:29: U+FEFA" + unsafe);
  // Other non-ASCII characters: fine in strings and comments, an error elsewhere.
  CHECK(error_of("[model]\ndim = 4 \xe2\x82\xac\n", errc::config_syntax)
        == "t.toml:2:9: TOML syntax: a non-ASCII character outside a string or a comment");
  CHECK(error_of("# \xe2\x82\xac\n[model]\nname = \"\xe2\x82\xac \\\" '\"\ndim = 4\n")
        == "t.toml:1:1: layer: missing; expected at least one [[layer]] table");
}

TEST_CASE("bytes that are not UTF-8: the line, the column and the byte", "[config]") {
  const std::string not_utf8 = " is not UTF-8 (a TOML file is UTF-8 text)";
  CHECK(error_of("[model]\nname = \"a\xff" "b\"\n", errc::config_syntax)
        == "t.toml:2:10: byte 0xFF" + not_utf8);
  CHECK(error_of("# \xc0\xaf overlong '/'\n[model]\n", errc::config_syntax)
        == "t.toml:1:3: byte 0xC0" + not_utf8);
  CHECK(error_of("[model]\nname = \"\xed\xa0\x80\"\n", errc::config_syntax) // a surrogate, CESU-8
        == "t.toml:2:9: byte 0xED" + not_utf8);
  CHECK(error_of("[model]\nname = \"\xe2\x82\"\n", errc::config_syntax) // cut short
        == "t.toml:2:9: byte 0xE2" + not_utf8);
  CHECK(error_of("[model]\nname = \"\xf4\x90\x80\x80\"\n", errc::config_syntax) // past U+10FFFF
        == "t.toml:2:9: byte 0xF4" + not_utf8);
  // Escapes that name no character, and raw control characters: toml++'s own errors.
  CHECK(error_of("[model]\nname = \"\\uD800\"\n", errc::config_syntax)
        == "t.toml:2:15: TOML syntax: Error while parsing unicode scalar sequence: unicode "
           "surrogates (U+D800 - U+DFFF) are explicitly prohibited");
  CHECK(error_of(std::string("[model]\nname = \"a\0\"\n", 20), errc::config_syntax)
        == "t.toml:2:10: TOML syntax: Error while parsing string: unescaped control characters "
           "other than TAB (U+0009) are explicitly prohibited");
  // A character of four bytes is UTF-8 too (it was refused as "U+00F0"), in a comment and in a
  // string.
  auto c = parse_model_config("# \xf0\x9f\x98\x80\n[model]\nname = \"\xf0\x9f\x98\x80\"\ndim = 4\n"
                              "[[layer]]\nkind = \"dense\"\nhidden = 4\n",
                              "t.toml");
  REQUIRE(c.has_value());
  CHECK(c->name == "\xf0\x9f\x98\x80");
}

TEST_CASE("strings and keys of the file are quoted safely: control characters escaped, huge ones "
          "cut with the length said", "[config]") {
  CHECK(error_of("[model]\ndim = \"\\u001b[2J\\u0000\"\n[[layer]]\nkind = \"dense\"\nhidden = 4\n")
        == "t.toml:2:7: model.dim: expected an integer in 1..1048576, got a string "
           "(\"\\x1B[2J\\x00\")");
  const std::string huge(100000, 'x');
  CHECK(error_of("[model]\ndim = \"" + huge + "\"\n[[layer]]\nkind = \"dense\"\nhidden = 4\n")
        == "t.toml:2:7: model.dim: expected an integer in 1..1048576, got a string (\""
             + std::string(80, 'x') + "... (100000 bytes)\")");
  CHECK(error_of(layer("kind = \"dense\"\nhidden = 4\n\"k\\u0000\\u001b\" = 1\n"))
        == "t.toml:7:1: layer[0].k\\x00\\x1B: unknown key for a \"dense\" layer (expected one of: "
           "kind, hidden, activation, bias, steps)");
  CHECK(error_of(layer("kind = \"dense\"\nhidden = 4\n\"" + huge + "\" = 1\n"))
        == "t.toml:7:1: layer[0]." + std::string(151, 'x')
             + "... (100009 bytes): unknown key for a \"dense\" layer (expected one of: kind, "
               "hidden, activation, bias, steps)");
  // The model's name is printed and embedded in every checkpoint: no control characters, no
  // megabytes.
  const std::string rest = "dim = 4\n[[layer]]\nkind = \"dense\"\nhidden = 4\n";
  const std::string want_name = ": model.name: expected a string of 1..256 bytes without control "
                                "characters, got a string ";
  CHECK(error_of("[model]\nname = \"a\\u001b[2J\"\n" + rest)
        == "t.toml:2:8" + want_name + "(\"a\\x1B[2J\")");
  CHECK(error_of("[model]\nname = \"\"\n" + rest) == "t.toml:2:8" + want_name + "(\"\")");
  CHECK(error_of("[model]\nname = \"" + std::string(257, 'n') + "\"\n" + rest)
        == "t.toml:2:8" + want_name + "(\"" + std::string(80, 'n') + "... (257 bytes)\")");
  // A character past U+00A0 in a name, written as an escape: its canonical TOML (what a
  // checkpoint embeds) reads back; written raw it did not (U+00E9 is refused, toml++ 3.3.0).
  auto c = parse_model_config("[model]\nname = \"caf\\u00e9\"\ndim = 4\n[[layer]]\nkind = "
                              "\"dense\"\nhidden = 4\n",
                              "t.toml");
  REQUIRE(c.has_value());
  CHECK(c->name == "caf\xc3\xa9");
  CHECK_THAT(to_toml(*c), Catch::Contains("name = \"caf\\u00E9\"\n"));
  auto again = parse_model_config(to_toml(*c), "again");
  REQUIRE(again.has_value());
  CHECK(*again == *c);
  // An ASCII name is written as it always was (checkpoints stay byte-identical).
  c->name = "model";
  CHECK_THAT(to_toml(*c), Catch::StartsWith("[model]\nname = 'model'\n"));
}

TEST_CASE("unknown keys are errors, with the keys that exist", "[config]") {
  CHECK(error_of(layer("kind = \"dense\"\nhidden = 4\nhiden = 5\n"))
        == "t.toml:7:1: layer[0].hiden: unknown key for a \"dense\" layer (expected one of: "
           "kind, hidden, activation, bias, steps)");
  CHECK(error_of("[model]\ndim = 8\ndepth = 3\n[[layer]]\nkind = \"dense\"\nhidden = 4\n")
        == "t.toml:3:1: model.depth: unknown key in [model] (expected one of: name, kind, "
           "input_dim, dim, classes, seed)");
  CHECK(error_of(layer("kind = \"dense\"\nhidden = 4\n") + "[training]\nlr = 1\n")
          .starts_with("t.toml:7:2: training: unknown key at the top level"));
  // A key of another kind of layer is unknown here.
  CHECK(error_of(layer("kind = \"router\"\nexperts = 4\nhidden = 4\nk = 1\nrank = 2\n"))
          .starts_with("t.toml:9:1: layer[0].rank: unknown key for a \"router\" layer"));
}

TEST_CASE("wrong types name the expected and the actual value", "[config]") {
  CHECK(error_of("[model]\ndim = \"eight\"\n[[layer]]\nkind = \"dense\"\nhidden = 4\n")
        == "t.toml:2:7: model.dim: expected an integer in 1..1048576, got a string (\"eight\")");
  CHECK(error_of(layer("kind = \"dense\"\nhidden = 4\nbias = 1\n"))
        == "t.toml:7:8: layer[0].bias: expected true or false, got an integer (1)");
  CHECK(error_of(layer("kind = \"eoe\"\nexperts = 2\nhidden = 4\nrank = 2\nk = 1.5\n"))
        == "t.toml:9:5: layer[0].k: expected an integer in 1..2 (the layer's experts), got a "
           "float (1.5)");
  CHECK(error_of(layer("kind = \"moe\"\n"))
        == "t.toml:5:8: layer[0].kind: expected one of \"eoe\" \"dense\" \"router\" \"hash\", "
           "got a string (\"moe\")");
  CHECK(error_of("layer = 3\n[model]\ndim = 4\n")
        == "t.toml:1:9: layer: expected an array of 1..1024 [[layer]] tables, got an integer (3)");
}

TEST_CASE("out-of-range values name the range", "[config]") {
  CHECK(error_of(layer("kind = \"eoe\"\nexperts = 4\nhidden = 16\nrank = 9\nk = 2\n"))
        == "t.toml:8:8: layer[0].rank: expected an integer in 0..8 (at most dim; 0: not "
           "factored), got an integer (9)");
  CHECK(error_of(layer("kind = \"eoe\"\nexperts = 4\nhidden = 16\nrank = 4\nscore_columns = 5\nk = 2\n"))
        == "t.toml:9:17: layer[0].score_columns: expected an integer in 1..4 (at most rank), got "
           "an integer (5)");
  CHECK(error_of(layer("kind = \"eoe\"\nexperts = 4\nhidden = 16\nscore_columns = 17\nk = 2\n"))
        == "t.toml:8:17: layer[0].score_columns: expected an integer in 1..16 (at most hidden: "
           "the expert is not factored), got an integer (17)");
  CHECK(error_of(layer("kind = \"eoe\"\nexperts = 4\nhidden = 16\nscore_columns = 0\nk = 2\n"))
        == "t.toml:8:17: layer[0].score_columns: expected an integer in 1..16 (at most hidden: "
           "the expert is not factored), got an integer (0)");
  CHECK(error_of(layer("kind = \"eoe\"\nexperts = 4\nhidden = 16\nrank = 2\nk = 5\n"))
        == "t.toml:9:5: layer[0].k: expected an integer in 1..4 (the layer's experts), got an "
           "integer (5)");
  CHECK(error_of(layer("kind = \"router\"\nexperts = 1\nhidden = 16\nk = 1\n"))
        == "t.toml:6:11: layer[0].experts: expected an integer in 2..4096, got an integer (1)");
  CHECK(error_of(layer("kind = \"dense\"\nhidden = 0\n"))
        == "t.toml:6:10: layer[0].hidden: expected an integer in 1..1048576, got an integer (0)");
  CHECK(error_of(layer("kind = \"eoe\"\nexperts = 3\nhidden = 4\nrank = 2\nmode = \"threshold\"\n"
                       "tau = [1, 2]\n"))
        == "t.toml:10:7: layer[0].tau: expected a number >= 0 or an array of 3 numbers >= 0 (one "
           "per expert), got an array");
  CHECK(error_of(layer("kind = \"eoe\"\nexperts = 2\nhidden = 4\nrank = 2\nmode = \"threshold\"\n"
                       "tau = [1, -2]\n"))
        == "t.toml:10:11: layer[0].tau[1]: expected a number >= 0, got an integer (-2)");
}

TEST_CASE("missing keys and impossible affinity are named", "[config]") {
  CHECK(error_of(layer("kind = \"eoe\"\nexperts = 4\nrank = 2\nk = 1\n"))
        == "t.toml:4:1: layer[0].hidden: missing; expected an integer in 1..1048576");
  CHECK(error_of(layer("kind = \"eoe\"\nexperts = 3\nhidden = 4\nrank = 2\nmode = \"threshold\"\n"))
          .starts_with("t.toml:4:1: layer[0].tau: missing; expected a number >= 0"));
  CHECK(error_of("[[layer]]\nkind = \"dense\"\nhidden = 2\n")
          .starts_with("t.toml:1:1: model: missing; expected a [model] table"));
  CHECK(error_of(model_head) == "t.toml:1:1: layer: missing; expected at least one [[layer]] table");
  CHECK(error_of(layer("kind = \"eoe\"\nexperts = 2\nhidden = 4\nrank = 2\nk = 1\naffinity = true\n"))
        == "t.toml:10:12: layer[0].affinity: the first layer has no previous experts to have "
           "affinity to");
}

TEST_CASE("recurrent layers: steps, and no affinity with them", "[config]") {
  auto c = parse_model_config(layer("kind = \"eoe\"\nexperts = 1\nhidden = 4\nrank = 2\n"
                                    "mode = \"threshold\"\ntau = 0.5\nsteps = 3\n"),
                              "t.toml");
  REQUIRE(c.has_value());
  CHECK(c->layers[0].steps == 3);
  CHECK(c->unrolled_layers() == 3);
  CHECK(*parse_model_config(to_toml(*c), "again") == *c);
  CHECK(error_of(layer("kind = \"dense\"\nhidden = 4\nsteps = 0\n"))
        == "t.toml:7:9: layer[0].steps: expected an integer in 1..64 (1: not recurrent), got an "
           "integer (0)");
  CHECK(error_of(layer("kind = \"dense\"\nhidden = 4\n") + "[[layer]]\nkind = \"eoe\"\n"
                 "experts = 2\nhidden = 4\nrank = 2\nk = 1\naffinity = true\nsteps = 2\n")
        == "t.toml:14:9: layer[1].steps: a recurrent layer (steps > 1) cannot also have affinity");
}

TEST_CASE("a language model: [model] kind = \"lm\", attention layers between expert layers",
          "[config]") {
  const std::string lm_head = "[model]\nkind = \"lm\"\ncontext = 64\ndim = 16\n\n"; // lines 1-5
  auto c = parse_model_config(lm_head + "[[layer]]\nkind = \"attention\"\nheads = 4\n"
                                         "[[layer]]\nkind = \"eoe\"\nexperts = 4\nhidden = 8\n"
                                         "rank = 4\nk = 2\n[[layer]]\nkind = \"attention\"\n"
                                         "heads = 2\nrope_base = 500\n",
                              "t.toml");
  REQUIRE(c.has_value());
  CHECK(c->is_lm());
  CHECK(c->vocab == 256); // byte-level unless told
  CHECK(c->context == 64);
  CHECK(c->input_dim == 0);
  CHECK(c->classes == 0);
  REQUIRE(c->layers.size() == 3);
  CHECK(c->layers[0].kind == layer_kind::attention);
  CHECK(c->layers[0].heads == 4);
  CHECK(c->layers[0].rope_base == 10000.0);
  CHECK(c->layers[0].experts == 0);
  CHECK(c->layers[2].rope_base == 500.0);
  CHECK(*parse_model_config(to_toml(*c), "again") == *c);
  // Attention belongs to language models; heads must split dim into even widths.
  CHECK(error_of(layer("kind = \"attention\"\nheads = 2\n"))
        == "t.toml:5:8: layer[0].kind: \"attention\" layers belong to language models ([model] "
           "kind = \"lm\")");
  CHECK(error_of(lm_head + "[[layer]]\nkind = \"attention\"\nheads = 3\n")
        == "t.toml:8:9: layer[0].heads: dim (16) must split into 3 heads of an even width (RoPE "
           "rotates pairs of dimensions)");
  CHECK(error_of(lm_head + "[[layer]]\nkind = \"attention\"\nheads = 16\n")
          .starts_with("t.toml:8:9: layer[0].heads: dim (16) must split into 16 heads"));
  CHECK(error_of(lm_head + "[[layer]]\nkind = \"attention\"\nheads = 2\nhidden = 4\n")
        == "t.toml:9:1: layer[0].hidden: unknown key for an \"attention\" layer (expected one of: "
           "kind, heads, rope_base)");
  CHECK(error_of(lm_head + "[[layer]]\nkind = \"attention\"\n")
        == "t.toml:6:1: layer[0].heads: missing; expected an integer in 1..16 (at most dim)");
  CHECK(error_of(lm_head + "[[layer]]\nkind = \"dense\"\nhidden = 4\n[[layer]]\nkind = \"eoe\"\n"
                 "experts = 2\nhidden = 4\nrank = 2\nk = 1\naffinity = true\n")
        == "t.toml:15:12: layer[1].affinity: a language model's layers are residual branches of "
           "their own: no affinity");
  CHECK(error_of("[model]\nkind = \"lm\"\ncontext = 8\ndim = 4\ninput_dim = 3\n[[layer]]\n"
                 "kind = \"dense\"\nhidden = 4\n")
        == "t.toml:5:1: model.input_dim: unknown key in [model] of a language model (expected one "
           "of: name, kind, vocab, context, dim, seed)");
  CHECK(error_of("[model]\nkind = \"lm\"\ndim = 4\n[[layer]]\nkind = \"dense\"\nhidden = 4\n")
        == "t.toml:1:1: model.context: missing; expected an integer in 1..65536");
  CHECK(error_of("[model]\nkind = \"lm\"\nvocab = 300\ncontext = 8\ndim = 4\n[[layer]]\n"
                 "kind = \"dense\"\nhidden = 4\n")
        == "t.toml:3:9: model.vocab: expected an integer in 2..256 (byte-level tokens), got an "
           "integer (300)");
  CHECK(error_of("[model]\nkind = \"gpt\"\ndim = 4\n[[layer]]\nkind = \"dense\"\nhidden = 4\n")
        == "t.toml:2:8: model.kind: expected one of \"classifier\" \"lm\", got a string (\"gpt\")");
}

TEST_CASE("[train] is read strictly too", "[config]") {
  auto f = parse_config_file(layer("kind = \"dense\"\nhidden = 4\n")
                               + "[train]\nepochs = 3\nlr = 1e-3\naugment = true\n",
                             "t.toml");
  REQUIRE(f.has_value());
  CHECK(f->has_train);
  CHECK(f->train.epochs == 3);
  CHECK(f->train.lr == 1e-3);
  CHECK(f->train.augment);
  CHECK(f->train.batch == train_config{}.batch);
  auto b = parse_config_file(layer("kind = \"dense\"\nhidden = 4\n")
                               + "[train]\nscore_balance_coef = 0.03\n",
                             "t.toml");
  REQUIRE(b.has_value());
  CHECK(b->train.score_balance_coef == 0.03);
  CHECK(train_config{}.score_balance_coef == 0.0); // off unless asked for
  CHECK(error_of(layer("kind = \"dense\"\nhidden = 4\n") + "[train]\nscore_balance_coef = -0.1\n")
        == "t.toml:8:22: train.score_balance_coef: expected a number in [0, 1000], got a float "
           "(-0.1)");
  CHECK(error_of(layer("kind = \"dense\"\nhidden = 4\n") + "[train]\nlr = -1\nepoch = 2\n")
        == "t.toml:8:6: train.lr: expected a number in [0, 10], got an integer (-1)\n"
           "t.toml:9:1: train.epoch: unknown key in [train] (expected one of: epochs, batch, lr, "
           "warmup_fraction, final_lr_fraction, weight_decay, beta1, beta2, eps, "
           "label_smoothing, dropout, grad_clip, balance_coef, z_coef, threshold_rate, "
           "balance_bias_rate, score_balance_coef, augment, augment_shift, "
           "train_limit, "
           "test_limit, seed)");
}

TEST_CASE("every problem of a file is reported, one per line", "[config]") {
  auto msg = error_of(layer("kind = \"dense\"\nhidden = -1\nbias = \"yes\"\n"));
  CHECK(msg
        == "t.toml:6:10: layer[0].hidden: expected an integer in 1..1048576, got an integer (-1)\n"
           "t.toml:7:8: layer[0].bias: expected true or false, got a string (\"yes\")");
}

TEST_CASE("shipped configs are valid", "[config]") {
  for (auto name : {"default.toml", "llama7b_ffn.toml", "lm/tiny.toml", "lm/eoe.toml",
                    "lm/dense_same_flops.toml", "lm/router_moe.toml", "lm/eoe16.toml",
                    "lm/router_moe16.toml"}) {
    auto c = load_config_file(source_dir() + "/configs/" + name); // [train] too
    INFO(name << ": " << (c ? "" : c.error().message));
    REQUIRE(c.has_value());
  }
  CHECK(default_model_config().name == "default");
  auto missing = load_model_config("/nonexistent/x.toml");
  REQUIRE_FALSE(missing.has_value());
  CHECK(missing.error().code == errc::io);
  CHECK(missing.error().message == "/nonexistent/x.toml: cannot open the config file");
}

TEST_CASE("the blocks as run: attention once, a recurrent expert layer once per step",
          "[config]") {
  auto c = parse_model_config(
    "[model]\nkind = \"lm\"\nvocab = 16\ncontext = 8\ndim = 8\n"
    "[[layer]]\nkind = \"attention\"\nheads = 2\n"
    "[[layer]]\nkind = \"dense\"\nhidden = 4\nsteps = 3\n"
    "[[layer]]\nkind = \"attention\"\nheads = 2\n"
    "[[layer]]\nkind = \"attention\"\nheads = 2\n"
    "[[layer]]\nkind = \"eoe\"\nexperts = 4\nhidden = 4\nk = 2\n"
    "[[layer]]\nkind = \"attention\"\nheads = 2\n",
    "blocks.toml");
  REQUIRE(c.has_value());
  const auto b = blocks_of(*c);
  // (config layer, unrolled, attention): attention blocks carry the next expert block's index
  std::vector<std::tuple<std::uint32_t, std::uint32_t, bool>> got;
  for (const auto& x : b)
    got.emplace_back(x.layer, x.unrolled, x.attention);
  const std::vector<std::tuple<std::uint32_t, std::uint32_t, bool>> want{
    {0, 0, true}, {1, 0, false}, {1, 1, false}, {1, 2, false}, {2, 3, true},
    {3, 3, true}, {4, 3, false}, {5, 4, true}};
  CHECK(got == want);
  CHECK(c->unrolled_layers() == 8);
}
