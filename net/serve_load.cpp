#include "net/serve_load.hpp"

#include "experts/base/rng.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <cmath>
#include <optional>
#include <stdexcept>
#include <thread>

namespace eoe::net {

namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using nlohmann::json;
using clock_type = std::chrono::steady_clock;

double ms_between(clock_type::time_point a, clock_type::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

/// A response read as it arrives: the status and headers, then the body (chunked or not),
/// handed on piece by piece.
class response_reader {
public:
  explicit response_reader(tcp::socket& s) : s_(s) {}

  /// Reads the status line and headers; returns the status.
  unsigned head() {
    while (buf_.find("\r\n\r\n") == std::string::npos)
      if (!more())
        throw std::runtime_error("the connection closed before the response's header");
    const auto end = buf_.find("\r\n\r\n");
    const auto header = buf_.substr(0, end);
    buf_.erase(0, end + 4);
    if (header.size() < 12 || !header.starts_with("HTTP/1."))
      throw std::runtime_error("not an HTTP response");
    const auto status = static_cast<unsigned>(std::stoi(header.substr(9, 3)));
    std::string lower = header;
    for (auto& c : lower)
      c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    chunked_ = lower.find("transfer-encoding: chunked") != std::string::npos;
    if (const auto at = lower.find("content-length:"); at != std::string::npos)
      length_ = std::stoull(lower.substr(at + 15));
    return status;
  }

  /// The next piece of the body; false at its end.
  bool body(std::string& piece) {
    piece.clear();
    if (!chunked_) {
      if (length_ && read_ >= *length_)
        return false;
      if (buf_.empty() && !more())
        return false;
      piece.swap(buf_);
      read_ += piece.size();
      return true;
    }
    if (done_)
      return false;
    while (buf_.find("\r\n") == std::string::npos)
      if (!more())
        throw std::runtime_error("the stream broke off inside a chunk's size");
    const auto size = std::stoull(buf_.substr(0, buf_.find("\r\n")), nullptr, 16);
    buf_.erase(0, buf_.find("\r\n") + 2);
    while (buf_.size() < size + 2)
      if (!more())
        throw std::runtime_error("the stream broke off inside a chunk");
    piece = buf_.substr(0, size);
    buf_.erase(0, size + 2);
    if (size == 0)
      done_ = true;
    return size > 0;
  }

private:
  bool more() {
    char b[8192];
    boost::system::error_code ec;
    const auto n = s_.read_some(asio::buffer(b), ec);
    if (ec)
      return false;
    buf_.append(b, n);
    return true;
  }

  tcp::socket& s_;
  std::string buf_;
  bool chunked_ = false, done_ = false;
  std::optional<std::uint64_t> length_;
  std::uint64_t read_ = 0;
};

} // namespace

std::string token_bytes(const std::string& token) {
  if (token.starts_with("bytes:\\x") && token.size() == 10)
    return std::string(1, static_cast<char>(std::stoi(token.substr(8), nullptr, 16)));
  return token;
}

serve_request_result stream_completion(const std::string& host, std::uint16_t port,
                                       const std::string& body) {
  serve_request_result r;
  const auto start = clock_type::now();
  try {
    asio::io_context io;
    tcp::socket s{io};
    s.connect({asio::ip::make_address(host), port});
    s.set_option(tcp::no_delay(true));
    const auto request = "POST /v1/completions HTTP/1.1\r\nHost: " + host
                         + "\r\nContent-Type: application/json\r\nConnection: close\r\n"
                           "Content-Length: "
                         + std::to_string(body.size()) + "\r\n\r\n" + body;
    asio::write(s, asio::buffer(request));
    response_reader in{s};
    const auto status = in.head();
    std::string events, piece;
    if (status != 200) {
      while (in.body(piece))
        events += piece;
      const auto j = json::parse(events, nullptr, false);
      r.error = "HTTP " + std::to_string(status) + ": "
                + (j.is_object() && j.contains("error") ? j["error"].value("message", events) : events);
      return r;
    }
    std::optional<clock_type::time_point> last;
    bool done = false;
    while (!done && in.body(piece)) {
      events += piece;
      for (auto end = events.find("\n\n"); end != std::string::npos; end = events.find("\n\n")) {
        const auto event = events.substr(0, end);
        events.erase(0, end + 2);
        if (!event.starts_with("data: "))
          throw std::runtime_error("an event that is not \"data: \": " + event.substr(0, 80));
        const auto data = event.substr(6);
        if (data == "[DONE]") {
          done = true;
          break;
        }
        const auto j = json::parse(data);
        if (j.contains("error"))
          throw std::runtime_error(j["error"].value("message", data));
        const auto& c = j.at("choices").at(0);
        size_t tokens = 0;
        if (c.contains("logprobs") && c["logprobs"].is_object())
          for (const auto& t : c["logprobs"].at("tokens")) {
            r.bytes += token_bytes(t.get<std::string>());
            ++tokens;
          }
        if (c.contains("finish_reason") && c["finish_reason"].is_string())
          r.finish_reason = c["finish_reason"].get<std::string>();
        if (tokens == 0)
          continue;
        const auto now = clock_type::now();
        if (!last)
          r.ttft_ms = ms_between(start, now);
        else
          r.itl_ms.push_back(ms_between(*last, now) / static_cast<double>(tokens));
        for (size_t t = 1; t < tokens; ++t) // a group: its tokens share the gap
          r.itl_ms.push_back(r.itl_ms.back());
        last = now;
      }
    }
    if (!done)
      throw std::runtime_error("the stream ended without [DONE]");
    r.e2e_ms = ms_between(start, clock_type::now());
    r.ok = true;
  } catch (const std::exception& e) {
    r.error = e.what();
  }
  return r;
}

std::string served_model(const std::string& host, std::uint16_t port) {
  asio::io_context io;
  tcp::socket s{io};
  boost::system::error_code ec;
  s.connect({asio::ip::make_address(host), port}, ec);
  if (ec)
    throw std::runtime_error("no gateway at " + host + ":" + std::to_string(port) + ": " + ec.message());
  asio::write(s, asio::buffer("GET /v1/models HTTP/1.1\r\nHost: " + host + "\r\nConnection: close\r\n\r\n"));
  response_reader in{s};
  const auto status = in.head();
  std::string body, piece;
  while (in.body(piece))
    body += piece;
  const auto j = json::parse(body, nullptr, false);
  if (status != 200 || !j.is_object() || !j.contains("data") || !j["data"].is_array()
      || j["data"].empty() || !j["data"][0].contains("id"))
    throw std::runtime_error("GET /v1/models answered " + std::to_string(status) + ": " + body.substr(0, 200));
  return j["data"][0]["id"].get<std::string>();
}

serve_load_report run_serve_load(const serve_load_options& opt) {
  if (opt.prompts.empty())
    throw std::invalid_argument("serve load: no prompts");
  serve_load_report report;
  report.results.resize(opt.requests);
  // Arrival times (a Poisson process at `rate`), output lengths and seeds, all from the seed.
  experts::rng draw{opt.seed};
  std::vector<double> arrive(opt.requests, 0.0);
  double t = 0;
  for (size_t i = 0; i < opt.requests; ++i) {
    if (opt.rate > 0) {
      t += -std::log(1.0 - draw.uniform()) / opt.rate;
      arrive[i] = t;
    }
    auto& r = report.results[i];
    r.prompt = i % opt.prompts.size();
    r.max_tokens = opt.max_tokens_hi > opt.max_tokens
                     ? opt.max_tokens
                         + static_cast<size_t>(draw.uniform()
                                               * static_cast<double>(opt.max_tokens_hi - opt.max_tokens + 1))
                     : opt.max_tokens;
    r.max_tokens = std::min(r.max_tokens, std::max(opt.max_tokens_hi, opt.max_tokens));
    r.seed = opt.seed * 1000003 + i;
  }
  std::atomic<size_t> next{0};
  const auto start = clock_type::now();
  auto worker = [&] {
    for (size_t i; (i = next++) < opt.requests;) {
      std::this_thread::sleep_until(start + std::chrono::duration_cast<clock_type::duration>(
                                              std::chrono::duration<double>(arrive[i])));
      auto& slot = report.results[i];
      json ids = json::array(); // token ids: a prompt's bytes need not be UTF-8
      for (unsigned char c : opt.prompts[slot.prompt])
        ids.push_back(c);
      const json body = {{"model", opt.model},
                         {"prompt", ids},
                         {"max_tokens", slot.max_tokens},
                         {"temperature", opt.temperature},
                         {"seed", slot.seed},
                         {"logprobs", 0},
                         {"stream", true}};
      const auto sent = std::chrono::duration<double>(clock_type::now() - start).count();
      auto r = stream_completion(opt.host, opt.port, body.dump());
      r.prompt = slot.prompt;
      r.max_tokens = slot.max_tokens;
      r.seed = slot.seed;
      r.sent_s = sent;
      slot = std::move(r);
    }
  };
  std::vector<std::thread> threads;
  for (size_t w = 0; w < std::min(opt.concurrency, opt.requests); ++w)
    threads.emplace_back(worker);
  for (auto& th : threads)
    th.join();
  report.seconds = std::chrono::duration<double>(clock_type::now() - start).count();
  return report;
}

} // namespace eoe::net
