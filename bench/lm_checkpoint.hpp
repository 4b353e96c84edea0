#pragma once
// The language model the serving benchmarks run: the trained checkpoint of bench/lm_compare.sh
// when it exists, else configs/lm/eoe.toml at init, saved into the benchmark's folder.

#include "experts/model/checkpoint.hpp"
#include "experts/base/model_config.hpp"

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

namespace eoe::bench {

/// Points `checkpoint` at a readable language model (written into `dir` when it is missing)
/// and says which it is; exits with the reason, naming `bench`, when none can be made.
inline std::string lm_checkpoint(std::string& checkpoint, const std::filesystem::path& dir,
                                 const char* bench) {
  if (std::filesystem::exists(checkpoint))
    return checkpoint;
  auto c = experts::load_model_config("configs/lm/eoe.toml");
  if (!c) {
    std::fprintf(stderr, "%s: %s\n", bench, c.error().message.c_str());
    std::exit(1);
  }
  checkpoint = (dir / "lm.ckpt").string();
  if (auto ok = experts::save_checkpoint(experts::init_model(*c), checkpoint); !ok) {
    std::fprintf(stderr, "%s: %s\n", bench, ok.error().message.c_str());
    std::exit(1);
  }
  return "configs/lm/eoe.toml at init (no trained checkpoint)";
}

} // namespace eoe::bench
