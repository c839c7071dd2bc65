#pragma once
// Which host sits behind a slow network link. A ring collective moves at the pace of its slowest
// link, so every rank waits for it equally and per-rank timings cannot tell which host it is.
// check_links() times point-to-point transfers between host leaders (the lowest rank on each
// host), in both directions, between a reference host (rank 0's) and every other host, and with
// three or more hosts also between a second reference (the next host) and the rest, so that a
// slow reference shows up against the other one. Each transfer counts at its fastest of a few
// repeats: a transfer that the scheduler or one lost packet delayed is not taken for a slow link.
//
// Each host scores its fastest send and its fastest receive; a host is named when its send
// score (or its receive score, over senders that are not slow) is far above the median score.
// With two hosts "node2 sends slowly" and "node1 receives slowly" look the same; the sender is
// named. A link slow in both directions between only two hosts names nobody (there is no third
// host to compare with).
#include <cstddef>
#include <string>
#include <vector>

#include "coca/dist/mpi.h"

namespace coca::dist {

struct LinkCheckOptions {
  size_t bytes = 64 * 1024;  // per transfer
  int repeats = 3;           // per transfer; the fastest counts
  double factor = 5;         // slow: above factor x the median score ...
  double margin_ms = 30;     // ... and above it by this much (scheduling noise on a busy host)
};

struct SlowLink {
  std::string host;
  int rank = 0;         // the host's leader, which took part in the transfers
  bool sending = true;  // its sending is slow (else its receiving)
  double ms = 0;        // its fastest transfer in that direction
};

struct LinkCheck {
  int hosts = 0;           // below 2: nothing was measured
  int transfers = 0;       // distinct (sender, receiver) pairs timed
  double median_ms = 0;    // the median score (the lower one of an even count)
  double max_ms = 0;       // the slowest transfer
  double seconds = 0;      // wall time of the check on this rank
  std::vector<SlowLink> slow;
};

// Collective over `comm`: every rank calls it (only host leaders move data) and every rank returns
// the same result. Changes no state that training reads. A leader that does not answer within the
// communicator's timeout throws a coca::Error naming it and its host.
LinkCheck check_links(MpiCommunicator& comm, const LinkCheckOptions& opts = {});

// The judgement alone, apart from the measuring (every rank runs it on the same figures).
// hosts[h], leaders[h]: host h's name and leader rank; transfers: host indices and the fastest
// time of each. Fills every field but `seconds`.
struct LinkTransfer {
  int from = 0, to = 0;  // host indices
  double ms = 0;
};
LinkCheck judge_links(const std::vector<std::string>& hosts, const std::vector<int>& leaders,
                      const std::vector<LinkTransfer>& transfers, const LinkCheckOptions& opts = {});

// "node2 (rank 2) takes 105 ms to send 64 KB, the median host 0.4 ms"
std::string describe(const SlowLink& s, const LinkCheck& c, const LinkCheckOptions& opts = {});

}  // namespace coca::dist
