#pragma once
// Human-readable summaries of evaluation results and the plots of a training run.

#include "experts/train/classifier_task.hpp"

#include <string>
#include <vector>

namespace eoe::cli {

/// Accuracy, loss, expert FLOPs and one line of diagnostics per layer as run.
std::string format_eval(const experts::model_config& c, const experts::eval_result& r);

/// Writes <prefix>.loss.svg, <prefix>.accuracy.svg and <prefix>.experts.svg (the expert x
/// class heatmaps; a language model's: utilisation per epoch, and <prefix>.perplexity.svg);
/// returns the paths.
std::vector<std::string> write_plots(const std::string& prefix, const experts::model_config& c,
                                     const std::vector<experts::epoch_report>& epochs);

} // namespace eoe::cli
