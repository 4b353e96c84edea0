#include "experts/base/parallel.hpp"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace eoe::experts {

namespace {

/// One parallel_for: its items, claimed one at a time by whoever works on it.
struct loop_job {
  size_t n = 0;
  const std::function<void(size_t)>* f = nullptr;
  std::atomic<size_t> next{0};
  unsigned helpers_wanted = 0; ///< pool threads still to take it (the pool's lock)
  std::mutex mu;
  std::condition_variable cv;
  /// Pool threads that took it and are not done with it (mu). Every item is claimed by the
  /// caller or by one of them, so once the caller has run out of items and none is left
  /// here, every item has run.
  unsigned helpers = 0;
  std::exception_ptr error; ///< the first thrown (mu)

  /// Runs items until none is left.
  void work() {
    std::exception_ptr e;
    for (size_t i = next++; i < n; i = next++) {
      try {
        (*f)(i);
      } catch (...) {
        if (!e)
          e = std::current_exception();
      }
    }
    if (e) {
      const std::lock_guard lock{mu};
      if (!error)
        error = e;
    }
  }
};

/// The threads that help loops: started once, kept until the process ends. A thread (and,
/// under OpenMP, its team) started per loop cost a clone, its stack and exit per attention
/// step of a serving node (strace: ~175 a second at 64 sessions).
class loop_pool {
public:
  static loop_pool& instance() {
    static loop_pool pool;
    return pool;
  }

  ~loop_pool() {
    {
      const std::lock_guard lock{mu_};
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_)
      t.join();
  }

  void run(loop_job& j, unsigned helpers) {
    unsigned wanted = 0;
    {
      std::lock_guard lock{mu_};
      if (threads_.empty())
        for (unsigned t = 1; t < loop_threads(); ++t)
          threads_.emplace_back([this] { help(); });
      wanted = std::min<unsigned>(helpers, static_cast<unsigned>(threads_.size()));
      j.helpers_wanted = wanted;
      if (wanted > 0)
        jobs_.push_back(&j);
    }
    if (wanted > 1)
      cv_.notify_all();
    else if (wanted == 1)
      cv_.notify_one();
    j.work();
    {
      // No pool thread takes it from here on; those that did are waited for below.
      const std::lock_guard lock{mu_};
      std::erase(jobs_, &j);
    }
    std::unique_lock lock{j.mu};
    j.cv.wait(lock, [&] { return j.helpers == 0; });
  }

private:
  void help() {
    for (;;) {
      loop_job* j = nullptr;
      {
        std::unique_lock lock{mu_};
        cv_.wait(lock, [&] { return stop_ || !jobs_.empty(); });
        if (jobs_.empty())
          return; // stopping
        j = jobs_.front();
        if (--j->helpers_wanted == 0)
          jobs_.pop_front();
        const std::lock_guard job_lock{j->mu};
        ++j->helpers;
      }
      j->work();
      const std::lock_guard lock{j->mu};
      --j->helpers;
      j->cv.notify_all();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<loop_job*> jobs_; ///< loops that want more helpers
  std::vector<std::thread> threads_;
  bool stop_ = false;
};

} // namespace

unsigned loop_threads() noexcept {
  static const unsigned n = std::max(1u, std::thread::hardware_concurrency());
  return n;
}

void parallel_for(size_t n, const std::function<void(size_t)>& f, unsigned threads) {
  threads = static_cast<unsigned>(std::min<size_t>(threads, n));
  if (threads <= 1) {
    for (size_t i = 0; i < n; ++i)
      f(i);
    return;
  }
  loop_job j;
  j.n = n;
  j.f = &f;
  loop_pool::instance().run(j, threads - 1);
  if (j.error)
    std::rethrow_exception(j.error);
}

} // namespace eoe::experts
