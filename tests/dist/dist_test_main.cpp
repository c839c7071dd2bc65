// main() of the MPI GoogleTest binaries: every rank runs every test; rank 0 prints the usual
// report, the other ranks only their failures (prefixed with the rank). An exception escapes
// the test (catch_exceptions off) so that it aborts the whole job instead of leaving the other
// ranks waiting in a collective. The exit code is non-zero when any rank failed.
#include <gtest/gtest.h>

#include <cstdio>

#include "dist_test.h"

namespace coca::test {
std::shared_ptr<dist::MpiCommunicator> g_world;
}

namespace {
class RankFailurePrinter : public ::testing::EmptyTestEventListener {
 public:
  explicit RankFailurePrinter(int rank) : rank_(rank) {}
  void OnTestPartResult(const ::testing::TestPartResult& r) override {
    if (r.failed())
      std::fprintf(stderr, "[rank %d] %s:%d: Failure\n%s\n", rank_, r.file_name() ? r.file_name() : "?", r.line_number(),
                   r.message());
  }

 private:
  int rank_;
};
}  // namespace

int main(int argc, char** argv) {
  using coca::test::g_world;
  g_world = coca::dist::init(&argc, &argv);
  ::testing::InitGoogleTest(&argc, argv);
  ::testing::FLAGS_gtest_catch_exceptions = false;
  if (g_world->rank() != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new RankFailurePrinter(g_world->rank()));
  }
  const int rc = RUN_ALL_TESTS();
  const double failed = g_world->sum(rc != 0 ? 1.0 : 0.0);
  if (g_world->rank() == 0 && failed > 0) std::fprintf(stderr, "%g rank(s) failed\n", failed);
  g_world.reset();
  coca::dist::finalize();
  return failed > 0 ? 1 : 0;
}
