// eoe train: trains a model config on Fashion-MNIST (a language model: on the fortunes text);
// eoe eval: metrics of a checkpoint.

#include "experts/model/checkpoint.hpp"
#include "experts/data/fashion_mnist.hpp"
#include "experts/train/lm_task.hpp"
#include "experts/train/classifier_task.hpp"
#include "tools/eoe/commands.hpp"
#include "tools/eoe/metrics_json.hpp"
#include "tools/eoe/progress.hpp"
#include "tools/eoe/report.hpp"

#include <cstdio>
#include <fstream>
#include <iostream>

namespace eoe::cli {

namespace {

experts::labelled_images load_split(std::string_view split, int limit) {
  auto d = experts::load_fashion_mnist(split, static_cast<size_t>(limit));
  if (!d)
    throw command_error{d.error().message};
  return std::move(*d);
}

experts::text_corpus load_corpus(const std::string& dir) {
  auto c = experts::load_text_corpus(dir);
  if (!c)
    throw command_error{c.error().message};
  return std::move(*c);
}

struct train_options {
  std::string config;
  std::string out;
  std::string metrics;
  std::string data = experts::fortunes_dir;
  int epochs = 0;
  int train_limit = -1;
};

void run_train(const train_options& opt) {
  auto file = experts::load_config_file(opt.config);
  if (!file)
    throw command_error{file.error().message};
  auto t = file->train;
  if (opt.epochs > 0)
    t.epochs = opt.epochs;
  if (opt.train_limit >= 0)
    t.train_limit = opt.train_limit;
  const auto metrics_path = opt.metrics.empty() ? opt.out + ".metrics.jsonl" : opt.metrics;
  std::ofstream metrics{metrics_path, std::ios::trunc};
  if (!metrics)
    throw command_error{metrics_path + ": cannot write"};

  const bool lm = file->model.is_lm();
  experts::labelled_images train, test;
  experts::text_corpus text;
  auto m = experts::init_model(file->model);
  progress bar{stderr};
  char buf[512];
  if (lm) {
    text = load_corpus(opt.data);
    const long windows = t.train_limit > 0
                           ? t.train_limit
                           : static_cast<long>(text.train.size() / file->model.context);
    std::snprintf(buf, sizeof buf,
                  "training '%s' (language model) on %zu bytes of %zu fortunes from %zu files "
                  "in %s (every 20th fortune, %zu bytes, for validation): %d epochs of %ld "
                  "windows of %d bytes, batch %d",
                  file->model.name.c_str(), text.train.size(),
                  text.fortunes - text.validation_fortunes, text.files, text.source.c_str(),
                  text.validation.size(), t.epochs, windows, file->model.context + 1, t.batch);
  } else {
    train = load_split("train", t.train_limit);
    test = load_split("test", t.test_limit);
    std::snprintf(buf, sizeof buf, "training '%s' on %ld Fashion-MNIST images, %d epochs of batch %d",
                  file->model.name.c_str(), static_cast<long>(train.images.rows()), t.epochs,
                  t.batch);
  }
  bar.line(buf);
  std::vector<experts::epoch_report> epochs;
  double loss_ema = 0;
  experts::train_hooks hooks;
  hooks.on_step = [&](long step, long total, double loss) {
    loss_ema = step == 1 ? loss : 0.98 * loss_ema + 0.02 * loss;
    char note[64];
    std::snprintf(note, sizeof note, "loss %.4f", loss_ema);
    bar.update(step, total, note);
  };
  hooks.on_epoch = [&](const experts::epoch_report& r) {
    metrics << to_json(r).dump() << "\n";
    metrics.flush();
    char line[256];
    if (lm)
      std::snprintf(line, sizeof line,
                    "epoch %3d  train loss %.4f  validation loss %.4f perplexity %.3f (%.3f "
                    "bits/byte) acc %.2f%%  %.1fs",
                    r.epoch, r.train_loss, r.test.loss, r.test.perplexity(),
                    r.test.bits_per_token(), 100 * r.test.accuracy, r.seconds);
    else
      std::snprintf(line, sizeof line,
                    "epoch %3d  train loss %.4f acc %.2f%%  test loss %.4f acc %.2f%%  %.1fs",
                    r.epoch, r.train_loss, 100 * r.train_accuracy, r.test.loss,
                    100 * r.test.accuracy, r.seconds);
    bar.line(line);
    epochs.push_back(r);
  };
  if (auto ok = lm ? experts::train_lm(m, t, text, hooks)
                    : experts::train_model(m, t, train, test, hooks);
      !ok)
    throw command_error{ok.error().message};
  if (auto ok = experts::save_checkpoint(m, opt.out); !ok)
    throw command_error{ok.error().message};
  const auto plots = write_plots(opt.out, m.config, epochs);
  std::cout << (lm ? "\nfinal validation metrics:\n" : "\nfinal test metrics:\n")
            << format_eval(m.config, epochs.back().test);
  std::snprintf(buf, sizeof buf, "training time %.1f s for %d epochs (evaluation excluded)",
                epochs.back().elapsed, t.epochs);
  std::cout << buf << "\nwrote " << opt.out << ", " << metrics_path;
  for (auto& p : plots)
    std::cout << ", " << p;
  std::cout << "\n";
}

} // namespace

void add_train(CLI::App& app) {
  auto* cmd = app.add_subcommand(
    "train", "Train a model config on Fashion-MNIST (a language model: on the fortunes text)");
  auto opt = std::make_shared<train_options>();
  cmd->add_option("--config", opt->config, "config with [model], [[layer]] and [train]")
    ->required()
    ->check(CLI::ExistingFile);
  cmd->add_option("--out", opt->out, "checkpoint to write (plots and metrics beside it)")
    ->required();
  cmd->add_option("--metrics", opt->metrics, "JSON lines, one per epoch (default OUT.metrics.jsonl)");
  cmd->add_option("--epochs", opt->epochs, "override [train] epochs")->check(CLI::Range(1, 100000));
  cmd->add_option("--train-limit", opt->train_limit,
                  "override [train] train_limit (0: all; a language model: windows per epoch)")
    ->check(CLI::Range(0, 100000000));
  cmd->add_option("--data", opt->data, "a language model's text corpus (a fortunes directory)")
    ->capture_default_str();
  cmd->callback([opt] { run_train(*opt); });
}

void add_eval(CLI::App& app) {
  auto* cmd = app.add_subcommand(
    "eval", "Metrics of a trained model on the Fashion-MNIST test set (a language model: on "
            "the validation text)");
  struct options {
    std::string checkpoint;
    std::string data = experts::fortunes_dir;
    int limit = 0;
    bool json = false;
  };
  auto opt = std::make_shared<options>();
  cmd->add_option("--checkpoint", opt->checkpoint, "trained model")->required()->check(CLI::ExistingFile);
  cmd->add_option("--limit", opt->limit,
                  "evaluate on the first N test images (a language model: validation windows; "
                  "0: all)")
    ->check(CLI::Range(0, 10000000));
  cmd->add_option("--data", opt->data, "a language model's text corpus (a fortunes directory)")
    ->capture_default_str();
  cmd->add_flag("--json", opt->json, "print the metrics as one JSON object");
  cmd->callback([opt] {
    auto m = experts::load_checkpoint(opt->checkpoint);
    if (!m)
      throw command_error{m.error().message};
    auto be = kernels::make_cpu_backend();
    auto r = m->config.is_lm()
               ? experts::evaluate_lm(*m, load_corpus(opt->data).validation, opt->limit)
               : experts::evaluate(*be, *m, load_split("test", opt->limit));
    if (!r)
      throw command_error{r.error().message};
    if (opt->json)
      std::cout << to_json(*r).dump() << "\n";
    else
      std::cout << "model '" << m->config.name << "' from " << opt->checkpoint << "\n"
                << format_eval(m->config, *r);
  });
}

} // namespace eoe::cli
