// train_checksum: trains shipped configs for a few steps with their seeds and prints, per
// config, the mean loss of the last epoch and a checksum (FNV-1a, 64 bits) of every weight's
// bytes after training. The same build on the same kind of CPU prints the same lines; the
// test `train_checksum_repeats` compares them with the lines committed in
// tests/data/train_checksums.txt (see README: what repeats where).
//   train_checksum SOURCE_DIR

#include "experts/base/model_config.hpp"
#include "experts/data/fashion_mnist.hpp"
#include "experts/data/text_corpus.hpp"
#include "experts/model/model.hpp"
#include "experts/train/classifier_task.hpp"
#include "experts/train/lm_task.hpp"

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

using namespace eoe;
using namespace eoe::experts;

namespace {

std::uint64_t checksum(const model& m) {
  std::uint64_t h = 1469598103934665603ull;
  for_each_parameter(m, [&](const std::string& name, const matrix& t) {
    for (char ch : name)
      h = (h ^ static_cast<unsigned char>(ch)) * 1099511628211ull;
    const auto* p = reinterpret_cast<const unsigned char*>(t.data());
    for (size_t i = 0; i < static_cast<size_t>(t.size()) * sizeof(float); ++i)
      h = (h ^ p[i]) * 1099511628211ull;
  });
  return h;
}

int report(const char* name, const expected<void>& ok, const model& m, double loss) {
  if (!ok) {
    std::fprintf(stderr, "train_checksum: %s: %s\n", name, ok.error().message.c_str());
    return 1;
  }
  std::printf("%s loss %.9g weights %016llx\n", name, loss,
              static_cast<unsigned long long>(checksum(m)));
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: train_checksum SOURCE_DIR\n");
    return 2;
  }
  const std::string src = argv[1];
  int failures = 0;
  auto train = load_fashion_mnist("train", 1200);
  auto test = load_fashion_mnist("test", 200);
  if (!train || !test) {
    std::fprintf(stderr, "train_checksum: %s\n",
                 (!train ? train.error() : test.error()).message.c_str());
    return 1;
  }
  const auto run = [&](const std::string& name, const std::string& path, auto train) {
    auto f = load_config_file(src + "/configs/" + path + ".toml");
    if (!f) {
      std::fprintf(stderr, "train_checksum: %s\n", f.error().message.c_str());
      return 1;
    }
    f->train.epochs = 1;
    auto m = init_model(f->model);
    double loss = 0;
    train_hooks hooks;
    hooks.on_epoch = [&](const epoch_report& r) { loss = r.train_loss; };
    const auto ok = train(m, f->train, hooks);
    return report(name.c_str(), ok, m, loss);
  };
  // The classifier's paths: top-k with router losses, threshold calibration, affinity,
  // recurrence, hash routing, augmentation; 1,200 images, 200 to evaluate.
  for (const char* name : {"eoe_topk", "eoe_threshold", "eoe_affinity", "eoe_recurrent",
                           "hash_moe"})
    failures += run(name, std::string{"fmnist/"} + name, [&](model& m, train_config t, auto& h) {
      t.train_limit = 1200;
      t.test_limit = 200;
      return train_model(m, t, *train, *test, h);
    });
  auto corpus = load_text_corpus();
  if (!corpus) {
    std::fprintf(stderr, "train_checksum: %s\n", corpus.error().message.c_str());
    return 1;
  }
  // The language model's: attention, RMSNorm, its expert layers; 64 windows, 4 to evaluate.
  for (const char* name : {"tiny", "eoe"})
    failures += run(std::string{"lm_"} + name, std::string{"lm/"} + name,
                    [&](model& m, train_config t, auto& h) {
                      t.train_limit = 64;
                      t.test_limit = 4;
                      return train_lm(m, t, *corpus, h);
                    });
  return failures == 0 ? 0 : 1;
}
