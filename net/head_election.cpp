#include "net/head_election.hpp"

#include <chrono>
#include <cstdlib>

namespace eoe::net {

namespace {

using clock_type = std::chrono::steady_clock;
constexpr auto campaign_every = std::chrono::milliseconds(200);
constexpr auto keep_alive_every = std::chrono::milliseconds(head_lease_ttl_s * 1000 / 4);

std::string stopped_key(const etcd_keys& k) {
  return k.prefix + "stopped";
}

} // namespace

head_lease::head_lease(etcd_client client, etcd_keys keys, std::string name, std::int64_t lease,
                       std::ostream& log)
  : client_(std::move(client)), keys_(std::move(keys)), name_(std::move(name)), lease_(lease),
    log_(log) {}

std::unique_ptr<head_lease> head_lease::win(etcd_client client, etcd_keys keys,
                                            const std::string& name, std::ostream& log) {
  std::string last_problem;
  auto say = [&](const std::string& problem) {
    if (problem != last_problem)
      log << "eoe node " << name << ": " << problem << " (retrying)" << std::endl;
    last_problem = problem;
  };
  // A shutdown before this candidate started does not count.
  std::int64_t stopped_at = -1;
  while (stopped_at < 0) {
    auto s = client.get(stopped_key(keys));
    if (s) {
      stopped_at = *s ? (*s)->mod_revision : 0;
      break;
    }
    say(s.error().message);
    std::this_thread::sleep_for(campaign_every);
  }
  std::int64_t lease = 0;
  auto renewed = clock_type::now();
  std::string seen;
  for (;;) {
    if (!lease) {
      auto l = client.grant(head_lease_ttl_s);
      if (!l) {
        say(l.error().message);
        std::this_thread::sleep_for(campaign_every);
        continue;
      }
      lease = *l;
      renewed = clock_type::now();
    } else if (clock_type::now() - renewed > keep_alive_every) {
      auto ttl = client.keep_alive(lease);
      if (!ttl || *ttl <= 0)
        lease = 0; // expired while etcd was away: a new one
      renewed = clock_type::now();
      if (!lease)
        continue;
    }
    // A shut-down cluster is not taken over (its head revokes its lease after marking it).
    const auto stopped = [&] {
      auto s = client.get(stopped_key(keys));
      if (!s || !*s || (*s)->mod_revision <= stopped_at)
        return false;
      log << "node " << name << ": the cluster was shut down (by " << (*s)->value
          << "); exiting" << std::endl;
      client.revoke(lease);
      return true;
    };
    if (stopped())
      return nullptr;
    auto c = client.campaign(keys.leader(), name, lease);
    if (!c) {
      say(c.error().message);
      std::this_thread::sleep_for(campaign_every);
      continue;
    }
    if (c->won && stopped())
      return nullptr;
    if (c->won) {
      std::unique_ptr<head_lease> out{new head_lease(client, keys, name, lease, log)};
      out->term_ = static_cast<std::uint64_t>(c->leader.create_revision);
      out->previous_ = seen;
      log << "node " << name << " leads cluster (term " << out->term_ << ", leader key "
          << keys.leader() << " in etcd at " << client.endpoint() << ")" << std::endl;
      out->keeper_ = std::thread([p = out.get()] { p->keep_alive_loop(); });
      return out;
    }
    if (c->leader.value != seen && !c->leader.value.empty()) {
      seen = c->leader.value;
      log << "node " << name << " stands by: " << seen << " is the head (term "
          << c->leader.create_revision << ")" << std::endl;
    }
    std::this_thread::sleep_for(campaign_every);
  }
}

void head_lease::keep_alive_loop() {
  auto last_ok = clock_type::now();
  while (!stop_) {
    std::this_thread::sleep_for(keep_alive_every);
    if (stop_)
      break;
    auto ttl = client_.keep_alive(lease_);
    if (ttl && *ttl > 0) {
      last_ok = clock_type::now();
      continue;
    }
    const bool gone = ttl && *ttl <= 0;
    if (gone || clock_type::now() - last_ok > std::chrono::seconds(head_lease_ttl_s)) {
      // Another head may lead already: stop at once, before serving anything more.
      log_ << "eoe node " << name_ << ": lost the head's lease in etcd ("
           << (ttl ? std::string{"it expired"} : ttl.error().message) << "); exiting" << std::endl;
      std::_Exit(3);
    }
  }
}

void head_lease::mark_stopped() {
  client_.put(stopped_key(keys_), name_);
}

head_lease::~head_lease() {
  stop_ = true;
  if (keeper_.joinable())
    keeper_.join();
  client_.revoke(lease_);
}

} // namespace eoe::net
