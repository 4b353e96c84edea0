// The request batcher as plain code: who goes at once, who waits, what leaves together, and
// that an answer cut from a batch is the answer the request gets alone (the reference forward
// of the stacked rows, split, against each request's own forward, hash layers included).
#include "actors/request_batcher.hpp"
#include "actors/wire.hpp"
#include "experts/model/forward.hpp"
#include "kernels/backend.hpp"
#include "mesh_model.hpp"

#include <catch2/catch.hpp>

using namespace eoe;
using namespace eoe::actors;

namespace {

infer_request rows_request(std::uint32_t rows, std::uint32_t deadline_ms = 5000, std::uint64_t seed = 1) {
  auto r = test::request_of(test::random_input(rows, 12, seed), deadline_ms);
  return r;
}

std::vector<std::uint64_t> ids_of(const request_batch& b) {
  return unpack<std::uint64_t>(b.request.ids, "ids");
}

} // namespace

TEST_CASE("an idle mesh takes a request at once; a busy one makes it wait for the next batch",
          "[batcher]") {
  request_batcher b{100, 1};
  auto first = b.add(1, 7, rows_request(3));
  REQUIRE(first.has_value());
  CHECK(first->epoch == 7);
  REQUIRE(first->members.size() == 1);
  CHECK(first->members[0].id == 1);
  CHECK(first->request.ids.empty()); // alone: sent as it came
  CHECK(b.in_flight() == 1);
  CHECK_FALSE(b.add(2, 7, rows_request(2)).has_value());
  auto with_ids = rows_request(4);
  with_ids.ids = pack(std::vector<std::uint64_t>{40, 41, 42, 43});
  CHECK_FALSE(b.add(3, 7, with_ids).has_value());
  CHECK_FALSE(b.add(4, 7, rows_request(1)).has_value());
  CHECK(b.waiting() == 3);
  auto next = b.finished();
  REQUIRE(next.has_value());
  CHECK(b.waiting() == 0);
  CHECK(b.in_flight() == 1);
  REQUIRE(next->members.size() == 3);
  CHECK(next->members[0].id == 2);
  CHECK(next->members[1].id == 3);
  CHECK(next->members[2].id == 4);
  CHECK(next->members[1].first_row == 2);
  CHECK(next->members[2].first_row == 6);
  CHECK(next->request.tokens.rows == 7);
  CHECK(next->request.tokens.cols == 12);
  CHECK(next->request.tokens.bytes.size() == 7 * 12 * 4);
  // Ids made explicit: a request without them keeps its own row indices.
  CHECK(ids_of(*next) == std::vector<std::uint64_t>{0, 1, 40, 41, 42, 43, 0});
  CHECK_FALSE(b.finished().has_value());
  CHECK(b.in_flight() == 0);
  CHECK(b.add(5, 7, rows_request(1)).has_value()); // idle again: at once
}

TEST_CASE("a batch holds at most max_rows rows; a larger request goes alone; order is kept",
          "[batcher]") {
  request_batcher b{7, 1};
  REQUIRE(b.add(1, 1, rows_request(1)).has_value());
  for (std::uint64_t id = 2; id <= 5; ++id)
    CHECK_FALSE(b.add(id, 1, rows_request(3)).has_value());
  CHECK_FALSE(b.add(6, 1, rows_request(20)).has_value());
  auto one = b.finished();
  REQUIRE(one.has_value());
  REQUIRE(one->members.size() == 2); // 3 + 3 rows; a third would make 9
  CHECK(one->members[0].id == 2);
  CHECK(one->members[1].id == 3);
  auto two = b.finished();
  REQUIRE(two.has_value());
  REQUIRE(two->members.size() == 2);
  CHECK(two->members[0].id == 4);
  CHECK(two->members[1].id == 5);
  auto three = b.finished();
  REQUIRE(three.has_value());
  REQUIRE(three->members.size() == 1);
  CHECK(three->members[0].id == 6);
  CHECK(three->request.tokens.rows == 20);
}

TEST_CASE("only requests of one epoch, width and deadline share a batch", "[batcher]") {
  request_batcher b{1000, 1};
  REQUIRE(b.add(1, 1, rows_request(1)).has_value());
  CHECK_FALSE(b.add(2, 1, rows_request(1, 5000)).has_value());
  CHECK_FALSE(b.add(3, 2, rows_request(1, 5000)).has_value());  // another epoch
  CHECK_FALSE(b.add(4, 1, rows_request(1, 9000)).has_value());  // another deadline
  auto narrow = test::request_of(test::random_input(1, 5, 3));
  CHECK_FALSE(b.add(5, 1, narrow).has_value());                   // another width
  CHECK_FALSE(b.add(6, 1, rows_request(1, 5000)).has_value());
  std::vector<std::vector<std::uint64_t>> batches;
  while (auto n = b.finished()) {
    std::vector<std::uint64_t> ids;
    for (auto& m : n->members)
      ids.push_back(m.id);
    batches.push_back(ids);
  }
  CHECK(batches == std::vector<std::vector<std::uint64_t>>{{2, 6}, {3}, {4}, {5}});
}

