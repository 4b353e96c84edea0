#pragma once
// The HTTP/1.1 gateway of a cluster (Boost.Beast), run by the head node:
//   POST   /v1/infer          a request (net/infer_json); 200 with the output and activations
//   POST   /v1/completions    a language model's OpenAI-style completion (net/completion_json),
//                             streamed as Server-Sent Events on request; each choice a session
//                             driven by net/completion_driver
//   GET    /v1/models         the model served
//   GET    /v1/topology       nodes, addresses, health, the current epoch's experts
//   POST   /v1/experts        {"layer": L, "node": "n2", "init": "zero"}   (admin)
//   DELETE /v1/experts/L.E    remove expert E of layer L                   (admin)
//   GET    /metrics           Prometheus text
//   GET    /healthz           200 "ok" once the cluster admits requests, else 503
// Keep-alive; header and body size limits (431 / 413); at most max_concurrency inference
// requests and completions in the cluster, the next max_queue waiting in arrival order
// (net/admission), the ones after them answered 429 with Retry-After at once; a client that
// closes its connection mid-completion ends its sessions at once; every error a JSON body
// {"error": "..."} naming what is wrong (a body or target that is not UTF-8: 400 naming the
// byte; text from the request is quoted escaped, never raw). Admin calls need
// "Authorization: Bearer <token>" (401 without it or with a wrong one; 403 when no token is
// configured). No request ends the process: an exception while answering is a 500, logged to
// stderr with the request's number, which every answer carries as X-Request-Id. What each
// request gets is decided by net/gateway_routes; this file only carries it out. Binds
// 127.0.0.1 unless told otherwise.

#include "actors/interfaces.hpp"
#include "experts/base/model_config.hpp"
#include "net/cluster_config.hpp"

#include <caf/actor_system.hpp>

#include <cstdint>
#include <memory>
#include <string>

namespace eoe::net {

class http_gateway {
public:
  /// Listens at once; throws std::runtime_error when it cannot.
  http_gateway(caf::actor_system& sys, actors::coordinator_actor coordinator,
               experts::model_config model, gateway_settings settings);
  ~http_gateway();

  http_gateway(const http_gateway&) = delete;
  http_gateway& operator=(const http_gateway&) = delete;

  std::uint16_t port() const;

  struct impl;

private:
  std::shared_ptr<impl> impl_;
};

} // namespace eoe::net
