#pragma once
// Training and evaluating a language model on a text corpus (experts/data/text_corpus.hpp):
// the training loop of experts/train/training_loop.hpp over a task of text windows.
//
// An epoch draws `train_limit` windows (0: as many as the training text holds positions,
// size / context) of context + 1 bytes at random offsets of the training text; every
// position of a window predicts the byte after it. Validation reads the validation text as
// consecutive windows, each byte but the first predicted once.

#include "experts/train/evaluate.hpp"
#include "experts/data/text_corpus.hpp"
#include "experts/train/training_loop.hpp"

#include <string_view>

namespace eoe::experts {

/// Next-token loss, perplexity (exp of the loss), accuracy and the MoE diagnostics of a
/// language model on `text`: its consecutive windows of context + 1 bytes (the first `limit`
/// of them; 0: all), `batch` windows per reference forward (CPU, batches in parallel).
expected<eval_result> evaluate_lm(const model& m, std::string_view text, int limit = 0,
                                  int batch = 16);

/// Trains a language model in place on data.train, evaluating on data.validation
/// (test_limit windows; 0: all) after every epoch.
expected<void> train_lm(model& m, const train_config& t, const text_corpus& data,
                        const train_hooks& hooks = {});

/// The cross-entropy (nats per byte) of `text` under the byte frequencies of `train`, with
/// add-one smoothing over `vocab` tokens: the unigram baseline a language model must beat.
double unigram_loss(std::string_view train, std::string_view text, int vocab = 256);

} // namespace eoe::experts