TEST_CASE("traced requests, language-model steps and requests whose ids do not fit go alone, "
          "at once; max_rows 0 batches nothing",
          "[batcher]") {
  request_batcher b{1000, 1};
  REQUIRE(b.add(1, 1, rows_request(2)).has_value());
  auto traced = rows_request(2);
  traced.trace = true;
  CHECK(b.add(2, 1, traced).has_value());
  auto sampled = rows_request(2);
  sampled.trace_id = 99;
  CHECK(b.add(3, 1, sampled).has_value());
  auto step = rows_request(2);
  step.session = 5;
  CHECK(b.add(4, 1, step).has_value());
  auto bad_ids = rows_request(2);
  bad_ids.ids = pack(std::vector<std::uint64_t>{1});
  CHECK(b.add(5, 1, bad_ids).has_value());
  CHECK(b.waiting() == 0);
  request_batcher none{0, 1};
  REQUIRE(none.add(1, 1, rows_request(2)).has_value());
  CHECK(none.add(2, 1, rows_request(2)).has_value());
  CHECK(none.waiting() == 0);
}

TEST_CASE("an answer cut from its batch is the answer its request gets alone", "[batcher]") {
  auto m = experts::load_checkpoint(test::checkpoint());
  REQUIRE(m.has_value());
  auto be = kernels::make_cpu_backend();
  // Requests of 1..6 rows, some with ids (the test model has a hash layer), stacked.
  std::vector<infer_request> reqs;
  std::vector<matrix> xs;
  for (std::uint32_t i = 0; i < 6; ++i) {
    xs.push_back(test::random_input(i + 1, 12, 50 + i));
    reqs.push_back(test::request_of(xs.back()));
    reqs.back().want_record = i != 2;
    if (i % 2 == 1) {
      std::vector<std::uint64_t> ids(i + 1);
      for (size_t t = 0; t < ids.size(); ++t)
        ids[t] = 1000 * i + 7 * t;
      reqs.back().ids = pack(ids);
    }
  }
  request_batcher b{1000, 1};
  REQUIRE(b.add(100, 1, rows_request(1)).has_value());
  for (size_t i = 0; i < reqs.size(); ++i)
    REQUIRE_FALSE(b.add(i + 1, 1, reqs[i]).has_value());
  auto batch = b.finished();
  REQUIRE(batch.has_value());
  REQUIRE(batch->members.size() == reqs.size());
  CHECK(batch->request.want_record);
  // The mesh's answer to the batch, made here by the reference forward of the stacked rows.
  const auto stacked = from_wire(batch->request.tokens, "tokens");
  const auto ids = unpack<std::uint64_t>(batch->request.ids, "ids");
  auto whole = experts::forward(*be, *m, stacked, ids);
  REQUIRE(whole.has_value());
  infer_result answer;
  answer.request = 1;
  answer.epoch = 1;
  answer.output = to_wire(whole->output);
  for (auto& l : whole->layers) {
    wire_layer_record r;
    r.kind = static_cast<std::uint8_t>(l.kind);
    if (l.scores.size())
      r.scores = to_wire(l.scores);
    r.offsets = pack(l.active.offsets);
    r.experts = pack(l.active.experts);
    r.gates = pack(l.active.gates);
    answer.layers.push_back(std::move(r));
  }
  for (size_t i = 0; i < reqs.size(); ++i) {
    INFO("request " << i);
    const auto own = split_result(answer, batch->members[i]);
    CHECK(own.request == i + 1);
    const auto own_ids = reqs[i].ids.empty() ? std::vector<std::uint64_t>{}
                                             : unpack<std::uint64_t>(reqs[i].ids, "ids");
    auto alone = experts::forward(*be, *m, xs[i], own_ids);
    REQUIRE(alone.has_value());
    const auto d = decode(own);
    REQUIRE(d.output.rows() == alone->output.rows());
    CHECK((d.output - alone->output).cwiseAbs().maxCoeff() <= 1e-5f);
    if (!reqs[i].want_record) {
      CHECK(d.layers.empty());
      continue;
    }
    REQUIRE(d.layers.size() == alone->layers.size());
    for (size_t l = 0; l < d.layers.size(); ++l) {
      INFO("layer " << l);
      CHECK(d.layers[l].active.offsets == alone->layers[l].active.offsets);
      CHECK(d.layers[l].active.experts == alone->layers[l].active.experts);
      if (alone->layers[l].scores.size())
        CHECK((d.layers[l].scores - alone->layers[l].scores).cwiseAbs().maxCoeff() <= 1e-5f);
    }
  }
  // An answer without the rows its members need is an error naming them, not a read past it.
  infer_result short_answer = answer;
  short_answer.output.rows = 3;
  short_answer.output.bytes.resize(3 * short_answer.output.cols * 4);
  CHECK_THROWS_WITH(split_result(short_answer, batch->members[3]),
                    Catch::Contains("the batch's output has 3 rows, a member needs rows 6..10"));
}
