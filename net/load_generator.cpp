#include "net/load_generator.hpp"

#include "actors/mesh_errc.hpp"
#include "actors/wire.hpp"
#include "experts/model/checkpoint.hpp"
#include "experts/model/forward.hpp"
#include "experts/nn/hash_routing.hpp"
#include "experts/base/rng.hpp"

#include <caf/event_based_actor.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/sec.hpp>

#include <algorithm>
#include <chrono>
#include <future>
#include <memory>
#include <mutex>
#include <regex>

namespace eoe::net {

double quantile(std::vector<double> values, double p) {
  if (values.empty())
    return 0;
  std::sort(values.begin(), values.end());
  return values[std::min(values.size() - 1, static_cast<size_t>(p * static_cast<double>(values.size())))];
}

namespace {

using clock_type = std::chrono::steady_clock;

matrix tokens_for(const load_options& opt, size_t i, int width) {
  experts::rng r{experts::stable_hash(opt.seed, i)};
  matrix x(static_cast<Eigen::Index>(opt.tokens), width);
  for (Eigen::Index k = 0; k < x.size(); ++k)
    x.data()[k] = static_cast<float>(r.normal());
  return x;
}

/// The smallest gap, over the tokens and top-k eoe layers of a reference forward, between the
/// k-th and the (k+1)-th ranking score: where it is at rounding's scale, a computation that
/// sums in another order (a batch's GEMMs) may pick the other expert.
double topk_margin(const experts::model& m, const experts::forward_result& r) {
  double out = 1e30;
  for (size_t l = 0; l < r.layers.size() && l < m.config.layers.size(); ++l) {
    const auto& lc = m.config.layers[l];
    const auto& s = r.layers[l].scores;
    if (lc.kind != experts::layer_kind::eoe || lc.mode != experts::activation_mode::topk
        || s.cols() <= lc.k)
      continue;
    const auto& bias = m.layers[l].select_bias;
    for (Eigen::Index t = 0; t < s.rows(); ++t) {
      std::vector<double> v;
      for (Eigen::Index e = 0; e < s.cols(); ++e)
        v.push_back(s(t, e) + (bias.size() == s.cols() ? bias.data()[e] : 0.0f));
      std::sort(v.rbegin(), v.rend());
      out = std::min(out, v[static_cast<size_t>(lc.k) - 1] - v[static_cast<size_t>(lc.k)]);
    }
  }
  return out;
}

/// What came back for request i.
struct answer {
  bool done = false;
  bool ok = false;
  std::uint64_t epoch = 0;
  matrix output;
  std::string error;
  bool timed_out = false;
  double sent_s = 0, latency_ms = 0;
  clock_type::time_point sent_at;
};

struct shared_run {
  load_options opt;
  int width = 0;
  std::vector<answer> answers;
  size_t next = 0, outstanding = 0;
  clock_type::time_point start;
  std::promise<void> finished;
  std::atomic<size_t>* answered = nullptr;
  std::mutex mu; ///< answers, between the sending actor and a caller that stops waiting
  std::atomic<clock_type::rep> progress{0}; ///< when the last answer came (clock ticks)
};

void send_next(caf::event_based_actor* self, const actors::coordinator_actor& coord,
               std::shared_ptr<shared_run> run);

/// Request i ended with a: recorded once (an answer to a request already failed, because the
/// head went down, is dropped), then the next requests go.
void finish(caf::event_based_actor* self, const actors::coordinator_actor& coord,
            const std::shared_ptr<shared_run>& run, size_t i, answer a) {
  if (run->answers[i].done)
    return;
  a.done = true;
  a.sent_s = run->answers[i].sent_s;
  a.sent_at = run->answers[i].sent_at;
  a.latency_ms = std::chrono::duration<double, std::milli>(clock_type::now() - a.sent_at).count();
  {
    std::lock_guard lock{run->mu};
    run->answers[i] = std::move(a);
  }
  run->progress = clock_type::now().time_since_epoch().count();
  --run->outstanding;
  if (run->answered)
    ++*run->answered;
  send_next(self, coord, run);
  if (run->outstanding == 0 && run->next == run->opt.requests) {
    run->finished.set_value();
    self->quit();
  }
}

void send_next(caf::event_based_actor* self, const actors::coordinator_actor& coord,
               std::shared_ptr<shared_run> run) {
  while (run->outstanding < run->opt.concurrency && run->next < run->opt.requests) {
    const size_t i = run->next++;
    ++run->outstanding;
    actors::infer_request req;
    req.tokens = actors::to_wire(tokens_for(run->opt, i, run->width));
    req.deadline_ms = run->opt.deadline_ms;
    req.want_record = false;
    {
      std::lock_guard lock{run->mu};
      run->answers[i].sent_at = clock_type::now();
      run->answers[i].sent_s =
        std::chrono::duration<double>(run->answers[i].sent_at - run->start).count();
    }
    // No answer within the deadline plus this much counts as lost.
    const auto patience = std::chrono::milliseconds(run->opt.deadline_ms) + std::chrono::seconds(5);
    self->request(coord, patience, actors::infer_atom::value, std::move(req))
      .then(
        [self, coord, run, i](actors::infer_result& r) {
          answer a;
          try {
            a.output = actors::from_wire(r.output, "output");
            a.ok = true;
            a.epoch = r.epoch;
          } catch (const std::exception& e) {
            a.error = std::string{"malformed answer: "} + e.what();
          }
          finish(self, coord, run, i, std::move(a));
        },
        [self, coord, run, i](caf::error& err) {
          answer a;
          a.timed_out = err == caf::sec::request_timeout;
          a.error = actors::describe(err);
          finish(self, coord, run, i, std::move(a));
        });
  }
}

/// The load's sender: it watches the head, and when the head goes down (killed, its link
/// cut) every request still out fails at once with the reason, rather than at its timeout.
void start_sending(caf::event_based_actor* self, const actors::coordinator_actor& coord,
                   const std::shared_ptr<shared_run>& run) {
  self->monitor(coord);
  self->set_down_handler([self, coord, run](caf::down_msg& dm) {
    const auto why = "the head went down (" + caf::to_string(dm.reason) + ")";
    for (size_t i = 0; i < run->next; ++i)
      if (!run->answers[i].done) {
        answer a;
        a.error = why;
        finish(self, coord, run, i, std::move(a));
      }
  });
  send_next(self, coord, run);
}

/// An error's text without what differs from request to request (its id, its expert list).
std::string error_kind(const std::string& text) {
  if (text.empty())
    return "no answer";
  auto kind = std::regex_replace(text, std::regex{"request [0-9]+: "}, "");
  if (auto cut = kind.find("; the request needed"); cut != std::string::npos)
    kind.resize(cut);
  return kind;
}

} // namespace

load_report run_load(caf::actor_system& sys, const actors::coordinator_actor& coordinator,
                     const load_options& opt, std::atomic<size_t>* answered) {
  load_report rep;
  // The model's input width comes with the first epoch's model.
  caf::scoped_actor self{sys};
  std::map<std::uint64_t, std::shared_ptr<experts::model>> models;
  auto model_of = [&](std::uint64_t epoch) -> std::shared_ptr<experts::model> {
    auto& m = models[epoch];
    if (m)
      return m;
    self->request(coordinator, std::chrono::seconds(30), actors::model_atom::value, epoch)
      .receive(
        [&](const std::string& bytes) {
          auto parsed = experts::parse_checkpoint(std::vector<char>(bytes.begin(), bytes.end()),
                                                  "model of epoch " + std::to_string(epoch));
          if (parsed)
            m = std::make_shared<experts::model>(std::move(*parsed));
        },
        [&](const caf::error&) {});
    return m;
  };
  std::uint64_t first_epoch = 0;
  self->request(coordinator, std::chrono::seconds(30), actors::status_atom::value)
    .receive([&](const actors::cluster_status& s) { first_epoch = s.epoch; },
             [&](const caf::error&) {});
  auto first = model_of(first_epoch);
  if (!first) {
    rep.failed = opt.requests; // none was sent
    rep.errors["could not fetch the cluster's model"] = opt.requests;
    return rep;
  }
  auto run = std::make_shared<shared_run>();
  run->opt = opt;
  run->width = first->config.input_dim > 0 ? first->config.input_dim : first->config.dim;
  run->answers.resize(opt.requests);
  run->answered = answered;
  run->start = clock_type::now();
  auto done = run->finished.get_future();
  if (opt.requests == 0)
    run->finished.set_value();
  else
    // (one unused argument: CAF 0.17 dereferences a null argument tuple for a function actor
    // that takes none, which UBSan reports)
    sys.spawn([coordinator, run](caf::event_based_actor* self, int) {
      start_sending(self, coordinator, run);
    }, 0);
  // Every request ends in an answer, an error or its timeout; should the sender lose track
  // of some (its actor gone), the run still ends, and they count as lost.
  run->progress = clock_type::now().time_since_epoch().count();
  const auto patience = std::chrono::milliseconds(opt.deadline_ms) + std::chrono::seconds(10);
  while (done.wait_for(std::chrono::milliseconds(200)) != std::future_status::ready)
    if (clock_type::now() - clock_type::time_point{clock_type::duration{run->progress.load()}}
        > patience)
      break;
  std::vector<answer> answers;
  {
    std::lock_guard lock{run->mu};
    answers = run->answers;
  }
  for (auto& a : answers)
    if (!a.done) {
      a.timed_out = true;
      a.error = "no answer, error or timeout came for it (the client lost track)";
    }
  rep.seconds = std::chrono::duration<double>(clock_type::now() - run->start).count();

  auto be = kernels::make_cpu_backend();
  for (size_t i = 0; i < answers.size(); ++i) {
    const auto& a = answers[i];
    if (!a.ok) {
      if (a.timed_out)
        ++rep.lost;
      else
        ++rep.failed;
      ++rep.errors[error_kind(a.error)];
      continue;
    }
    rep.latency_ms.push_back(a.latency_ms);
    rep.sent_at_s.push_back(a.sent_s);
    ++rep.per_epoch[a.epoch];
    auto m = model_of(a.epoch);
    if (!m) {
      ++rep.wrong;
      ++rep.errors["the model of epoch " + std::to_string(a.epoch) + " is not kept"];
      continue;
    }
    auto want = experts::forward(*be, *m, tokens_for(opt, i, run->width));
    const double diff = want && want->output.rows() == a.output.rows()
                            && want->output.cols() == a.output.cols()
                          ? (want->output - a.output).cwiseAbs().maxCoeff()
                          : 1e30;
    rep.worst_difference = std::max(rep.worst_difference, diff);
    const double gap = diff > opt.tolerance && want ? topk_margin(*m, *want) : 1e30;
    if (diff <= opt.tolerance) {
      ++rep.ok;
    } else if (gap <= opt.tie_gap) {
      ++rep.ties;
      if (rep.tie_answers.size() < 16)
        rep.tie_answers.push_back("request " + std::to_string(i) + ", epoch "
                                  + std::to_string(a.epoch) + ": differs by "
                                  + std::to_string(diff) + " where the reference's top-k "
                                  + "ranking gap is " + std::to_string(gap));
    } else {
      ++rep.wrong;
      if (rep.wrong_answers.size() < 16) {
        // The epoch before's answer, to tell a request run partly in the wrong epoch.
        const std::string before =
          want ? "; closest top-k ranking gap of the reference: " + std::to_string(gap) : "";
        rep.wrong_answers.push_back("request " + std::to_string(i) + " (sent at "
                                    + std::to_string(a.sent_s) + " s), epoch "
                                    + std::to_string(a.epoch) + ": differs by "
                                    + std::to_string(diff) + before);
      }
    }
  }
  return rep;
}

} // namespace eoe::net
