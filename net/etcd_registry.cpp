#include "net/etcd_registry.hpp"

#include "experts/model/checkpoint.hpp"

#include <cstdio>
#include <set>

namespace eoe::net {

namespace {

using experts::errc;
using experts::fail;

constexpr size_t chunk_bytes = 512 * 1024;

std::string chunk_name(size_t i) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%06zu", i);
  return buf;
}

class etcd_store final : public actors::registry_store {
public:
  etcd_store(etcd_client client, etcd_keys keys, std::string head)
    : client_(std::move(client)), keys_(std::move(keys)), head_(std::move(head)) {}

  std::string describe() const override {
    return "etcd://" + client_.endpoint() + " " + keys_.registry();
  }

  experts::expected<void> write(const actors::registry_record& r,
                                const experts::model* m) override {
    if (!r.model_file.empty()) {
      if (!m)
        return fail(errc::data_invalid, "etcd registry: the record names " + r.model_file
                                          + " but no model was given");
      const auto bytes = experts::checkpoint_bytes(*m);
      const auto dir = keys_.model(r.epoch);
      if (auto ok = client_.erase_prefix(dir); !ok)
        return ok;
      for (size_t at = 0, i = 0; at < bytes.size(); at += chunk_bytes, ++i)
        if (auto ok = client_.put(dir + chunk_name(i),
                                  std::string{bytes.data() + at,
                                              std::min(chunk_bytes, bytes.size() - at)});
            !ok)
          return ok;
    }
    auto put = client_.put_if(keys_.leader(), head_, keys_.registry(), actors::registry_json(r));
    if (!put)
      return fail(put.error().code, put.error().message);
    if (!*put)
      return fail(errc::io, describe() + ": " + head_
                              + " does not hold the leader key any more; epoch "
                              + std::to_string(r.epoch) + " is not written");
    // Earlier epochs' models: nothing names them any more.
    if (auto all = client_.get_prefix(keys_.prefix + "model/")) {
      std::set<std::string> old;
      for (auto& [key, v] : *all)
        if (!key.starts_with(keys_.model(r.epoch)))
          old.insert(key.substr(0, key.rfind('/') + 1));
      for (auto& dir : old)
        client_.erase_prefix(dir);
    }
    return {};
  }

  experts::expected<std::optional<actors::resumed_registry>>
  read(const std::string& checkpoint, const experts::model& base) override {
    const auto where = describe();
    const auto afresh = " (delete " + keys_.prefix + " in etcd to start afresh from the checkpoint)";
    auto got = client_.get(keys_.registry());
    if (!got)
      return fail(got.error().code, got.error().message);
    if (!*got)
      return std::optional<actors::resumed_registry>{};
    auto r = actors::parse_registry((*got)->value, where);
    if (!r)
      return fail(r.error().code, r.error().message + afresh);
    std::optional<experts::model> model;
    if (!r->model_file.empty()) {
      auto chunks = client_.get_prefix(keys_.model(r->epoch));
      if (!chunks)
        return fail(chunks.error().code, chunks.error().message);
      std::vector<char> bytes;
      for (auto& [key, v] : *chunks)
        bytes.insert(bytes.end(), v.value.begin(), v.value.end());
      auto m = experts::parse_checkpoint(bytes, where + " epoch " + std::to_string(r->epoch)
                                                  + "'s model");
      if (!m)
        return fail(m.error().code, m.error().message + afresh);
      model = std::move(*m);
    }
    auto out = actors::check_resumed(std::move(*r), std::move(model), checkpoint, base, where,
                                     afresh);
    if (!out)
      return fail(out.error().code, out.error().message);
    return std::optional<actors::resumed_registry>{std::move(*out)};
  }

private:
  etcd_client client_;
  etcd_keys keys_;
  std::string head_;
};

} // namespace

etcd_keys keys_of_cluster(const std::string& cluster) {
  return {"/eoe/" + cluster + "/"};
}

std::shared_ptr<actors::registry_store> etcd_registry(etcd_client client, etcd_keys keys,
                                                      std::string head) {
  return std::make_shared<etcd_store>(std::move(client), std::move(keys), std::move(head));
}

} // namespace eoe::net
